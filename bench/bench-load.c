/* SPDX-License-Identifier: MIT */
/* flowgmm bench — time and peak memory of the dataset plugins' loaders.
 *
 *   bench-load make-csv FILE ROWS COLS     write a deterministic numeric CSV (label first, then
 *                                          COLS features "%.7g" of N(0,1) draws)
 *   bench-load csv FILE [KEY=VALUE ...]    load with the csv plugin (e.g. label=label)
 *   bench-load idx IMAGES LABELS           load with the idx plugin (MNIST)
 *   bench-load npy FILE [KEY=VALUE ...]    load with the npy plugin
 *
 * Options: --repeat N (loads, default 3: the time reported is the median), --memory (one load,
 * no repeats, for a clean peak), --split KEY=VALUE (repeatable: also time one split with these
 * split keys, e.g. --split pca=50 --split labeled=100).  Plugins come from $FLOWGMM_PLUGIN_PATH (see bench/README.md).
 * Prints one line: rows, columns, seconds (median and min), the matrix size, the process's
 * peak resident set (getrusage ru_maxrss) and its resident set just before the load.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <flowgmm/flowgmm.h>

static double
rss_mib (void)
{
  g_autofree char *status = NULL;
  const char *line;
  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return 0.0;
  line = strstr (status, "VmRSS:");
  return line ? g_ascii_strtod (line + 6, NULL) / 1024.0 : 0.0;
}

static double
peak_mib (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return (double) ru.ru_maxrss / 1024.0;
}

static int
make_csv (const char *path, gsize rows, gsize cols)
{
  FILE *f = fopen (path, "w");
  FgRng rng;
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (f == NULL)
    {
      g_printerr ("bench-load: cannot write %s\n", path);
      return 1;
    }
  fg_rng_init (&rng, 0, 0);
  fputs ("label", f);
  for (gsize j = 0; j < cols; j++)
    fprintf (f, ",f%" G_GSIZE_FORMAT, j);
  fputc ('\n', f);
  for (gsize i = 0; i < rows; i++)
    {
      fprintf (f, "%d", (int) fg_rng_below (&rng, 2));
      for (gsize j = 0; j < cols; j++)
        {
          fputc (',', f);
          fputs (g_ascii_formatd (buf, sizeof buf, "%.7g", (float) fg_rng_normal (&rng)), f);
        }
      fputc ('\n', f);
    }
  if (fclose (f) != 0)
    return 1;
  return 0;
}

static gint
compare_double (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

int
main (int argc, char **argv)
{
  g_autoptr (FgRegistry) reg = NULL;
  g_autoptr (FgParams) params = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) args = g_ptr_array_new ();
  g_autoptr (GPtrArray) split_keys = g_ptr_array_new ();
  const FgComponent *c;
  const char *kind;
  guint repeat = 3;
  gboolean memory_only = FALSE;
  double times[32], before, peak = 0.0;
  gsize rows = 0, cols = 0;
  FgLoadContext ctx = { ".", { 0 } };

  for (int i = 1; i < argc; i++)
    {
      if (strcmp (argv[i], "--repeat") == 0 && i + 1 < argc)
        {
          int v = atoi (argv[++i]); /* CLAMP evaluates its argument more than once */
          repeat = (guint) CLAMP (v, 1, 32);
        }
      else if (strcmp (argv[i], "--memory") == 0)
        memory_only = TRUE;
      else if (strcmp (argv[i], "--split") == 0 && i + 1 < argc)
        g_ptr_array_add (split_keys, argv[++i]);
      else
        g_ptr_array_add (args, argv[i]);
    }
  if (memory_only)
    repeat = 1;
  if (args->len < 2)
    {
      g_printerr ("usage: bench-load make-csv FILE ROWS COLS | csv FILE [KEY=VALUE...] | "
                  "idx IMAGES LABELS | npy FILE [KEY=VALUE...]  [--repeat N] [--memory] "
                  "[--split KEY=VALUE]...\n");
      return 2;
    }
  kind = g_ptr_array_index (args, 0);
  if (strcmp (kind, "make-csv") == 0)
    {
      if (args->len != 4)
        return 2;
      return make_csv (g_ptr_array_index (args, 1),
                       (gsize) g_ascii_strtoull (g_ptr_array_index (args, 2), NULL, 10),
                       (gsize) g_ascii_strtoull (g_ptr_array_index (args, 3), NULL, 10));
    }

  reg = fg_registry_new ();
  fg_registry_load_default (reg, NULL);
  c = fg_registry_find (reg, FG_KIND_DATASET, kind, &error);
  if (c == NULL)
    {
      g_printerr ("bench-load: %s (set FLOWGMM_PLUGIN_PATH)\n", error->message);
      return 1;
    }
  params = fg_params_new (c->params);
  if (strcmp (kind, "idx") == 0)
    {
      if (args->len != 3 || !fg_params_set (params, "images", g_ptr_array_index (args, 1), &error)
          || !fg_params_set (params, "labels", g_ptr_array_index (args, 2), &error))
        goto fail;
    }
  else
    {
      if (!fg_params_set (params, "path", g_ptr_array_index (args, 1), &error))
        goto fail;
      for (guint i = 2; i < args->len; i++)
        {
          const char *kv = g_ptr_array_index (args, i);
          const char *eq = strchr (kv, '=');
          g_autofree char *key = eq ? g_strndup (kv, (gsize) (eq - kv)) : g_strdup (kv);
          if (eq == NULL || !fg_params_set (params, key, eq + 1, &error))
            {
              if (error == NULL)
                g_set_error (&error, FG_ERROR, FG_ERROR_INVALID_PARAM, "expected KEY=VALUE: %s",
                             kv);
              goto fail;
            }
        }
    }

  before = rss_mib ();
  for (guint r = 0; r < repeat; r++)
    {
      gint64 t0 = g_get_monotonic_time ();
      FgDataset *ds = ((const FgDatasetVTable *) c->vtable)->load (params, &ctx, &error);
      times[r] = (double) (g_get_monotonic_time () - t0) / 1e6;
      if (ds == NULL)
        goto fail;
      rows = fg_dataset_get_part (ds, FG_PART_TRAIN)->n;
      cols = fg_dataset_get_dim (ds);
      if (r == 0 && split_keys->len > 0)
        {
          g_autoptr (FgParams) sp = fg_params_new (fg_split_param_specs ());
          g_autoptr (FgSplitData) sd = NULL;
          gint64 s0;
          for (guint k = 0; k < split_keys->len; k++)
            {
              const char *kv = g_ptr_array_index (split_keys, k);
              const char *eq = strchr (kv, '=');
              g_autofree char *key = eq ? g_strndup (kv, (gsize) (eq - kv)) : g_strdup (kv);
              if (eq == NULL || !fg_params_set (sp, key, eq + 1, &error))
                {
                  fg_dataset_unref (ds);
                  goto fail;
                }
            }
          s0 = g_get_monotonic_time ();
          sd = fg_split_data_new (ds, sp, 0, &error);
          if (sd == NULL)
            {
              fg_dataset_unref (ds);
              goto fail;
            }
          printf ("split (%s): %.3f s, %" G_GSIZE_FORMAT " labeled + %" G_GSIZE_FORMAT
                  " unlabeled x %" G_GSIZE_FORMAT "\n",
                  fg_split_data_get_split (sd)->preprocessing->description,
                  (double) (g_get_monotonic_time () - s0) / 1e6,
                  fg_split_data_get_split (sd)->labeled.n, fg_split_data_get_split (sd)->unlabeled.n,
                  fg_split_data_get_split (sd)->dim);
        }
      fg_dataset_unref (ds);
      if (r == 0)
        peak = peak_mib ();
    }
  {
    double matrix = (double) rows * (double) cols * sizeof (float) / (1024.0 * 1024.0);
    double sorted[32];
    memcpy (sorted, times, repeat * sizeof (double));
    qsort (sorted, repeat, sizeof (double), compare_double);
    printf ("%s %s: %" G_GSIZE_FORMAT " x %" G_GSIZE_FORMAT " in %.3f s (median of %u, min "
            "%.3f); matrix %.1f MiB; peak RSS %.1f MiB (%.2fx the matrix), %.1f MiB before the "
            "load (peak - before = %.2fx the matrix)\n",
            kind, (const char *) g_ptr_array_index (args, 1), rows, cols, sorted[repeat / 2],
            repeat, sorted[0], matrix, peak, peak / matrix, before, (peak - before) / matrix);
  }
  return 0;

fail:
  g_printerr ("bench-load: %s\n", error ? error->message : "failed");
  return 1;
}
