/* SPDX-License-Identifier: MIT */
/* flowgmm — the model analyses of an experiment (doc/analysis.md): per fitted cell, the
 * reliability bins, out-of-domain scores, distances to the decision boundary and feature
 * inversions the [experiment] keys ask for; then OUT/analysis.md and SVG figures.
 *
 * Each analysis uses only what the method's vtable offers (predict's probabilities,
 * log_density, embed + latent_means, feature_inversion); a method without the entry gets
 * `null` for that analysis in its record, and the others still run.  Summaries go into the
 * cell's record in OUT/results.jsonl; the arrays behind the figures into
 * OUT/analysis/DATASET__METHOD__sSEED__pPOINT.json, so OUT/analysis.md and the figures are
 * redrawn by `flowgmm table` without refitting.
 */
#include "config.h"

#include <math.h>
#include <string.h>
#include <glib/gstdio.h>

#include "experiment/experiment-private.h"

#define DEFAULT_BINS 50
#define SIGMA_REF_ROWS 5000

void
_fg_analysis_options_init (FgAnalysisOptions *a)
{
  memset (a, 0, sizeof *a);
  a->ood = g_ptr_array_new ();
  a->ood_only = g_ptr_array_new ();
  a->bins = DEFAULT_BINS;
  a->boundary_threshold = 5.0;
  a->feature_layer = 1;
  a->feature_examples = 4;
  a->feature_alphas = g_array_new (FALSE, FALSE, sizeof (double));
}

/* ood_only owns its groups through the free function the experiment sets on it. */
void
_fg_analysis_options_clear (FgAnalysisOptions *a)
{
  g_clear_pointer (&a->ood, g_ptr_array_unref);
  g_clear_pointer (&a->ood_only, g_ptr_array_unref);
  g_clear_pointer (&a->feature_alphas, g_array_unref);
}

static char *
cell_file_stem (const FgCell *cell)
{
  return g_strdup_printf ("%s__%s__s%" G_GUINT64_FORMAT "__p%u", cell->dataset->name,
                          cell->method->name, cell->seed, cell->point);
}

/* ---- out-of-domain rows ---------------------------------------------------------------------- */

FgTensor *
_fg_analysis_ood_rows (FgExperiment *exp, const FgCell *cell, GArray *starts, GPtrArray *names,
                       GError **error)
{
  const FgAnalysisOptions *a = &exp->analysis;
  g_autoptr (FgDataset) own = _fg_dataset_cache_get (exp, cell->dataset, cell->seed, error);
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func ((GDestroyNotify) fg_split_data_free);
  gsize dim, total = 0;
  FgTensor *rows;

  if (own == NULL)
    return NULL;
  dim = fg_dataset_get_dim (own);
  for (guint i = 0; i < a->ood->len; i++)
    {
      const FgExpDataset *d = g_ptr_array_index (a->ood, i);
      g_autoptr (FgDataset) ds = NULL;
      FgSplitData *sd;
      const FgDataPart *test;
      if (d == cell->dataset)
        continue;
      ds = _fg_dataset_cache_get (exp, d, cell->seed, error);
      if (ds == NULL)
        return NULL;
      /* Its test part, raw: the group's own preprocessing keys are dropped (the group may be
       * a data set of the experiment, preprocessed for its own cells); the scoring cell's
       * preprocessing is applied later. */
      {
        static const char *const pp_keys[] = { "dequantize_logit", "standardize", "pca",
                                               "pca_whiten", "l2_normalize" };
        g_autoptr (FgParams) raw = fg_params_copy (d->split_params);
        for (guint k = 0; k < G_N_ELEMENTS (pp_keys); k++)
          if (!fg_params_set (raw, pp_keys[k], strcmp (pp_keys[k], "pca") == 0 ? "0" : "false",
                              error))
            return NULL;
        sd = fg_split_data_new (ds, raw, cell->seed, error);
      }
      if (sd == NULL)
        {
          g_prefix_error (error, "ood data set '%s': split: ", d->name);
          return NULL;
        }
      g_ptr_array_add (parts, sd);
      test = fg_split_data_get_test (sd);
      if (test == NULL || test->n == 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "ood data set '%s' has no test part (give it one, or the split key "
                       "'test')", d->name);
          return NULL;
        }
      if (fg_tensor_cols (&test->x) != dim)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "ood data set '%s' has %" G_GSIZE_FORMAT " features per example, '%s' %"
                       G_GSIZE_FORMAT, d->name, fg_tensor_cols (&test->x), cell->dataset->name,
                       dim);
          return NULL;
        }
      g_array_append_val (starts, total);
      g_ptr_array_add (names, g_strdup (d->name));
      total += test->n;
    }
  if (a->ood_zeros)
    {
      g_array_append_val (starts, total);
      g_ptr_array_add (names, g_strdup ("zeros"));
      total += 1;
    }
  if (total == 0)
    return NULL;
  g_array_append_val (starts, total); /* the end */
  rows = fg_tensor_new_2d (total, dim);
  memset (rows->data, 0, total * dim * sizeof (float)); /* the zeros row stays 0 */
  for (guint i = 0; i < parts->len; i++)
    {
      const FgDataPart *test = fg_split_data_get_test (g_ptr_array_index (parts, i));
      gsize start = g_array_index (starts, gsize, i);
      for (gsize r = 0; r < test->n; r++)
        memcpy (fg_tensor_row (rows, start + r), fg_tensor_row (&test->x, r),
                dim * sizeof (float));
    }
  return rows;
}

/* ---- JSON helpers ---------------------------------------------------------------------------- */

static void
set_double (JsonObject *o, const char *name, double v)
{
  if (isfinite (v))
    json_object_set_double_member (o, name, v);
  else
    json_object_set_null_member (o, name);
}

static JsonArray *
double_array (const double *v, gsize n)
{
  JsonArray *a = json_array_sized_new (n);
  for (gsize i = 0; i < n; i++)
    {
      if (isfinite (v[i]))
        json_array_add_double_element (a, v[i]);
      else
        json_array_add_null_element (a);
    }
  return a;
}

static JsonArray *
float_array (const float *v, gsize n)
{
  JsonArray *a = json_array_sized_new (n);
  for (gsize i = 0; i < n; i++)
    json_array_add_double_element (a, v[i]);
  return a;
}

