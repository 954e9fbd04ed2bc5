/* SPDX-License-Identifier: MIT */
/* flowgmm — experiment files: parsing, validation against the plugins' declared parameters,
 * grid expansion into cells.  The grammar is documented in doc/flowgmm-experiment.5.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "experiment/experiment-private.h"
#include "experiment/figure-private.h"

/* Guards against a typo such as "1..1000000000" eating the machine. */
#define MAX_AXIS_VALUES 100000u
#define MAX_CELLS 1000000u

/* ---- metric names ---------------------------------------------------------------------------- */

static const char *const metric_names[FG_N_METRICS] = {
  "accuracy", "nll", "ece", "bpd", "brier", "nll_temp", "ece_temp", "brier_temp",
};
static const char *const field_names[FG_N_FIELDS] = {
  "val_accuracy",   "val_nll",   "val_ece",   "val_bpd",
  "val_brier",      "val_nll_temp",   "val_ece_temp",   "val_brier_temp",
  "test_accuracy",  "test_nll",  "test_ece",  "test_bpd",
  "test_brier",     "test_nll_temp",  "test_ece_temp",  "test_brier_temp",
  "train_accuracy", "train_nll", "train_ece", "train_bpd",
  "train_brier",    "train_nll_temp", "train_ece_temp", "train_brier_temp",
};

gboolean
_fg_metrics_need_temperature (const gboolean *metrics)
{
  return metrics[FG_METRIC_NLL_TEMP] || metrics[FG_METRIC_ECE_TEMP]
         || metrics[FG_METRIC_BRIER_TEMP];
}

gboolean
_fg_field_is_computed (const gboolean *metrics, guint field)
{
  const guint m = field % FG_N_METRICS;
  if (field >= FG_N_FIELDS || !metrics[m])
    return FALSE;
  return field / FG_N_METRICS != FG_PART_TRAIN_FIELDS || m == FG_METRIC_BPD;
}

const char *
_fg_metric_name (FgMetric m)
{
  g_return_val_if_fail (m < FG_N_METRICS, NULL);
  return metric_names[m];
}

const char *
_fg_field_name (guint field)
{
  g_return_val_if_fail (field < FG_N_FIELDS, NULL);
  return field_names[field];
}

gboolean
_fg_metric_from_name (const char *name, FgMetric *m)
{
  for (guint i = 0; i < FG_N_METRICS; i++)
    if (g_strcmp0 (name, metric_names[i]) == 0)
      {
        *m = (FgMetric) i;
        return TRUE;
      }
  return FALSE;
}

gboolean
_fg_field_from_name (const char *name, guint *field)
{
  FgMetric m;
  for (guint i = 0; i < FG_N_FIELDS; i++)
    if (g_strcmp0 (name, field_names[i]) == 0
        && (i / FG_N_METRICS != FG_PART_TRAIN_FIELDS || i % FG_N_METRICS == FG_METRIC_BPD))
      {
        *field = i;
        return TRUE;
      }
  /* A bare metric name means its test value. */
  if (_fg_metric_from_name (name, &m))
    {
      *field = FG_FIELD (1, m);
      return TRUE;
    }
  return FALSE;
}

char *
_fg_digest (const char *text, guint n_hex)
{
  char *hex = g_compute_checksum_for_string (G_CHECKSUM_SHA256, text, -1);
  if (n_hex > 0 && n_hex < strlen (hex))
    hex[n_hex] = '\0';
  return hex;
}

/* ---- parse context and errors ---------------------------------------------------------------- */

typedef struct {
  FgExperiment *exp;
  GKeyFile     *kf;
  GHashTable   *lines;      /* "group\nkey" or "group" -> line (GUINT_TO_POINTER) */
  char        **dataset_order; /* [experiment] datasets, or NULL */
  char        **method_order;
  guint         datasets_line, methods_line;
  char         *data_dir;   /* [experiment] data_dir made absolute, or NULL */
  char        **ood_names;  /* [experiment] ood, or NULL */
} ParseCtx;

/* Line numbers of group headers and keys: GKeyFile does not keep them, so scan the text.  The
 * scan also refuses what GKeyFile would take silently or report without a line: a line that is
 * neither a [group], a key = value nor a comment; a key outside any group; a group or a key of
 * a group given twice (GKeyFile keeps the last); and text that is not UTF-8 (a record holding
 * it could not be stored as JSON).  NULL with the error naming the file and line. */
static GHashTable *
index_lines (const char *text, const char *path, GError **error)
{
  g_autoptr (GHashTable) lines = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_auto (GStrv) all = g_strsplit (text, "\n", -1);
  g_autofree char *group = NULL;

  for (guint i = 0; all[i] != NULL; i++)
    {
      char *line = g_strstrip (all[i]);
      const char *eq;
      const char *bad;
      guint first;
      if (line[0] == '\0' || line[0] == '#')
        continue;
      if (!g_utf8_validate (line, -1, &bad))
        {
          g_autofree char *shown = g_utf8_make_valid (line, (gssize) MIN (strlen (line), 60));
          g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_BAD_VALUE,
                       "%s:%u:%s%s%s '%s': not valid UTF-8 (byte 0x%02x at column %u); "
                       "experiment files are UTF-8 text", path, i + 1, group ? " [" : "",
                       group ? group : "", group ? "]" : "", shown, (guchar) *bad,
                       (guint) (bad - line) + 1);
          return NULL;
        }
      if (line[0] == '[')
        {
          char *end = strrchr (line, ']');
          if (end == NULL)
            {
              g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_PARSE,
                           "%s:%u: '%s' opens a group without closing it with ']'", path, i + 1,
                           line);
              return NULL;
            }
          g_free (group);
          group = g_strndup (line + 1, (gsize) (end - line - 1));
          if ((first = GPOINTER_TO_UINT (g_hash_table_lookup (lines, group))) != 0)
            {
              g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_BAD_VALUE,
                           "%s:%u: [%s] appears twice (first at line %u): merge the two",
                           path, i + 1, group, first);
              return NULL;
            }
          g_hash_table_insert (lines, g_strdup (group), GUINT_TO_POINTER (i + 1));
          continue;
        }
      if ((eq = strchr (line, '=')) == NULL)
        {
          g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_PARSE,
                       "%s:%u: '%s' is not a [group], a key = value line or a # comment", path,
                       i + 1, line);
          return NULL;
        }
      if (group == NULL)
        {
          g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_PARSE,
                       "%s:%u: '%s' comes before any [group]", path, i + 1, line);
          return NULL;
        }
      {
        g_autofree char *key = g_strstrip (g_strndup (line, (gsize) (eq - line)));
        g_autofree char *id = g_strconcat (group, "\n", key, NULL);
        if ((first = GPOINTER_TO_UINT (g_hash_table_lookup (lines, id))) != 0)
          {
            g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_BAD_VALUE,
                         "%s:%u: [%s] key '%s' is set twice (first at line %u)", path, i + 1,
                         group, key, first);
            return NULL;
          }
        g_hash_table_insert (lines, g_steal_pointer (&id), GUINT_TO_POINTER (i + 1));
      }
    }
  return g_steal_pointer (&lines);
}

static guint
line_of (ParseCtx *ctx, const char *group, const char *key)
{
  g_autofree char *k = key ? g_strconcat (group, "\n", key, NULL) : g_strdup (group);
  return GPOINTER_TO_UINT (g_hash_table_lookup (ctx->lines, k));
}

/* Every experiment-file error reads "FILE:LINE: [GROUP] key 'KEY': what was wrong". */
G_GNUC_PRINTF (6, 7)
static gboolean
exp_error (ParseCtx *ctx, GError **error, FgExperimentError code, const char *group,
           const char *key, const char *format, ...)
{
  va_list args;
  g_autofree char *msg = NULL;
  g_autoptr (GString) where = g_string_new (ctx->exp->path);
  guint line = group ? line_of (ctx, group, key) : 0;

  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);
  if (line == 0 && group != NULL && key != NULL)
    line = line_of (ctx, group, NULL); /* a missing key: point at its group */
  if (line > 0)
    g_string_append_printf (where, ":%u", line);
  if (line > 0 || group != NULL)
    g_string_append (where, ":");
  if (group != NULL)
    g_string_append_printf (where, " [%s]", group);
  if (key != NULL)
    g_string_append_printf (where, " key '%s'", key);
  g_set_error (error, FG_EXPERIMENT_ERROR, code, "%s: %s", where->str, msg);
  return FALSE;
}

/* ---- values: comments, escapes, lists and ranges --------------------------------------------- */

/* Drop an inline comment ('#' at the start or after a blank; "\#" is a literal '#') and the
 * surrounding blanks. */
static char *
normalize_raw (const char *raw)
{
  GString *s = g_string_new (NULL);
  for (const char *p = raw; *p; p++)
    {
      if (*p == '\\' && p[1] != '\0')
        {
          g_string_append_c (s, *p++);
          g_string_append_c (s, *p);
          continue;
        }
      if (*p == '#' && (p == raw || g_ascii_isspace (p[-1])))
        break;
      g_string_append_c (s, *p);
    }
  g_strstrip (s->str);
  s->len = strlen (s->str);
  return g_string_free (s, FALSE);
}

static char *
unescape (const char *s)
{
  GString *out = g_string_new (NULL);
  for (const char *p = s; *p; p++)
    {
      if (*p != '\\' || p[1] == '\0')
        {
          g_string_append_c (out, *p);
          continue;
        }
      p++;
      switch (*p)
        {
        case 's': g_string_append_c (out, ' '); break;
        case 'n': g_string_append_c (out, '\n'); break;
        case 't': g_string_append_c (out, '\t'); break;
        case 'r': g_string_append_c (out, '\r'); break;
        case '\\': case ';': case '#': g_string_append_c (out, *p); break;
        default:
          g_string_append_c (out, '\\');
          g_string_append_c (out, *p);
        }
    }
  return g_string_free (out, FALSE);
}

/* Split a normalised value on unescaped ';' (a trailing ';' is allowed), trimmed and
 * unescaped.  Returns NULL with *empty_item set when an item is empty. */
