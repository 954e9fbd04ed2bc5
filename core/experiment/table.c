/* SPDX-License-Identifier: MIT */
/* flowgmm — selection per (dataset, method) and the comparison table.
 *
 * Selection never looks at test metrics:
 *  - best-validation: the single cell (grid point and seed) with the best validation accuracy;
 *    its test metric is reported ("best of 3 runs ranked by validation");
 *  - mean-std: the grid point with the best mean validation accuracy over its seeds; the mean
 *    and sample standard deviation (n - 1) of the metric over those seeds are reported;
 *  - per-seed: for each seed the grid point with the best validation accuracy at that seed;
 *    the mean and sample standard deviation over the seeds of those picks are reported.
 * Ties go to the earlier cell in grid order (then seed order).  Only "ok" cells take part; a
 * (dataset, method) with stored errors only shows "error", one with nothing stored "–".
 *
 * Output: Markdown (returned, and OUT/table.md), OUT/table.csv (long form, every computed
 * metric), OUT/table.tex (booktabs) and OUT/table.json.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "experiment/experiment-private.h"

typedef enum { SEL_NA, SEL_MISSING, SEL_ERROR, SEL_OK } SelState;

typedef struct {
  SelState      state;
  guint         n_expected, n_ok, n_error;
  guint         n_stale;  /* ok records computed with a plugin file that has changed since */
  double        mean[FG_N_FIELDS];
  double        std[FG_N_FIELDS];
  guint         n[FG_N_FIELDS];
  const FgCell *cell;     /* the selected cell (best-validation) or the point's first cell */
  const char   *error;    /* a stored error message (error-only cells) */
  char         *picks;    /* per-seed: "seed S: GRID; ..." (owned) */
} Selection;

/* A rule that reports a mean ± std over seeds. */
static gboolean
reports_std (const FgExperiment *exp)
{
  return exp->select != FG_SELECT_BEST_VALIDATION;
}

static gboolean
lower_is_better (guint field)
{
  return field % FG_N_METRICS != FG_METRIC_ACCURACY;
}

/* Mean and sample std of `field` over records. */
static void
summarize (GPtrArray *records, Selection *sel)
{
  for (guint f = 0; f < FG_N_FIELDS; f++)
    {
      double sum = 0, sq = 0;
      guint n = 0;
      for (guint i = 0; i < records->len; i++)
        {
          double v = _fg_json_get_double (g_ptr_array_index (records, i), _fg_field_name (f));
          if (isfinite (v))
            {
              sum += v;
              n++;
            }
        }
      sel->n[f] = n;
      sel->mean[f] = n ? sum / n : NAN;
      for (guint i = 0; i < records->len && n > 1; i++)
        {
          double v = _fg_json_get_double (g_ptr_array_index (records, i), _fg_field_name (f));
          if (isfinite (v))
            sq += (v - sel->mean[f]) * (v - sel->mean[f]);
        }
      sel->std[f] = n > 1 ? sqrt (sq / (n - 1)) : 0.0;
    }
}

static double
val_accuracy_or_worst (JsonObject *rec)
{
  double v = _fg_json_get_double (rec, "val_accuracy");
  return isfinite (v) ? v : -INFINITY;
}