static JsonArray *
count_array (const gsize *v, gsize n)
{
  JsonArray *a = json_array_sized_new (n);
  for (gsize i = 0; i < n; i++)
    json_array_add_int_element (a, (gint64) v[i]);
  return a;
}

static int
cmp_double (gconstpointer pa, gconstpointer pb)
{
  double a = *(const double *) pa, b = *(const double *) pb;
  return (a > b) - (a < b);
}

/* The q-quantile (nearest rank) of the finite values. */
static double
quantile (const double *v, gsize n, double q)
{
  g_autofree double *s = g_new (double, MAX (n, 1));
  gsize m = 0;
  for (gsize i = 0; i < n; i++)
    if (isfinite (v[i]))
      s[m++] = v[i];
  if (m == 0)
    return NAN;
  qsort (s, m, sizeof *s, cmp_double);
  return s[(gsize) CLAMP (floor (q * (m - 1) + 0.5), 0, m - 1)];
}

/* A histogram object {lo, hi, counts}. */
static JsonObject *
histogram_object (const double *v, gsize n, double lo, double hi, guint bins)
{
  JsonObject *h = json_object_new ();
  g_autofree gsize *counts = g_new0 (gsize, bins);
  if (!(hi > lo))
    hi = lo + 1.0;
  fg_histogram (v, n, lo, hi, bins, counts);
  json_object_set_double_member (h, "lo", lo);
  json_object_set_double_member (h, "hi", hi);
  json_object_set_array_member (h, "counts", count_array (counts, bins));
  return h;
}

/* ---- the analyses of one cell ---------------------------------------------------------------- */

static gboolean
reliability_object (const double *logp, const FgDataPart *test, guint K, double temperature,
                    guint n_bins, JsonObject **out, GError **error)
{
  g_autofree gsize *count = g_new (gsize, n_bins);
  g_autofree double *conf = g_new (double, n_bins), *acc = g_new (double, n_bins);
  FgReliability rel = { n_bins, count, conf, acc };
  FgCalibration cal;
  JsonObject *o = json_object_new ();
  for (int pass = 0; pass < 2; pass++)
    {
      double T = pass == 0 ? 1.0 : temperature;
      JsonObject *r;
      if (pass == 1 && !(temperature > 0 && isfinite (temperature)))
        break;
      if (!fg_calibration_compute_log (logp, test->y, test->n, K, T, &cal, &rel, error))
        {
          json_object_unref (o);
          return FALSE;
        }
      r = json_object_new ();
      json_object_set_double_member (r, "temperature", T);
      set_double (r, "ece", cal.ece);
      set_double (r, "nll", cal.nll);
      set_double (r, "accuracy", cal.accuracy);
      json_object_set_array_member (r, "count", count_array (count, n_bins));
      json_object_set_array_member (r, "confidence", double_array (conf, n_bins));
      json_object_set_array_member (r, "accuracy_per_bin", double_array (acc, n_bins));
      json_object_set_object_member (o, pass == 0 ? "raw" : "tempered", r);
    }
  *out = o;
  return TRUE;
}

/* log p(x) of the rows of `x` plus the preprocessing log-det (when both sets have one), and the
 * component of the largest log p(x, k) (log_joint; −1 without it). */
static gboolean
log_density_rows (const FgBaselineVTable *vt, gpointer self, const FgTensor *x,
                  const double *pp_logdet, guint K, double *log_px, gint32 *component,
                  GError **error)
{
  const gsize n = fg_tensor_rows (x);
  const gboolean joint = FG_VTABLE_HAS (vt, FgBaselineVTable, log_joint);
  g_autofree double *lj = joint ? g_new (double, MAX (n, 1) * K) : NULL;
  if (n == 0)
    return TRUE;
  if (!vt->log_density (self, x, log_px, error) || (joint && !vt->log_joint (self, x, lj, error)))
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the plugin gave no reason");
      g_prefix_error (error, "log_density: ");
      return FALSE;
    }
  for (gsize i = 0; i < n; i++)
    {
      guint arg = 0;
      for (guint k = 1; joint && k < K; k++)
        if (lj[i * K + k] > lj[i * K + arg])
          arg = k;
      component[i] = joint ? (gint32) arg : -1;
      if (pp_logdet != NULL)
        log_px[i] += pp_logdet[i];
    }
  return TRUE;
}

static double
finite_mean (const double *v, gsize n)
{
  double s = 0;
  gsize m = 0;
  for (gsize i = 0; i < n; i++)
    if (isfinite (v[i]))
      {
        s += v[i];
        m++;
      }
  return m ? s / (double) m : NAN;
}

/* Share of each component among `n` assignments: the most frequent and its share, and the
 * whole distribution as an array. */
static void
component_shares (const gint32 *c, gsize n, guint K, JsonObject *o)
{
  g_autofree gsize *counts = g_new0 (gsize, K);
  guint top = 0;
  if (n > 0 && c[0] < 0)
    return; /* no log_joint: no components */
  for (gsize i = 0; i < n; i++)
    counts[c[i]]++;
  for (guint k = 1; k < K; k++)
    if (counts[k] > counts[top])
      top = k;
  json_object_set_int_member (o, "top_component", top);
  set_double (o, "top_component_share", n ? (double) counts[top] / (double) n : NAN);
  json_object_set_array_member (o, "component_counts", count_array (counts, K));
}

/* Out-of-domain detection: log p(x) on the cell's test part (in-domain, the positives) and on
 * each ood group's rows; AUROC, AUPR and FPR at 95 % TPR with log p(x) as the score. */