static GPtrArray *
split_list (const char *norm, gboolean *empty_item)
{
  GPtrArray *items = g_ptr_array_new_with_free_func (g_free);
  const char *start = norm;
  *empty_item = FALSE;
  for (const char *p = norm;; p++)
    {
      if (*p == '\\' && p[1] != '\0')
        {
          p++;
          continue;
        }
      if (*p == ';' || *p == '\0')
        {
          g_autofree char *piece = g_strstrip (g_strndup (start, (gsize) (p - start)));
          gboolean last = *p == '\0';
          if (*piece == '\0')
            {
              /* "a;b;" ends with an empty item: allowed, as in GKeyFile lists. */
              if (!(last && items->len > 0))
                *empty_item = items->len > 0 || !last || *norm != '\0';
              if (*empty_item)
                {
                  g_ptr_array_unref (items);
                  return NULL;
                }
            }
          else
            g_ptr_array_add (items, unescape (piece));
          if (last)
            break;
          start = p + 1;
        }
    }
  return items;
}

typedef enum { RANGE_NONE, RANGE_OK, RANGE_BAD_TYPE, RANGE_BAD_RANGE } RangeResult;

static gboolean
parse_int64 (const char *s, gint64 *out)
{
  char *end = NULL;
  g_autofree char *t = g_strstrip (g_strdup (s));
  if (*t == '\0')
    return FALSE;
  errno = 0;
  *out = g_ascii_strtoll (t, &end, 10);
  return errno == 0 && end != NULL && *end == '\0';
}

/* "lo..hi" or "lo..hi:step" (integers, inclusive, step > 0).  A value whose left of ".." is not
 * number-like ("../data") is not a range. */
static RangeResult
parse_range (const char *item, gint64 *lo, gint64 *hi, gint64 *step, char **why)
{
  const char *dots = strstr (item, "..");
  g_autofree char *left = NULL;
  g_autofree char *right = NULL;
  char *colon;

  if (dots == NULL || dots == item)
    return RANGE_NONE;
  left = g_strstrip (g_strndup (item, (gsize) (dots - item)));
  if (*left == '\0' || strspn (left, "+-0123456789.eE") != strlen (left))
    return RANGE_NONE;
  right = g_strdup (dots + 2);
  *step = 1;
  colon = strchr (right, ':');
  if (colon != NULL)
    {
      *colon = '\0';
      if (!parse_int64 (colon + 1, step))
        {
          *why = g_strdup_printf ("the step of range '%s' is not an integer", item);
          return RANGE_BAD_TYPE;
        }
    }
  if (!parse_int64 (left, lo) || !parse_int64 (right, hi))
    {
      *why = g_strdup_printf ("range '%s' needs integer bounds, as in 1..20 or 1..20:2", item);
      return RANGE_BAD_TYPE;
    }
  if (*step <= 0)
    {
      *why = g_strdup_printf ("the step of range '%s' must be positive", item);
      return RANGE_BAD_RANGE;
    }
  if (*lo > *hi)
    {
      *why = g_strdup_printf ("range '%s' is empty (its start is after its end)", item);
      return RANGE_BAD_RANGE;
    }
  /* hi - lo in unsigned arithmetic: it may not fit a gint64 (-9223372036854775808..1). */
  if (((guint64) *hi - (guint64) *lo) / (guint64) *step >= MAX_AXIS_VALUES)
    {
      *why = g_strdup_printf ("range '%s' has more than %u values", item, MAX_AXIS_VALUES);
      return RANGE_BAD_RANGE;
    }
  return RANGE_OK;
}

/* Parse the raw text of `group`/`key` into a list of values, expanding ranges when
 * `allow_ranges`.  *is_grid is TRUE when the text is a list of several items or a range. */
static GPtrArray *
parse_values (ParseCtx *ctx, const char *group, const char *key, const char *norm,
              gboolean allow_ranges, gboolean *is_grid, GError **error)
{
  gboolean empty_item = FALSE;
  g_autoptr (GPtrArray) items = split_list (norm, &empty_item);
  g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);

  *is_grid = FALSE;
  if (items == NULL)
    {
      exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, key,
                 "empty item in list '%s'", norm);
      return NULL;
    }
  if (items->len == 0)
    {
      g_ptr_array_add (values, g_strdup (""));
      return g_steal_pointer (&values);
    }
  *is_grid = items->len > 1;
  for (guint i = 0; i < items->len; i++)
    {
      const char *item = g_ptr_array_index (items, i);
      gint64 lo = 0, hi = 0, step = 1;
      g_autofree char *why = NULL;
      RangeResult r = allow_ranges ? parse_range (item, &lo, &hi, &step, &why) : RANGE_NONE;
      switch (r)
        {
        case RANGE_NONE:
          g_ptr_array_add (values, g_strdup (item));
          break;
        case RANGE_OK:
          *is_grid = TRUE;
          for (gint64 v = lo;; v += step)
            {
              g_ptr_array_add (values, g_strdup_printf ("%" G_GINT64_FORMAT, v));
              /* Stop before v + step could pass hi (or overflow). */
              if ((guint64) hi - (guint64) v < (guint64) step)
                break;
            }
          break;
        case RANGE_BAD_TYPE:
          exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_TYPE, group, key, "%s", why);
          return NULL;
        case RANGE_BAD_RANGE:
          exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_RANGE, group, key, "%s", why);
          return NULL;
        }
      if (values->len > MAX_AXIS_VALUES)
        {
          exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_RANGE, group, key,
                     "more than %u values", MAX_AXIS_VALUES);
          return NULL;
        }
    }
  /* The same value twice would run (and store) the same cells twice. */
  if (values->len > 1)
    {
      g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
      for (guint i = 0; i < values->len; i++)
        if (!g_hash_table_add (seen, g_ptr_array_index (values, i)))
          {
            exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, key,
                       "'%s' is listed twice", (const char *) g_ptr_array_index (values, i));
            return NULL;
          }
    }
  return g_steal_pointer (&values);
}

static char *
get_norm (ParseCtx *ctx, const char *group, const char *key)
{
  g_autofree char *raw = g_key_file_get_value (ctx->kf, group, key, NULL);
  return normalize_raw (raw ? raw : "");
}

/* A single (non-list) value, unescaped. */
static char *
get_single (ParseCtx *ctx, const char *group, const char *key, GError **error)
{
  g_autofree char *norm = get_norm (ctx, group, key);
  gboolean is_grid = FALSE;
  g_autoptr (GPtrArray) values = parse_values (ctx, group, key, norm, FALSE, &is_grid, error);
  if (values == NULL)
    return NULL;
  if (is_grid)
    {
      exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, key,
                 "expected a single value, got the list '%s'", norm);
      return NULL;
    }
  return g_strdup (g_ptr_array_index (values, 0));
}

/* A list of distinct names that must be among `known` (FgExpDataset/FgExpMethod names). */
static char **
get_name_list (ParseCtx *ctx, const char *group, const char *key, GError **error)
{
  g_autofree char *norm = get_norm (ctx, group, key);
  gboolean is_grid = FALSE;
  g_autoptr (GPtrArray) values = parse_values (ctx, group, key, norm, FALSE, &is_grid, error);
  GPtrArray *out;
  if (values == NULL)
    return NULL;
  if (values->len == 1 && *(char *) g_ptr_array_index (values, 0) == '\0')
    {
      exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, key,
                 "expected a list of names such as 'a;b'");
      return NULL;
    }
  out = g_ptr_array_new ();
  for (guint i = 0; i < values->len; i++)
    {
      const char *v = g_ptr_array_index (values, i);
      for (guint j = 0; j < i; j++)
        if (strcmp (v, g_ptr_array_index (values, j)) == 0)
          {
            g_ptr_array_unref (out);
            exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, key,
                       "'%s' is listed twice", v);
            return NULL;
          }
      g_ptr_array_add (out, g_strdup (v));
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

/* ---- [experiment] ---------------------------------------------------------------------------- */

#define EXPERIMENT_GROUP "experiment"
/* A path value starting with this names a file in the data directory (data_dir below). */
#define FG_DATA_DIR_VAR "{data}"

typedef gboolean (*ExperimentKeyHandler) (ParseCtx *ctx, const char *key, GError **error);

static gboolean
handle_title (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *norm = get_norm (ctx, EXPERIMENT_GROUP, key);
  g_autofree char *title = unescape (norm);
  if (*title == '\0')
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                      "the title is empty");
  g_free (ctx->exp->title);
  ctx->exp->title = g_steal_pointer (&title);
  ctx->exp->title_given = TRUE;
  return TRUE;
}

static gboolean
handle_data_dir (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *norm = get_norm (ctx, EXPERIMENT_GROUP, key);
  g_autofree char *dir = unescape (norm);
  if (*dir == '\0')
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                      "the data directory is empty");
  g_free (ctx->data_dir);
  ctx->data_dir = g_canonicalize_filename (dir, ctx->exp->base_dir);
  return TRUE;
}

/* Where "{data}" in a path points: [experiment] data_dir (relative to the file), else
 * $FLOWGMM_DATA_DIR, else the directory chosen at configure time (--with-data-dir).  Installed
 * experiment files name their data this way, so they run from wherever they are installed. */
static const char *
data_dir (ParseCtx *ctx)
{
  const char *env;
  if (ctx->data_dir == NULL)
    {
      env = g_getenv ("FLOWGMM_DATA_DIR");
      ctx->data_dir = env != NULL && *env != '\0' ? g_canonicalize_filename (env, NULL)
                                                  : g_strdup (FG_DATA_DIR);
    }
  return ctx->data_dir;
}

static gboolean
handle_seeds (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *norm = get_norm (ctx, EXPERIMENT_GROUP, key);
  gboolean is_grid;
  g_autoptr (GPtrArray) values = NULL;
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  if (*norm == '\0')
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                      "expected at least one seed, as in '0;1;2' or '0..4'");
  values = parse_values (ctx, EXPERIMENT_GROUP, key, norm, TRUE, &is_grid, error);
  if (values == NULL)
    return FALSE;
  g_array_set_size (ctx->exp->seeds, 0);
  for (guint i = 0; i < values->len; i++)
    {
      const char *v = g_ptr_array_index (values, i);
      gint64 s;
      if (!parse_int64 (v, &s))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_TYPE, EXPERIMENT_GROUP, key,
                          "seed '%s' is not an integer (expected a list or range of "
                          "integers >= 0, as in '0;1;2' or '0..4')", v);
      if (s < 0)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_RANGE, EXPERIMENT_GROUP, key,
                          "seed %" G_GINT64_FORMAT " is negative (seeds are integers >= 0)", s);
      if (g_hash_table_contains (seen, v))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                          "seed %s is listed twice", v);
      g_hash_table_add (seen, (gpointer) v);
      {
        guint64 u = (guint64) s;
        g_array_append_val (ctx->exp->seeds, u);
      }
    }
  return TRUE;
}

