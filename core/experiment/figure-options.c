/* SPDX-License-Identifier: MIT */
/* flowgmm — the figure keys of [experiment] (doc/figures.md): which figures, of which
 * datasets, methods and seed, on what grid, with how many samples at which temperature.
 */
#include "config.h"

#include <string.h>

#include "experiment/figure-private.h"

#define DEFAULT_GRID 160
#define DEFAULT_SAMPLES 500

static const char *const option_keys[] = {
  "figures", "figure_methods", "figure_datasets", "figure_seed", "figure_grid",
  "figure_samples", "figure_temperature", NULL,
};

static const char *const figure_names[] = { "fig1", "fig2", "fig4", "cells", NULL };

static void
figure_item_free (gpointer data)
{
  FigureItem *it = data;
  if (it == NULL)
    return;
  g_free (it->name);
  g_strfreev (it->datasets);
  g_free (it);
}

/**
 * fg_figure_options_new:
 *
 * Returns: (transfer full): options asking for no figure, with the default grid (160²),
 *   samples (500 per class) and temperature (1).
 */
FgFigureOptions *
fg_figure_options_new (void)
{
  FgFigureOptions *o = g_new0 (FgFigureOptions, 1);
  o->items = g_ptr_array_new_with_free_func (figure_item_free);
  o->grid = DEFAULT_GRID;
  o->samples = DEFAULT_SAMPLES;
  o->temperature = 1.0;
  return o;
}

/**
 * fg_figure_options_copy:
 * @opts: options
 *
 * Returns: (transfer full): a deep copy.
 */
FgFigureOptions *
fg_figure_options_copy (const FgFigureOptions *opts)
{
  FgFigureOptions *o;
  g_return_val_if_fail (opts != NULL, NULL);
  o = fg_figure_options_new ();
  for (guint i = 0; i < opts->items->len; i++)
    {
      const FigureItem *src = g_ptr_array_index (opts->items, i);
      FigureItem *it = g_new0 (FigureItem, 1);
      it->name = g_strdup (src->name);
      it->datasets = g_strdupv (src->datasets);
      g_ptr_array_add (o->items, it);
    }
  o->methods = g_strdupv (opts->methods);
  o->datasets = g_strdupv (opts->datasets);
  o->have_seed = opts->have_seed;
  o->all_seeds = opts->all_seeds;
  o->seed = opts->seed;
  o->default_datasets = g_strdupv (opts->default_datasets);
  o->default_methods = g_strdupv (opts->default_methods);
  o->have_default_seed = opts->have_default_seed;
  o->default_seed = opts->default_seed;
  o->grid = opts->grid;
  o->samples = opts->samples;
  o->temperature = opts->temperature;
  return o;
}

/**
 * fg_figure_options_free:
 * @opts: (nullable): options
 */
void
fg_figure_options_free (FgFigureOptions *opts)
{
  if (opts == NULL)
    return;
  g_ptr_array_unref (opts->items);
  g_strfreev (opts->methods);
  g_strfreev (opts->datasets);
  g_strfreev (opts->default_datasets);
  g_strfreev (opts->default_methods);
  g_free (opts);
}

/**
 * fg_figure_option_keys:
 *
 * Returns: (transfer none): the [experiment] keys this module reads, NULL-terminated.
 */
const char *const *
fg_figure_option_keys (void)
{
  return option_keys;
}

/**
 * fg_figure_is_option_key:
 * @key: an [experiment] key
 *
 * Returns: whether @key is one of fg_figure_option_keys ().
 */
gboolean
fg_figure_is_option_key (const char *key)
{
  return key != NULL && g_strv_contains (option_keys, key);
}

/* Split "a; b ;c" (or with `sep` ',') into trimmed, non-empty names. */
static char **
split_names (const char *value, const char *sep)
{
  g_auto (GStrv) parts = g_strsplit (value, sep, -1);
  g_autoptr (GPtrArray) out = g_ptr_array_new ();
  for (guint i = 0; parts[i]; i++)
    {
      char *s = g_strstrip (parts[i]);
      if (*s != '\0')
        g_ptr_array_add (out, g_strdup (s));
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&out), FALSE);
}

static gboolean
name_ok (const char *name)
{
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_' && *p != '.')
      return FALSE;
  return *name != '\0';
}

static gboolean
names_ok (char **names, const char *key, GError **error)
{
  for (guint i = 0; names[i]; i++)
    if (!name_ok (names[i]))
      {
        g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                     "%s: '%s' is not a dataset or method name", key, names[i]);
        return FALSE;
      }
  if (names[0] == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "%s: empty list", key);
      return FALSE;
    }
  return TRUE;
}