/* Selects among the cells [first, last) of one (dataset, method). */
static void
select_pair (const FgExperiment *exp, FgResultsStore *store, guint first, guint last,
             Selection *sel)
{
  g_autoptr (GPtrArray) ok = g_ptr_array_new ();      /* JsonObject */
  g_autoptr (GPtrArray) ok_cells = g_ptr_array_new (); /* FgCell, parallel */

  sel->n_expected = last - first;
  for (guint i = first; i < last; i++)
    {
      const FgCell *c = g_ptr_array_index (exp->cells, i);
      JsonObject *rec = _fg_results_lookup (store, c->key);
      const char *status = rec ? _fg_json_get_string (rec, "status") : NULL;
      if (g_strcmp0 (status, "ok") == 0)
        {
          g_ptr_array_add (ok, rec);
          g_ptr_array_add (ok_cells, (gpointer) c);
          sel->n_stale += _fg_provenance_is_stale (rec);
        }
      else if (g_strcmp0 (status, "error") == 0)
        {
          sel->n_error++;
          if (sel->error == NULL)
            sel->error = _fg_json_get_string (rec, "error");
        }
    }
  sel->n_ok = ok->len;
  if (ok->len == 0)
    {
      sel->state = sel->n_error > 0 ? SEL_ERROR : SEL_MISSING;
      return;
    }
  sel->state = SEL_OK;

  if (exp->select == FG_SELECT_BEST_VALIDATION)
    {
      guint best = 0;
      g_autoptr (GPtrArray) one = g_ptr_array_new ();
      for (guint i = 1; i < ok->len; i++)
        if (val_accuracy_or_worst (g_ptr_array_index (ok, i))
            > val_accuracy_or_worst (g_ptr_array_index (ok, best)))
          best = i;
      g_ptr_array_add (one, g_ptr_array_index (ok, best));
      summarize (one, sel);
      sel->cell = g_ptr_array_index (ok_cells, best);
    }
  else if (exp->select == FG_SELECT_PER_SEED)
    {
      g_autoptr (GPtrArray) picked = g_ptr_array_new ();
      GString *picks = g_string_new (NULL);
      /* Seeds are innermost in grid order: for each seed index, scan every point. */
      for (guint si = 0; si < exp->seeds->len; si++)
        {
          gint best = -1;
          for (guint i = 0; i < ok->len; i++)
            {
              const FgCell *c = g_ptr_array_index (ok_cells, i);
              if (c->seed_index != si)
                continue;
              if (best < 0
                  || val_accuracy_or_worst (g_ptr_array_index (ok, i))
                         > val_accuracy_or_worst (g_ptr_array_index (ok, (guint) best)))
                best = (gint) i;
            }
          if (best < 0)
            continue;
          g_ptr_array_add (picked, g_ptr_array_index (ok, (guint) best));
          {
            const FgCell *c = g_ptr_array_index (ok_cells, (guint) best);
            if (sel->cell == NULL)
              sel->cell = c;
            g_string_append_printf (picks, "%sseed %" G_GUINT64_FORMAT ": %s",
                                    picks->len ? "; " : "", c->seed, c->grid);
          }
        }
      summarize (picked, sel);
      if (sel->cell != NULL && sel->cell->method->n_points > 1)
        sel->picks = g_string_free (picks, FALSE);
      else
        g_string_free (picks, TRUE);
    }
  else
    {
      guint best_point = G_MAXUINT;
      double best_mean = -INFINITY;
      g_autoptr (GPtrArray) at_point = g_ptr_array_new ();
      const FgCell *best_cell = NULL;
      /* ok_cells are in grid order, seeds innermost: group runs of equal points. */
      for (guint i = 0; i < ok->len;)
        {
          const FgCell *c = g_ptr_array_index (ok_cells, i);
          double sum = 0;
          guint n = 0, j = i;
          for (; j < ok->len && ((FgCell *) g_ptr_array_index (ok_cells, j))->point == c->point; j++)
            {
              double v = _fg_json_get_double (g_ptr_array_index (ok, j), "val_accuracy");
              if (isfinite (v))
                {
                  sum += v;
                  n++;
                }
            }
          if (best_point == G_MAXUINT || (n > 0 && sum / n > best_mean))
            {
              best_point = c->point;
              best_mean = n > 0 ? sum / n : -INFINITY;
              best_cell = c;
            }
          i = j;
        }
      for (guint i = 0; i < ok->len; i++)
        if (((FgCell *) g_ptr_array_index (ok_cells, i))->point == best_point)
          g_ptr_array_add (at_point, g_ptr_array_index (ok, i));
      summarize (at_point, sel);
      sel->cell = best_cell;
    }
}

/* ---- formatting ------------------------------------------------------------------------------ */

static char *
format_number (guint field, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  switch (field % FG_N_METRICS)
    {
    case FG_METRIC_NLL:
    case FG_METRIC_BPD:
    case FG_METRIC_NLL_TEMP:
    case FG_METRIC_BRIER:
    case FG_METRIC_BRIER_TEMP:
      return g_strdup (g_ascii_formatd (buf, sizeof buf, "%.3f", v));
    default:
      break;
    }
  return g_strdup (g_ascii_formatd (buf, sizeof buf, "%.1f", 100.0 * v)); /* percent */
}