static gboolean
handle_select (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *v = get_single (ctx, EXPERIMENT_GROUP, key, error);
  if (v == NULL)
    return FALSE;
  if (strcmp (v, "best-validation") == 0)
    ctx->exp->select = FG_SELECT_BEST_VALIDATION;
  else if (strcmp (v, "mean-std") == 0)
    ctx->exp->select = FG_SELECT_MEAN_STD;
  else if (strcmp (v, "per-seed") == 0)
    ctx->exp->select = FG_SELECT_PER_SEED;
  else
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                      "unknown selection rule '%s' (expected best-validation, mean-std or "
                      "per-seed)", v);
  return TRUE;
}

/* Data-parallel training: the ranks of an MPI run that train one cell together (doc/mpi.md).
 * Not part of any cell key: the result differs only by the order of a sum. */
static gboolean
handle_ranks_per_cell (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *v = get_single (ctx, EXPERIMENT_GROUP, key, error);
  gint64 n;
  if (v == NULL)
    return FALSE;
  if (!parse_int64 (v, &n))
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_TYPE, EXPERIMENT_GROUP, key,
                      "'%s' is not an integer (expected a number of MPI ranks >= 1)", v);
  if (n < 1 || n > 1 << 20)
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_RANGE, EXPERIMENT_GROUP, key,
                      "%s is out of range (expected a number of MPI ranks from 1 to 1048576)",
                      v);
  ctx->exp->ranks_per_cell = (guint) n;
  return TRUE;
}

/* "rows:method columns:dataset metric:test_accuracy", any subset, any order. */
static gboolean
handle_table (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *v = get_single (ctx, EXPERIMENT_GROUP, key, error);
  g_auto (GStrv) words = NULL;
  const char *rows = NULL, *columns = NULL;

  if (v == NULL)
    return FALSE;
  words = g_strsplit_set (v, " \t,", -1);
  for (guint i = 0; words[i]; i++)
    {
      char *w = words[i];
      char *colon = strchr (w, ':');
      if (*w == '\0')
        continue;
      if (colon == NULL)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                          "'%s' is not of the form name:value (expected e.g. 'rows:method "
                          "columns:dataset metric:test_accuracy')", w);
      *colon = '\0';
      if (strcmp (w, "rows") == 0 || strcmp (w, "columns") == 0)
        {
          const char *what = colon + 1;
          if (strcmp (what, "method") != 0 && strcmp (what, "dataset") != 0)
            return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                              "%s:%s: expected 'method' or 'dataset'", w, what);
          if (strcmp (w, "rows") == 0)
            rows = what;
          else
            columns = what;
        }
      else if (strcmp (w, "metric") == 0)
        {
          g_auto (GStrv) names = g_strsplit (colon + 1, "+", -1);
          g_array_set_size (ctx->exp->table_fields, 0);
          for (guint j = 0; names[j]; j++)
            {
              guint field;
              if (!_fg_field_from_name (names[j], &field))
                return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP,
                                  key, "unknown metric '%s' (expected accuracy, nll, ece, "
                                  "bpd, brier, nll_temp, ece_temp or brier_temp, optionally "
                                  "prefixed with test_ or val_, or train_bpd; several "
                                  "joined by '+')",
                                  names[j]);
              g_array_append_val (ctx->exp->table_fields, field);
            }
          ctx->exp->table_field = g_array_index (ctx->exp->table_fields, guint, 0);
        }
      else
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                          "unknown table setting '%s' (expected rows, columns or metric)", w);
    }
  if (rows != NULL && columns != NULL && strcmp (rows, columns) == 0)
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                      "rows and columns are both '%s'", rows);
  if (rows != NULL)
    ctx->exp->rows_are_methods = strcmp (rows, "method") == 0;
  else if (columns != NULL)
    ctx->exp->rows_are_methods = strcmp (columns, "dataset") == 0;
  return TRUE;
}

static gboolean
handle_metrics (ParseCtx *ctx, const char *key, GError **error)
{
  g_auto (GStrv) names = get_name_list (ctx, EXPERIMENT_GROUP, key, error);
  if (names == NULL)
    return FALSE;
  for (guint i = 0; i < FG_N_METRICS; i++)
    ctx->exp->metrics[i] = FALSE;
  ctx->exp->metrics[FG_METRIC_ACCURACY] = TRUE; /* always: selection needs it */
  for (guint i = 0; names[i]; i++)
    {
      FgMetric m;
      if (!_fg_metric_from_name (names[i], &m))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                          "unknown metric '%s' (expected accuracy, nll, ece, bpd, brier, "
                          "nll_temp, ece_temp or brier_temp)", names[i]);
      ctx->exp->metrics[m] = TRUE;
    }
  return TRUE;
}

/* checkpoint_every, checkpoint_minutes, run_steps: a number >= 0. */
static gboolean
handle_resume_key (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *v = get_single (ctx, EXPERIMENT_GROUP, key, error);
  char *end = NULL;
  double d;
  gint64 n = 0;
  if (v == NULL)
    return FALSE;
  if (strcmp (key, "checkpoint_minutes") == 0)
    {
      d = g_ascii_strtod (v, &end);
      if (end == v || *end != '\0' || !isfinite (d) || d < 0)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                          "'%s' is not a number of minutes >= 0 (0: off)", v);
      ctx->exp->checkpoint_minutes = d;
      return TRUE;
    }
  if (!parse_int64 (v, &n) || n < 0)
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                      "'%s' is not a number of steps >= 0 (0: off)", v);
  if (strcmp (key, "checkpoint_every") == 0)
    ctx->exp->checkpoint_every = (guint64) n;
  else
    ctx->exp->run_steps = (guint64) n;
  return TRUE;
}

/* image_figures = fig6;fig3 (or none). */
static gboolean
handle_image_figures (ParseCtx *ctx, const char *key, GError **error)
{
  g_auto (GStrv) names = get_name_list (ctx, EXPERIMENT_GROUP, key, error);
  if (names == NULL)
    return FALSE;
  g_clear_pointer (&ctx->exp->image_figures, g_strfreev);
  for (guint i = 0; names[i]; i++)
    if (strcmp (names[i], "fig6") != 0 && strcmp (names[i], "fig3") != 0
        && !(strcmp (names[i], "none") == 0 && names[1] == NULL))
      return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                        "unknown image figure '%s' (expected fig6, fig3 or none)", names[i]);
  if (names[0] != NULL && strcmp (names[0], "none") != 0)
    ctx->exp->image_figures = g_steal_pointer (&names);
  return TRUE;
}

static gboolean
handle_datasets (ParseCtx *ctx, const char *key, GError **error)
{
  ctx->dataset_order = get_name_list (ctx, EXPERIMENT_GROUP, key, error);
  return ctx->dataset_order != NULL;
}

static gboolean
handle_methods (ParseCtx *ctx, const char *key, GError **error)
{
  ctx->method_order = get_name_list (ctx, EXPERIMENT_GROUP, key, error);
  return ctx->method_order != NULL;
}

/* ---- the analysis keys (doc/analysis.md) ---- */

static gboolean
handle_analysis (ParseCtx *ctx, const char *key, GError **error)
{
  g_auto (GStrv) names = get_name_list (ctx, EXPERIMENT_GROUP, key, error);
  FgAnalysisOptions *a = &ctx->exp->analysis;
  if (names == NULL)
    return FALSE;
  for (guint i = 0; names[i]; i++)
    {
      if (strcmp (names[i], "reliability") == 0)
        a->reliability = TRUE;
      else if (strcmp (names[i], "boundary") == 0)
        a->boundary = TRUE;
      else if (strcmp (names[i], "features") == 0)
        a->features = TRUE;
      else if (strcmp (names[i], "none") != 0)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                          "unknown analysis '%s' (expected reliability, boundary, features or "
                          "none; out-of-domain scoring is asked for with 'ood')", names[i]);
    }
  return TRUE;
}

static gboolean
handle_ood (ParseCtx *ctx, const char *key, GError **error)
{
  ctx->ood_names = get_name_list (ctx, EXPERIMENT_GROUP, key, error);
  return ctx->ood_names != NULL;
}

static gboolean
get_number (ParseCtx *ctx, const char *key, double lo, double hi, gboolean integer, double *out,
            GError **error)
{
  g_autofree char *v = get_single (ctx, EXPERIMENT_GROUP, key, error);
  char *end = NULL;
  double d;
  if (v == NULL)
    return FALSE;
  d = g_ascii_strtod (v, &end);
  if (end == v || *end != '\0' || !(d >= lo && d <= hi) || (integer && d != floor (d)))
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                      "'%s': expected %s in [%g, %g]", v, integer ? "an integer" : "a number",
                      lo, hi);
  *out = d;
  return TRUE;
}

static gboolean
handle_analysis_number (ParseCtx *ctx, const char *key, GError **error)
{
  FgAnalysisOptions *a = &ctx->exp->analysis;
  double d;
  if (strcmp (key, "analysis_bins") == 0)
    {
      if (!get_number (ctx, key, 2, 1000, TRUE, &d, error))
        return FALSE;
      a->bins = (guint) d;
    }
  else if (strcmp (key, "boundary_threshold") == 0)
    {
      if (!get_number (ctx, key, 0, G_MAXDOUBLE, FALSE, &d, error))
        return FALSE;
      a->boundary_threshold = d;
    }
  else if (strcmp (key, "feature_layer") == 0)
    {
      if (!get_number (ctx, key, 0, 100000, TRUE, &d, error))
        return FALSE;
      a->feature_layer = (guint) d;
    }
  else if (strcmp (key, "feature_channel") == 0)
    {
      if (!get_number (ctx, key, 0, G_MAXINT32, TRUE, &d, error))
        return FALSE;
      a->feature_channel = (guint) d;
    }
  else if (strcmp (key, "feature_examples") == 0)
    {
      if (!get_number (ctx, key, 1, 1000, TRUE, &d, error))
        return FALSE;
      a->feature_examples = (guint) d;
    }
  else
    g_assert_not_reached ();
  return TRUE;
}

