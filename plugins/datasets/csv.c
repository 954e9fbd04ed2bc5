/* SPDX-License-Identifier: MIT */
/* flowgmm — dataset plugin "csv": delimited text files parsed with libcsv, streamed.
 *
 * One file, or one per part (train, validation, test); plain or gzip-compressed.  Each row is an
 * example: a label column (by name or index) and feature columns (all others, or a selection).
 * Labels are class indices, or class names mapped to indices (the mapping is reported in the
 * data set's note).  Missing values, non-numeric cells and non-finite numbers are errors naming
 * file:row:column, or dropped/imputed when the experiment says so.
 *
 * Memory: a first pass counts the line ends (a bound on the rows, with the row width known after
 * the first record), then the second pass parses straight into the final float tensor, so a
 * large file never exists twice in memory.  A gzip file is decompressed twice for this.
 *
 * Numbers: a fast exact path (Clinger's: up to 19 significant digits and |exponent| <= 22, with
 * a check that the result is not within a few double ulps of a float32 rounding boundary) gives
 * exactly (float) g_ascii_strtod (cell); anything else goes through g_ascii_strtod itself.
 */
#include "config.h"

#include <csv.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets-private.h"

static const FgParamSpec csv_params[] = {
  FG_PARAM_SPEC_REQUIRED_PATH ("path",
                               "CSV file of the training part (or of the whole data set, split "
                               "by the runner); plain or gzip-compressed"),
  FG_PARAM_SPEC_PATH ("validation_path", NULL,
                      "CSV file of a separate validation part (same columns)"),
  FG_PARAM_SPEC_PATH ("test_path", NULL,
                      "CSV file of a separate test part (same columns); without it, set the split "
                      "key test = N"),
  FG_PARAM_SPEC_STRING ("delimiter", ",",
                        "field separator: one character, 'tab', or 'whitespace' (runs of spaces "
                        "and tabs, leading ones ignored)"),
  FG_PARAM_SPEC_CHOICE ("header", "auto", "auto|names|none|sklearn",
                        "first row: column names (names), data (none), guessed (auto: names when "
                        "a cell is not a number), or scikit-learn's 'n_samples,n_features,"
                        "classname0,...' (sklearn)"),
  FG_PARAM_SPEC_INT ("skip_rows", "0", 0, INFINITY, "lines to skip before the header or data"),
  FG_PARAM_SPEC_STRING ("label", "-1",
                        "label column: a name from the header, or a 0-based index (negative "
                        "counts from the end: -1 is the last column)"),
  FG_PARAM_SPEC_STRING ("columns", NULL,
                        "feature columns, comma-separated names, 0-based indices or ranges "
                        "'a-b' (in the order given); default: every column but the label"),
  FG_PARAM_SPEC_CHOICE ("labels", "auto", "auto|index|names",
                        "label cells are class indices (index: 0..K-1, -1 = unknown), class "
                        "names mapped to indices in sorted order (names), or index when every "
                        "label is an integer (auto)"),
  FG_PARAM_SPEC_STRING ("unlabeled_value", "-1",
                        "a label cell equal to this marks an example without a label"),
  FG_PARAM_SPEC_STRING ("class_names", NULL,
                        "class names separated by commas: names for indices 0, 1, ... (index "
                        "labels), or the order of the classes (name labels)"),
  FG_PARAM_SPEC_CHOICE ("missing", "error", "error|drop|mean|zero",
                        "empty, NA, non-numeric and non-finite feature cells: an error naming "
                        "file:row:column, drop the row, or impute the training file's column "
                        "mean or zero"),
  FG_PARAM_SPEC_INT ("max_rows", "0", 0, INFINITY,
                     "read at most this many data rows of each file (0: all)"),
  FG_PARAM_SPEC_STRING ("image_shape", NULL,
                        "C,H,W: the features are images of this shape (e.g. 1,8,8 for digits)"),
  FG_PARAM_SPEC_END,
};

typedef enum { HEADER_AUTO, HEADER_NAMES, HEADER_NONE, HEADER_SKLEARN } HeaderMode;
typedef enum { LABELS_AUTO, LABELS_INDEX, LABELS_NAMES } LabelMode;
typedef enum { MISSING_ERROR, MISSING_DROP, MISSING_MEAN, MISSING_ZERO } MissingMode;

/* ---- Numbers ------------------------------------------------------------------------------- */

typedef enum {
  NUM_OK,
  NUM_EMPTY, /* empty cell */
  NUM_NAN,   /* NaN, NA, N/A, null, ? */
  NUM_INF,   /* inf, -Infinity */
  NUM_RANGE, /* finite but outside the float32 range */
  NUM_TEXT,  /* not a number */
} NumStatus;