static gboolean
run_ood (const FgExperiment *exp, const FgBaselineVTable *vt, gpointer self,
         const FgSplitData *sd, const GArray *starts, GPtrArray *names, JsonObject *summary,
         JsonObject *data, GError **error)
{
  const FgSplit *split = fg_split_data_get_split (sd);
  const FgDataPart *test = fg_split_data_get_test (sd);
  const guint K = split->n_classes, bins = exp->analysis.bins;
  const double *extra_ld = NULL;
  const FgTensor *extra = fg_split_data_get_extra (sd, &extra_ld);
  const double *test_ld = split->preprocessing ? split->preprocessing->test_logdet : NULL;
  const gsize n_in = test ? test->n : 0, n_out = extra ? fg_tensor_rows (extra) : 0;
  g_autofree double *lp_in = g_new (double, MAX (n_in, 1));
  g_autofree double *lp_out = g_new (double, MAX (n_out, 1));
  g_autofree gint32 *c_in = g_new (gint32, MAX (n_in, 1));
  g_autofree gint32 *c_out = g_new (gint32, MAX (n_out, 1));
  g_autofree double *pooled = NULL;
  JsonObject *sum = json_object_new (), *dat = json_object_new (), *sets = json_object_new ();
  JsonObject *o;
  double lo, hi;

  json_object_set_object_member (summary, "ood", sum);
  json_object_set_object_member (data, "ood", dat);
  if (n_in == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "ood: the cell has no test part");
      return FALSE;
    }
  if (test_ld == NULL || extra_ld == NULL)
    test_ld = extra_ld = NULL; /* both or neither, so that the scores compare */
  if (!log_density_rows (vt, self, &test->x, test_ld, K, lp_in, c_in, error))
    return FALSE;
  if (extra != NULL && !log_density_rows (vt, self, extra, extra_ld, K, lp_out, c_out, error))
    return FALSE;

  /* One range for the cell's histograms: from the 1 % quantile of all scores (a far tail is
   * clamped into the first bin) to the largest. */
  pooled = g_new (double, n_in + n_out);
  memcpy (pooled, lp_in, n_in * sizeof (double));
  memcpy (pooled + n_in, lp_out, n_out * sizeof (double));
  lo = quantile (pooled, n_in + n_out, 0.01);
  hi = quantile (pooled, n_in + n_out, 1.0);
  json_object_set_double_member (dat, "lo", lo);
  json_object_set_double_member (dat, "hi", isfinite (hi) && hi > lo ? hi : lo + 1);

  o = json_object_new ();
  json_object_set_int_member (o, "n", (gint64) n_in);
  set_double (o, "mean_log_px", finite_mean (lp_in, n_in));
  set_double (o, "median_log_px", quantile (lp_in, n_in, 0.5));
  json_object_set_object_member (sum, "in", o);
  o = json_object_new ();
  json_object_set_string_member (o, "name", "in-domain");
  json_object_set_object_member (o, "hist", histogram_object (lp_in, n_in, lo, hi, bins));
  json_object_set_object_member (dat, "in", o);
  json_object_set_object_member (sum, "sets", sets);

  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      const gsize a = g_array_index (starts, gsize, i), b = g_array_index (starts, gsize, i + 1);
      const gsize n = b - a;
      JsonObject *so = json_object_new ();
      FgOodMetrics m;
      json_object_set_int_member (so, "n", (gint64) n);
      set_double (so, "mean_log_px", finite_mean (lp_out + a, n));
      set_double (so, "median_log_px", quantile (lp_out + a, n, 0.5));
      /* Where the in-domain data would put the point: the share of test examples with a
       * lower log p(x) (the zeros image of App. F). */
      if (n == 1)
        {
          gsize below = 0;
          for (gsize j = 0; j < n_in; j++)
            below += lp_in[j] < lp_out[a];
          set_double (so, "log_px", lp_out[a]);
          json_object_set_int_member (so, "class", c_out[a]);
          set_double (so, "in_domain_share_below", (double) below / (double) n_in);
        }
      else
        {
          if (!fg_ood_metrics (lp_in, n_in, lp_out + a, n, &m, error))
            {
              g_prefix_error (error, "ood '%s': ", name);
              return FALSE;
            }
          set_double (so, "auroc", m.auroc);
          set_double (so, "aupr", m.aupr);
          set_double (so, "fpr95", m.fpr95);
        }
      component_shares (c_out + a, n, K, so);
      json_object_set_object_member (sets, name, so);
      o = json_object_new ();
      json_object_set_string_member (o, "name", name);
      json_object_set_object_member (o, "hist", histogram_object (lp_out + a, n, lo, hi, bins));
      json_object_set_object_member (dat, name, o);
    }
  return TRUE;
}

/* d(x) of the unlabeled points (the test part when there are none), in the latent space. */
static gboolean
run_boundary (const FgExperiment *exp, const FgBaselineVTable *vt, gpointer self,
              const FgSplitData *sd, JsonObject *summary, JsonObject *data, GError **error)
{
  const FgSplit *split = fg_split_data_get_split (sd);
  const FgDataPart *part = split->unlabeled.n > 0 ? &split->unlabeled : fg_split_data_get_test (sd);
  const gsize n = part ? part->n : 0, D = split->dim;
  const guint K = split->n_classes;
  g_autofree float *z = NULL, *means = NULL;
  g_autofree double *d = NULL;
  gsize below = 0;
  JsonObject *o = json_object_new ();

  json_object_set_object_member (summary, "boundary", o);
  json_object_set_string_member (o, "part", split->unlabeled.n > 0 ? "unlabeled" : "test");
  json_object_set_int_member (o, "n", (gint64) n);
  set_double (o, "threshold", exp->analysis.boundary_threshold);
  if (n == 0 || K < 2)
    return TRUE;
  z = g_new (float, n * D);
  means = g_new (float, (gsize) K * D);
  d = g_new (double, n);
  if (!vt->embed (self, &part->x, z, error) || !vt->latent_means (self, means, error))
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the plugin gave no reason");
      g_prefix_error (error, "boundary: ");
      return FALSE;
    }
  fg_decision_distance (z, n, D, means, K, d, NULL);
  for (gsize i = 0; i < n; i++)
    below += d[i] < exp->analysis.boundary_threshold;
  json_object_set_int_member (o, "below", (gint64) below);
  set_double (o, "median", quantile (d, n, 0.5));
  set_double (o, "mean", finite_mean (d, n));
  json_object_set_object_member (data, "boundary",
                                 histogram_object (d, n, 0.0, MAX (quantile (d, n, 0.99), 1e-6),
                                                   exp->analysis.bins));
  return TRUE;
}

/* Eq. 8 for the first feature_examples test rows; σ_c from (up to 5000) unlabeled rows, or
 * labeled ones when there are none. */