static char *
format_raw (double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (!isfinite (v))
    return g_strdup ("");
  return g_strdup (g_ascii_formatd (buf, sizeof buf, "%.6g", v));
}

static const char *
metric_label (guint field)
{
  static const char *const labels[FG_N_FIELDS] = {
    "Validation accuracy (%)", "Validation NLL", "Validation ECE (%)", "Validation bits/dim",
    "Validation Brier", "Validation NLL (T)", "Validation ECE (T, %)", "Validation Brier (T)",
    "Test accuracy (%)", "Test NLL", "Test ECE (%)", "Test bits/dim",
    "Test Brier", "Test NLL (T)", "Test ECE (T, %)", "Test Brier (T)",
    "Training accuracy (%)", "Training NLL", "Training ECE (%)", "Training bits/dim",
    "Training Brier", "Training NLL (T)", "Training ECE (T, %)", "Training Brier (T)",
  };
  return labels[field];
}

typedef enum { FMT_MARKDOWN, FMT_TEX } Format;

static char *
escape_cell (const char *s, Format fmt)
{
  GString *out = g_string_new (NULL);
  for (const char *p = s; *p; p++)
    {
      if (fmt == FMT_MARKDOWN)
        {
          if (*p == '|' || *p == '*' || *p == '_' || *p == '\\')
            g_string_append_c (out, '\\');
          g_string_append_c (out, *p);
          continue;
        }
      switch (*p)
        {
        case '\\': g_string_append (out, "\\textbackslash{}"); break;
        case '~': g_string_append (out, "\\textasciitilde{}"); break;
        case '^': g_string_append (out, "\\textasciicircum{}"); break;
        case '&': case '%': case '$': case '#': case '_': case '{': case '}':
          g_string_append_c (out, '\\');
          g_string_append_c (out, *p);
          break;
        default: g_string_append_c (out, *p);
        }
    }
  return g_string_free (out, FALSE);
}

/* The text of one table cell. */
static char *
format_selection (const FgExperiment *exp, const Selection *sel, guint field, gboolean bold,
                  Format fmt)
{
  g_autofree char *mean = NULL;
  g_autofree char *value = NULL;
  switch (sel->state)
    {
    case SEL_NA:
    case SEL_MISSING:
      return g_strdup (fmt == FMT_TEX ? "--" : "–");
    case SEL_ERROR:
      return g_strdup ("error");
    case SEL_OK:
      break;
    }
  if (sel->n[field] == 0)
    return g_strdup (fmt == FMT_TEX ? "--" : "–");
  mean = format_number (field, sel->mean[field]);
  if (reports_std (exp))
    {
      g_autofree char *std = format_number (field, sel->std[field]);
      value = g_strdup_printf (fmt == FMT_TEX ? "%s $\\pm$ %s" : "%s ± %s", mean, std);
    }
  else
    value = g_strdup (mean);
  if (bold)
    {
      char *b = g_strdup_printf (fmt == FMT_TEX ? "\\textbf{%s}" : "**%s**", value);
      g_free (value);
      value = b;
    }
  /* Fewer finished seeds than the caption's count: say how many. */
  if (reports_std (exp) && sel->n[field] != exp->seeds->len)
    {
      char *v = g_strdup_printf ("%s (n = %u)", value, sel->n[field]);
      g_free (value);
      value = v;
    }
  if (sel->n_stale > 0)
    {
      char *v = g_strconcat (value, fmt == FMT_TEX ? "$^\\dagger$" : " †", NULL);
      g_free (value);
      value = v;
    }
  return g_steal_pointer (&value);
}