static gboolean
parse_uint (const char *key, const char *value, guint64 lo, guint64 hi, guint64 *out,
            GError **error)
{
  g_autofree char *v = g_strstrip (g_strdup (value));
  if (!g_ascii_string_to_unsigned (v, 10, lo, hi, out, NULL))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "%s = '%s': expected an integer in [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                   "]",
                   key, value, lo, hi);
      return FALSE;
    }
  return TRUE;
}

/**
 * fg_figure_options_set:
 * @opts: options
 * @key: one of fg_figure_option_keys ()
 * @value: its value as written in the experiment file
 * @error: return location for a #GError (%FG_ERROR_INVALID_PARAM)
 *
 * Grammar (doc/figures.md):
 *  - figures = ITEM;ITEM;... with ITEM = fig1|fig2|fig4|cells[:DATASET,DATASET,...], or "none";
 *  - figure_methods, figure_datasets = NAME;NAME;... (the methods: fig2's columns, the first one
 *    for fig1 and fig4; the datasets: the rows, for items without their own list);
 *  - figure_seed = N | all (default: the experiment's first seed);
 *  - figure_grid = N (grid points per side, 16..1000), figure_samples = N (per class, 1..100000),
 *    figure_temperature = T (latent variance multiplier for samples, (0, 100]).
 *
 * Returns: %TRUE when @value is valid for @key.
 */
gboolean
fg_figure_options_set (FgFigureOptions *opts, const char *key, const char *value,
                       GError **error)
{
  guint64 v;
  g_return_val_if_fail (opts != NULL && key != NULL && value != NULL, FALSE);

  if (strcmp (key, "figures") == 0)
    {
      g_auto (GStrv) items = split_names (value, ";");
      g_autoptr (GPtrArray) parsed = g_ptr_array_new_with_free_func (figure_item_free);
      for (guint i = 0; items[i]; i++)
        {
          const char *colon = strchr (items[i], ':');
          g_autofree char *name = colon ? g_strndup (items[i], (gsize) (colon - items[i]))
                                        : g_strdup (items[i]);
          FigureItem *it;
          g_strstrip (name);
          if (strcmp (name, "none") == 0 && colon == NULL)
            continue;
          if (!g_strv_contains (figure_names, name))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                           "figures: unknown figure '%s' (expected fig1, fig2, fig4, cells or "
                           "none, each optionally followed by ':dataset,dataset,...')",
                           name);
              return FALSE;
            }
          it = g_new0 (FigureItem, 1);
          it->name = g_steal_pointer (&name);
          g_ptr_array_add (parsed, it);
          if (colon != NULL)
            {
              it->datasets = split_names (colon + 1, ",");
              if (!names_ok (it->datasets, "figures", error))
                return FALSE;
            }
        }
      g_ptr_array_set_size (opts->items, 0);
      for (guint i = 0; i < parsed->len; i++)
        g_ptr_array_add (opts->items, g_steal_pointer (&parsed->pdata[i]));
      return TRUE;
    }
  if (strcmp (key, "figure_methods") == 0 || strcmp (key, "figure_datasets") == 0)
    {
      char **names = split_names (value, ";");
      char ***slot = strcmp (key, "figure_methods") == 0 ? &opts->methods : &opts->datasets;
      if (!names_ok (names, key, error))
        {
          g_strfreev (names);
          return FALSE;
        }
      g_strfreev (*slot);
      *slot = names;
      return TRUE;
    }
  if (strcmp (key, "figure_seed") == 0)
    {
      g_autofree char *s = g_strstrip (g_strdup (value));
      if (strcmp (s, "all") == 0)
        {
          opts->all_seeds = TRUE;
          opts->have_seed = FALSE;
          return TRUE;
        }
      if (!parse_uint (key, value, 0, G_MAXUINT64, &v, error))
        return FALSE;
      opts->have_seed = TRUE;
      opts->all_seeds = FALSE;
      opts->seed = v;
      return TRUE;
    }
  if (strcmp (key, "figure_grid") == 0)
    {
      if (!parse_uint (key, value, 16, 1000, &v, error))
        return FALSE;
      opts->grid = (guint) v;
      return TRUE;
    }
  if (strcmp (key, "figure_samples") == 0)
    {
      if (!parse_uint (key, value, 1, 100000, &v, error))
        return FALSE;
      opts->samples = (guint) v;
      return TRUE;
    }
  if (strcmp (key, "figure_temperature") == 0)
    {
      g_autofree char *s = g_strstrip (g_strdup (value));
      char *end = NULL;
      double t = g_ascii_strtod (s, &end);
      if (end == s || *end != '\0' || !(t > 0.0 && t <= 100.0))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "figure_temperature = '%s': expected a number in (0, 100]", value);
          return FALSE;
        }
      opts->temperature = t;
      return TRUE;
    }
  g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "unknown figure key '%s'", key);
  return FALSE;
}