static const double pow10_exact[] = {
  1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static gboolean
is_missing_word (const char *s)
{
  static const char *const words[] = { "NA", "N/A", "na", "n/a", "null", "NULL", "None", "?",
                                       NULL };
  for (guint i = 0; words[i] != NULL; i++)
    if (strcmp (s, words[i]) == 0)
      return TRUE;
  return FALSE;
}

/* The longest field accepted: longer ones are mistakes (an unclosed quote, a binary file). */
#define CSV_MAX_FIELD (1 << 20)

static NumStatus
parse_float_slow (const char *p, const char *end, float *out)
{
  char stack[128];
  g_autofree char *heap = NULL;
  gsize n = (gsize) (end - p);
  char *s, *e;
  double v;

  /* A NUL byte would end the number early for strtod: "1\0junk" is not a number. */
  if (memchr (p, '\0', n) != NULL)
    return NUM_TEXT;
  if (n < sizeof stack)
    {
      memcpy (stack, p, n);
      stack[n] = '\0';
      s = stack;
    }
  else
    s = heap = g_strndup (p, n);
  v = g_ascii_strtod (s, &e);
  if (e == s || *e != '\0')
    return is_missing_word (s) ? NUM_NAN : NUM_TEXT;
  if (isnan (v))
    return NUM_NAN;
  if (isinf (v))
    return NUM_INF;
  if (isinf ((float) v))
    return NUM_RANGE;
  *out = (float) v;
  return NUM_OK;
}

/* Parse a cell as (float) g_ascii_strtod (cell) would, surrounding spaces allowed. */
static inline NumStatus
parse_float (const char *s, gsize len, float *out)
{
  const char *p = s, *end = s + len, *start;
  guint64 m = 0;
  int exp10 = 0;
  gboolean neg = FALSE, any = FALSE, inexact = FALSE;
  double v;
  float f;

  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  if (p == end)
    return NUM_EMPTY;
  start = p;
  if (*p == '-' || *p == '+')
    neg = *p++ == '-';
  for (; p < end; p++)
    {
      unsigned d = (unsigned) (guchar) *p - '0';
      if (d > 9)
        break;
      any = TRUE;
      if (m < G_GUINT64_CONSTANT (1000000000000000000))
        m = m * 10 + d;
      else
        {
          exp10++;
          inexact = TRUE;
        }
    }
  if (p < end && *p == '.')
    for (p++; p < end; p++)
      {
        unsigned d = (unsigned) (guchar) *p - '0';
        if (d > 9)
          break;
        any = TRUE;
        if (m < G_GUINT64_CONSTANT (1000000000000000000))
          {
            m = m * 10 + d;
            exp10--;
          }
        else
          inexact = TRUE;
      }
  if (!any)
    return parse_float_slow (start, end, out);
  if (p < end && (*p == 'e' || *p == 'E'))
    {
      gboolean eneg = FALSE;
      int e = 0;
      p++;
      if (p < end && (*p == '-' || *p == '+'))
        eneg = *p++ == '-';
      if (p == end || (unsigned) (guchar) *p - '0' > 9)
        return parse_float_slow (start, end, out);
      for (; p < end && (unsigned) (guchar) *p - '0' <= 9; p++)
        if (e < 100000)
          e = e * 10 + (*p - '0');
      exp10 += eneg ? -e : e;
    }
  if (p != end || inexact || exp10 < -22 || exp10 > 22)
    return parse_float_slow (start, end, out);
  if (m == 0)
    {
      *out = neg ? -0.0f : 0.0f;
      return NUM_OK;
    }
  v = (double) m;
  v = exp10 < 0 ? v / pow10_exact[-exp10] : v * pow10_exact[exp10];
  if (m > (G_GUINT64_CONSTANT (1) << 53))
    {
      /* (double) m rounded: v is within a few ulps of the exact value.  It rounds to the same
       * float as the correctly rounded double unless it lies near a float32 rounding boundary
       * (low 29 bits of the double's fraction = 0x10000000) or outside the normal range. */
      guint64 bits, low;
      memcpy (&bits, &v, sizeof bits);
      low = bits & G_GUINT64_CONSTANT (0x1FFFFFFF);
      if ((low > 0x10000000 - 64 && low < 0x10000000 + 64) || v < 2.4e-38 || v > 3.0e38)
        return parse_float_slow (start, end, out);
    }
  f = (float) v;
  if (isinf (f))
    return NUM_RANGE;
  *out = neg ? -f : f;
  return NUM_OK;
}

/* Integral value of a label cell ("3", "-1", "2.0"). */
static gboolean
parse_label_int (const char *s, gint64 *out)
{
  char *e;
  double v;
  gint64 i;
  if (g_ascii_string_to_signed (s, 10, G_MININT64, G_MAXINT64, &i, NULL))
    {
      *out = i;
      return TRUE;
    }
  v = g_ascii_strtod (s, &e);
  if (e == s || *e != '\0' || !isfinite (v) || v != floor (v) || fabs (v) > 1e15)
    return FALSE;
  *out = (gint64) v;
  return TRUE;
}

/* ---- Labels shared by every file of the data set ------------------------------------------- */

typedef struct {
  GHashTable *ids;   /* name -> id + 1 */
  GPtrArray  *names; /* id -> name */
  GPtrArray  *where; /* id -> "file:row" of its first use */
} LabelTable;

static void
label_table_init (LabelTable *t)
{
  t->ids = g_hash_table_new (g_str_hash, g_str_equal);
  t->names = g_ptr_array_new_with_free_func (g_free);
  t->where = g_ptr_array_new_with_free_func (g_free);
}

static void
label_table_clear (LabelTable *t)
{
  g_clear_pointer (&t->ids, g_hash_table_unref);
  g_clear_pointer (&t->names, g_ptr_array_unref);
  g_clear_pointer (&t->where, g_ptr_array_unref);
}

static gint32
label_table_intern (LabelTable *t, const char *name, gsize len, const char *path, gsize line)
{
  gpointer v = g_hash_table_lookup (t->ids, name);
  char *copy;
  if (v != NULL)
    return (gint32) (GPOINTER_TO_UINT (v) - 1);
  copy = g_strndup (name, len);
  g_ptr_array_add (t->names, copy);
  g_ptr_array_add (t->where, g_strdup_printf ("%s:%" G_GSIZE_FORMAT, path, line));
  g_hash_table_insert (t->ids, copy, GUINT_TO_POINTER (t->names->len));
  return (gint32) t->names->len - 1;
}

/* ---- One file -------------------------------------------------------------------------------- */

#define SLOT_SKIP (-1)
#define SLOT_LABEL (-2)

typedef struct {
  /* configuration */
  const FgParams *params;
  const char *path;
  HeaderMode header;
  MissingMode missing;
  gboolean whitespace;
  gsize skip_rows, max_rows;
  const char *unlabeled;
  LabelTable *labels;
  gsize want_features; /* 0 for the first file; later files must match */

  /* layout, from the first record */
  gboolean layout_done;
  GPtrArray *first;      /* the first record's cells (NULL entries: empty) */
  char **names;          /* header names or NULL */
  gsize n_fields;
  gint *slot;            /* per field: feature index, SLOT_LABEL or SLOT_SKIP */
  gsize n_features;
  gsize label_field;
  gsize sklearn_samples; /* announced by a sklearn header (0: none) */
  char **sklearn_names;

  /* the record being read */
  gsize line;       /* physical line of the current record, 1-based */
  int last_term;    /* terminator of the previous record */
  gsize field;
  gboolean row_bad; /* a missing or bad feature cell (drop mode) */
  float *row;
  GString *label;
  gboolean label_seen;

  /* output */
  gsize bound;      /* rows the tensor can hold */
  FgTensor *x;
  gint32 *y;
  gsize n_rows, n_dropped;
  gboolean any_missing;
  gboolean stop;
  GError *error;
} CsvFile;

static void
csv_file_clear (CsvFile *f)
{
  g_clear_pointer (&f->first, g_ptr_array_unref);
  g_clear_pointer (&f->names, g_strfreev);
  g_clear_pointer (&f->sklearn_names, g_strfreev);
  g_clear_pointer (&f->slot, g_free);
  g_clear_pointer (&f->row, g_free);
  if (f->label)
    g_string_free (f->label, TRUE);
  f->label = NULL;
  g_clear_pointer (&f->x, fg_tensor_free);
  g_clear_pointer (&f->y, g_free);
  g_clear_error (&f->error);
}

/* Record the first error as "PATH:LINE: message", or "PATH:LINE:COLUMN: message" when column
 * (1-based) is not 0, and stop reading. */
static void G_GNUC_PRINTF (4, 5)
file_error_at (CsvFile *f, gint code, gsize column, const char *format, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  if (f->error != NULL)
    return;
  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  if (column > 0)
    f->error = g_error_new (FG_ERROR, code, "%s:%" G_GSIZE_FORMAT ":%" G_GSIZE_FORMAT ": %s",
                            f->path, f->line, column, msg);
  else
    f->error = g_error_new (FG_ERROR, code, "%s:%" G_GSIZE_FORMAT ": %s", f->path, f->line, msg);
  f->stop = TRUE;
}

#define file_error(f, code, ...) file_error_at (f, code, 0, __VA_ARGS__)

/* " (column 'name')" or "" */
static char *
column_label (const CsvFile *f, gsize field)
{
  if (f->names != NULL && field < g_strv_length (f->names))
    {
      g_autofree char *name = _fg_ds_printable (f->names[field], -1, 60);
      return g_strdup_printf (" (column '%s')", name);
    }
  return g_strdup ("");
}

static const char *
status_hint (const CsvFile *f)
{
  return f->missing == MISSING_ERROR ? "; set missing = drop, mean or zero to accept such cells"
                                     : "";
}

/* A feature cell that is not a finite float32. */
static void
bad_cell (CsvFile *f, gsize field, NumStatus st, const char *s, gsize len)
{
  g_autofree char *col = column_label (f, field);
  g_autofree char *shown = _fg_ds_printable (s ? s : "", (gssize) len, 40);
  const char *what = st == NUM_EMPTY ? "missing value (empty cell)"
                     : st == NUM_NAN ? "missing value"
                     : st == NUM_INF ? "non-finite value"
                     : st == NUM_RANGE ? "value outside the float32 range"
                                       : "non-numeric cell";
  if (st == NUM_EMPTY)
    file_error_at (f, FG_ERROR_DATA, field + 1, "%s%s%s", what, col, status_hint (f));
  else
    file_error_at (f, FG_ERROR_DATA, field + 1, "%s '%s'%s%s", what, shown, col,
                   status_hint (f));
}

/* Find a header name; -1 when absent. */
static gssize
find_name (const CsvFile *f, const char *name)
{
  for (gsize i = 0; f->names != NULL && f->names[i] != NULL; i++)
    if (strcmp (f->names[i], name) == 0)
      return (gssize) i;
  return -1;
}

/* A column given by name or 0-based index (negative from the end). */
static gboolean
resolve_column (CsvFile *f, const char *key, const char *item, gsize *out)
{
  gint64 v;
  gssize byname = find_name (f, item);
  if (byname >= 0)
    {
      *out = (gsize) byname;
      return TRUE;
    }
  if (g_ascii_string_to_signed (item, 10, -(gint64) f->n_fields, (gint64) f->n_fields - 1, &v,
                                NULL))
    {
      *out = (gsize) (v < 0 ? (gint64) f->n_fields + v : v);
      return TRUE;
    }
  if (g_ascii_string_to_signed (item, 10, G_MININT64, G_MAXINT64, &v, NULL))
    file_error (f, FG_ERROR_INVALID_PARAM,
                "key '%s': column %s does not exist: the file has %" G_GSIZE_FORMAT
                " columns (0-based indices 0..%" G_GSIZE_FORMAT ", or -%" G_GSIZE_FORMAT "..-1)",
                key, item, f->n_fields, f->n_fields - 1, f->n_fields);
  else if (f->names == NULL)
    file_error (f, FG_ERROR_INVALID_PARAM,
                "key '%s': column '%s' is given by name but the file has no header row%s; give "
                "a 0-based index",
                key, item,
                f->header == HEADER_AUTO ? " (its first row looks like data)" : "");
  else
    {
      g_autofree char *known = g_strjoinv (", ", f->names);
      file_error (f, FG_ERROR_INVALID_PARAM, "key '%s': no column named '%s' (columns: %s)", key,
                  item, known);
    }
  return FALSE;
}

/* Work out the columns from the first record (header or data). */
static gboolean
setup_layout (CsvFile *f, gboolean *first_is_data)
{
  const char *label_key = fg_params_get_string (f->params, "label");
  const char *columns = fg_params_get_string (f->params, "columns");
  gsize n_first = f->first->len;
  gboolean header = FALSE;

  *first_is_data = FALSE;
  if (f->header == HEADER_SKLEARN)
    {
      guint64 ns, nf;
      const char *c0 = n_first > 0 ? g_ptr_array_index (f->first, 0) : NULL;
      const char *c1 = n_first > 1 ? g_ptr_array_index (f->first, 1) : NULL;
      if (c0 == NULL || c1 == NULL
          || !g_ascii_string_to_unsigned (c0, 10, 1, G_MAXUINT32, &ns, NULL)
          || !g_ascii_string_to_unsigned (c1, 10, 1, G_MAXUINT32, &nf, NULL))
        {
          file_error (f, FG_ERROR_DATA,
                      "not a scikit-learn header: expected 'n_samples,n_features,classname0,...' "
                      "(header = sklearn)");
          return FALSE;
        }
      f->sklearn_samples = ns;
      f->n_fields = (gsize) nf + 1;
      if (n_first > 2)
        {
          f->sklearn_names = g_new0 (char *, n_first - 1);
          for (gsize i = 2; i < n_first; i++)
            {
              const char *s = g_ptr_array_index (f->first, i);
              f->sklearn_names[i - 2] = _fg_ds_printable (s ? s : "", -1, G_MAXSIZE);
            }
        }
    }
  else
    {
      f->n_fields = n_first;
      if (f->header == HEADER_NAMES)
        header = TRUE;
      else if (f->header == HEADER_AUTO)
        for (gsize i = 0; i < n_first && !header; i++)
          {
            const char *s = g_ptr_array_index (f->first, i);
            float v;
            header = s != NULL && parse_float (s, strlen (s), &v) == NUM_TEXT;
          }
      if (header)
        {
          f->names = g_new0 (char *, n_first + 1);
          for (gsize i = 0; i < n_first; i++)
            {
              const char *s = g_ptr_array_index (f->first, i);
              f->names[i] = _fg_ds_printable (s ? s : "", -1, G_MAXSIZE);
            }
        }
      else
        *first_is_data = TRUE;
    }
  if (f->n_fields < 2)
    {
      file_error (f, FG_ERROR_DATA,
                  "the first row has %" G_GSIZE_FORMAT " column%s: a label and at least one "
                  "feature are needed (is the delimiter right?)",
                  f->n_fields, f->n_fields == 1 ? "" : "s");
      return FALSE;
    }

  if (!resolve_column (f, "label", label_key, &f->label_field))
    return FALSE;
  f->slot = g_new (gint, f->n_fields);
  for (gsize i = 0; i < f->n_fields; i++)
    f->slot[i] = SLOT_SKIP;
  f->slot[f->label_field] = SLOT_LABEL;
  if (columns == NULL || *columns == '\0')
    {
      for (gsize i = 0; i < f->n_fields; i++)
        if (i != f->label_field)
          f->slot[i] = (gint) f->n_features++;
    }
  else
    {
      g_auto (GStrv) items = g_strsplit (columns, ",", -1);
      for (guint k = 0; items[k] != NULL; k++)
        {
          gsize lo, hi;
          char *item = g_strstrip (items[k]);
          char *dash = strchr (item + 1, '-');
          if (*item == '\0')
            continue;
          if (find_name (f, item) < 0 && dash != NULL && dash[1] != '\0')
            {
              /* a range a-b of 0-based indices */
              guint64 a, b;
              *dash = '\0';
              if (!g_ascii_string_to_unsigned (item, 10, 0, f->n_fields - 1, &a, NULL)
                  || !g_ascii_string_to_unsigned (dash + 1, 10, 0, f->n_fields - 1, &b, NULL)
                  || a > b)
                {
                  file_error (f, FG_ERROR_INVALID_PARAM,
                              "key 'columns': '%s-%s' is not a range of column indices within "
                              "0..%" G_GSIZE_FORMAT,
                              item, dash + 1, f->n_fields - 1);
                  return FALSE;
                }
              lo = (gsize) a;
              hi = (gsize) b;
            }
          else
            {
              if (!resolve_column (f, "columns", item, &lo))
                return FALSE;
              hi = lo;
            }
          for (gsize i = lo; i <= hi; i++)
            {
              if (f->slot[i] != SLOT_SKIP)
                {
                  file_error (f, FG_ERROR_INVALID_PARAM,
                              "key 'columns': column %" G_GSIZE_FORMAT " is %s", i,
                              f->slot[i] == SLOT_LABEL ? "the label column" : "listed twice");
                  return FALSE;
                }
              f->slot[i] = (gint) f->n_features++;
            }
        }
      if (f->n_features == 0)
        {
          file_error (f, FG_ERROR_INVALID_PARAM, "key 'columns' selects no column");
          return FALSE;
        }
    }
  if (f->want_features > 0 && f->n_features != f->want_features)
    {
      file_error (f, FG_ERROR_DATA,
                  "%" G_GSIZE_FORMAT " feature columns, but the training file has %" G_GSIZE_FORMAT,
                  f->n_features, f->want_features);
      return FALSE;
    }
  f->row = g_new0 (float, f->n_features);
  f->label = g_string_sized_new (32);
  f->layout_done = TRUE;
  return TRUE;
}

static void
allocate (CsvFile *f)
{
  gsize rows = f->bound > f->line ? f->bound - f->line + 1 : 1;
  g_autoptr (GError) local = NULL;
  if (f->max_rows > 0)
    rows = MIN (rows, f->max_rows);
  f->x = _fg_ds_tensor_new (rows, f->n_features, f->path, &local);
  if (f->x == NULL)
    {
      file_error (f, FG_ERROR_MEMORY, "%s", local->message);
      return;
    }
  f->y = g_new (gint32, rows);
  f->bound = rows;
}

/* Store one feature cell of the current row. */
static inline void
put_cell (CsvFile *f, gsize field, const char *s, gsize len)
{
  gint slot = f->slot[field];
  if (slot >= 0)
    {
      NumStatus st = s == NULL ? NUM_EMPTY : parse_float (s, len, &f->row[slot]);
      if (G_UNLIKELY (st != NUM_OK))
        {
          if (f->missing == MISSING_ERROR)
            bad_cell (f, field, st, s, len);
          else
            {
              f->row[slot] = NAN;
              f->row_bad = TRUE;
            }
        }
    }
  else if (slot == SLOT_LABEL)
    {
      /* the label becomes a C string (a class name): a NUL would silently cut it short */
      if (s != NULL && memchr (s, '\0', len) != NULL)
        {
          file_error_at (f, FG_ERROR_DATA, field + 1, "a NUL byte in the label cell");
          return;
        }
      g_string_truncate (f->label, 0);
      if (s != NULL)
        g_string_append_len (f->label, s, (gssize) len);
      g_strstrip (f->label->str);
      f->label->len = strlen (f->label->str);
      for (gsize i = 0; i < f->label->len; i++)
        if ((guchar) f->label->str[i] < 0x20 || (guchar) f->label->str[i] >= 0x7f)
          {
            /* class names end up in notes and result files: keep them valid UTF-8 */
            g_autofree char *clean = _fg_ds_printable (f->label->str, (gssize) f->label->len,
                                                       G_MAXSIZE);
            g_string_assign (f->label, clean);
            break;
          }
      f->label_seen = TRUE;
    }
}

static void
end_data_row (CsvFile *f)
{
  gint32 id;
  if (f->field != f->n_fields)
    {
      file_error (f, FG_ERROR_DATA,
                  "%" G_GSIZE_FORMAT " fields, but %s has %" G_GSIZE_FORMAT
                  " (a ragged row; is a delimiter or quote out of place?)",
                  f->field,
                  f->header == HEADER_SKLEARN ? "the header announces" :
                  f->names ? "the header" : "the first row",
                  f->n_fields);
      return;
    }
  if (f->label->len == 0 && strcmp (f->unlabeled, "") != 0)
    {
      if (f->missing == MISSING_DROP)
        {
          f->n_dropped++;
          return;
        }
      file_error_at (f, FG_ERROR_DATA, f->label_field + 1, "empty label cell%s",
                     f->missing == MISSING_ERROR ? "" : " (only feature cells are imputed)");
      return;
    }
  if (f->row_bad && f->missing == MISSING_DROP)
    {
      f->n_dropped++;
      return;
    }
  if (f->row_bad)
    f->any_missing = TRUE;
  if (strcmp (f->label->str, f->unlabeled) == 0)
    id = -1;
  else
    id = label_table_intern (f->labels, f->label->str, f->label->len, f->path, f->line);
  if (f->n_rows >= f->bound)
    {
      file_error (f, FG_ERROR_IO, "more rows than the first pass counted (did the file change?)");
      return;
    }
  memcpy (fg_tensor_row (f->x, f->n_rows), f->row, f->n_features * sizeof (float));
  f->y[f->n_rows++] = id;
  if (f->max_rows > 0 && f->n_rows == f->max_rows)
    f->stop = TRUE;
}

static void
on_field (void *s, size_t len, void *data)
{
  CsvFile *f = data;
  if (f->stop)
    return;
  if (G_UNLIKELY (len > CSV_MAX_FIELD))
    {
      file_error_at (f, FG_ERROR_DATA, f->field + 1,
                     "a field of %" G_GSIZE_FORMAT " bytes; fields are at most %d bytes (is a "
                     "quote or a line end missing?)", (gsize) len, CSV_MAX_FIELD);
      return;
    }
  if (f->whitespace && s == NULL)
    return;
  if (f->line <= f->skip_rows)
    return;
  if (G_UNLIKELY (!f->layout_done))
    {
      g_ptr_array_add (f->first, s ? g_strndup (s, len) : NULL);
      if (f->first->len > 1000000)
        file_error (f, FG_ERROR_DATA, "more than a million fields in the first row");
      f->field++;
      return;
    }
  if (f->field < f->n_fields)
    put_cell (f, f->field, s, len);
  f->field++;
}

static void
on_record (int c, void *data)
{
  CsvFile *f = data;
  if (f->stop)
    return;
  if (f->field == 0)
    {
      /* An empty line, or the LF of a CR LF pair (CSV_REPALL_NL reports both). */
      if (!(c == '\n' && f->last_term == '\r'))
        f->line++;
      f->last_term = c;
      return;
    }
  f->last_term = c;
  if (f->line > f->skip_rows)
    {
      if (!f->layout_done)
        {
          gboolean first_is_data;
          if (setup_layout (f, &first_is_data))
            {
              allocate (f);
              if (first_is_data && !f->stop)
                {
                  /* replay the stored cells as the first data row */
                  gsize n = f->first->len;
                  f->field = 0;
                  f->row_bad = FALSE;
                  g_string_truncate (f->label, 0);
                  for (gsize i = 0; i < n && !f->stop; i++, f->field++)
                    if (i < f->n_fields)
                      {
                        const char *s = g_ptr_array_index (f->first, i);
                        put_cell (f, i, s, s ? strlen (s) : 0);
                      }
                  f->field = n;
                  if (!f->stop)
                    end_data_row (f);
                }
            }
        }
      else
        end_data_row (f);
    }
  f->line++;
  f->field = 0;
  f->row_bad = FALSE;
  if (f->label)
    g_string_truncate (f->label, 0);
}

/* Upper bound on the records: line ends (CR, LF or CR LF) + 1. */
static gboolean
count_lines (const char *path, gsize *lines, GError **error)
{
  g_autoptr (GInputStream) in = fg_file_open_stream (path, error);
  g_autofree char *buf = NULL;
  const gsize size = 1 << 20;
  FgDsReader r;
  gsize n = 0;
  char prev = 0;

  if (in == NULL)
    return FALSE;
  _fg_ds_reader_init_stream (&r, in, path);
  buf = g_malloc (size);
  for (;;)
    {
      gssize got = _fg_ds_reader_read_some (&r, buf, size, error);
      const char *p, *end;
      if (got < 0)
        return FALSE;
      if (got == 0)
        break;
      end = buf + got;
      if (memchr (buf, '\r', (gsize) got) == NULL)
        for (p = buf; (p = memchr (p, '\n', (gsize) (end - p))) != NULL; p++)
          n++;
      else
        for (p = buf; p < end; p++)
          {
            n += *p == '\r' || (*p == '\n' && (p > buf ? p[-1] : prev) != '\r');
          }
      prev = end[-1];
    }
  *lines = n + 1;
  return TRUE;
}

static int
is_space_tab (unsigned char c)
{
  return c == '\t';
}

static int
is_space_space (unsigned char c)
{
  return c == ' ';
}

static int
is_space_both (unsigned char c)
{
  return c == ' ' || c == '\t';
}

static gboolean
parse_delimiter (const char *text, unsigned char *delim, gboolean *whitespace, GError **error)
{
  *whitespace = FALSE;
  if (g_strcmp0 (text, "tab") == 0 || g_strcmp0 (text, "\\t") == 0 || g_strcmp0 (text, "\t") == 0)
    *delim = '\t';
  else if (g_strcmp0 (text, "whitespace") == 0)
    {
      *delim = ' ';
      *whitespace = TRUE;
    }
  else if (text != NULL && strlen (text) == 1 && text[0] != '"' && text[0] != '\n'
           && text[0] != '\r')
    *delim = (unsigned char) text[0];
  else
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "key 'delimiter' = '%s': expected one character (not a quote or line end), "
                   "'tab' or 'whitespace'",
                   text ? text : "");
      return FALSE;
    }
  return TRUE;
}