/* What the marks of format_selection () mean, for the caption ("" when none is shown). */
static char *
caption_notes (const FgExperiment *exp, const Selection *sels, guint field)
{
  gboolean short_n = FALSE, stale = FALSE;
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < exp->datasets->len * exp->methods->len; i++)
    {
      const Selection *sel = &sels[i];
      if (sel->state != SEL_OK || sel->n[field] == 0)
        continue;
      short_n |= reports_std (exp) && sel->n[field] != exp->seeds->len;
      stale |= sel->n_stale > 0;
    }
  if (short_n)
    g_string_append (s, " (n = k): only k seeds finished for that cell.");
  if (stale)
    g_string_append (s, " †: computed with a plugin file that has changed since "
                        "(flowgmm run --rerun-stale computes it again).");
  return g_string_free (s, FALSE);
}

/* For each dataset, the best method's formatted mean (ties: all that display the same). */
static char **
best_per_dataset (const FgExperiment *exp, const Selection *sels, guint field)
{
  guint nd = exp->datasets->len, nm = exp->methods->len;
  char **best = g_new0 (char *, nd + 1);
  for (guint di = 0; di < nd; di++)
    {
      double b = NAN;
      for (guint mi = 0; mi < nm; mi++)
        {
          const Selection *s = &sels[di * nm + mi];
          double v;
          if (s->state != SEL_OK || s->n[field] == 0)
            continue;
          v = s->mean[field];
          if (isnan (b) || (lower_is_better (field) ? v < b : v > b))
            b = v;
        }
      best[di] = isnan (b) ? g_strdup ("") : format_number (field, b);
    }
  return best;
}

static gboolean
is_best (const Selection *s, guint field, const char *best)
{
  g_autofree char *mine = NULL;
  if (s->state != SEL_OK || s->n[field] == 0 || *best == '\0')
    return FALSE;
  mine = format_number (field, s->mean[field]);
  return strcmp (mine, best) == 0;
}

static char *
caption (const FgExperiment *exp)
{
  g_autoptr (GString) labels = g_string_new (NULL);
  const char *label;
  for (guint i = 0; i < exp->table_fields->len; i++)
    g_string_append_printf (labels, "%s%s", i ? "; " : "",
                            metric_label (g_array_index (exp->table_fields, guint, i)));
  label = labels->str;
  gboolean grids = FALSE;
  for (guint i = 0; i < exp->methods->len; i++)
    grids |= ((const FgExpMethod *) g_ptr_array_index (exp->methods, i))->n_points > 1;
  if (exp->select == FG_SELECT_PER_SEED)
    return g_strdup_printf ("%s: mean ± std over %u seed%s%s.", label, exp->seeds->len,
                            exp->seeds->len == 1 ? "" : "s",
                            grids ? " of each seed's grid point with the best validation "
                                    "accuracy"
                                  : "");
  if (exp->select == FG_SELECT_MEAN_STD)
    return g_strdup_printf ("%s: mean ± std over %u seed%s%s.", label, exp->seeds->len,
                            exp->seeds->len == 1 ? "" : "s",
                            grids ? " at the grid point with the best mean validation accuracy"
                                  : "");
  return g_strdup_printf ("%s of the cell (grid point and seed, %u seed%s) with the best "
                          "validation accuracy.", label, exp->seeds->len,
                          exp->seeds->len == 1 ? "" : "s");
}

/* The method labels of the table (a method's `row`, else its name), each once, in file order. */
static GPtrArray *
method_labels (const FgExperiment *exp)
{
  GPtrArray *labels = g_ptr_array_new ();
  for (guint mi = 0; mi < exp->methods->len; mi++)
    {
      const FgExpMethod *m = g_ptr_array_index (exp->methods, mi);
      gboolean seen = FALSE;
      for (guint j = 0; j < labels->len && !seen; j++)
        seen = strcmp (g_ptr_array_index (labels, j), _fg_method_label (m)) == 0;
      if (!seen)
        g_ptr_array_add (labels, (gpointer) _fg_method_label (m));
    }
  return labels;
}

/* The selection shown for data set di under a method label: the method of that label that runs
 * on di (methods sharing a label run on disjoint data sets). */
static const Selection *
label_selection (const FgExperiment *exp, const Selection *sels, guint di, const char *label)
{
  guint nm = exp->methods->len;
  const Selection *first = NULL;
  for (guint mi = 0; mi < nm; mi++)
    if (strcmp (_fg_method_label (g_ptr_array_index (exp->methods, mi)), label) == 0)
      {
        if (sels[di * nm + mi].state != SEL_NA)
          return &sels[di * nm + mi];
        if (first == NULL)
          first = &sels[di * nm + mi];
      }
  return first;
}