static gboolean
run_features (const FgExperiment *exp, const FgBaselineVTable *vt, gpointer self,
              const FgSplitData *sd, JsonObject *summary, JsonObject *data, GError **error)
{
  const FgAnalysisOptions *a = &exp->analysis;
  const FgSplit *split = fg_split_data_get_split (sd);
  const FgDataPart *ref = split->unlabeled.n >= 2 ? &split->unlabeled : &split->labeled;
  const FgDataPart *test = fg_split_data_get_test (sd);
  const gsize D = split->dim, n_alpha = a->feature_alphas->len;
  gsize n;
  FgTensor ref_view, x_view;
  g_autofree float *out = NULL;
  double sigma = NAN, roundtrip = NAN;
  JsonObject *o = json_object_new (), *dat = json_object_new ();
  JsonArray *images;

  json_object_set_object_member (summary, "features", o);
  json_object_set_object_member (data, "features", dat);
  if (test == NULL || test->n == 0)
    test = &split->labeled;
  n = MIN ((gsize) a->feature_examples, test->n);
  ref_view = fg_tensor_view_rows (&ref->x, 0, MIN (ref->n, (gsize) SIGMA_REF_ROWS));
  x_view = fg_tensor_view_rows (&test->x, 0, n);
  out = g_new (float, n_alpha * n * D);
  if (!vt->feature_inversion (self, &ref_view, &x_view, a->feature_layer, a->feature_channel,
                              (const double *) a->feature_alphas->data, n_alpha, out, &sigma,
                              error))
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the plugin gave no reason");
      g_prefix_error (error, "features: ");
      return FALSE;
    }
  for (gsize k = 0; k < n_alpha; k++)
    if (g_array_index (a->feature_alphas, double, k) == 0.0)
      {
        roundtrip = 0;
        for (gsize i = 0; i < n; i++)
          for (gsize j = 0; j < D; j++)
            roundtrip = MAX (roundtrip, fabs ((double) out[(k * n + i) * D + j]
                                              - fg_tensor_row (&x_view, i)[j]));
      }
  json_object_set_int_member (o, "layer", a->feature_layer);
  json_object_set_int_member (o, "channel", a->feature_channel);
  set_double (o, "sigma", sigma);
  set_double (o, "alpha0_max_abs_error", roundtrip);
  json_object_set_int_member (dat, "examples", (gint64) n);
  json_object_set_array_member (dat, "alphas", double_array ((const double *) a->feature_alphas->data,
                                                             n_alpha));
  {
    JsonArray *shape = json_array_new ();
    for (guint i = 0; i < split->shape.ndim; i++)
      json_array_add_int_element (shape, (gint64) split->shape.dims[i]);
    json_object_set_array_member (dat, "shape", shape);
  }
  images = json_array_new ();
  for (gsize k = 0; k < n_alpha * n; k++)
    json_array_add_array_element (images, float_array (out + k * D, D));
  json_object_set_array_member (dat, "images", images);
  return TRUE;
}

static gboolean
write_json (const char *path, JsonObject *obj, GError **error)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_node_new (JSON_NODE_OBJECT);
  g_autofree char *text = NULL;
  g_autoptr (GError) local = NULL;
  json_node_set_object (root, obj);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  if (!g_file_set_contents (path, text, -1, &local))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  return TRUE;
}

gboolean
_fg_analysis_run_cell (FgExperiment *exp, const char *out_dir, const FgCell *cell,
                       const FgBaselineVTable *vt, gpointer self, const FgSplitData *sd,
                       const GArray *ood_starts, GPtrArray *ood_names, const double *test_logp,
                       double temperature, JsonObject *summary, GError **error)
{
  const FgAnalysisOptions *a = &exp->analysis;
  const FgSplit *split = fg_split_data_get_split (sd);
  g_autoptr (JsonObject) data = json_object_new ();
  g_autofree char *dir = g_build_filename (out_dir, "analysis", NULL);
  g_autofree char *stem = cell_file_stem (cell);
  g_autofree char *name = g_strconcat (stem, ".json", NULL);
  g_autofree char *path = g_build_filename (dir, name, NULL);

  json_object_set_string_member (data, "key", cell->key);
  json_object_set_string_member (data, "dataset", cell->dataset->name);
  json_object_set_string_member (data, "method", cell->method->name);
  json_object_set_int_member (data, "seed", (gint64) cell->seed);
  if (a->reliability)
    {
      JsonObject *r = NULL;
      const FgDataPart *test = fg_split_data_get_test (sd);
      if (test_logp != NULL && test != NULL && test->n > 0)
        {
          if (!reliability_object (test_logp, test, split->n_classes, temperature, FG_ECE_BINS,
                                   &r, error))
            return FALSE;
          json_object_set_object_member (data, "reliability", r);
        }
    }
  if (a->ood->len > 0)
    {
      if (FG_VTABLE_HAS (vt, FgBaselineVTable, log_density))
        {
          if (!run_ood (exp, vt, self, sd, ood_starts, ood_names, summary, data, error))
            return FALSE;
        }
      else
        json_object_set_null_member (summary, "ood");
    }
  if (a->boundary)
    {
      if (FG_VTABLE_HAS (vt, FgBaselineVTable, embed)
          && FG_VTABLE_HAS (vt, FgBaselineVTable, latent_means))
        {
          if (!run_boundary (exp, vt, self, sd, summary, data, error))
            return FALSE;
        }
      else
        json_object_set_null_member (summary, "boundary");
    }
  if (a->features)
    {
      if (FG_VTABLE_HAS (vt, FgBaselineVTable, feature_inversion))
        {
          if (!run_features (exp, vt, self, sd, summary, data, error))
            return FALSE;
        }
      else
        json_object_set_null_member (summary, "features");
    }
  if (g_mkdir_with_parents (dir, 0777) != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot create %s", dir);
      return FALSE;
    }
  if (!write_json (path, data, error))
    return FALSE;
  json_object_set_string_member (summary, "analysis_file", name);
  return TRUE;
}

gboolean
_fg_analysis_is_done (const FgExperiment *exp, JsonObject *rec)
{
  const FgAnalysisOptions *a = &exp->analysis;
  if (!FG_ANALYSIS_WANTED (a))
    return TRUE;
  if (!json_object_has_member (rec, "analysis_file"))
    return FALSE;
  if ((a->ood->len > 0 && !json_object_has_member (rec, "ood"))
      || (a->boundary && !json_object_has_member (rec, "boundary"))
      || (a->features && !json_object_has_member (rec, "features")))
    return FALSE;
  return TRUE;
}