static gboolean
handle_ood_zeros (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *v = get_single (ctx, EXPERIMENT_GROUP, key, error);
  if (v == NULL)
    return FALSE;
  if (strcmp (v, "true") == 0 || strcmp (v, "yes") == 0 || strcmp (v, "1") == 0)
    ctx->exp->analysis.ood_zeros = TRUE;
  else if (strcmp (v, "false") == 0 || strcmp (v, "no") == 0 || strcmp (v, "0") == 0)
    ctx->exp->analysis.ood_zeros = FALSE;
  else
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                      "'%s': expected true or false", v);
  return TRUE;
}

static gboolean
handle_feature_alphas (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *norm = get_norm (ctx, EXPERIMENT_GROUP, key);
  gboolean is_grid = FALSE;
  g_autoptr (GPtrArray) values = parse_values (ctx, EXPERIMENT_GROUP, key, norm, FALSE, &is_grid,
                                               error);
  GArray *alphas = ctx->exp->analysis.feature_alphas;
  if (values == NULL)
    return FALSE;
  g_array_set_size (alphas, 0);
  for (guint i = 0; i < values->len; i++)
    {
      const char *v = g_ptr_array_index (values, i);
      char *end = NULL;
      double d = g_ascii_strtod (v, &end);
      if (end == v || *end != '\0' || !isfinite (d))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                          "'%s' is not a number (expected a list such as '-2;-1;0;1;2')", v);
      g_array_append_val (alphas, d);
    }
  return TRUE;
}

/* The ood groups, after the datasets' order is applied: each a group of the file, with the
 * same number of features as the others is checked when a cell runs. */
static gboolean
resolve_ood (ParseCtx *ctx, GError **error)
{
  FgAnalysisOptions *a = &ctx->exp->analysis;
  for (guint i = 0; ctx->ood_names && ctx->ood_names[i]; i++)
    {
      FgExpDataset *found = NULL;
      for (guint j = 0; j < ctx->exp->datasets->len && !found; j++)
        if (strcmp (((FgExpDataset *) g_ptr_array_index (ctx->exp->datasets, j))->name,
                    ctx->ood_names[i]) == 0)
          found = g_ptr_array_index (ctx->exp->datasets, j);
      for (guint j = 0; j < a->ood_only->len && !found; j++)
        if (strcmp (((FgExpDataset *) g_ptr_array_index (a->ood_only, j))->name,
                    ctx->ood_names[i]) == 0)
          found = g_ptr_array_index (a->ood_only, j);
      if (found == NULL)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, "ood",
                          "no group [dataset:%s]", ctx->ood_names[i]);
      g_ptr_array_add (a->ood, found);
    }
  if (a->features && a->feature_alphas->len == 0)
    {
      static const double def[] = { -2.0, -1.0, 0.0, 1.0, 2.0 };
      g_array_append_vals (a->feature_alphas, def, G_N_ELEMENTS (def));
    }
  return TRUE;
}

/* The figure keys (figure.h: `figures`, `figure_methods`, ...) are parsed by the figure module. */
static gboolean
handle_figure_key (ParseCtx *ctx, const char *key, GError **error)
{
  g_autofree char *norm = get_norm (ctx, EXPERIMENT_GROUP, key);
  g_autofree char *value = unescape (norm);
  g_autoptr (GError) local = NULL;
  if (!fg_figure_options_set (ctx->exp->figures, key, value, &local))
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key, "%s",
                      local->message);
  return TRUE;
}

/* The keys of [experiment] other than the figure keys. */
static const struct {
  const char *key;
  ExperimentKeyHandler handler;
} experiment_keys[] = {
  { "title", handle_title },
  { "data_dir", handle_data_dir },
  { "seeds", handle_seeds },
  { "select", handle_select },
  { "table", handle_table },
  { "metrics", handle_metrics },
  { "datasets", handle_datasets },
  { "methods", handle_methods },
  { "checkpoint_every", handle_resume_key },
  { "checkpoint_minutes", handle_resume_key },
  { "run_steps", handle_resume_key },
  { "ranks_per_cell", handle_ranks_per_cell },
  { "image_figures", handle_image_figures },
  { "analysis", handle_analysis },
  { "ood", handle_ood },
  { "ood_zeros", handle_ood_zeros },
  { "analysis_bins", handle_analysis_number },
  { "boundary_threshold", handle_analysis_number },
  { "feature_layer", handle_analysis_number },
  { "feature_channel", handle_analysis_number },
  { "feature_alphas", handle_feature_alphas },
  { "feature_examples", handle_analysis_number },
};

static gboolean
parse_experiment_group (ParseCtx *ctx, GError **error)
{
  g_auto (GStrv) keys = g_key_file_get_keys (ctx->kf, EXPERIMENT_GROUP, NULL, NULL);
  for (guint i = 0; keys && keys[i]; i++)
    {
      gboolean found = FALSE;
      if (fg_figure_is_option_key (keys[i]))
        {
          if (!handle_figure_key (ctx, keys[i], error))
            return FALSE;
          continue;
        }
      for (guint j = 0; j < G_N_ELEMENTS (experiment_keys); j++)
        if (strcmp (keys[i], experiment_keys[j].key) == 0)
          {
            if (!experiment_keys[j].handler (ctx, keys[i], error))
              return FALSE;
            found = TRUE;
            break;
          }
      if (!found)
        {
          g_autoptr (GString) known = g_string_new (NULL);
          for (guint j = 0; j < G_N_ELEMENTS (experiment_keys); j++)
            g_string_append_printf (known, "%s%s", j ? ", " : "", experiment_keys[j].key);
          for (const char *const *f = fg_figure_option_keys (); *f; f++)
            g_string_append_printf (known, ", %s", *f);
          return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_KEY, EXPERIMENT_GROUP,
                            keys[i], "unknown key (known: %s)", known->str);
        }
    }
  return TRUE;
}

/* ---- [dataset:NAME] and [method:NAME]: syntax ------------------------------------------------ */

static void
entry_free (gpointer data)
{
  FgExpEntry *e = data;
  g_free (e->key);
  g_free (e->raw);
  g_ptr_array_unref (e->values);
  g_free (e);
}

static void
dataset_free (gpointer data)
{
  FgExpDataset *d = data;
  g_free (d->name);
  g_free (d->group);
  g_free (d->plugin);
  g_ptr_array_unref (d->entries);
  g_free (d->config_text);
  g_clear_pointer (&d->params, fg_params_free);
  g_clear_pointer (&d->split_params, fg_params_free);
  g_free (d);
}

static void
method_free (gpointer data)
{
  FgExpMethod *m = data;
  g_free (m->name);
  g_free (m->group);
  g_free (m->plugin);
  g_ptr_array_unref (m->entries);
  g_strfreev (m->datasets);
  g_free (m->row);
  g_clear_pointer (&m->points, g_ptr_array_unref);
  g_free (m);
}

static void
cell_free (gpointer data)
{
  FgCell *c = data;
  g_free (c->key);
  g_free (c->config);
  g_free (c->grid);
  g_free (c->label);
  g_free (c);
}

static gboolean
name_is_valid (const char *name)
{
  if (name == NULL || *name == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_' && *p != '.')
      return FALSE;
  return TRUE;
}

static gboolean
key_is_valid (const char *key)
{
  if (*key == '\0' || *key == '.')
    return FALSE;
  for (const char *p = key; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_' && (*p != '.' || p[1] == '.' || p[1] == '\0'))
      return FALSE;
  return TRUE;
}

/* Reads the keys of a dataset or method group other than the reserved ones. */
static GPtrArray *
parse_entries (ParseCtx *ctx, const char *group, gboolean allow_grids,
               const char *const *reserved, GError **error)
{
  g_auto (GStrv) keys = g_key_file_get_keys (ctx->kf, group, NULL, NULL);
  g_autoptr (GPtrArray) entries = g_ptr_array_new_with_free_func (entry_free);

  for (guint i = 0; keys && keys[i]; i++)
    {
      FgExpEntry *e;
      if (g_strv_contains (reserved, keys[i]))
        continue;
      if (!key_is_valid (keys[i]))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_KEY, group, keys[i],
                          "malformed key (expected a parameter name such as 'k' or "
                          "'flow.hidden')"),
               NULL;
      e = g_new0 (FgExpEntry, 1);
      e->key = g_strdup (keys[i]);
      e->raw = get_norm (ctx, group, keys[i]);
      e->line = line_of (ctx, group, keys[i]);
      g_ptr_array_add (entries, e);
      e->values = parse_values (ctx, group, keys[i], e->raw, TRUE, &e->is_grid, error);
      if (e->values == NULL)
        {
          e->values = g_ptr_array_new ();
          return NULL;
        }
      if (e->is_grid && !allow_grids)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, keys[i],
                          "'%s' is a grid; grids (lists 'a;b' and ranges 'lo..hi') are allowed "
                          "only in [method:NAME] groups", e->raw),
               NULL;
    }
  return g_steal_pointer (&entries);
}

static gint
compare_entry_keys (gconstpointer a, gconstpointer b)
{
  const FgExpEntry *ea = *(FgExpEntry *const *) a;
  const FgExpEntry *eb = *(FgExpEntry *const *) b;
  return strcmp (ea->key, eb->key);
}

/* Canonical text of a group: its plugin and its key = value lines sorted by key.  Editing any
 * of them changes the cells' keys; reordering lines or comments does not. */
static void
append_sorted_entries (GString *s, GPtrArray *entries, const char *const *values)
{
  g_autoptr (GPtrArray) sorted = g_ptr_array_new ();
  for (guint i = 0; i < entries->len; i++)
    g_ptr_array_add (sorted, g_ptr_array_index (entries, i));
  g_ptr_array_sort (sorted, compare_entry_keys);
  for (guint i = 0; i < sorted->len; i++)
    {
      FgExpEntry *e = g_ptr_array_index (sorted, i);
      const char *value = e->raw;
      if (values != NULL)
        for (guint j = 0; j < entries->len; j++)
          if (g_ptr_array_index (entries, j) == e)
            value = values[j];
      g_string_append_printf (s, "%s=%s\n", e->key, value);
    }
}