/* Parse one file into f->x / f->y.  f is set up by the caller. */
static gboolean
read_file (CsvFile *f, GError **error)
{
  g_autoptr (GInputStream) in = NULL;
  g_autofree char *buf = NULL;
  const gsize size = 1 << 20;
  struct csv_parser parser;
  unsigned char delim;
  gboolean whitespace;
  FgDsReader r;
  guint64 at = 0;
  gboolean first_chunk = TRUE;

  if (!parse_delimiter (fg_params_get_string (f->params, "delimiter"), &delim, &whitespace, error))
    return FALSE;
  f->whitespace = whitespace;
  if (!count_lines (f->path, &f->bound, error))
    return FALSE;
  in = fg_file_open_stream (f->path, error);
  if (in == NULL)
    return FALSE;
  _fg_ds_reader_init_stream (&r, in, f->path);
  if (csv_init (&parser, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL | CSV_APPEND_NULL
                             | CSV_EMPTY_IS_NULL)
      != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY, "%s: cannot set up the CSV parser", f->path);
      return FALSE;
    }
  /* libcsv grows a field's buffer by its block size (128 bytes by default): one long field
   * would cost a quadratic number of copies.  Grow by a megabyte, and cap fields below. */
  csv_set_blk_size (&parser, 1 << 20);
  csv_set_delim (&parser, delim);
  csv_set_space_func (&parser, delim == '\t' ? is_space_space
                               : delim == ' ' ? is_space_tab
                                              : is_space_both);
  f->first = g_ptr_array_new_with_free_func (g_free);
  f->line = 1;
  buf = g_malloc (size);
  while (!f->stop)
    {
      gssize got = _fg_ds_reader_read_some (&r, buf, size, error);
      const char *p = buf;
      gsize n, done;
      if (got < 0)
        {
          csv_free (&parser);
          return FALSE;
        }
      if (got == 0)
        break;
      n = (gsize) got;
      if (first_chunk && n >= 3 && memcmp (buf, "\xEF\xBB\xBF", 3) == 0)
        {
          p += 3; /* UTF-8 byte order mark */
          n -= 3;
          at += 3;
        }
      first_chunk = FALSE;
      if (whitespace)
        for (gsize i = 0; i < n; i++)
          if (buf[p - buf + i] == '\t')
            buf[p - buf + i] = ' ';
      done = csv_parse (&parser, p, n, on_field, on_record, f);
      if (f->error == NULL && done != n)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "%s:%" G_GSIZE_FORMAT ": malformed CSV at byte offset %" G_GUINT64_FORMAT
                       ": %s (a quote inside an unquoted field, or text after a closing quote)",
                       f->path, f->line, at + done, csv_strerror (csv_error (&parser)));
          csv_free (&parser);
          return FALSE;
        }
      at += n;
    }
  if (!f->stop && f->error == NULL
      && csv_fini (&parser, on_field, on_record, f) != 0 && f->error == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s:%" G_GSIZE_FORMAT ": malformed CSV at the end of the file: %s (a quoted "
                   "field is not closed)",
                   f->path, f->line, csv_strerror (csv_error (&parser)));
      csv_free (&parser);
      return FALSE;
    }
  csv_free (&parser);
  if (f->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&f->error));
      return FALSE;
    }
  if (!f->layout_done)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: empty file (no rows%s)", f->path,
                   f->skip_rows ? " after skip_rows" : "");
      return FALSE;
    }
  if (f->n_rows == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: no data rows%s", f->path,
                   f->n_dropped ? " (every row had a missing value and was dropped)" : "");
      return FALSE;
    }
  if (f->sklearn_samples > 0 && f->max_rows == 0 && f->n_dropped == 0
      && f->n_rows != f->sklearn_samples)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: the header announces %" G_GSIZE_FORMAT " samples but the file has %"
                   G_GSIZE_FORMAT " data rows (truncated?)",
                   f->path, f->sklearn_samples, f->n_rows);
      return FALSE;
    }
  /* The tensor was sized by the line count; describe only the rows read. */
  if (f->n_rows < f->x->shape[0])
    {
      if (f->n_rows < f->x->shape[0] / 2)
        {
          FgTensor *exact = fg_tensor_new_2d (f->n_rows, f->n_features);
          memcpy (exact->data, f->x->data, f->n_rows * f->n_features * sizeof (float));
          fg_tensor_free (f->x);
          f->x = exact;
        }
      else
        f->x->shape[0] = f->n_rows;
    }
  if (f->n_dropped > 0)
    g_debug ("%s: dropped %" G_GSIZE_FORMAT " rows with missing values", f->path, f->n_dropped);
  return TRUE;
}