/**
 * fg_figure_options_set_defaults:
 * @opts: options
 * @datasets: (nullable) (array zero-terminated=1): the experiment's datasets in order
 * @methods: (nullable) (array zero-terminated=1): its methods in order
 * @first_seed: its first seed
 *
 * What the figures use where figure_datasets, figure_methods or figure_seed are not given.
 */
void
fg_figure_options_set_defaults (FgFigureOptions *opts, const char *const *datasets,
                                const char *const *methods, guint64 first_seed)
{
  g_return_if_fail (opts != NULL);
  g_strfreev (opts->default_datasets);
  g_strfreev (opts->default_methods);
  opts->default_datasets = g_strdupv ((char **) datasets);
  opts->default_methods = g_strdupv ((char **) methods);
  opts->have_default_seed = TRUE;
  opts->default_seed = first_seed;
}

/* The first name of `names` not in `known`, or NULL. */
static const char *
unknown_name (char **names, const char *const *known)
{
  for (guint i = 0; names != NULL && names[i] != NULL; i++)
    if (known == NULL || !g_strv_contains (known, names[i]))
      return names[i];
  return NULL;
}

/**
 * _fg_figure_options_check_names:
 * @opts: options
 * @datasets: (array zero-terminated=1): the experiment's data sets
 * @methods: (array zero-terminated=1): its methods
 * @key: (out): the key holding an unknown name
 * @name: (out): that name
 *
 * Returns: %FALSE when a figure names a data set or method the experiment does not have
 *   (`figures = fig1:nosuch`), with the key and the name.
 */
gboolean
_fg_figure_options_check_names (const FgFigureOptions *opts, const char *const *datasets,
                                const char *const *methods, const char **key,
                                const char **name)
{
  for (guint i = 0; i < opts->items->len; i++)
    {
      const FigureItem *it = g_ptr_array_index (opts->items, i);
      if ((*name = unknown_name (it->datasets, datasets)) != NULL)
        {
          *key = "figures";
          return FALSE;
        }
    }
  *key = "figure_datasets";
  if ((*name = unknown_name (opts->datasets, datasets)) != NULL)
    return FALSE;
  *key = "figure_methods";
  if ((*name = unknown_name (opts->methods, methods)) != NULL)
    return FALSE;
  return TRUE;
}

/**
 * fg_figure_options_enabled:
 * @opts: (nullable): options
 *
 * Returns: whether at least one figure is asked for.
 */
gboolean
fg_figure_options_enabled (const FgFigureOptions *opts)
{
  return opts != NULL && opts->items->len > 0;
}

static gboolean
strv_has (char **v, const char *s)
{
  return v != NULL && g_strv_contains ((const char *const *) v, s);
}

/**
 * fg_figure_options_wants_cell:
 * @opts: (nullable): options
 * @dataset: the cell's dataset name
 * @method: its method name
 * @seed: its seed
 *
 * Returns: whether the cell must be captured for the figures asked for.
 */
gboolean
fg_figure_options_wants_cell (const FgFigureOptions *opts, const char *dataset,
                              const char *method, guint64 seed)
{
  gboolean restricted = FALSE, listed = FALSE;
  if (!fg_figure_options_enabled (opts))
    return FALSE;
  if (opts->methods != NULL && !strv_has (opts->methods, method))
    return FALSE;
  if (opts->have_seed && seed != opts->seed)
    return FALSE;
  if (!opts->have_seed && !opts->all_seeds && opts->have_default_seed
      && seed != opts->default_seed)
    return FALSE;
  /* Rows: an item's own list, else figure_datasets, else every dataset. */
  for (guint i = 0; i < opts->items->len; i++)
    {
      const FigureItem *it = g_ptr_array_index (opts->items, i);
      char **rows = it->datasets ? it->datasets : opts->datasets;
      if (rows == NULL)
        return TRUE;
      restricted = TRUE;
      listed |= strv_has (rows, dataset);
    }
  return !restricted || listed;
}