static gboolean
parse_dataset_group (ParseCtx *ctx, const char *group, const char *name, GError **error)
{
  static const char *const reserved[] = { "plugin", NULL };
  FgExpDataset *d = g_new0 (FgExpDataset, 1);
  GString *text;

  d->name = g_strdup (name);
  d->group = g_strdup (group);
  d->entries = g_ptr_array_new_with_free_func (entry_free);
  g_ptr_array_add (ctx->exp->datasets, d);
  if (!g_key_file_has_key (ctx->kf, group, "plugin", NULL))
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_MISSING_KEY, group, "plugin",
                      "missing (every dataset group names its dataset plugin, as in "
                      "'plugin = synthetic')");
  d->plugin = get_single (ctx, group, "plugin", error);
  if (d->plugin == NULL)
    return FALSE;
  g_ptr_array_unref (d->entries);
  d->entries = parse_entries (ctx, group, FALSE, reserved, error);
  if (d->entries == NULL)
    {
      d->entries = g_ptr_array_new ();
      return FALSE;
    }
  text = g_string_new (NULL);
  g_string_append_printf (text, "[dataset %s]\nplugin=%s\n", d->name, d->plugin);
  append_sorted_entries (text, d->entries, NULL);
  d->config_text = g_string_free (text, FALSE);
  return TRUE;
}

static gboolean
parse_method_group (ParseCtx *ctx, const char *group, const char *name, GError **error)
{
  static const char *const reserved[] = { "plugin", "datasets", "row", NULL };
  FgExpMethod *m = g_new0 (FgExpMethod, 1);
  guint64 n = 1;

  m->name = g_strdup (name);
  m->group = g_strdup (group);
  m->entries = g_ptr_array_new_with_free_func (entry_free);
  g_ptr_array_add (ctx->exp->methods, m);
  if (!g_key_file_has_key (ctx->kf, group, "plugin", NULL))
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_MISSING_KEY, group, "plugin",
                      "missing (every method group names its baseline, as in 'plugin = knn')");
  m->plugin = get_single (ctx, group, "plugin", error);
  if (m->plugin == NULL)
    return FALSE;
  if (g_key_file_has_key (ctx->kf, group, "datasets", NULL))
    {
      m->datasets = get_name_list (ctx, group, "datasets", error);
      if (m->datasets == NULL)
        return FALSE;
    }
  if (g_key_file_has_key (ctx->kf, group, "row", NULL))
    {
      m->row = get_single (ctx, group, "row", error);
      if (m->row == NULL)
        return FALSE;
    }
  g_ptr_array_unref (m->entries);
  m->entries = parse_entries (ctx, group, TRUE, reserved, error);
  if (m->entries == NULL)
    {
      m->entries = g_ptr_array_new ();
      return FALSE;
    }
  for (guint i = 0; i < m->entries->len; i++)
    {
      FgExpEntry *e = g_ptr_array_index (m->entries, i);
      n *= e->values->len;
      if (n > MAX_CELLS)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_RANGE, group, e->key,
                          "the grid has more than %u points", MAX_CELLS);
    }
  m->n_points = (guint) n;
  return TRUE;
}

static void
reference_free (gpointer data)
{
  FgExpReference *r = data;
  g_free (r->name);
  g_free (r->group);
  g_free (r->title);
  g_hash_table_unref (r->values);
  g_free (r);
}

/* [reference:NAME]: `title` and METHOD/DATASET = value entries (checked once all groups are
 * read: check_references ()). */
static gboolean
parse_reference_group (ParseCtx *ctx, const char *group, const char *name, GError **error)
{
  g_auto (GStrv) keys = g_key_file_get_keys (ctx->kf, group, NULL, NULL);
  FgExpReference *r = g_new0 (FgExpReference, 1);
  r->name = g_strdup (name);
  r->group = g_strdup (group);
  r->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_ptr_array_add (ctx->exp->references, r);
  for (guint i = 0; keys && keys[i]; i++)
    {
      g_autofree char *norm = get_norm (ctx, group, keys[i]);
      g_autofree char *value = unescape (norm);
      if (*value == '\0')
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, keys[i],
                          "empty value (expected the published number, e.g. '97.36')");
      if (strcmp (keys[i], "title") == 0)
        {
          g_free (r->title);
          r->title = g_steal_pointer (&value);
          continue;
        }
      if (strchr (keys[i], '/') == NULL)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_KEY, group, keys[i],
                          "expected 'title' or METHOD/DATASET (a method group's name or row "
                          "and a data set group's name)");
      g_hash_table_replace (r->values, g_strdup (keys[i]), g_steal_pointer (&value));
    }
  if (r->title == NULL)
    r->title = g_strdup (name);
  return TRUE;
}

/* Every METHOD/DATASET of a reference group names a method group (name or row) and a data set
 * group of the file, listed in `methods`/`datasets` or not. */
static gboolean
check_references (ParseCtx *ctx, GError **error)
{
  FgExperiment *exp = ctx->exp;
  for (guint i = 0; i < exp->references->len; i++)
    {
      FgExpReference *r = g_ptr_array_index (exp->references, i);
      GHashTableIter it;
      gpointer key;
      g_hash_table_iter_init (&it, r->values);
      while (g_hash_table_iter_next (&it, &key, NULL))
        {
          const char *k = key, *slash = strchr (k, '/');
          g_autofree char *method = g_strndup (k, (gsize) (slash - k));
          gboolean have_m = FALSE, have_d = FALSE;
          for (guint j = 0; j < exp->methods->len && !have_m; j++)
            {
              const FgExpMethod *m = g_ptr_array_index (exp->methods, j);
              have_m = strcmp (m->name, method) == 0 || strcmp (_fg_method_label (m), method) == 0;
            }
          for (guint j = 0; j < exp->datasets->len && !have_d; j++)
            have_d = strcmp (((FgExpDataset *) g_ptr_array_index (exp->datasets, j))->name,
                             slash + 1) == 0;
          if (!have_m || !have_d)
            return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, r->group, k,
                              "no %s '%s' in this experiment (expected METHOD/DATASET: a method "
                              "group's name or row and a data set group's name)",
                              have_m ? "data set" : "method", have_m ? slash + 1 : method);
        }
    }
  return TRUE;
}

static gboolean
parse_group (ParseCtx *ctx, const char *group, GError **error)
{
  const char *colon = strchr (group, ':');
  g_autofree char *kind = colon ? g_strndup (group, (gsize) (colon - group)) : g_strdup (group);
  const char *name = colon ? colon + 1 : NULL;

  if (strcmp (group, EXPERIMENT_GROUP) == 0)
    return parse_experiment_group (ctx, error);
  if (name != NULL && (strcmp (kind, "dataset") == 0 || strcmp (kind, "method") == 0))
    {
      if (!name_is_valid (name))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_GROUP, group, NULL,
                          "bad %s name '%s' (letters, digits, '-', '_' and '.')", kind, name);
      if (kind[0] == 'd')
        return parse_dataset_group (ctx, group, name, error);
      return parse_method_group (ctx, group, name, error);
    }
  if (name != NULL && strcmp (kind, "reference") == 0)
    {
      if (!name_is_valid (name))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_GROUP, group, NULL,
                          "bad reference name '%s' (letters, digits, '-', '_' and '.')", name);
      return parse_reference_group (ctx, group, name, error);
    }
  /* Extension point: [figure:NAME] groups are recognised here. */
  return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_GROUP, group, NULL,
                    "unknown group (expected [experiment], [dataset:NAME], [method:NAME] or "
                    "[reference:NAME])");
}

/* Put `items` (named by their first member, a char *) in the order of `order`, which must name
 * each at most once; unlisted items are dropped. */
static gboolean
apply_order (ParseCtx *ctx, GPtrArray *items, char **order, const char *key, guint name_offset,
             GError **error)
{
  g_autoptr (GPtrArray) kept = NULL;
  if (order == NULL)
    return TRUE;
  kept = g_ptr_array_new ();
  for (guint i = 0; order[i]; i++)
    {
      gboolean found = FALSE;
      for (guint j = 0; j < items->len; j++)
        {
          gpointer item = g_ptr_array_index (items, j);
          const char *name = G_STRUCT_MEMBER (const char *, item, name_offset);
          if (strcmp (name, order[i]) == 0)
            {
              g_ptr_array_add (kept, item);
              found = TRUE;
              break;
            }
        }
      if (!found)
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                          "no group [%s:%s]", strcmp (key, "datasets") == 0 ? "dataset" : "method",
                          order[i]);
    }
  /* Steal the kept ones, free the rest. */
  for (guint j = 0; j < items->len; j++)
    {
      gpointer item = g_ptr_array_index (items, j);
      gboolean is_kept = FALSE;
      for (guint i = 0; i < kept->len; i++)
        is_kept |= g_ptr_array_index (kept, i) == item;
      if (!is_kept && items == ctx->exp->datasets && ctx->ood_names != NULL
          && g_strv_contains ((const char *const *) ctx->ood_names,
                              ((FgExpDataset *) item)->name))
        g_ptr_array_add (ctx->exp->analysis.ood_only, item); /* scored, not run */
      else if (!is_kept)
        {
          GDestroyNotify free_func = items == ctx->exp->datasets ? dataset_free : method_free;
          free_func (item);
        }
    }
  g_ptr_array_set_free_func (items, NULL);
  g_ptr_array_set_size (items, 0);
  for (guint i = 0; i < kept->len; i++)
    g_ptr_array_add (items, g_ptr_array_index (kept, i));
  g_ptr_array_set_free_func (items, items == ctx->exp->datasets ? dataset_free : method_free);
  return TRUE;
}

/* ---- validation against the plugins (registry mode) ------------------------------------------ */