/* Replace the NaN markers of missing cells with the column means of `means`. */
static void
impute (FgTensor *x, const double *fill)
{
  gsize cols = fg_tensor_cols (x);
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    {
      float *row = fg_tensor_row (x, i);
      for (gsize j = 0; j < cols; j++)
        if (isnan (row[j]))
          row[j] = (float) fill[j];
    }
}

static gboolean
column_means (const FgTensor *x, const char *path, double *means, GError **error)
{
  gsize cols = fg_tensor_cols (x);
  g_autofree gsize *count = g_new0 (gsize, cols);
  for (gsize j = 0; j < cols; j++)
    means[j] = 0.0;
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    {
      const float *row = fg_tensor_row (x, i);
      for (gsize j = 0; j < cols; j++)
        if (!isnan (row[j]))
          {
            means[j] += row[j];
            count[j]++;
          }
    }
  for (gsize j = 0; j < cols; j++)
    {
      if (count[j] == 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "%s: feature %" G_GSIZE_FORMAT " has no value in any row: nothing to "
                       "impute it from (missing = mean)",
                       path, j);
          return FALSE;
        }
      means[j] /= (double) count[j];
    }
  return TRUE;
}

/* Natural order of class names: numerically when every name is a number. */
static gboolean
all_numeric (GPtrArray *names)
{
  for (guint i = 0; i < names->len; i++)
    {
      char *e;
      const char *s = g_ptr_array_index (names, i);
      double v = g_ascii_strtod (s, &e);
      if (e == s || *e != '\0' || !isfinite (v))
        return FALSE;
    }
  return TRUE;
}