/* ---- OUT/analysis.md and the SVG figures ----------------------------------------------------- */

static const char *const palette[] = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                       "#8c564b", "#e377c2", "#7f7f7f" };

static char *
fmt (double v, const char *format)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (!isfinite (v))
    return g_strdup ("–");
  return g_strdup (g_ascii_formatd (buf, sizeof buf, format, v));
}

static char *
xml_escape (const char *s)
{
  return g_markup_escape_text (s, -1);
}

/* Start an SVG of w × h with a title line. */
static GString *
svg_begin (double w, double h, const char *title)
{
  GString *s = g_string_new (NULL);
  g_autofree char *t = xml_escape (title);
  g_string_append_printf (s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
                          "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" "
                          "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" "
                          "fill=\"white\"/>\n<text x=\"%.0f\" y=\"16\" text-anchor=\"middle\" "
                          "font-size=\"13\">%s</text>\n", w, h, w, h, w / 2, t);
  return s;
}

typedef struct {
  double x, y, w, h;          /* pixel box */
  double xlo, xhi, ylo, yhi;  /* data box */
} Axes;

static double
ax_x (const Axes *a, double v)
{
  return a->x + (v - a->xlo) / (a->xhi - a->xlo) * a->w;
}

static double
ax_y (const Axes *a, double v)
{
  return a->y + a->h - (v - a->ylo) / (a->yhi - a->ylo) * a->h;
}

static void
svg_axes (GString *s, const Axes *a, const char *xlabel, const char *ylabel)
{
  g_autofree char *xl = xml_escape (xlabel), *yl = xml_escape (ylabel);
  g_string_append_printf (s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                          "fill=\"none\" stroke=\"black\"/>\n", a->x, a->y, a->w, a->h);
  for (int i = 0; i <= 4; i++)
    {
      double vx = a->xlo + (a->xhi - a->xlo) * i / 4.0, vy = a->ylo + (a->yhi - a->ylo) * i / 4.0;
      g_string_append_printf (s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g</text>\n",
                              ax_x (a, vx), a->y + a->h + 14, vx);
      g_string_append_printf (s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
                              a->x - 4, ax_y (a, vy) + 4, vy);
    }
  g_string_append_printf (s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                          a->x + a->w / 2, a->y + a->h + 30, xl);
  g_string_append_printf (s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                          "transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n", a->x - 40,
                          a->y + a->h / 2, a->x - 40, a->y + a->h / 2, yl);
}

static void
svg_legend (GString *s, const Axes *a, guint i, const char *label, const char *color)
{
  g_autofree char *l = xml_escape (label);
  double y = a->y + 14 + 14 * i;
  g_string_append_printf (s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                          "stroke=\"%s\" stroke-width=\"2\"/>\n<text x=\"%.1f\" y=\"%.1f\">%s"
                          "</text>\n", a->x + a->w - 150, y - 4, a->x + a->w - 130, y - 4, color,
                          a->x + a->w - 125, y, l);
}

static gboolean
svg_write (const char *out_dir, const char *name, GString *s, GError **error)
{
  g_autofree char *dir = g_build_filename (out_dir, "figures", NULL);
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) local = NULL;
  g_string_append (s, "</svg>\n");
  if (g_mkdir_with_parents (dir, 0777) != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot create %s", dir);
      return FALSE;
    }
  if (!g_file_set_contents (path, s->str, -1, &local))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  return TRUE;
}

/* Histograms {lo, hi, counts} as step lines of density (counts / (n · width)). */
typedef struct {
  const char *label;
  JsonObject *hist;
} Curve;

static gboolean
svg_histograms (const char *out_dir, const char *name, const char *title, const char *xlabel,
                const Curve *curves, guint n_curves, GError **error)
{
  g_autoptr (GString) s = svg_begin (640, 400, title);
  Axes a = { 70, 30, 540, 320, INFINITY, -INFINITY, 0, 0 };
  for (guint c = 0; c < n_curves; c++)
    {
      JsonArray *counts = json_object_get_array_member (curves[c].hist, "counts");
      double lo = json_object_get_double_member (curves[c].hist, "lo");
      double hi = json_object_get_double_member (curves[c].hist, "hi");
      guint nb = json_array_get_length (counts);
      double total = 0;
      a.xlo = MIN (a.xlo, lo);
      a.xhi = MAX (a.xhi, hi);
      for (guint b = 0; b < nb; b++)
        total += json_array_get_int_element (counts, b);
      for (guint b = 0; b < nb && total > 0; b++)
        a.yhi = MAX (a.yhi, json_array_get_int_element (counts, b) / (total * (hi - lo) / nb));
    }
  if (!(a.xhi > a.xlo))
    a.xhi = a.xlo + 1;
  if (!(a.yhi > 0))
    a.yhi = 1;
  a.yhi *= 1.05;
  svg_axes (s, &a, xlabel, "density");
  for (guint c = 0; c < n_curves; c++)
    {
      JsonArray *counts = json_object_get_array_member (curves[c].hist, "counts");
      double lo = json_object_get_double_member (curves[c].hist, "lo");
      double hi = json_object_get_double_member (curves[c].hist, "hi");
      guint nb = json_array_get_length (counts);
      const char *color = palette[c % G_N_ELEMENTS (palette)];
      double total = 0, w = (hi - lo) / nb;
      for (guint b = 0; b < nb; b++)
        total += json_array_get_int_element (counts, b);
      g_string_append_printf (s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                              "points=\"", color);
      for (guint b = 0; b < nb && total > 0; b++)
        {
          double v = json_array_get_int_element (counts, b) / (total * w);
          g_string_append_printf (s, "%.1f,%.1f %.1f,%.1f ", ax_x (&a, lo + b * w), ax_y (&a, v),
                                  ax_x (&a, lo + (b + 1) * w), ax_y (&a, v));
        }
      g_string_append (s, "\"/>\n");
      svg_legend (s, &a, c, curves[c].label, color);
    }
  return svg_write (out_dir, name, s, error);
}

/* Reliability diagram: accuracy per confidence bin against the diagonal, before and after
 * temperature scaling. */