/* The published value of a reference group for (method label, data set), or NULL: keyed by
 * the label (a method's row) or by the name of a method group with that label. */
static const char *
reference_value (const FgExperiment *exp, const FgExpReference *ref, const char *label,
                 const char *dataset)
{
  g_autofree char *key = g_strconcat (label, "/", dataset, NULL);
  const char *v = g_hash_table_lookup (ref->values, key);
  for (guint mi = 0; v == NULL && mi < exp->methods->len; mi++)
    {
      const FgExpMethod *m = g_ptr_array_index (exp->methods, mi);
      if (strcmp (_fg_method_label (m), label) == 0)
        {
          g_autofree char *k2 = g_strconcat (m->name, "/", dataset, NULL);
          v = g_hash_table_lookup (ref->values, k2);
        }
    }
  return v;
}

/* Does a reference group have a value for anything in column c? */
static gboolean
reference_has_column (const FgExperiment *exp, const FgExpReference *ref, GPtrArray *labels,
                      guint c)
{
  guint n_rows = exp->rows_are_methods ? labels->len : exp->datasets->len;
  for (guint r = 0; r < n_rows; r++)
    {
      guint di = exp->rows_are_methods ? c : r, mi = exp->rows_are_methods ? r : c;
      const FgExpDataset *d = g_ptr_array_index (exp->datasets, di);
      if (reference_value (exp, ref, g_ptr_array_index (labels, mi), d->name) != NULL)
        return TRUE;
    }
  return FALSE;
}