static gint
compare_numeric (gconstpointer a, gconstpointer b)
{
  double x = g_ascii_strtod (*(char *const *) a, NULL);
  double y = g_ascii_strtod (*(char *const *) b, NULL);
  return x < y ? -1 : x > y;
}

static gint
compare_text (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

typedef struct {
  FgPart part;
  const char *path;
  FgTensor *x;
  gint32 *y;
} PartData;

/* Turn the label table's ids into class indices; set the classes and the note. */
static gboolean
map_labels (FgDataset *ds, const FgParams *params, LabelTable *t, char **sklearn_names,
            PartData *parts, guint n_parts, const char *column, GError **error)
{
  const char *mode_text = fg_params_get_string (params, "labels");
  LabelMode mode = g_strcmp0 (mode_text, "index") == 0 ? LABELS_INDEX
                   : g_strcmp0 (mode_text, "names") == 0 ? LABELS_NAMES
                                                        : LABELS_AUTO;
  g_auto (GStrv) given = NULL;
  guint n_given = 0;
  g_autofree gint32 *map = g_new (gint32, t->names->len + 1);
  g_autoptr (GString) note = g_string_new (NULL);

  given = _fg_ds_split_names (fg_params_get_string (params, "class_names"), &n_given);
  if (given == NULL && sklearn_names != NULL)
    {
      given = g_strdupv (sklearn_names);
      n_given = g_strv_length (given);
      if (mode == LABELS_AUTO)
        mode = LABELS_INDEX;
    }
  for (guint k = 0; k < n_given; k++)
    if (given[k][0] == '\0')
      {
        g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "key 'class_names': name %u is empty",
                     k);
        return FALSE;
      }
  if (mode == LABELS_AUTO)
    {
      mode = LABELS_INDEX;
      for (guint i = 0; i < t->names->len && mode == LABELS_INDEX; i++)
        {
          gint64 v;
          if (!parse_label_int (g_ptr_array_index (t->names, i), &v))
            mode = LABELS_NAMES;
        }
    }

  if (mode == LABELS_INDEX)
    {
      gint64 max = -1;
      for (guint i = 0; i < t->names->len; i++)
        {
          const char *name = g_ptr_array_index (t->names, i);
          gint64 v;
          if (!parse_label_int (name, &v))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                           "%s: label '%s' is not a class index (labels = index; use labels = "
                           "names for class names)",
                           (const char *) g_ptr_array_index (t->where, i), name);
              return FALSE;
            }
          if (v < -1 || v >= G_MAXINT32 || (n_given > 0 && v >= n_given))
            {
              if (n_given > 0 && v >= 0)
                g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                             "%s: label %" G_GINT64_FORMAT " is outside the %u classes "
                             "(0..%u) named by %s",
                             (const char *) g_ptr_array_index (t->where, i), v, n_given,
                             n_given - 1, sklearn_names ? "the header" : "class_names");
              else
                g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                             "%s: label %" G_GINT64_FORMAT " is out of range (class indices "
                             "are 0, 1, ...; -1 or unlabeled_value marks an unknown label)",
                             (const char *) g_ptr_array_index (t->where, i), v);
              return FALSE;
            }
          map[i] = (gint32) v;
          max = MAX (max, v);
        }
      if (n_given > 0)
        {
          fg_dataset_set_classes (ds, n_given, (const char *const *) given);
          g_string_append (note, "classes:");
          for (guint k = 0; k < n_given; k++)
            g_string_append_printf (note, " %u=%s", k, given[k]);
        }
    }
  else
    {
      g_autoptr (GPtrArray) order = g_ptr_array_new ();
      if (n_given > 0)
        {
          for (guint k = 0; k < n_given; k++)
            g_ptr_array_add (order, given[k]);
        }
      else
        {
          for (guint i = 0; i < t->names->len; i++)
            g_ptr_array_add (order, g_ptr_array_index (t->names, i));
          g_ptr_array_sort (order, all_numeric (order) ? compare_numeric : compare_text);
        }
      for (guint i = 0; i < t->names->len; i++)
        {
          const char *name = g_ptr_array_index (t->names, i);
          map[i] = -2;
          for (guint k = 0; k < order->len; k++)
            if (strcmp (g_ptr_array_index (order, k), name) == 0)
              map[i] = (gint32) k;
          if (map[i] < 0)
            {
              g_autofree char *known = g_strjoinv (",", given);
              g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                           "%s: label '%s' is not among class_names (%s)",
                           (const char *) g_ptr_array_index (t->where, i), name, known);
              return FALSE;
            }
        }
      g_ptr_array_add (order, NULL);
      fg_dataset_set_classes (ds, order->len - 1, (const char *const *) order->pdata);
      g_string_append_printf (note, "classes from the names in column '%s':", column);
      for (guint k = 0; k + 1 < order->len; k++)
        g_string_append_printf (note, " %u=%s", k, (const char *) g_ptr_array_index (order, k));
    }
  for (guint p = 0; p < n_parts; p++)
    for (gsize i = 0; parts[p].x != NULL && i < fg_tensor_rows (parts[p].x); i++)
      if (parts[p].y[i] >= 0)
        parts[p].y[i] = map[parts[p].y[i]];
  if (note->len > 0)
    fg_dataset_set_note (ds, note->str);
  return TRUE;
}