static char *
spec_names (const FgParamSpec *specs, const FgParamSpec *more)
{
  GString *s = g_string_new (NULL);
  for (const FgParamSpec *sp = specs; sp && sp->name; sp++)
    g_string_append_printf (s, "%s%s", s->len ? ", " : "", sp->name);
  for (const FgParamSpec *sp = more; sp && sp->name; sp++)
    g_string_append_printf (s, "%s%s", s->len ? ", " : "", sp->name);
  if (s->len == 0)
    g_string_append (s, "none");
  return g_string_free (s, FALSE);
}

/* Finds component `name` of `kind` for key `key`, with an error naming what exists. */
static const FgComponent *
find_component (ParseCtx *ctx, const char *group, const char *key, FgKind kind,
                const char *name, GError **error)
{
  const FgComponent *c = fg_registry_lookup (ctx->exp->reg, kind, name);
  g_autoptr (GError) local = NULL;
  const FgComponent *other;

  if (c != NULL)
    return c;
  other = fg_registry_lookup_any (ctx->exp->reg, name);
  if (other != NULL)
    {
      exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, group, key,
                 "'%s' is a %s, not a %s", name, fg_kind_to_string (other->kind),
                 fg_kind_to_string (kind));
      return NULL;
    }
  fg_registry_find (ctx->exp->reg, kind, name, &local);
  exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, group, key, "%s",
             local ? local->message : "unknown component");
  return NULL;
}

/* The error code for a value fg_params_set () refused: type or range. */
static FgExperimentError
classify_value (const FgParamSpec *spec, const char *text)
{
  switch (spec->type)
    {
    case FG_PARAM_INT:
      {
        gint64 v;
        if (!parse_int64 (text, &v))
          return FG_EXPERIMENT_ERROR_BAD_TYPE;
        return (double) v < spec->min || (double) v > spec->max ? FG_EXPERIMENT_ERROR_BAD_RANGE
                                                                 : FG_EXPERIMENT_ERROR_BAD_VALUE;
      }
    case FG_PARAM_DOUBLE:
      {
        g_autofree char *t = g_strstrip (g_strdup (text));
        char *end = NULL;
        double v;
        errno = 0;
        v = g_ascii_strtod (t, &end);
        if (*t == '\0' || *end != '\0' || errno == ERANGE || !isfinite (v))
          return FG_EXPERIMENT_ERROR_BAD_TYPE;
        return v < spec->min || v > spec->max ? FG_EXPERIMENT_ERROR_BAD_RANGE
                                              : FG_EXPERIMENT_ERROR_BAD_VALUE;
      }
    case FG_PARAM_BOOL:
      return FG_EXPERIMENT_ERROR_BAD_TYPE;
    default:
      return FG_EXPERIMENT_ERROR_BAD_VALUE;
    }
}

/* The spec that `key` ("k", "flow.hidden") names, walking through COMPONENT values of `params`
 * (whose components must be attached already). */
static const FgParamSpec *
lookup_key_spec (ParseCtx *ctx, const char *group, const char *key, const FgParams *params,
                 const char *owner, GError **error)
{
  g_auto (GStrv) parts = g_strsplit (key, ".", -1);
  const FgParams *level = params;
  g_autofree char *level_owner = g_strdup (owner);

  for (guint i = 0; parts[i]; i++)
    {
      const FgParamSpec *specs = fg_params_get_specs (level);
      const FgParamSpec *spec = fg_param_spec_lookup (specs, parts[i]);
      if (spec == NULL)
        {
          g_autofree char *names = spec_names (specs, NULL);
          exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_KEY, group, key,
                     "%s has no parameter '%s' (known: %s)", level_owner, parts[i], names);
          return NULL;
        }
      if (parts[i + 1] == NULL)
        return spec;
      if (spec->type != FG_PARAM_COMPONENT)
        {
          exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_KEY, group, key,
                     "'%s' of %s is a %s, not a component, so it has no sub-keys", parts[i],
                     level_owner, fg_param_type_to_string (spec->type));
          return NULL;
        }
      g_free (level_owner);
      level_owner = g_strdup_printf ("%s '%s'", spec->choices,
                                     fg_params_get_string (level, parts[i]));
      level = fg_params_get_component (level, parts[i]);
      if (level == NULL)
        {
          exp_error (ctx, error, FG_EXPERIMENT_ERROR_MISSING_KEY, group, key,
                     "set '%s' (which %s to use) before its parameters", parts[i],
                     spec->choices);
          return NULL;
        }
    }
  g_assert_not_reached ();
  return NULL;
}

static gboolean
set_one (ParseCtx *ctx, const char *group, FgParams *params, const char *owner,
         const char *key, const char *text, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autofree char *expanded = NULL;
  const FgParamSpec *spec = lookup_key_spec (ctx, group, key, params, owner, error);

  if (spec == NULL)
    return FALSE;
  if (spec->type == FG_PARAM_COMPONENT)
    {
      FgKind kind;
      const FgComponent *c;
      g_autofree char *name = NULL;
      if (spec->choices == NULL || !fg_kind_from_string (spec->choices, &kind))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, key,
                          "the plugin declares an unknown component kind '%s'",
                          spec->choices ? spec->choices : "(none)");
      name = g_strstrip (g_strdup (text));
      c = find_component (ctx, group, key, kind, name, error);
      if (c == NULL)
        return FALSE;
      if (!fg_params_set_component (params, key, c->name, c->params, &local))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, group, key, "%s",
                          local->message);
      return TRUE;
    }
  if (spec->type == FG_PARAM_PATH && g_str_has_prefix (text, FG_DATA_DIR_VAR)
      && (text[strlen (FG_DATA_DIR_VAR)] == '/' || text[strlen (FG_DATA_DIR_VAR)] == '\0'))
    text = expanded = g_strconcat (data_dir (ctx), text + strlen (FG_DATA_DIR_VAR), NULL);
  if (!fg_params_set (params, key, text, &local))
    return exp_error (ctx, error, classify_value (spec, text), group, key, "%s", local->message);
  return TRUE;
}

static guint
key_depth (const char *key)
{
  guint d = 0;
  for (const char *p = key; *p; p++)
    d += *p == '.';
  return d;
}

/* Sets keys[i] = values[i] on `params`, a component key before its sub-keys whatever the file
 * order, attaching default components as it goes. */
static gboolean
apply_keys (ParseCtx *ctx, const char *group, FgParams *params, const char *owner,
            const char *const *keys, const char *const *values, guint n, GError **error)
{
  guint max_depth = 0;
  for (guint i = 0; i < n; i++)
    max_depth = MAX (max_depth, key_depth (keys[i]));
  for (guint depth = 0; depth <= max_depth; depth++)
    {
      g_autoptr (GError) local = NULL;
      for (guint i = 0; i < n; i++)
        if (key_depth (keys[i]) == depth
            && !set_one (ctx, group, params, owner, keys[i], values[i], error))
          return FALSE;
      /* Attach defaults to COMPONENT values left unset, so "flow.hidden" works without
       * "flow = ..." when `flow` has a default. */
      if (!fg_registry_resolve_params (ctx->exp->reg, params, &local))
        return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, group, NULL,
                          "default component: %s", local->message);
    }
  return TRUE;
}

/* Every required parameter is set and every component resolved, recursively; names the first
 * missing one ("flow.hidden" for a component's). */
static gboolean
check_required (ParseCtx *ctx, const char *group, const FgParams *params, const char *owner,
                GError **error)
{
  g_autofree char *key = NULL;
  g_autofree char *sub_owner = NULL;
  g_autofree char *value = NULL;
  g_autofree char *type = NULL;
  const FgParamSpec *sp = fg_params_find_incomplete (params, &key, &sub_owner);
  if (sp == NULL)
    return TRUE;
  value = fg_params_get_text (params, key);
  if (value != NULL)
    return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, group, key,
                      "%s '%s' is not resolved", sp->choices, value);
  type = fg_param_spec_describe_type (sp);
  return exp_error (ctx, error, FG_EXPERIMENT_ERROR_MISSING_KEY, group, key,
                    "missing: %s requires it (%s: %s)", sub_owner ? sub_owner : owner, type,
                    sp->doc ? sp->doc : "");
}

static gboolean
validate_dataset (ParseCtx *ctx, FgExpDataset *d, GError **error)
{
  const FgParamSpec *split_specs = fg_split_param_specs ();
  g_autoptr (GPtrArray) dkeys = g_ptr_array_new ();
  g_autoptr (GPtrArray) dvalues = g_ptr_array_new ();
  g_autoptr (GPtrArray) skeys = g_ptr_array_new ();
  g_autoptr (GPtrArray) svalues = g_ptr_array_new ();
  g_autofree char *owner = NULL;

  d->component = find_component (ctx, d->group, "plugin", FG_KIND_DATASET, d->plugin, error);
  if (d->component == NULL)
    return FALSE;
  owner = g_strdup_printf ("dataset '%s'", d->plugin);
  d->params = fg_params_new (d->component->params);
  d->split_params = fg_params_new (split_specs);

  /* A key goes to the dataset plugin when it declares it, else to the core's split. */
  for (guint i = 0; i < d->entries->len; i++)
    {
      FgExpEntry *e = g_ptr_array_index (d->entries, i);
      g_autofree char *head = g_strndup (e->key, strcspn (e->key, "."));
      if (fg_param_spec_lookup (d->component->params, head) != NULL)
        {
          g_ptr_array_add (dkeys, e->key);
          g_ptr_array_add (dvalues, g_ptr_array_index (e->values, 0));
        }
      else if (fg_param_spec_lookup (split_specs, head) != NULL)
        {
          g_ptr_array_add (skeys, e->key);
          g_ptr_array_add (svalues, g_ptr_array_index (e->values, 0));
        }
      else
        {
          g_autofree char *names = spec_names (d->component->params, split_specs);
          return exp_error (ctx, error, FG_EXPERIMENT_ERROR_UNKNOWN_KEY, d->group, e->key,
                            "%s has no parameter '%s' and it is not a split key (known: %s; "
                            "see 'flowgmm describe %s' and 'flowgmm describe split')",
                            owner, e->key, names, d->plugin);
        }
    }
  if (!apply_keys (ctx, d->group, d->params, owner, (const char *const *) dkeys->pdata,
                   (const char *const *) dvalues->pdata, dkeys->len, error))
    return FALSE;
  if (!apply_keys (ctx, d->group, d->split_params, "the split", (const char *const *) skeys->pdata,
                   (const char *const *) svalues->pdata, skeys->len, error))
    return FALSE;
  fg_params_resolve_paths (d->params, ctx->exp->base_dir);
  fg_params_resolve_paths (d->split_params, ctx->exp->base_dir);
  return check_required (ctx, d->group, d->params, owner, error)
         && check_required (ctx, d->group, d->split_params, "the split", error);
}