static char *
render_grid (const FgExperiment *exp, const Selection *sels, Format fmt)
{
  g_autoptr (GPtrArray) labels = method_labels (exp);
  guint nd = exp->datasets->len, nm = labels->len;
  const guint nf = exp->table_fields->len;
  const guint *fields = (const guint *) exp->table_fields->data;
  guint n_rows = exp->rows_are_methods ? nm : nd;
  guint n_cols = exp->rows_are_methods ? nd : nm;
  g_autofree char ***best = g_new0 (char **, nf);
  g_autofree char *cap0 = caption (exp);
  g_autofree char *notes = caption_notes (exp, sels, fields[0]);
  g_autofree char *cap = g_strconcat (cap0, notes, NULL);
  GString *s = g_string_new (NULL);
  const char *corner = exp->rows_are_methods ? "Method" : "Dataset";
  /* The columns shown: each measured column (once per metric shown), followed by the
   * reference groups' values for it (ref −1: measured; otherwise the index of the
   * [reference:NAME] group). */
  g_autoptr (GArray) col_of = g_array_new (FALSE, FALSE, sizeof (guint));
  g_autoptr (GArray) ref_of = g_array_new (FALSE, FALSE, sizeof (gint));
  g_autoptr (GArray) fld_of = g_array_new (FALSE, FALSE, sizeof (guint));
  for (guint c = 0; c < n_cols; c++)
    {
      gint none = -1;
      guint zero = 0;
      for (guint f = 0; f < nf; f++)
        {
          g_array_append_val (col_of, c);
          g_array_append_val (ref_of, none);
          g_array_append_val (fld_of, f);
        }
      for (guint g = 0; g < exp->references->len; g++)
        if (reference_has_column (exp, g_ptr_array_index (exp->references, g), labels, c))
          {
            gint gi = (gint) g;
            g_array_append_val (col_of, c);
            g_array_append_val (ref_of, gi);
            g_array_append_val (fld_of, zero);
          }
    }

  for (guint f = 0; f < nf; f++)
    best[f] = best_per_dataset (exp, sels, fields[f]);
  if (fmt == FMT_MARKDOWN)
    {
      g_autofree char *title = escape_cell (exp->title, fmt);
      g_string_append_printf (s, "## %s\n\n| %s |", title, corner);
    }
  else
    {
      g_string_append_printf (s, "%% %s\n%% %s\n\\begin{tabular}{l", exp->title, cap);
      for (guint c = 0; c < col_of->len; c++)
        g_string_append_c (s, 'r');
      g_string_append_printf (s, "}\n\\toprule\n%s", corner);
    }
  for (guint k = 0; k < col_of->len; k++)
    {
      const guint c = g_array_index (col_of, guint, k);
      const gint g = g_array_index (ref_of, gint, k);
      const guint f = g_array_index (fld_of, guint, k);
      const char *name = exp->rows_are_methods
                             ? ((FgExpDataset *) g_ptr_array_index (exp->datasets, c))->name
                             : (const char *) g_ptr_array_index (labels, c);
      g_autofree char *label
          = g < 0 ? (nf > 1 ? g_strdup_printf ("%s %s", name, _fg_field_name (fields[f]))
                            : g_strdup (name))
                  : g_strdup_printf ("%s (%s)", name,
                                     ((FgExpReference *) g_ptr_array_index (exp->references,
                                                                            (guint) g))->title);
      g_autofree char *e = escape_cell (label, fmt);
      g_string_append_printf (s, fmt == FMT_MARKDOWN ? " %s |" : " & %s", e);
    }
  if (fmt == FMT_MARKDOWN)
    {
      g_string_append (s, "\n| :--- |");
      for (guint c = 0; c < col_of->len; c++)
        g_string_append (s, " ---: |");
      g_string_append_c (s, '\n');
    }
  else
    g_string_append (s, " \\\\\n\\midrule\n");

  for (guint r = 0; r < n_rows; r++)
    {
      const char *name = exp->rows_are_methods
                             ? (const char *) g_ptr_array_index (labels, r)
                             : ((FgExpDataset *) g_ptr_array_index (exp->datasets, r))->name;
      g_autofree char *e = escape_cell (name, fmt);
      g_string_append_printf (s, fmt == FMT_MARKDOWN ? "| %s |" : "%s", e);
      for (guint k = 0; k < col_of->len; k++)
        {
          const guint c = g_array_index (col_of, guint, k);
          const gint g = g_array_index (ref_of, gint, k);
          const guint f = g_array_index (fld_of, guint, k);
          guint di = exp->rows_are_methods ? c : r;
          guint mi = exp->rows_are_methods ? r : c;
          g_autofree char *text = NULL;
          if (g >= 0)
            {
              const FgExpReference *ref = g_ptr_array_index (exp->references, (guint) g);
              const FgExpDataset *d = g_ptr_array_index (exp->datasets, di);
              const char *v = reference_value (exp, ref, g_ptr_array_index (labels, mi),
                                               d->name);
              text = escape_cell (v != NULL ? v : "", fmt);
            }
          else
            {
              const Selection *sel = label_selection (exp, sels, di,
                                                      g_ptr_array_index (labels, mi));
              text = format_selection (exp, sel, fields[f], is_best (sel, fields[f], best[f][di]),
                                      fmt);
            }
          g_string_append_printf (s, fmt == FMT_MARKDOWN ? " %s |" : " & %s", text);
        }
      g_string_append (s, fmt == FMT_MARKDOWN ? "\n" : " \\\\\n");
    }
  if (fmt == FMT_MARKDOWN)
    {
      g_string_append_printf (s, "\n%s Bold: the best method per dataset.", cap);
      if (col_of->len > n_cols)
        g_string_append (s, " Columns marked (…): published values of the [reference] groups, "
                            "as written in the experiment file.");
      g_string_append_c (s, '\n');
    }
  else
    g_string_append (s, "\\bottomrule\n\\end{tabular}\n");
  for (guint f = 0; f < nf; f++)
    g_strfreev (best[f]);
  return g_string_free (s, FALSE);
}

static void
csv_field (GString *s, const char *text, gboolean last)
{
  if (strpbrk (text, ",\"\n\r") != NULL)
    {
      g_string_append_c (s, '"');
      for (const char *p = text; *p; p++)
        {
          if (*p == '"')
            g_string_append_c (s, '"');
          g_string_append_c (s, *p);
        }
      g_string_append_c (s, '"');
    }
  else
    g_string_append (s, text);
  g_string_append_c (s, last ? '\n' : ',');
}