static gboolean
svg_reliability (const char *out_dir, const char *name, const char *title, JsonObject *rel,
                 GError **error)
{
  const char *parts[] = { "raw", "tempered" };
  g_autoptr (GString) s = svg_begin (760, 400, title);
  for (guint p = 0; p < 2; p++)
    {
      JsonObject *r = json_object_has_member (rel, parts[p])
                          ? json_object_get_object_member (rel, parts[p]) : NULL;
      Axes a = { 60 + p * 370.0, 40, 300, 300, 0, 1, 0, 1 };
      JsonArray *acc, *cnt;
      guint nb;
      g_autofree char *label = NULL, *ece = NULL, *T = NULL;
      if (r == NULL)
        continue;
      acc = json_object_get_array_member (r, "accuracy_per_bin");
      cnt = json_object_get_array_member (r, "count");
      nb = json_array_get_length (acc);
      ece = fmt (100 * _fg_json_get_double (r, "ece"), "%.2f");
      T = fmt (_fg_json_get_double (r, "temperature"), "%.3g");
      label = g_strdup_printf ("confidence (T = %s, ECE %s %%)", T, ece);
      svg_axes (s, &a, label, "accuracy");
      g_string_append_printf (s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                              "stroke=\"gray\" stroke-dasharray=\"4\"/>\n", ax_x (&a, 0),
                              ax_y (&a, 0), ax_x (&a, 1), ax_y (&a, 1));
      for (guint b = 0; b < nb; b++)
        {
          JsonNode *node = json_array_get_element (acc, b);
          double v;
          if (json_array_get_int_element (cnt, b) == 0 || JSON_NODE_HOLDS_NULL (node))
            continue;
          v = json_node_get_double (node);
          g_string_append_printf (s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                                  "fill=\"%s\" fill-opacity=\"0.7\" stroke=\"black\"/>\n",
                                  ax_x (&a, (double) b / nb), ax_y (&a, v), a.w / nb,
                                  ax_y (&a, 0) - ax_y (&a, v), palette[p]);
        }
    }
  return svg_write (out_dir, name, s, error);
}

/* The feature-inversion grid: one row per example, one column per α.  Image-shaped examples
 * (C × H × W with C = 1 or 3, or H × W) are drawn as pixels, scaled by the row's range; other
 * examples as the profile of their features. */
static gboolean
svg_features (const char *out_dir, const char *name, const char *title, JsonObject *f,
              GError **error)
{
  JsonArray *alphas = json_object_get_array_member (f, "alphas");
  JsonArray *images = json_object_get_array_member (f, "images");
  JsonArray *shape = json_object_get_array_member (f, "shape");
  const guint n_alpha = json_array_get_length (alphas);
  const guint n = (guint) json_object_get_int_member (f, "examples");
  guint C = 1, H = 0, W = 0, ndim = json_array_get_length (shape);
  gboolean image;
  const double cell = 96, pad = 8;
  g_autoptr (GString) s = NULL;

  if (ndim == 3)
    {
      C = json_array_get_int_element (shape, 0);
      H = json_array_get_int_element (shape, 1);
      W = json_array_get_int_element (shape, 2);
    }
  else if (ndim == 2)
    {
      H = json_array_get_int_element (shape, 0);
      W = json_array_get_int_element (shape, 1);
    }
  image = (C == 1 || C == 3) && H > 1 && W > 1;
  s = svg_begin (60 + n_alpha * (cell + pad), 50 + n * (cell + pad), title);
  for (guint k = 0; k < n_alpha; k++)
    g_string_append_printf (s, "<text x=\"%.1f\" y=\"38\" text-anchor=\"middle\">α = %.3g</text>\n",
                            60 + k * (cell + pad) + cell / 2,
                            json_array_get_double_element (alphas, k));
  for (guint i = 0; i < n; i++)
    {
      /* One scale per example row, over its α values. */
      double lo = INFINITY, hi = -INFINITY;
      for (guint k = 0; k < n_alpha; k++)
        {
          JsonArray *img = json_array_get_array_element (images, k * n + i);
          for (guint j = 0; j < json_array_get_length (img); j++)
            {
              double v = json_array_get_double_element (img, j);
              lo = MIN (lo, v);
              hi = MAX (hi, v);
            }
        }
      if (!(hi > lo))
        hi = lo + 1;
      for (guint k = 0; k < n_alpha; k++)
        {
          JsonArray *img = json_array_get_array_element (images, k * n + i);
          const guint D = json_array_get_length (img);
          const double x0 = 60 + k * (cell + pad), y0 = 50 + i * (cell + pad);
          if (image)
            {
              const double pw = cell / W, ph = cell / H;
              for (guint r = 0; r < H; r++)
                for (guint c = 0; c < W; c++)
                  {
                    int rgb[3];
                    for (guint ch = 0; ch < 3; ch++)
                      {
                        guint src = (C == 3 ? ch : 0) * H * W + r * W + c;
                        double v = src < D ? json_array_get_double_element (img, src) : lo;
                        rgb[ch] = (int) CLAMP (255.0 * (v - lo) / (hi - lo), 0, 255);
                      }
                    g_string_append_printf (s, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                                            "height=\"%.2f\" fill=\"#%02x%02x%02x\"/>\n",
                                            x0 + c * pw, y0 + r * ph, pw + 0.05, ph + 0.05,
                                            rgb[0], rgb[1], rgb[2]);
                  }
            }
          else
            {
              g_string_append_printf (s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                                      "height=\"%.1f\" fill=\"none\" stroke=\"#ccc\"/>\n"
                                      "<polyline fill=\"none\" stroke=\"%s\" points=\"",
                                      x0, y0, cell, cell, palette[0]);
              for (guint j = 0; j < D; j++)
                g_string_append_printf (s, "%.1f,%.1f ", x0 + cell * (j + 0.5) / D,
                                        y0 + cell * (1 - (json_array_get_double_element (img, j)
                                                          - lo) / (hi - lo)));
              g_string_append (s, "\"/>\n");
            }
        }
    }
  return svg_write (out_dir, name, s, error);
}

static JsonObject *
load_analysis_file (const char *out_dir, JsonObject *rec, JsonParser **parser_out)
{
  const char *file = _fg_json_get_string (rec, "analysis_file");
  g_autofree char *path = NULL;
  g_autoptr (JsonParser) parser = NULL;
  JsonNode *root;
  if (file == NULL)
    return NULL;
  path = g_build_filename (out_dir, "analysis", file, NULL);
  parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, path, NULL))
    return NULL;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  *parser_out = g_steal_pointer (&parser);
  return json_node_get_object (root);
}