void
_fg_exp_method_point_values (const FgExpMethod *m, guint point, const char **values)
{
  /* Mixed radix, the last key varying fastest (as nested loops in file order). */
  for (guint i = m->entries->len; i-- > 0;)
    {
      FgExpEntry *e = g_ptr_array_index (m->entries, i);
      values[i] = g_ptr_array_index (e->values, point % e->values->len);
      point /= e->values->len;
    }
}

static gboolean
validate_method (ParseCtx *ctx, FgExpMethod *m, GError **error)
{
  g_autofree const char **keys = g_new0 (const char *, m->entries->len + 1);
  g_autofree const char **values = g_new0 (const char *, m->entries->len + 1);
  g_autofree char *owner = NULL;

  m->component = find_component (ctx, m->group, "plugin", FG_KIND_BASELINE, m->plugin, error);
  if (m->component == NULL)
    return FALSE;
  owner = g_strdup_printf ("baseline '%s'", m->plugin);
  for (guint i = 0; i < m->entries->len; i++)
    keys[i] = ((FgExpEntry *) g_ptr_array_index (m->entries, i))->key;
  m->points = g_ptr_array_new_with_free_func ((GDestroyNotify) fg_params_free);
  for (guint p = 0; p < m->n_points; p++)
    {
      FgParams *params = fg_params_new (m->component->params);
      g_ptr_array_add (m->points, params);
      _fg_exp_method_point_values (m, p, values);
      if (!apply_keys (ctx, m->group, params, owner, keys, values, m->entries->len, error))
        return FALSE;
      fg_params_resolve_paths (params, ctx->exp->base_dir);
      if (!check_required (ctx, m->group, params, owner, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- cells ----------------------------------------------------------------------------------- */

static gboolean
method_runs_on (const FgExpMethod *m, const FgExpDataset *d)
{
  return m->datasets == NULL || g_strv_contains ((const char *const *) m->datasets, d->name);
}

static void
expand_cells (FgExperiment *exp)
{
  for (guint di = 0; di < exp->datasets->len; di++)
    {
      FgExpDataset *d = g_ptr_array_index (exp->datasets, di);
      for (guint mi = 0; mi < exp->methods->len; mi++)
        {
          FgExpMethod *m = g_ptr_array_index (exp->methods, mi);
          g_autofree const char **values = g_new0 (const char *, m->entries->len + 1);
          g_autofree char *config = NULL;
          if (!method_runs_on (m, d))
            continue;
          {
            g_autofree char *t = g_strdup_printf ("%smethod-plugin=%s\n", d->config_text,
                                                  m->plugin);
            config = _fg_digest (t, 16);
          }
          for (guint p = 0; p < m->n_points; p++)
            {
              g_autoptr (GString) point = g_string_new (NULL);
              g_autoptr (GString) grid = g_string_new (NULL);
              _fg_exp_method_point_values (m, p, values);
              g_string_append_printf (point, "[method %s]\nplugin=%s\n", m->name, m->plugin);
              append_sorted_entries (point, m->entries, values);
              for (guint i = 0; i < m->entries->len; i++)
                {
                  FgExpEntry *e = g_ptr_array_index (m->entries, i);
                  if (e->values->len > 1)
                    g_string_append_printf (grid, "%s%s=%s", grid->len ? " " : "", e->key,
                                            values[i]);
                }
              for (guint s = 0; s < exp->seeds->len; s++)
                {
                  FgCell *c = g_new0 (FgCell, 1);
                  guint64 seed = g_array_index (exp->seeds, guint64, s);
                  g_autofree char *text = g_strdup_printf ("%s%sseed=%" G_GUINT64_FORMAT "\n",
                                                           d->config_text, point->str, seed);
                  g_autofree char *digest = _fg_digest (text, 16);
                  c->index = exp->cells->len;
                  c->dataset = d;
                  c->method = m;
                  c->point = p;
                  c->seed_index = s;
                  c->seed = seed;
                  c->key = g_strdup_printf ("%s/%s/%" G_GUINT64_FORMAT "/%s", d->name, m->name,
                                            seed, digest);
                  c->config = g_strdup (config);
                  {
                    g_autofree char *what = g_strdup_printf ("%s\n%s", d->name, point->str);
                    c->stream = fg_rng_stream_id (what);
                  }
                  c->grid = g_strdup (grid->str);
                  c->label = g_strdup_printf ("%s/%s%s%s seed %" G_GUINT64_FORMAT, d->name,
                                              m->name, grid->len ? " " : "", grid->str, seed);
                  g_ptr_array_add (exp->cells, c);
                }
            }
        }
    }
}

/* ---- loading --------------------------------------------------------------------------------- */

static char *
strip_exp_suffix (const char *basename)
{
  if (g_str_has_suffix (basename, ".exp") && strlen (basename) > 4)
    return g_strndup (basename, strlen (basename) - 4);
  return g_strdup (basename);
}

FgExperiment *
_fg_experiment_parse (const char *data, gsize length, const char *display_name,
                      const char *base_dir, FgRegistry *reg, GError **error)
{
  g_autoptr (FgExperiment) exp = g_new0 (FgExperiment, 1);
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  g_auto (GStrv) groups = NULL;
  g_autofree char *cwd = g_get_current_dir ();
  ParseCtx ctx = { 0 };
  gboolean ok = FALSE;

  exp->path = g_strdup (display_name ? display_name : "(experiment)");
  exp->base_dir = base_dir ? g_canonicalize_filename (base_dir, cwd) : g_strdup (cwd);
  exp->contents = g_strndup (data, length);
  exp->length = strlen (exp->contents);
  exp->reg = reg;
  exp->seeds = g_array_new (FALSE, FALSE, sizeof (guint64));
  exp->select = FG_SELECT_BEST_VALIDATION;
  exp->ranks_per_cell = 1;
  exp->rows_are_methods = TRUE;
  exp->table_field = FG_FIELD (1, FG_METRIC_ACCURACY);
  exp->table_fields = g_array_new (FALSE, FALSE, sizeof (guint));
  g_array_append_val (exp->table_fields, exp->table_field);
  /* Default: the three metrics of the first versions (a default that grew would make every
   * stored cell lack a metric, and run again). */
  exp->metrics[FG_METRIC_ACCURACY] = exp->metrics[FG_METRIC_NLL] = TRUE;
  exp->metrics[FG_METRIC_ECE] = TRUE;
  _fg_analysis_options_init (&exp->analysis);
  g_ptr_array_set_free_func (exp->analysis.ood_only, dataset_free);
  exp->datasets = g_ptr_array_new_with_free_func (dataset_free);
  exp->methods = g_ptr_array_new_with_free_func (method_free);
  exp->references = g_ptr_array_new_with_free_func (reference_free);
  exp->cells = g_ptr_array_new_with_free_func (cell_free);
  exp->figures = fg_figure_options_new ();

  if (exp->length != length && memchr (data, '\0', length) != NULL)
    {
      g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_PARSE,
                   "%s: not an experiment file (it contains NUL bytes)", exp->path);
      return NULL;
    }
  ctx.lines = index_lines (exp->contents, exp->path, error);
  if (ctx.lines == NULL)
    return NULL;
  if (!g_key_file_load_from_data (kf, exp->contents, exp->length, G_KEY_FILE_NONE, &local))
    {
      g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_PARSE,
                   "%s: not an experiment file (a GLib key file with [groups] and "
                   "key = value lines): %s", exp->path, local->message);
      return NULL;
    }

  ctx.exp = exp;
  ctx.kf = kf;
  {
    g_autofree char *base = g_path_get_basename (exp->path);
    exp->title = strip_exp_suffix (base);
  }
  {
    guint64 zero = 0;
    g_array_append_val (exp->seeds, zero);
  }

  groups = g_key_file_get_groups (kf, NULL);
  for (guint i = 0; groups[i]; i++)
    if (!parse_group (&ctx, groups[i], error))
      goto out;
  /* Against every group of the file: narrowing `methods` or `datasets` must not make the
   * published values of the groups left out an error (their columns just do not show). */
  if (!check_references (&ctx, error))
    goto out;
  if (!apply_order (&ctx, exp->datasets, ctx.dataset_order, "datasets",
                    G_STRUCT_OFFSET (FgExpDataset, name), error)
      || !apply_order (&ctx, exp->methods, ctx.method_order, "methods",
                       G_STRUCT_OFFSET (FgExpMethod, name), error))
    goto out;
  if (exp->datasets->len == 0)
    {
      exp_error (&ctx, error, FG_EXPERIMENT_ERROR_MISSING_KEY, NULL, NULL,
                 "no [dataset:NAME] group: an experiment needs at least one data set");
      goto out;
    }
  if (exp->methods->len == 0)
    {
      exp_error (&ctx, error, FG_EXPERIMENT_ERROR_MISSING_KEY, NULL, NULL,
                 "no [method:NAME] group: an experiment needs at least one method");
      goto out;
    }
  for (guint i = 0; i < exp->methods->len; i++)
    {
      FgExpMethod *m = g_ptr_array_index (exp->methods, i);
      for (guint j = 0; m->datasets && m->datasets[j]; j++)
        {
          gboolean found = FALSE;
          for (guint k = 0; k < exp->datasets->len && !found; k++)
            found = strcmp (((FgExpDataset *) g_ptr_array_index (exp->datasets, k))->name,
                            m->datasets[j]) == 0;
          if (!found)
            {
              exp_error (&ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, m->group, "datasets",
                         "no group [dataset:%s]%s", m->datasets[j],
                         ctx.dataset_order ? " among the experiment's datasets" : "");
              goto out;
            }
        }
    }
  /* Methods sharing a row must run on disjoint data sets. */
  for (guint i = 0; i < exp->methods->len; i++)
    for (guint j = i + 1; j < exp->methods->len; j++)
      {
        FgExpMethod *a = g_ptr_array_index (exp->methods, i);
        FgExpMethod *b = g_ptr_array_index (exp->methods, j);
        if (strcmp (_fg_method_label (a), _fg_method_label (b)) != 0)
          continue;
        for (guint k = 0; k < exp->datasets->len; k++)
          {
            FgExpDataset *d = g_ptr_array_index (exp->datasets, k);
            if (method_runs_on (a, d) && method_runs_on (b, d))
              {
                exp_error (&ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, b->group,
                           b->row != NULL ? "row" : NULL,
                           "row '%s' is shared with [%s] on data set '%s'; methods sharing a "
                           "row need disjoint 'datasets'",
                           _fg_method_label (b), a->group, d->name);
                goto out;
              }
          }
      }
  for (guint i = 0; i < exp->table_fields->len; i++)
    if (!_fg_field_is_computed (exp->metrics, g_array_index (exp->table_fields, guint, i)))
      {
        exp_error (&ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, "table",
                   "the table shows %s, which 'metrics' does not compute",
                   _fg_field_name (g_array_index (exp->table_fields, guint, i)));
        goto out;
      }
  if (!resolve_ood (&ctx, error))
    goto out;

  if (reg != NULL)
    {
      for (guint i = 0; i < exp->datasets->len; i++)
        if (!validate_dataset (&ctx, g_ptr_array_index (exp->datasets, i), error))
          goto out;
      for (guint i = 0; i < exp->analysis.ood_only->len; i++)
        if (!validate_dataset (&ctx, g_ptr_array_index (exp->analysis.ood_only, i), error))
          goto out;
      for (guint i = 0; i < exp->methods->len; i++)
        if (!validate_method (&ctx, g_ptr_array_index (exp->methods, i), error))
          goto out;
    }

  {
    guint64 total = 0;
    for (guint di = 0; di < exp->datasets->len; di++)
      for (guint mi = 0; mi < exp->methods->len; mi++)
        if (method_runs_on (g_ptr_array_index (exp->methods, mi),
                            g_ptr_array_index (exp->datasets, di)))
          total += (guint64) ((FgExpMethod *) g_ptr_array_index (exp->methods, mi))->n_points
                   * exp->seeds->len;
    if (total > MAX_CELLS)
      {
        exp_error (&ctx, error, FG_EXPERIMENT_ERROR_BAD_RANGE, NULL, NULL,
                   "%" G_GUINT64_FORMAT " cells is more than the limit of %u", total, MAX_CELLS);
        goto out;
      }
  }
  expand_cells (exp);
  {
    g_autoptr (GPtrArray) dnames = g_ptr_array_new ();
    g_autoptr (GPtrArray) mnames = g_ptr_array_new ();
    for (guint i = 0; i < exp->datasets->len; i++)
      g_ptr_array_add (dnames, ((FgExpDataset *) g_ptr_array_index (exp->datasets, i))->name);
    for (guint i = 0; i < exp->methods->len; i++)
      g_ptr_array_add (mnames, ((FgExpMethod *) g_ptr_array_index (exp->methods, i))->name);
    g_ptr_array_add (dnames, NULL);
    g_ptr_array_add (mnames, NULL);
    fg_figure_options_set_defaults (exp->figures, (const char *const *) dnames->pdata,
                                    (const char *const *) mnames->pdata,
                                    g_array_index (exp->seeds, guint64, 0));
    {
      const char *key = NULL, *name = NULL;
      if (!_fg_figure_options_check_names (exp->figures, (const char *const *) dnames->pdata,
                                           (const char *const *) mnames->pdata, &key, &name))
        {
          gboolean method = strcmp (key, "figure_methods") == 0;
          exp_error (&ctx, error, FG_EXPERIMENT_ERROR_BAD_VALUE, EXPERIMENT_GROUP, key,
                     "no %s named '%s' in this experiment", method ? "[method:NAME] group"
                                                                   : "[dataset:NAME] group",
                     name);
          goto out;
        }
    }
  }
  ok = TRUE;

out:
  g_hash_table_unref (ctx.lines);
  g_strfreev (ctx.dataset_order);
  g_strfreev (ctx.ood_names);
  g_strfreev (ctx.method_order);
  g_free (ctx.data_dir);
  return ok ? g_steal_pointer (&exp) : NULL;
}

/* Parses OUT/experiment.exp for its syntax; the default title comes from the copied file's
 * name on the first line. */
FgExperiment *
_fg_experiment_load_copy (const char *data, gsize length, const char *copy_path,
                          const char *out_dir, GError **error)
{
  FgExperiment *exp = _fg_experiment_parse (data, length, copy_path, out_dir, NULL, error);
  if (exp != NULL && !exp->title_given && g_str_has_prefix (data, FG_EXPERIMENT_COPY_HEADER))
    {
      const char *src = data + strlen (FG_EXPERIMENT_COPY_HEADER);
      g_autofree char *source = g_strndup (src, strcspn (src, "\r\n"));
      g_autofree char *base = g_path_get_basename (source);
      g_free (exp->title);
      exp->title = strip_exp_suffix (base);
    }
  return exp;
}

/**
 * fg_experiment_load:
 * @path: an experiment file (see flowgmm-experiment(5))
 * @reg: (nullable): the registry whose plugins the file names; %NULL checks the grammar only
 *   (such an experiment can be listed and its table rendered, but not run)
 * @error: return location for a #GError
 *
 * Reads and validates an experiment file.  Every key is checked against the declared parameters
 * of the plugin its group names; errors are %FG_EXPERIMENT_ERROR (or %G_FILE_ERROR when the
 * file cannot be read) and name the file, line, group and key.
 *
 * Returns: (transfer full) (nullable): the experiment, or %NULL on error.
 */
FgExperiment *
fg_experiment_load (const char *path, FgRegistry *reg, GError **error)
{
  g_autofree char *contents = NULL;
  g_autofree char *dir = NULL;
  gsize length = 0;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  if (!g_file_get_contents (path, &contents, &length, error))
    return NULL;
  dir = g_path_get_dirname (path);
  return _fg_experiment_parse (contents, length, path, dir, reg, error);
}

/**
 * fg_experiment_load_data:
 * @data: the text of an experiment file
 * @length: its length, or -1 when NUL-terminated
 * @display_name: (nullable): the name used in messages and for the default title and output
 *   directory, e.g. "x.exp"
 * @base_dir: (nullable): the directory relative paths are resolved against (default: the
 *   current directory)
 * @reg: (nullable): as for fg_experiment_load ()
 * @error: return location for a #GError
 *
 * Like fg_experiment_load () for text in memory.
 *
 * Returns: (transfer full) (nullable): the experiment, or %NULL on error.
 */
FgExperiment *
fg_experiment_load_data (const char *data, gssize length, const char *display_name,
                         const char *base_dir, FgRegistry *reg, GError **error)
{
  g_return_val_if_fail (data != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  return _fg_experiment_parse (data, length < 0 ? strlen (data) : (gsize) length, display_name,
                               base_dir, reg, error);
}

/**
 * fg_experiment_free:
 * @exp: (nullable): an experiment
 */
void
fg_experiment_free (FgExperiment *exp)
{
  if (exp == NULL)
    return;
  g_clear_pointer (&exp->cache, _fg_dataset_cache_free);
  g_clear_pointer (&exp->cells, g_ptr_array_unref);
  g_clear_pointer (&exp->methods, g_ptr_array_unref);
  g_clear_pointer (&exp->datasets, g_ptr_array_unref);
  g_clear_pointer (&exp->references, g_ptr_array_unref);
  g_strfreev (exp->image_figures);
  g_clear_pointer (&exp->seeds, g_array_unref);
  g_clear_pointer (&exp->figures, fg_figure_options_free);
  _fg_analysis_options_clear (&exp->analysis);
  g_clear_pointer (&exp->table_fields, g_array_unref);
  g_free (exp->title);
  g_free (exp->path);
  g_free (exp->base_dir);
  g_free (exp->contents);
  g_free (exp);
}

/**
 * fg_experiment_get_title:
 * @exp: an experiment
 *
 * Returns: the `title` of [experiment], by default the file's name without ".exp".
 */
const char *
fg_experiment_get_title (const FgExperiment *exp)
{
  g_return_val_if_fail (exp != NULL, NULL);
  return exp->title;
}

/**
 * fg_experiment_get_n_cells:
 * @exp: an experiment
 *
 * Returns: the number of cells: datasets × methods (where they apply) × grid points × seeds.
 */
guint
fg_experiment_get_n_cells (const FgExperiment *exp)
{
  g_return_val_if_fail (exp != NULL, 0);
  return exp->cells->len;
}

/**
 * fg_experiment_get_cell:
 * @exp: an experiment
 * @i: a cell index, below fg_experiment_get_n_cells ()
 * @info: (out caller-allocates): the cell; its strings belong to @exp
 *
 * Describes one cell, e.g. to list what a run would do or to find a stored result.
 *
 * Returns: %FALSE when @i is out of range.
 */
gboolean
fg_experiment_get_cell (const FgExperiment *exp, guint i, FgCellInfo *info)
{
  const FgCell *c;
  g_return_val_if_fail (exp != NULL && info != NULL, FALSE);
  if (i >= exp->cells->len)
    return FALSE;
  c = g_ptr_array_index (exp->cells, i);
  memset (info, 0, sizeof *info);
  info->key = c->key;
  info->dataset = c->dataset->name;
  info->method = c->method->name;
  info->grid = c->grid;
  info->point = c->point;
  info->seed = c->seed;
  return TRUE;
}

/**
 * fg_experiment_default_out_dir:
 * @exp: an experiment
 *
 * Returns: (transfer full): "<directory of the file>/<its name without .exp>.out".
 */
char *
fg_experiment_default_out_dir (const FgExperiment *exp)
{
  g_autofree char *base = NULL;
  g_autofree char *stem = NULL;
  g_autofree char *name = NULL;
  g_return_val_if_fail (exp != NULL, NULL);
  base = g_path_get_basename (exp->path);
  stem = strip_exp_suffix (base);
  name = g_strconcat (stem, ".out", NULL);
  return g_build_filename (exp->base_dir, name, NULL);
}