static const char *
state_name (SelState st)
{
  switch (st)
    {
    case SEL_OK: return "ok";
    case SEL_ERROR: return "error";
    case SEL_MISSING: return "missing";
    case SEL_NA: default: return "n/a";
    }
}

static char *
render_csv (const FgExperiment *exp, const Selection *sels)
{
  guint nm = exp->methods->len;
  GString *s = g_string_new ("dataset,method,metric,mean,std,n,params,seed,status\n");
  for (guint di = 0; di < exp->datasets->len; di++)
    for (guint mi = 0; mi < nm; mi++)
      {
        const Selection *sel = &sels[di * nm + mi];
        if (sel->state == SEL_NA)
          continue;
        for (guint f = 0; f < FG_N_FIELDS; f++)
          {
            g_autofree char *mean = NULL, *std = NULL, *n = NULL, *seed = NULL;
            gboolean have = sel->state == SEL_OK && sel->n[f] > 0;
            if (!_fg_field_is_computed (exp->metrics, f))
              continue;
            mean = have ? format_raw (sel->mean[f]) : g_strdup ("");
            std = have && reports_std (exp) ? format_raw (sel->std[f]) : g_strdup ("");
            n = g_strdup_printf ("%u", have ? sel->n[f] : 0);
            seed = sel->cell && exp->select == FG_SELECT_BEST_VALIDATION
                       ? g_strdup_printf ("%" G_GUINT64_FORMAT, sel->cell->seed)
                       : g_strdup ("");
            csv_field (s, ((FgExpDataset *) g_ptr_array_index (exp->datasets, di))->name, FALSE);
            csv_field (s, ((FgExpMethod *) g_ptr_array_index (exp->methods, mi))->name, FALSE);
            csv_field (s, _fg_field_name (f), FALSE);
            csv_field (s, mean, FALSE);
            csv_field (s, std, FALSE);
            csv_field (s, n, FALSE);
            csv_field (s, sel->picks ? sel->picks : sel->cell ? sel->cell->grid : "", FALSE);
            csv_field (s, seed, FALSE);
            csv_field (s, state_name (sel->state), TRUE);
          }
      }
  return g_string_free (s, FALSE);
}