static FgDataset *
csv_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  const char *header = fg_params_get_string (params, "header");
  const char *missing = fg_params_get_string (params, "missing");
  const char *shape_text = fg_params_get_string (params, "image_shape");
  g_autoptr (FgDataset) ds = NULL;
  PartData parts[3] = {
    { FG_PART_TRAIN, fg_params_get_string (params, "path"), NULL, NULL },
    { FG_PART_VAL, fg_params_get_string (params, "validation_path"), NULL, NULL },
    { FG_PART_TEST, fg_params_get_string (params, "test_path"), NULL, NULL },
  };
  LabelTable labels;
  char **sklearn_names = NULL;
  g_autofree char *label_column = NULL;
  g_autofree double *means = NULL;
  gsize n_features = 0, shape[3] = { 0, 0, 0 };
  gboolean ok = FALSE;
  unsigned char delim;
  gboolean ws;

  /* Check the keys before reading anything. */
  if (!parse_delimiter (fg_params_get_string (params, "delimiter"), &delim, &ws, error))
    return NULL;
  if (shape_text != NULL && !_fg_ds_parse_image_shape (shape_text, "image_shape", shape, error))
    return NULL;

  label_table_init (&labels);
  ds = fg_dataset_new ("csv");
  for (guint p = 0; p < G_N_ELEMENTS (parts); p++)
    {
      CsvFile f = { 0 };
      if (parts[p].path == NULL)
        continue;
      f.params = params;
      f.path = parts[p].path;
      f.header = g_strcmp0 (header, "names") == 0     ? HEADER_NAMES
                 : g_strcmp0 (header, "none") == 0    ? HEADER_NONE
                 : g_strcmp0 (header, "sklearn") == 0 ? HEADER_SKLEARN
                                                      : HEADER_AUTO;
      f.missing = g_strcmp0 (missing, "drop") == 0   ? MISSING_DROP
                  : g_strcmp0 (missing, "mean") == 0 ? MISSING_MEAN
                  : g_strcmp0 (missing, "zero") == 0 ? MISSING_ZERO
                                                     : MISSING_ERROR;
      f.skip_rows = (gsize) fg_params_get_int (params, "skip_rows");
      f.max_rows = (gsize) fg_params_get_int (params, "max_rows");
      f.unlabeled = fg_params_get_string (params, "unlabeled_value");
      if (f.unlabeled == NULL)
        f.unlabeled = "";
      f.labels = &labels;
      f.want_features = n_features;
      if (!read_file (&f, error))
        {
          csv_file_clear (&f);
          goto out;
        }
      if (p == 0)
        {
          n_features = f.n_features;
          sklearn_names = g_steal_pointer (&f.sklearn_names);
          label_column = f.names ? g_strdup (f.names[f.label_field])
                                 : g_strdup_printf ("%" G_GSIZE_FORMAT, f.label_field);
        }
      if (f.any_missing)
        {
          if (means == NULL)
            {
              means = g_new0 (double, n_features);
              if (f.missing == MISSING_MEAN
                  && !column_means (f.x, f.path, means, error))
                {
                  csv_file_clear (&f);
                  goto out;
                }
            }
          impute (f.x, means);
        }
      else if (p == 0 && f.missing == MISSING_MEAN)
        {
          means = g_new0 (double, n_features);
          if (!column_means (f.x, f.path, means, error))
            {
              csv_file_clear (&f);
              goto out;
            }
        }
      parts[p].x = g_steal_pointer (&f.x);
      parts[p].y = g_steal_pointer (&f.y);
      csv_file_clear (&f);
    }

  if (!map_labels (ds, params, &labels, sklearn_names, parts, G_N_ELEMENTS (parts), label_column,
                   error))
    goto out;
  for (guint p = 0; p < G_N_ELEMENTS (parts); p++)
    if (parts[p].x != NULL)
      {
        gboolean added = _fg_ds_add_part (ds, parts[p].part, g_steal_pointer (&parts[p].x),
                                          g_steal_pointer (&parts[p].y), parts[p].path, error);
        if (!added)
          goto out;
      }
  if (shape[0] > 0 && !fg_dataset_set_image_shape (ds, shape[0], shape[1], shape[2], error))
    {
      g_prefix_error (error, "key 'image_shape' = '%s': ", shape_text);
      goto out;
    }
  if (!_fg_ds_finish (ds, parts[0].path, error))
    goto out;
  ok = TRUE;

out:
  for (guint p = 0; p < G_N_ELEMENTS (parts); p++)
    {
      fg_tensor_free (parts[p].x);
      g_free (parts[p].y);
    }
  g_strfreev (sklearn_names);
  label_table_clear (&labels);
  return ok ? g_steal_pointer (&ds) : NULL;
}

static const FgDatasetVTable csv_vtable = {
  .struct_size = sizeof (FgDatasetVTable),
  .load = csv_load,
};

static const FgComponent csv_components[] = {
  { FG_KIND_DATASET, "csv",
    "delimited text (CSV/TSV), plain or gzip: a label column and numeric feature columns",
    csv_params, &csv_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo csv_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "csv",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "Delimited text data sets read with libcsv",
  .components = csv_components,
};

FG_PLUGIN_DEFINE (csv_info)