static JsonObject *
member_object (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;
  return n != NULL && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

gboolean
_fg_analysis_render (const FgExperiment *exp, FgResultsStore *store, const char *out_dir,
                     GError **error)
{
  const FgAnalysisOptions *a = &exp->analysis;
  const gboolean calib = exp->metrics[FG_METRIC_BRIER] || _fg_metrics_need_temperature (exp->metrics);
  g_autoptr (GString) cal_md = g_string_new (NULL), ood_md = g_string_new (NULL);
  g_autoptr (GString) bnd_md = g_string_new (NULL), feat_md = g_string_new (NULL);
  g_autoptr (GString) md = NULL;
  g_autoptr (GHashTable) boundary_curves = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                                  (GDestroyNotify) g_ptr_array_unref);
  g_autoptr (GPtrArray) parsers = g_ptr_array_new_with_free_func (g_object_unref);
  g_autofree char *path = NULL;
  g_autoptr (GError) local = NULL;

  if (!calib && !FG_ANALYSIS_WANTED (a))
    return TRUE;
  for (guint i = 0; i < exp->cells->len; i++)
    {
      const FgCell *cell = g_ptr_array_index (exp->cells, i);
      JsonObject *rec = _fg_results_lookup (store, cell->key);
      JsonParser *parser = NULL;
      JsonObject *data, *o;
      g_autofree char *stem = cell_file_stem (cell);
      g_autofree char *who = NULL;
      if (rec == NULL || g_strcmp0 (_fg_json_get_string (rec, "status"), "ok") != 0)
        continue;
      who = g_strdup_printf ("| %s | %s | %" G_GUINT64_FORMAT " | %s |", cell->dataset->name,
                             cell->method->name, cell->seed, *cell->grid ? cell->grid : "–");
      if (calib)
        {
          const char *f[] = { "test_accuracy", "test_nll", "test_ece", "test_brier",
                              "temperature", "test_nll_temp", "test_ece_temp", "test_brier_temp" };
          g_string_append (cal_md, who);
          for (guint k = 0; k < G_N_ELEMENTS (f); k++)
            {
              double v = _fg_json_get_double (rec, f[k]);
              g_autofree char *t = strstr (f[k], "accuracy") || strstr (f[k], "ece")
                                       ? fmt (100 * v, "%.2f") : fmt (v, "%.4f");
              g_string_append_printf (cal_md, " %s |", t);
            }
          g_string_append_c (cal_md, '\n');
        }
      data = load_analysis_file (out_dir, rec, &parser);
      if (parser != NULL)
        g_ptr_array_add (parsers, parser);
      if (a->reliability && member_object (data, "reliability") != NULL)
        {
          g_autofree char *name = g_strdup_printf ("analysis-reliability-%s.svg", stem);
          g_autofree char *title = g_strdup_printf ("Reliability: %s, %s, seed %" G_GUINT64_FORMAT
                                                    " (test)", cell->dataset->name,
                                                    cell->method->name, cell->seed);
          if (!svg_reliability (out_dir, name, title, member_object (data, "reliability"),
                                error))
            return FALSE;
        }
      if (a->ood->len > 0)
        {
          JsonObject *sum = member_object (rec, "ood"), *sets = member_object (sum, "sets");
          JsonObject *in = member_object (sum, "in"), *dood = member_object (data, "ood");
          if (sum == NULL)
            g_string_append_printf (ood_md, "%s (no log_density) | | | | | | | |\n", who);
          if (sets != NULL)
            {
              g_autoptr (GList) names = json_object_get_members (sets);
              g_autoptr (GArray) curves = g_array_new (FALSE, FALSE, sizeof (Curve));
              Curve c0 = { "in-domain (test)", member_object (member_object (dood, "in"), "hist") };
              if (c0.hist != NULL)
                g_array_append_val (curves, c0);
              for (GList *l = names; l; l = l->next)
                {
                  JsonObject *so = member_object (sets, l->data);
                  g_autofree char *mi = fmt (_fg_json_get_double (in, "mean_log_px"), "%.1f");
                  g_autofree char *mo = NULL, *au = NULL, *ap = NULL, *fp = NULL, *sh = NULL;
                  gboolean single = json_object_has_member (so, "log_px");
                  mo = fmt (_fg_json_get_double (so, single ? "log_px" : "mean_log_px"), "%.1f");
                  au = fmt (100 * _fg_json_get_double (so, "auroc"), "%.1f");
                  ap = fmt (100 * _fg_json_get_double (so, "aupr"), "%.1f");
                  fp = fmt (100 * _fg_json_get_double (so, "fpr95"), "%.1f");
                  sh = fmt (100 * _fg_json_get_double (so, "top_component_share"), "%.1f");
                  g_string_append_printf (ood_md, "%s %s | %" G_GINT64_FORMAT " | %s | %s | %s | "
                                          "%s | %s | %" G_GINT64_FORMAT " (%s %%)",
                                          who, (const char *) l->data,
                                          json_object_get_int_member (so, "n"), mi, mo, au, ap,
                                          fp, json_object_get_int_member (so, "top_component"),
                                          sh);
                  if (single)
                    {
                      g_autofree char *below = fmt (100 * _fg_json_get_double (
                                                          so, "in_domain_share_below"), "%.1f");
                      g_string_append_printf (ood_md, "; above %s %% of the test data", below);
                    }
                  g_string_append (ood_md, " |\n");
                  if (!single)
                    {
                      Curve c = { l->data, member_object (member_object (dood, l->data), "hist") };
                      if (c.hist != NULL)
                        g_array_append_val (curves, c);
                    }
                }
              if (curves->len > 0)
                {
                  g_autofree char *name = g_strdup_printf ("analysis-ood-%s.svg", stem);
                  g_autofree char *title = g_strdup_printf ("log p(x): %s model (%s, seed %"
                                                            G_GUINT64_FORMAT ")",
                                                            cell->dataset->name,
                                                            cell->method->name, cell->seed);
                  if (!svg_histograms (out_dir, name, title, "log p(x)",
                                       (const Curve *) curves->data, curves->len, error))
                    return FALSE;
                }
            }
        }
      if (a->boundary)
        {
          o = member_object (rec, "boundary");
          if (o == NULL)
            g_string_append_printf (bnd_md, "%s (no embed/latent_means) | | | |\n", who);
          else
            {
              g_autofree char *med = fmt (_fg_json_get_double (o, "median"), "%.2f");
              g_autofree char *key = g_strdup_printf ("%s-s%" G_GUINT64_FORMAT,
                                                      cell->dataset->name, cell->seed);
              JsonObject *h = member_object (data, "boundary");
              g_string_append_printf (bnd_md, "%s %s | %" G_GINT64_FORMAT " | %" G_GINT64_FORMAT
                                      " | %s |\n", who, _fg_json_get_string (o, "part"),
                                      json_object_get_int_member (o, "n"),
                                      json_object_has_member (o, "below")
                                          ? json_object_get_int_member (o, "below") : 0, med);
              if (h != NULL)
                {
                  GPtrArray *list = g_hash_table_lookup (boundary_curves, key);
                  if (list == NULL)
                    {
                      list = g_ptr_array_new ();
                      g_hash_table_insert (boundary_curves, g_strdup (key), list);
                    }
                  g_ptr_array_add (list, (gpointer) cell->method->name);
                  g_ptr_array_add (list, h);
                }
            }
        }
      if (a->features)
        {
          o = member_object (rec, "features");
          if (o == NULL)
            g_string_append_printf (feat_md, "%s (no feature_inversion) | | | |\n", who);
          else
            {
              g_autofree char *sg = fmt (_fg_json_get_double (o, "sigma"), "%.4g");
              g_autofree char *rt = fmt (_fg_json_get_double (o, "alpha0_max_abs_error"), "%.2g");
              JsonObject *f = member_object (data, "features");
              g_string_append_printf (feat_md, "%s %" G_GINT64_FORMAT " | %" G_GINT64_FORMAT
                                      " | %s | %s |\n", who,
                                      json_object_get_int_member (o, "layer"),
                                      json_object_get_int_member (o, "channel"), sg, rt);
              if (f != NULL)
                {
                  g_autofree char *name = g_strdup_printf ("analysis-features-%s.svg", stem);
                  g_autofree char *title = g_strdup_printf (
                      "x(α) = f⁻¹(f(x) + α σ δ), layer %" G_GINT64_FORMAT ", feature %"
                      G_GINT64_FORMAT " (%s, %s)", json_object_get_int_member (o, "layer"),
                      json_object_get_int_member (o, "channel"), cell->dataset->name,
                      cell->method->name);
                  if (!svg_features (out_dir, name, title, f, error))
                    return FALSE;
                }
            }
        }
    }

  /* Fig. 3c: the d(x) histograms of all methods on one data set and seed. */
  {
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init (&it, boundary_curves);
    while (g_hash_table_iter_next (&it, &k, &v))
      {
        GPtrArray *list = v;
        g_autoptr (GArray) curves = g_array_new (FALSE, FALSE, sizeof (Curve));
        g_autofree char *name = g_strdup_printf ("analysis-boundary-%s.svg", (const char *) k);
        g_autofree char *title = g_strdup_printf ("Distance to the decision boundary (%s)",
                                                  (const char *) k);
        for (guint i = 0; i + 1 < list->len; i += 2)
          {
            Curve c = { g_ptr_array_index (list, i), g_ptr_array_index (list, i + 1) };
            g_array_append_val (curves, c);
          }
        if (!svg_histograms (out_dir, name, title, "d(x)", (const Curve *) curves->data,
                             curves->len, error))
          return FALSE;
      }
  }

  md = g_string_new (NULL);
  g_string_append_printf (md, "# %s: analysis\n\n", exp->title);
  if (calib)
    g_string_append_printf (md, "## Calibration (test part)\n\nT: the temperature fitted on the "
                            "validation part (softmax(log p / T); for FlowGMM σ² → T·σ²).  "
                            "Accuracy and ECE in %%.\n\n| Dataset | Method | Seed | Grid | "
                            "Accuracy | NLL | ECE | Brier | T | NLL (T) | ECE (T) | Brier (T) |\n"
                            "| :--- | :--- | ---: | :--- | ---: | ---: | ---: | ---: | ---: | "
                            "---: | ---: | ---: |\n%s\n", cal_md->str);
  if (a->ood->len > 0)
    g_string_append_printf (md, "## Out-of-domain detection (log p(x))\n\nIn-domain: the cell's "
                            "test part (the positives).  AUROC, AUPR (average precision) and "
                            "FPR at 95 %% TPR in %%; the component most of the set falls in.  "
                            "`zeros`: the all-zeros input.\n\n| Dataset | Method | Seed | Grid "
                            "| Scored set | n | mean log p (in) | mean log p (set) | AUROC | AUPR "
                            "| FPR95 | Top component (share) |\n| :--- | :--- | ---: | :--- | "
                            ":--- | ---: | ---: | ---: | ---: | ---: | ---: | :--- |\n%s\n",
                            ood_md->str);
  if (a->boundary)
    {
      g_autofree char *thr = fmt (a->boundary_threshold, "%g");
      g_string_append_printf (md, "## Distance to the decision boundary\n\nd(x) = (‖μ″ − z‖² − "
                              "‖μ′ − z‖²) / (2‖μ′ − μ″‖) for the two closest means.\n\n| Dataset "
                              "| Method | Seed | Grid | Points | n | d < %s | median d |\n| :--- | "
                              ":--- | ---: | :--- | :--- | ---: | ---: | ---: |\n%s\n", thr,
                              bnd_md->str);
    }
  if (a->features)
    g_string_append_printf (md, "## Feature visualisation (eq. 8)\n\n| Dataset | Method | Seed | "
                            "Grid | Layer | Feature | σ | max \\|x(0) − x\\| |\n| :--- | :--- | "
                            "---: | :--- | ---: | ---: | ---: | ---: |\n%s\n", feat_md->str);
  g_string_append (md, "Figures: figures/analysis-*.svg.\n");
  path = g_build_filename (out_dir, "analysis.md", NULL);
  if (!g_file_set_contents (path, md->str, -1, &local))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  return TRUE;
}