static char *
render_json (const FgExperiment *exp, const Selection *sels)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  guint nm = exp->methods->len;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "title");
  json_builder_add_string_value (b, exp->title);
  json_builder_set_member_name (b, "select");
  json_builder_add_string_value (b, exp->select == FG_SELECT_MEAN_STD   ? "mean-std"
                                    : exp->select == FG_SELECT_PER_SEED ? "per-seed"
                                                                        : "best-validation");
  json_builder_set_member_name (b, "metric");
  json_builder_add_string_value (b, _fg_field_name (exp->table_field));
  json_builder_set_member_name (b, "cells");
  json_builder_begin_array (b);
  for (guint di = 0; di < exp->datasets->len; di++)
    for (guint mi = 0; mi < nm; mi++)
      {
        const Selection *sel = &sels[di * nm + mi];
        if (sel->state == SEL_NA)
          continue;
        json_builder_begin_object (b);
        json_builder_set_member_name (b, "dataset");
        json_builder_add_string_value (b, ((FgExpDataset *) g_ptr_array_index (exp->datasets, di))->name);
        json_builder_set_member_name (b, "method");
        json_builder_add_string_value (b, ((FgExpMethod *) g_ptr_array_index (exp->methods, mi))->name);
        json_builder_set_member_name (b, "status");
        json_builder_add_string_value (b, state_name (sel->state));
        json_builder_set_member_name (b, "n_cells");
        json_builder_add_int_value (b, sel->n_expected);
        json_builder_set_member_name (b, "n_ok");
        json_builder_add_int_value (b, sel->n_ok);
        json_builder_set_member_name (b, "n_error");
        json_builder_add_int_value (b, sel->n_error);
        json_builder_set_member_name (b, "n_stale");
        json_builder_add_int_value (b, sel->n_stale);
        if (sel->cell != NULL)
          {
            json_builder_set_member_name (b, "params");
            json_builder_add_string_value (b, sel->picks ? sel->picks : sel->cell->grid);
            if (exp->select == FG_SELECT_BEST_VALIDATION)
              {
                json_builder_set_member_name (b, "seed");
                json_builder_add_int_value (b, (gint64) sel->cell->seed);
              }
          }
        if (sel->error != NULL)
          {
            json_builder_set_member_name (b, "error");
            json_builder_add_string_value (b, sel->error);
          }
        json_builder_set_member_name (b, "metrics");
        json_builder_begin_object (b);
        for (guint f = 0; f < FG_N_FIELDS; f++)
          if (_fg_field_is_computed (exp->metrics, f) && sel->state == SEL_OK && sel->n[f] > 0)
            {
              json_builder_set_member_name (b, _fg_field_name (f));
              json_builder_begin_object (b);
              json_builder_set_member_name (b, "mean");
              json_builder_add_double_value (b, sel->mean[f]);
              json_builder_set_member_name (b, "std");
              json_builder_add_double_value (b, sel->std[f]);
              json_builder_set_member_name (b, "n");
              json_builder_add_int_value (b, sel->n[f]);
              json_builder_end_object (b);
            }
        json_builder_end_object (b);
        json_builder_end_object (b);
      }
  json_builder_end_array (b);
  /* The [reference:NAME] groups: published values, as written. */
  json_builder_set_member_name (b, "references");
  json_builder_begin_array (b);
  for (guint g = 0; g < exp->references->len; g++)
    {
      const FgExpReference *ref = g_ptr_array_index (exp->references, g);
      g_autoptr (GList) keys = g_list_sort (g_hash_table_get_keys (ref->values),
                                            (GCompareFunc) strcmp);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, ref->name);
      json_builder_set_member_name (b, "title");
      json_builder_add_string_value (b, ref->title);
      json_builder_set_member_name (b, "values");
      json_builder_begin_object (b);
      for (GList *l = keys; l != NULL; l = l->next)
        {
          json_builder_set_member_name (b, l->data);
          json_builder_add_string_value (b, g_hash_table_lookup (ref->values, l->data));
        }
      json_builder_end_object (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

static gboolean
write_file (const char *dir, const char *name, const char *text, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) local = NULL;
  if (!g_file_set_contents (path, text, -1, &local))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  return TRUE;
}

gboolean
_fg_table_render (const FgExperiment *exp, FgResultsStore *store, const char *out_dir,
                  char **markdown, GError **error)
{
  guint nd = exp->datasets->len, nm = exp->methods->len;
  g_autofree Selection *sels = g_new0 (Selection, nd * nm);
  g_autofree char *md = NULL, *tex = NULL, *csv = NULL, *json = NULL;

  /* Cells are dataset-major, then method: each pair is a run of consecutive cells. */
  for (guint i = 0; i < exp->cells->len;)
    {
      const FgCell *c = g_ptr_array_index (exp->cells, i);
      guint j = i, di = 0, mi = 0;
      while (j < exp->cells->len && ((FgCell *) g_ptr_array_index (exp->cells, j))->dataset == c->dataset
             && ((FgCell *) g_ptr_array_index (exp->cells, j))->method == c->method)
        j++;
      while (g_ptr_array_index (exp->datasets, di) != c->dataset)
        di++;
      while (g_ptr_array_index (exp->methods, mi) != c->method)
        mi++;
      select_pair (exp, store, i, j, &sels[di * nm + mi]);
      i = j;
    }
  /* Pairs without cells (a method restricted to other datasets) stay SEL_NA. */

  md = render_grid (exp, sels, FMT_MARKDOWN);
  tex = render_grid (exp, sels, FMT_TEX);
  csv = render_csv (exp, sels);
  json = render_json (exp, sels);
  for (guint i = 0; i < nd * nm; i++)
    g_free (sels[i].picks);
  if (!write_file (out_dir, "table.md", md, error) || !write_file (out_dir, "table.tex", tex, error)
      || !write_file (out_dir, "table.csv", csv, error)
      || !write_file (out_dir, "table.json", json, error))
    return FALSE;
  if (markdown != NULL)
    *markdown = g_steal_pointer (&md);
  return TRUE;
}
