/* SPDX-License-Identifier: MIT */
/* flowgmm — the runner: cells → fitted methods → metrics → stored records.
 *
 * Each cell is reproducible from the experiment file and its seed: the split comes from
 * fg_split_data_new (dataset, split keys, seed) and the method's RNG from
 * fg_rng_init (seed, stream), the stream a hash of the cell's dataset, method and grid point.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <glib/gstdio.h>

#include "experiment/experiment-private.h"
#include "numeric/numeric-private.h"

#define PREDICT_CHUNK 4096

/* ---- the dataset cache: each data set loaded once, shared by all cells and threads ----------- */

typedef struct {
  GMutex     lock; /* held while loading, so a second thread waits for the first */
  gboolean   done;
  FgDataset *ds;
  GError    *error;
} CacheEntry;

struct _FgDatasetCache {
  GMutex      lock;
  GHashTable *entries; /* dataset group name -> CacheEntry */
};

static void
cache_entry_free (gpointer data)
{
  CacheEntry *e = data;
  g_mutex_clear (&e->lock);
  g_clear_pointer (&e->ds, fg_dataset_unref);
  g_clear_error (&e->error);
  g_free (e);
}

static FgDatasetCache *
dataset_cache_new (void)
{
  FgDatasetCache *cache = g_new0 (FgDatasetCache, 1);
  g_mutex_init (&cache->lock);
  cache->entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, cache_entry_free);
  return cache;
}

void
_fg_dataset_cache_free (FgDatasetCache *cache)
{
  if (cache == NULL)
    return;
  g_hash_table_unref (cache->entries);
  g_mutex_clear (&cache->lock);
  g_free (cache);
}

static FgDataset *
load_dataset (const FgExperiment *exp, const FgExpDataset *d, const FgParams *params,
              GError **error)
{
  const FgDatasetVTable *vt = d->component->vtable;
  FgLoadContext ctx = { 0 };
  g_autoptr (FgDataset) ds = NULL;

  ctx.base_dir = exp->base_dir;
  ds = vt->load (params, &ctx, error);
  if (ds == NULL)
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the plugin gave no reason");
      return NULL;
    }
  if (!fg_dataset_finish (ds, error))
    {
      if (error != NULL)
        _fg_assert_error_set (*error);
      return NULL;
    }
  return g_steal_pointer (&ds);
}

/* A copy of `params` with "{seed}" replaced by the cell seed in every path value (top level and
 * components), or NULL when no path value holds "{seed}". */
static FgParams *
params_expand_seed (const FgParams *params, guint64 seed)
{
  const FgParamSpec *specs = fg_params_get_specs (params);
  FgParams *copy = NULL;
  for (const FgParamSpec *sp = specs; sp->name != NULL; sp++)
    {
      if (sp->type == FG_PARAM_COMPONENT)
        {
          const FgParams *sub = fg_params_get_component (params, sp->name);
          g_autoptr (FgParams) sub_copy = sub ? params_expand_seed (sub, seed) : NULL;
          const FgParamSpec *sub_specs = sub_copy ? fg_params_get_specs (sub_copy) : NULL;
          for (const FgParamSpec *q = sub_specs; q != NULL && q->name != NULL; q++)
            if (q->type == FG_PARAM_PATH && fg_params_has (sub_copy, q->name))
              {
                g_autofree char *dotted = g_strdup_printf ("%s.%s", sp->name, q->name);
                if (copy == NULL)
                  copy = fg_params_copy (params);
                fg_params_set (copy, dotted, fg_params_get_string (sub_copy, q->name), NULL);
              }
          continue;
        }
      if (sp->type != FG_PARAM_PATH || !fg_params_has (params, sp->name)
          || strstr (fg_params_get_string (params, sp->name), "{seed}") == NULL)
        continue;
      {
        g_autofree char *path = fg_path_expand_seed (fg_params_get_string (params, sp->name),
                                                     seed);
        if (copy == NULL)
          copy = fg_params_copy (params);
        fg_params_set (copy, sp->name, path, NULL);
      }
    }
  return copy;
}

/* Returns a new reference to the data set of group `d`, loading it on first use.  A data set
 * with "{seed}" in a path is loaded once per seed. */
FgDataset *
_fg_dataset_cache_get (FgExperiment *exp, const FgExpDataset *d, guint64 seed, GError **error)
{
  FgDatasetCache *cache = exp->cache;
  CacheEntry *e;
  FgDataset *ds = NULL;
  g_autoptr (FgParams) expanded = params_expand_seed (d->params, seed);
  g_autofree char *key = expanded ? g_strdup_printf ("%s/%" G_GUINT64_FORMAT, d->name, seed)
                                  : g_strdup (d->name);

  g_mutex_lock (&cache->lock);
  e = g_hash_table_lookup (cache->entries, key);
  if (e == NULL)
    {
      e = g_new0 (CacheEntry, 1);
      g_mutex_init (&e->lock);
      g_hash_table_insert (cache->entries, g_strdup (key), e);
    }
  g_mutex_unlock (&cache->lock);

  g_mutex_lock (&e->lock);
  if (!e->done)
    {
      e->ds = load_dataset (exp, d, expanded ? expanded : d->params, &e->error);
      e->done = TRUE;
    }
  if (e->ds != NULL)
    ds = fg_dataset_ref (e->ds);
  else
    g_set_error (error, e->error->domain, e->error->code, "dataset '%s' (plugin %s): %s",
                 d->name, d->plugin, e->error->message);
  g_mutex_unlock (&e->lock);
  return ds;
}

/* ---- metrics --------------------------------------------------------------------------------- */

/* The predictions of a method on one labeled part. */
typedef struct {
  gsize   n;
  const gint32 *y; /* borrowed: the part's labels */
  double *logp;   /* n × K class log-probabilities, or NULL when no metric needs them */
  gint32 *labels; /* n */
} PartPrediction;

static void
part_prediction_clear (PartPrediction *p)
{
  g_clear_pointer (&p->logp, g_free);
  g_clear_pointer (&p->labels, g_free);
}

/* Predict the whole part (chunk by chunk) and check the labels; with need_proba also the class
 * log-probabilities: from log_joint when the method has it (in double: FlowGMM's posteriors
 * underflow to 0 as floats, which no temperature could undo), else the logs of predict's
 * probabilities. */
static gboolean
predict_part (const FgBaselineVTable *vt, gpointer self, const FgDataPart *part, guint n_classes,
              gboolean need_proba, const char *what, PartPrediction *out, GError **error)
{
  const gboolean joint = need_proba && FG_VTABLE_HAS (vt, FgBaselineVTable, log_joint);
  g_autofree float *proba = NULL;
  memset (out, 0, sizeof *out);
  if (part == NULL || part->n == 0)
    return TRUE;
  if (part->y == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "the %s examples have no labels", what);
      return FALSE;
    }
  out->n = part->n;
  out->y = part->y;
  out->labels = g_new (gint32, part->n);
  if (need_proba)
    out->logp = g_new (double, part->n * n_classes);
  if (need_proba && !joint)
    proba = g_new (float, MIN (PREDICT_CHUNK, part->n) * n_classes);
  for (gsize start = 0; start < part->n; start += PREDICT_CHUNK)
    {
      gsize rows = MIN (PREDICT_CHUNK, part->n - start);
      FgTensor view = fg_tensor_view_rows (&part->x, start, rows);
      double *logp = out->logp ? out->logp + start * n_classes : NULL;
      if (!vt->predict (self, &view, out->labels + start, proba, error)
          || (joint && !vt->log_joint (self, &view, logp, error)))
        {
          if (error != NULL && *error == NULL)
            g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the plugin gave no reason");
          g_prefix_error (error, joint ? "predict or log_joint (%s): " : "predict (%s): ", what);
          return FALSE;
        }
      if (joint)
        fg_log_joint_to_log_posterior (logp, rows, n_classes);
      else if (proba != NULL && !fg_proba_to_log (proba, rows, n_classes, logp, error))
        {
          g_prefix_error (error, "predict (%s, rows from %" G_GSIZE_FORMAT " on): ", what,
                          start);
          return FALSE;
        }
      for (gsize i = 0; i < rows; i++)
        {
          gint32 l = out->labels[start + i];
          if (l < 0 || (guint) l >= n_classes)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                           "predict (%s): label %d for row %" G_GSIZE_FORMAT
                           " is outside the %u classes", what, l, start + i, n_classes);
              return FALSE;
            }
        }
    }
  return TRUE;
}

/* The metrics asked for on one part (NAN for the others, or when the part is empty):
 * accuracy of the predicted labels; NLL, ECE and Brier of the probabilities, as given and, when
 * temperature > 0, tempered. */
static gboolean
evaluate (const PartPrediction *p, guint n_classes, const gboolean *metrics, double temperature,
          const char *what, double *out, GError **error)
{
  gsize correct = 0, n_eval = 0;
  FgCalibration cal;

  for (guint m = 0; m < FG_N_METRICS; m++)
    out[m] = NAN;
  for (gsize i = 0; i < p->n; i++)
    if (p->y[i] >= 0)
      {
        n_eval++;
        correct += p->labels[i] == p->y[i];
      }
  if (n_eval == 0)
    return TRUE;
  out[FG_METRIC_ACCURACY] = (double) correct / (double) n_eval;
  if (p->logp == NULL)
    return TRUE;
  if (!fg_calibration_compute_log (p->logp, p->y, p->n, n_classes, 1.0, &cal, NULL, error))
    {
      g_prefix_error (error, "predict (%s): ", what);
      return FALSE;
    }
  out[FG_METRIC_NLL] = metrics[FG_METRIC_NLL] ? cal.nll : NAN;
  out[FG_METRIC_ECE] = metrics[FG_METRIC_ECE] ? cal.ece : NAN;
  out[FG_METRIC_BRIER] = metrics[FG_METRIC_BRIER] ? cal.brier : NAN;
  if (temperature > 0 && isfinite (temperature))
    {
      if (!fg_calibration_compute_log (p->logp, p->y, p->n, n_classes, temperature, &cal, NULL,
                                       error))
        return FALSE;
      out[FG_METRIC_NLL_TEMP] = metrics[FG_METRIC_NLL_TEMP] ? cal.nll : NAN;
      out[FG_METRIC_ECE_TEMP] = metrics[FG_METRIC_ECE_TEMP] ? cal.ece : NAN;
      out[FG_METRIC_BRIER_TEMP] = metrics[FG_METRIC_BRIER_TEMP] ? cal.brier : NAN;
    }
  return TRUE;
}

/* ---- one cell -------------------------------------------------------------------------------- */

const char *
_fg_cell_phase_name (FgCellPhase phase)
{
  switch (phase)
    {
    case FG_CELL_PHASE_LOAD: return "load";
    case FG_CELL_PHASE_SPLIT: return "split";
    case FG_CELL_PHASE_CREATE: return "create";
    case FG_CELL_PHASE_FIT: return "fit";
    case FG_CELL_PHASE_PREDICT: return "predict";
    case FG_CELL_PHASE_FIGURE: return "figure";
    }
  return "run";
}

void
_fg_cell_result_clear (FgCellResult *r)
{
  g_clear_pointer (&r->record, json_object_unref);
  g_clear_pointer (&r->message, g_free);
}

typedef struct {
  const FgCellHooks *hooks;
  const FgCell      *cell;
} CellCtx;

static gboolean
cell_cancelled (const FgCellHooks *hooks)
{
  return hooks->cancelled != NULL && hooks->cancelled (hooks->user_data);
}

static void
cell_phase (const FgCellHooks *hooks, const FgCell *cell, FgCellPhase phase)
{
  if (hooks->phase != NULL)
    hooks->phase (hooks->user_data, cell, phase);
}

static void
hook_progress (gpointer user_data, double fraction, const char *what)
{
  CellCtx *cc = user_data;
  if (cc->hooks->progress != NULL)
    cc->hooks->progress (cc->hooks->user_data, cc->cell, fraction, what);
}

static gboolean
hook_cancelled (gpointer user_data)
{
  CellCtx *cc = user_data;
  return cell_cancelled (cc->hooks);
}

static void
add_params (JsonBuilder *b, const FgParams *params, const char *prefix)
{
  for (const FgParamSpec *sp = fg_params_get_specs (params); sp && sp->name; sp++)
    {
      g_autofree char *name = g_strconcat (prefix, sp->name, NULL);
      g_autofree char *text = fg_params_get_text (params, sp->name);
      json_builder_set_member_name (b, name);
      if (text != NULL)
        json_builder_add_string_value (b, text);
      else
        json_builder_add_null_value (b);
      if (sp->type == FG_PARAM_COMPONENT)
        {
          const FgParams *sub = fg_params_get_component (params, sp->name);
          if (sub != NULL)
            {
              g_autofree char *sub_prefix = g_strconcat (name, ".", NULL);
              add_params (b, sub, sub_prefix);
            }
        }
    }
}

static void
add_double (JsonBuilder *b, const char *name, double v)
{
  json_builder_set_member_name (b, name);
  if (isfinite (v))
    json_builder_add_double_value (b, v);
  else
    json_builder_add_null_value (b);
}

typedef struct {
  gboolean    ok;
  const char *message;
  double      fields[FG_N_FIELDS];
  double      seconds;
  const char *fingerprint;
  gsize       n_labeled, n_unlabeled, n_val, n_test;
  guint       n_classes;
  gboolean    have_sizes;
  double      temperature;  /* fitted on validation; NAN when not asked for */
  JsonObject *analysis;     /* members added to the record (nullable) */
} CellOutcome;

static JsonObject *
make_record (const FgExperiment *exp, const FgCell *cell, const CellOutcome *o)
{
  const FgExpMethod *m = cell->method;
  const FgExpDataset *d = cell->dataset;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *when = g_date_time_format_iso8601 (now);
  g_autofree const char **values = g_new0 (const char *, m->entries->len + 1);
  const FgParams *params = g_ptr_array_index (m->points, cell->point);
  const FgPluginRecord *provider = fg_registry_get_provider (exp->reg, m->component);
  g_autofree char *params_text = fg_params_to_string (params);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "key");
  json_builder_add_string_value (b, cell->key);
  json_builder_set_member_name (b, "dataset");
  json_builder_add_string_value (b, d->name);
  json_builder_set_member_name (b, "method");
  json_builder_add_string_value (b, m->name);
  json_builder_set_member_name (b, "plugin");
  json_builder_add_string_value (b, m->plugin);
  json_builder_set_member_name (b, "plugin_version");
  if (provider != NULL && provider->info != NULL && provider->info->version != NULL)
    json_builder_add_string_value (b, provider->info->version);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "dataset_plugin");
  json_builder_add_string_value (b, d->plugin);
  json_builder_set_member_name (b, "point");
  json_builder_add_int_value (b, cell->point);
  json_builder_set_member_name (b, "grid");
  json_builder_begin_object (b);
  _fg_exp_method_point_values (m, cell->point, values);
  for (guint i = 0; i < m->entries->len; i++)
    {
      FgExpEntry *e = g_ptr_array_index (m->entries, i);
      if (e->values->len > 1)
        {
          json_builder_set_member_name (b, e->key);
          json_builder_add_string_value (b, values[i]);
        }
    }
  json_builder_end_object (b);
  json_builder_set_member_name (b, "params");
  json_builder_begin_object (b);
  add_params (b, params, "");
  json_builder_end_object (b);
  json_builder_set_member_name (b, "params_text");
  json_builder_add_string_value (b, params_text);
  json_builder_set_member_name (b, "dataset_params");
  json_builder_begin_object (b);
  add_params (b, d->params, "");
  add_params (b, d->split_params, "");
  json_builder_end_object (b);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, (gint64) cell->seed);
  json_builder_set_member_name (b, "status");
  json_builder_add_string_value (b, o->ok ? "ok" : "error");
  json_builder_set_member_name (b, "error");
  if (o->ok)
    json_builder_add_null_value (b);
  else
    json_builder_add_string_value (b, o->message ? o->message : "unknown error");
  for (guint f = 0; f < FG_N_FIELDS; f++)
    if (_fg_field_is_computed (exp->metrics, f))
      add_double (b, _fg_field_name (f), o->fields[f]);
  if (_fg_metrics_need_temperature (exp->metrics))
    add_double (b, "temperature", o->temperature);
  if (o->analysis != NULL)
    {
      g_autoptr (GList) members = json_object_get_members (o->analysis);
      for (GList *l = members; l != NULL; l = l->next)
        {
          json_builder_set_member_name (b, l->data);
          json_builder_add_value (b, json_node_copy (json_object_get_member (o->analysis,
                                                                            l->data)));
        }
    }
  add_double (b, "seconds", o->seconds);
  json_builder_set_member_name (b, "split");
  if (o->fingerprint != NULL)
    json_builder_add_string_value (b, o->fingerprint);
  else
    json_builder_add_null_value (b);
  {
    const char *names[] = { "n_labeled", "n_unlabeled", "n_val", "n_test", "n_classes" };
    gsize sizes[] = { o->n_labeled, o->n_unlabeled, o->n_val, o->n_test, o->n_classes };
    for (guint i = 0; i < G_N_ELEMENTS (names); i++)
      {
        json_builder_set_member_name (b, names[i]);
        if (o->have_sizes)
          json_builder_add_int_value (b, (gint64) sizes[i]);
        else
          json_builder_add_null_value (b);
      }
  }
  json_builder_set_member_name (b, "config");
  json_builder_add_string_value (b, cell->config);
  json_builder_set_member_name (b, "flowgmm_version");
  json_builder_add_string_value (b, fg_version ());
  _fg_provenance_add (b, exp, cell);
  json_builder_set_member_name (b, "finished");
  json_builder_add_string_value (b, when);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return json_object_ref (json_node_get_object (root));
}

/**
 * _fg_cell_error_record:
 * @exp: the experiment
 * @cell: one of its cells
 * @message: why the cell failed
 * @seconds: how long it ran
 *
 * Returns: (transfer full): the record of a cell that failed outside _fg_cell_run () (a worker
 *   process that crashed running it).
 */
JsonObject *
_fg_cell_error_record (const FgExperiment *exp, const FgCell *cell, const char *message,
                       double seconds)
{
  CellOutcome o = { 0 };
  for (guint f = 0; f < FG_N_FIELDS; f++)
    o.fields[f] = NAN;
  o.message = message;
  o.seconds = seconds;
  return make_record (exp, cell, &o);
}

static FgFigureCell
figure_cell (const FgCell *cell)
{
  FgFigureCell fc = { cell->dataset->name, cell->method->name, cell->seed, cell->point,
                      cell->key, cell->grid, { 0 } };
  return fc;
}

/* Evaluate a fitted cell for the figures the experiment asks for (2-D data only).  A failure
 * here never fails the cell: its numbers are already computed. */
static void
capture_figure_data (const FgExperiment *exp, const char *out_dir, const FgCell *cell,
                     const FgBaselineVTable *vt, gpointer self, const FgSplitData *sd)
{
  FgFigureCell fc = figure_cell (cell);
  g_autoptr (GError) error = NULL;
  if (!fg_figure_options_wants_cell (exp->figures, cell->dataset->name, cell->method->name,
                                     cell->seed))
    return;
  if (!fg_figure_capture_cell (out_dir, exp->figures, &fc, vt, self,
                               fg_split_data_get_split (sd), fg_split_data_get_test (sd), &error))
    g_warning ("%s: figure data not captured: %s", cell->label, error->message);
}

/* Bits per dimension of the 8-bit data over the rows of `n_parts` parts: the method's log p(x)
 * in the space it sees, back to the loaded pixels u ∈ [0, 1]^D with the preprocessing's
 * log-det, and to the 256 levels of each pixel:
 *   bpd = (−log p(u) + D·log 256) / (D·log 2),  −log p(u) = −log p(t(u)) − log|det ∂t/∂u|.
 * NAN when the method has no density, the preprocessing is not invertible or there is no row. */
static gboolean
evaluate_bpd (const FgBaselineVTable *vt, gpointer self, const FgSplit *split,
              const FgDataPart *const *parts, const double *const *logdets, guint n_parts,
              const char *what, double *out, GError **error)
{
  const FgPreprocessing *pp = split->preprocessing;
  const double D = (double) split->dim;
  g_autofree double *lp = NULL;
  double sum = 0.0;
  gsize n = 0;

  *out = NAN;
  if (!FG_VTABLE_HAS (vt, FgBaselineVTable, log_density) || (pp != NULL && !pp->invertible))
    return TRUE;
  for (guint p = 0; p < n_parts; p++)
    {
      const FgDataPart *part = parts[p];
      if (part == NULL || part->n == 0)
        continue;
      if (lp == NULL)
        lp = g_new (double, PREDICT_CHUNK);
      for (gsize start = 0; start < part->n; start += PREDICT_CHUNK)
        {
          gsize rows = MIN (PREDICT_CHUNK, part->n - start);
          FgTensor view = fg_tensor_view_rows (&part->x, start, rows);
          if (!vt->log_density (self, &view, lp, error))
            {
              if (error != NULL && *error == NULL)
                g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the plugin gave no reason");
              g_prefix_error (error, "log_density (%s): ", what);
              return FALSE;
            }
          for (gsize i = 0; i < rows; i++)
            {
              double v = lp[i] + (logdets[p] != NULL ? logdets[p][start + i] : 0.0);
              if (!isfinite (v))
                {
                  g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                               "log_density (%s): non-finite log-density for row %" G_GSIZE_FORMAT,
                               what, start + i);
                  return FALSE;
                }
              sum -= v;
            }
          n += rows;
        }
    }
  if (n > 0)
    *out = (sum / (double) n + D * log (256.0)) / (D * G_LN2);
  return TRUE;
}

/* The bpd fields of a fitted cell: validation, test and the training rows (labeled and
 * unlabeled). */
static gboolean
evaluate_bpd_fields (const FgBaselineVTable *vt, gpointer self, const FgSplitData *sd,
                     double *fields, GError **error)
{
  const FgSplit *split = fg_split_data_get_split (sd);
  const FgPreprocessing *pp = split->preprocessing;
  const FgDataPart *val[1] = { &split->validation };
  const FgDataPart *test[1] = { fg_split_data_get_test (sd) };
  const FgDataPart *train[2] = { &split->labeled, &split->unlabeled };
  const double *val_ld[1] = { pp ? pp->validation_logdet : NULL };
  const double *test_ld[1] = { pp ? pp->test_logdet : NULL };
  const double *train_ld[2] = { pp ? pp->labeled_logdet : NULL,
                                pp ? pp->unlabeled_logdet : NULL };
  return evaluate_bpd (vt, self, split, val, val_ld, 1, "validation",
                       &fields[FG_FIELD (0, FG_METRIC_BPD)], error)
         && evaluate_bpd (vt, self, split, test, test_ld, 1, "test",
                          &fields[FG_FIELD (1, FG_METRIC_BPD)], error)
         && evaluate_bpd (vt, self, split, train, train_ld, 2, "training rows",
                          &fields[FG_FIELD (FG_PART_TRAIN_FIELDS, FG_METRIC_BPD)], error);
}

/* OUT/resume/<digest of the cell key>: where the cell's method may keep its training state. */
static char *
resume_dir (const char *out_dir, const FgCell *cell)
{
  g_autofree char *digest = _fg_digest (cell->key, 16);
  return g_build_filename (out_dir, "resume", digest, NULL);
}

/* Delete a stored cell's training state (the directory and the files in it). */
static void
remove_resume_dir (const char *out_dir, const FgCell *cell)
{
  g_autofree char *dir = resume_dir (out_dir, cell);
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  if (d == NULL)
    return;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      if (g_remove (path) != 0)
        g_warning ("cannot remove %s: %s", path, g_strerror (errno));
    }
  g_rmdir (dir);
}

static double
seconds_since (gint64 t0)
{
  return (double) (g_get_monotonic_time () - t0) / 1e6;
}

/**
 * _fg_cell_run:
 * @exp: an experiment loaded with a registry
 * @out_dir: its output directory (figure data is written there)
 * @cell: the cell to run
 * @hooks: where the phases and the progress of the cell go, and whether to stop
 * @result: (out caller-allocates): what happened; clear it with _fg_cell_result_clear ()
 *
 * Runs one cell from its data set to its metrics: loads the data set (once per process, through
 * the experiment's cache), splits it, creates, fits and evaluates the method.  Touches nothing
 * but the cache and the figure data, so the in-process runner, a worker process and any other
 * scheduler call it alike; storing the record is the caller's.
 */
void
_fg_cell_run (FgExperiment *exp, const char *out_dir, const FgCell *cell,
              const FgCellHooks *hooks, FgCellResult *result)
{
  const FgExpMethod *m = cell->method;
  const FgBaselineVTable *vt = m->component->vtable;
  const FgParams *params = g_ptr_array_index (m->points, cell->point);
  CellOutcome o = { 0 };
  CellCtx cc = { hooks, cell };
  FgFitHooks fit_hooks = { hook_progress, hook_cancelled, &cc };
  g_autoptr (FgDataset) ds = NULL;
  g_autoptr (FgParams) split_params = NULL, point_params = NULL;
  g_autoptr (FgSplitData) sd = NULL;
  g_autoptr (GError) local = NULL;
  g_autoptr (FgTensor) ood_rows = NULL;
  g_autoptr (GArray) ood_starts = g_array_new (FALSE, FALSE, sizeof (gsize));
  g_autoptr (GPtrArray) ood_names = g_ptr_array_new_with_free_func (g_free);
  PartPrediction val_pred = { 0 }, test_pred = { 0 };
  gpointer self = NULL;
  const FgSplit *split;
  FgRng rng;
  gint64 t0 = g_get_monotonic_time ();

  memset (result, 0, sizeof *result);
  for (guint f = 0; f < FG_N_FIELDS; f++)
    o.fields[f] = NAN;
  o.temperature = NAN;

  /* A data set that cannot be loaded is a problem of this machine, not a result of the cell:
   * it is reported and counted as failed, but not stored, so the next run tries again. */
  cell_phase (hooks, cell, FG_CELL_PHASE_LOAD);
  if (exp->cache == NULL)
    exp->cache = dataset_cache_new ();
  ds = _fg_dataset_cache_get (exp, cell->dataset, cell->seed, &local);
  if (ds == NULL)
    {
      result->end = FG_CELL_NOT_STORED;
      result->message = g_strdup (local->message);
      result->seconds = seconds_since (t0);
      return;
    }

  cell_phase (hooks, cell, FG_CELL_PHASE_SPLIT);
  /* Out-of-domain rows go through this cell's preprocessing with its split. */
  if (exp->analysis.ood->len > 0 && FG_VTABLE_HAS (vt, FgBaselineVTable, log_density))
    {
      ood_rows = _fg_analysis_ood_rows (exp, cell, ood_starts, ood_names, &local);
      if (ood_rows == NULL && local != NULL)
        {
          /* Like a data set that cannot be loaded: reported, not stored. */
          result->end = FG_CELL_NOT_STORED;
          result->message = g_strdup (local->message);
          result->seconds = seconds_since (t0);
          return;
        }
    }
  split_params = params_expand_seed (cell->dataset->split_params, cell->seed);
  sd = fg_split_data_new_with_extra (ds, split_params ? split_params : cell->dataset->split_params,
                                     cell->seed, ood_rows, &local);
  if (sd == NULL)
    {
      _fg_assert_error_set (local);
      g_prefix_error (&local, "split: ");
      goto done;
    }
  fg_split_data_set_hooks (sd, &fit_hooks);
  if (exp->checkpoint_every > 0 || exp->checkpoint_minutes > 0 || exp->run_steps > 0)
    {
      g_autofree char *rdir = resume_dir (out_dir, cell);
      FgResume resume = { rdir, exp->checkpoint_every, exp->checkpoint_minutes, exp->run_steps,
                          { 0 } };
      if (g_mkdir_with_parents (rdir, 0755) == 0)
        fg_split_data_set_resume (sd, &resume);
      else
        g_warning ("%s: cannot create %s (%s): the cell cannot resume if interrupted",
                   cell->label, rdir, g_strerror (errno));
    }
  fg_split_data_set_group (sd, hooks->group);
  split = fg_split_data_get_split (sd);
  o.have_sizes = TRUE;
  o.fingerprint = split->fingerprint;
  o.n_classes = split->n_classes;
  o.n_labeled = split->labeled.n;
  o.n_unlabeled = split->unlabeled.n;
  o.n_val = split->validation.n;
  o.n_test = fg_split_data_get_test (sd) ? fg_split_data_get_test (sd)->n : 0;

  /* The method's own random stream: a function of the seed and of what the cell is. */
  fg_rng_init (&rng, cell->seed, cell->stream);

  cell_phase (hooks, cell, FG_CELL_PHASE_CREATE);
  point_params = params_expand_seed (params, cell->seed);
  self = vt->create (point_params ? point_params : params, &rng, &local);
  if (self == NULL)
    {
      if (local == NULL)
        g_set_error (&local, FG_ERROR, FG_ERROR_FAILED, "the plugin gave no reason");
      g_prefix_error (&local, "create: ");
      goto done;
    }
  cell_phase (hooks, cell, FG_CELL_PHASE_FIT);
  if (!vt->fit (self, split, &local))
    {
      if (cell_cancelled (hooks) || g_error_matches (local, FG_ERROR, FG_ERROR_INTERRUPTED))
        {
          /* Interrupted (or paused with its state saved): nothing is stored, the next run does
           * this cell again, from its saved state if it has one. */
          vt->destroy (self);
          result->end = FG_CELL_CANCELLED;
          if (local != NULL && g_error_matches (local, FG_ERROR, FG_ERROR_INTERRUPTED))
            result->message = g_strdup (local->message);
          result->seconds = seconds_since (t0);
          return;
        }
      if (local == NULL)
        g_set_error (&local, FG_ERROR, FG_ERROR_FAILED, "the plugin gave no reason");
      g_prefix_error (&local, "fit: ");
      goto done;
    }
  cell_phase (hooks, cell, FG_CELL_PHASE_PREDICT);
  {
    const gboolean need_proba = exp->metrics[FG_METRIC_NLL] || exp->metrics[FG_METRIC_ECE]
                                || exp->metrics[FG_METRIC_BRIER]
                                || _fg_metrics_need_temperature (exp->metrics)
                                || exp->analysis.reliability;
    if (!predict_part (vt, self, &split->validation, split->n_classes, need_proba, "validation",
                       &val_pred, &local)
        || !predict_part (vt, self, fg_split_data_get_test (sd), split->n_classes, need_proba,
                          "test", &test_pred, &local))
      goto done;
    /* Temperature scaling (doc/analysis.md), fitted on the validation part. */
    if (need_proba && _fg_metrics_need_temperature (exp->metrics))
      {
        if (val_pred.n == 0)
          g_message ("%s: no validation part: the *_temp metrics are not computed",
                     cell->label);
        else if (!fg_temperature_fit_log (val_pred.logp, val_pred.y, val_pred.n,
                                          split->n_classes, &o.temperature, &local))
          {
            g_prefix_error (&local, "temperature: ");
            goto done;
          }
      }
    if (!evaluate (&val_pred, split->n_classes, exp->metrics, o.temperature, "validation",
                   &o.fields[FG_FIELD (0, 0)], &local)
        || !evaluate (&test_pred, split->n_classes, exp->metrics, o.temperature, "test",
                      &o.fields[FG_FIELD (1, 0)], &local)
        || (exp->metrics[FG_METRIC_BPD]
            && !evaluate_bpd_fields (vt, self, sd, o.fields, &local)))
      goto done;
  }
  if (FG_ANALYSIS_WANTED (&exp->analysis))
    {
      o.analysis = json_object_new ();
      if (!_fg_analysis_run_cell (exp, out_dir, cell, vt, self, sd, ood_starts, ood_names,
                                  test_pred.logp, o.temperature, o.analysis, &local))
        {
          g_prefix_error (&local, "analysis: ");
          goto done;
        }
    }
  o.ok = TRUE;
  cell_phase (hooks, cell, FG_CELL_PHASE_FIGURE);
  if (fg_group_get_rank (hooks->group) == 0)
    capture_figure_data (exp, out_dir, cell, vt, self, sd);
  if (exp->image_figures != NULL && fg_group_get_rank (hooks->group) == 0)
    {
      /* Like the other figures, a failure here never fails the cell. */
      g_autoptr (GPtrArray) written = g_ptr_array_new_with_free_func (g_free);
      g_autoptr (GError) fig_error = NULL;
      if (!_fg_image_figures_write (out_dir, cell, vt, self, split, fg_split_data_get_test (sd),
                                    (const char *const *) exp->image_figures, written,
                                    &fig_error))
        g_warning ("%s: image figures: %s", cell->label, fig_error->message);
      for (guint i = 0; i < written->len; i++)
        g_message ("wrote %s", (const char *) g_ptr_array_index (written, i));
    }

done:
  if (self != NULL)
    vt->destroy (self);
  if (!o.ok)
    {
      for (guint f = 0; f < FG_N_FIELDS; f++)
        o.fields[f] = NAN;
      o.message = local ? local->message : "unknown error";
      result->message = g_strdup (o.message);
    }
  o.seconds = result->seconds = seconds_since (t0);
  result->end = FG_CELL_STORE;
  result->record = make_record (exp, cell, &o);
  g_clear_pointer (&o.analysis, json_object_unref);
  part_prediction_clear (&val_pred);
  part_prediction_clear (&test_pred);
}

/* ---- a run in this process (threads) --------------------------------------------------------- */

struct _FgRun {
  FgExperiment       *exp;
  char               *out_dir;
  const FgRunOptions *options;
  FgRunOptions        default_options;
  FgResultsStore     *store;     /* NULL in a run that only computes cells */
  FgProgress         *progress;
  GMutex              lock;      /* summary and store_error */
  FgRunSummary       *summary;
  FgRunSummary        local_summary;
  GError             *store_error; /* the first failed append: the run cannot go on */
  FgWorkerSink        sink;
};
typedef FgRun RunCtx;

typedef struct {
  RunCtx *run;
  gint64  last_report;
} InProcessCell;

static void
count (RunCtx *run, guint *counter)
{
  g_mutex_lock (&run->lock);
  (*counter)++;
  g_mutex_unlock (&run->lock);
}

static gboolean
run_should_stop (gpointer user_data)
{
  RunCtx *run = user_data;
  gboolean stop;
  g_mutex_lock (&run->lock);
  stop = run->store_error != NULL;
  g_mutex_unlock (&run->lock);
  return stop || (run->options->cancel != NULL && g_atomic_int_get (run->options->cancel) != 0);
}

static gboolean
run_cancelled (gpointer user_data)
{
  RunCtx *run = user_data;
  return run->options->cancel != NULL && g_atomic_int_get (run->options->cancel) != 0;
}

static void
run_cell_started (gpointer user_data, const FgCell *cell)
{
  RunCtx *run = user_data;
  _fg_progress_cell_started (run->progress, cell);
}

static void
run_cell_progress (gpointer user_data, const FgCell *cell, gint64 *last_report, double fraction,
                   const char *what)
{
  RunCtx *run = user_data;
  _fg_progress_cell_update (run->progress, cell, last_report, fraction, what);
}

static void
run_cell_not_run (gpointer user_data, const FgCell *cell)
{
  RunCtx *run = user_data;
  count (run, &run->summary->n_cancelled);
}

/* Stores what a cell produced (from whichever process ran it), counts it and reports it. */
static void
run_cell_finished (gpointer user_data, const FgCell *cell, const FgCellResult *r)
{
  RunCtx *run = user_data;
  const char *status;
  double val = NAN, test = NAN;

  switch (r->end)
    {
    case FG_CELL_CANCELLED:
      count (run, &run->summary->n_cancelled);
      /* A message says why a fit stopped on purpose with its state saved (run_steps). */
      _fg_progress_cell_finished (run->progress, cell, r->message ? "paused" : "cancelled", NAN,
                                  NAN, r->seconds, r->message);
      return;
    case FG_CELL_NOT_STORED:
      count (run, &run->summary->n_failed);
      _fg_progress_cell_finished (run->progress, cell, "error", NAN, NAN, r->seconds,
                                  r->message);
      return;
    case FG_CELL_STORE:
      break;
    }
  {
    g_autoptr (GError) local = NULL;
    if (!_fg_results_append (run->store, r->record, &local))
      {
        g_mutex_lock (&run->lock);
        if (run->store_error == NULL)
          run->store_error = g_steal_pointer (&local);
        g_mutex_unlock (&run->lock);
        return;
      }
  }
  /* Stored: the cell is finished as any other, its training state is no longer needed. */
  remove_resume_dir (run->out_dir, cell);
  status = _fg_json_get_string (r->record, "status");
  count (run, g_strcmp0 (status, "ok") == 0 ? &run->summary->n_ok : &run->summary->n_failed);
  val = _fg_json_get_double (r->record, _fg_field_name (FG_FIELD (0, FG_METRIC_ACCURACY)));
  test = _fg_json_get_double (r->record, _fg_field_name (FG_FIELD (1, FG_METRIC_ACCURACY)));
  _fg_progress_cell_finished (run->progress, cell, status, val, test, r->seconds, r->message);
}

static void
in_process_progress (gpointer user_data, const FgCell *cell, double fraction, const char *what)
{
  InProcessCell *ic = user_data;
  run_cell_progress (ic->run, cell, &ic->last_report, fraction, what);
}

/* The hooks' user data is the cell's InProcessCell, not the run. */
static gboolean
in_process_cancelled (gpointer user_data)
{
  InProcessCell *ic = user_data;
  return run_cancelled (ic->run);
}

static void
run_cell_in_process (RunCtx *run, const FgCell *cell)
{
  InProcessCell ic = { run, g_get_monotonic_time () };
  FgCellHooks hooks = { NULL, in_process_progress, in_process_cancelled, &ic };
  FgCellResult r;

  if (run_should_stop (run))
    {
      run_cell_not_run (run, cell);
      return;
    }
  run_cell_started (run, cell);
  _fg_cell_run (run->exp, run->out_dir, cell, &hooks, &r);
  run_cell_finished (run, cell, &r);
  _fg_cell_result_clear (&r);
}

static void
pool_worker (gpointer data, gpointer user_data)
{
  RunCtx *run = user_data;
  run_cell_in_process (run, g_ptr_array_index (run->exp->cells, GPOINTER_TO_UINT (data) - 1));
}

static gboolean
run_in_process (RunCtx *run, GPtrArray *todo, guint jobs, GError **error)
{
  guint threads_before;
  GThreadPool *pool;

  if (jobs <= 1)
    {
      for (guint i = 0; i < todo->len; i++)
        run_cell_in_process (run, g_ptr_array_index (todo, i));
      return TRUE;
    }
  threads_before = fg_get_num_threads ();
  /* N cells at once, each single-threaded: no OpenBLAS pool on top of ours. */
  fg_set_num_threads (1);
  pool = g_thread_pool_new (pool_worker, run, (gint) jobs, TRUE, error);
  if (pool == NULL)
    {
      fg_set_num_threads (threads_before);
      return FALSE;
    }
  for (guint i = 0; i < todo->len; i++)
    g_thread_pool_push (pool, GUINT_TO_POINTER (((FgCell *) g_ptr_array_index (todo, i))->index + 1),
                        NULL);
  g_thread_pool_free (pool, FALSE, TRUE); /* waits for every cell */
  fg_set_num_threads (threads_before);
  return TRUE;
}

/* Whether a stored record makes running `cell` again unnecessary. */
static gboolean
is_done (const FgExperiment *exp, const char *out_dir, const FgCell *cell, JsonObject *rec,
         gboolean retry_failed)
{
  FgFigureCell fc = figure_cell (cell);
  const char *status = _fg_json_get_string (rec, "status");
  if (g_strcmp0 (status, "error") == 0)
    return !retry_failed;
  if (g_strcmp0 (status, "ok") != 0)
    return FALSE;
  /* A record made before a metric was asked for lacks it: compute it now. */
  for (guint f = 0; f < FG_N_FIELDS; f++)
    if (_fg_field_is_computed (exp->metrics, f)
        && !json_object_has_member (rec, _fg_field_name (f)))
      return FALSE;
  /* Analyses asked for after the cell ran: fit it again. */
  if (!_fg_analysis_is_done (exp, rec))
    return FALSE;
  /* Figures asked for after the cell ran (or their data deleted): fit it again. */
  if (fg_figure_options_wants_cell (exp->figures, cell->dataset->name, cell->method->name,
                                    cell->seed)
      && !fg_figure_has_capture (out_dir, &fc))
    return FALSE;
  return TRUE;
}

/**
 * _fg_run_begin:
 * @exp: an experiment loaded with a registry
 * @options: (nullable): how to run
 * @summary: (out) (optional): what was done, counted as results reach the sink
 * @store: whether this process stores the results: open and lock the store, claim the output
 *   directory and list the cells to run in @todo; otherwise the run only computes cells (an
 *   MPI rank other than 0)
 * @todo: (out) (optional): with @store, the cells to run, in file order
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the run, to end with _fg_run_end (), or %NULL on error.
 */
FgRun *
_fg_run_begin (FgExperiment *exp, const FgRunOptions *options, FgRunSummary *summary,
               gboolean store, GPtrArray **todo, GError **error)
{
  g_autoptr (GPtrArray) cells = g_ptr_array_new ();
  RunCtx *run;

  g_return_val_if_fail (exp != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  if (exp->reg == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "%s: loaded without plugins (syntax only): it cannot be run", exp->path);
      return NULL;
    }
  run = g_new0 (RunCtx, 1);
  g_mutex_init (&run->lock);
  run->exp = exp;
  run->options = options != NULL ? options : &run->default_options;
  run->summary = summary != NULL ? summary : &run->local_summary;
  memset (run->summary, 0, sizeof *run->summary);
  run->summary->n_cells = exp->cells->len;
  run->out_dir = run->options->out_dir ? g_strdup (run->options->out_dir)
                                       : fg_experiment_default_out_dir (exp);
  run->sink = (FgWorkerSink){ run_should_stop, run_cancelled, run_cell_started,
                              run_cell_progress, run_cell_finished, run_cell_not_run, run };
  if (store)
    {
      run->store = _fg_results_open (run->out_dir, TRUE, error);
      if (run->store == NULL || !_fg_results_claim_dir (exp, run->out_dir, error))
        {
          _fg_run_end (run, FALSE, NULL);
          return NULL;
        }
      for (guint i = 0; i < exp->cells->len; i++)
        {
          FgCell *cell = g_ptr_array_index (exp->cells, i);
          JsonObject *rec = _fg_results_lookup (run->store, cell->key);
          gboolean stale = FALSE;
          if (rec != NULL && is_done (exp, run->out_dir, cell, rec, run->options->retry_failed)
              && (!(stale = _fg_provenance_is_stale (rec)) || !run->options->rerun_stale))
            run->summary->n_skipped++;
          else
            g_ptr_array_add (cells, cell);
          run->summary->n_stale += stale;
        }
    }
  if (exp->cache == NULL)
    exp->cache = dataset_cache_new ();
  run->progress = _fg_progress_new (cells->len, run->options->quiet || !store);
  if (todo != NULL)
    *todo = g_steal_pointer (&cells);
  return run;
}

/* The callbacks that store, count and report the run's results (in the storing process). */
const FgWorkerSink *
_fg_run_get_sink (FgRun *run)
{
  return &run->sink;
}

const char *
_fg_run_get_out_dir (FgRun *run)
{
  return run->out_dir;
}

FgResultsStore *
_fg_run_get_store (FgRun *run)
{
  return run->store;
}

/**
 * _fg_run_end:
 * @run: (transfer full): a run
 * @outputs: write the table and figures (a run that stores, when its cells were scheduled)
 * @error: return location for a #GError, or %NULL
 *
 * Ends @run: reports the first failed append, writes the outputs, frees @run.
 *
 * Returns: %FALSE when a result could not be stored or the outputs not written.
 */
gboolean
_fg_run_end (FgRun *run, gboolean outputs, GError **error)
{
  gboolean ok = TRUE;
  if (run->progress != NULL)
    _fg_progress_done (run->progress);
  if (run->store_error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&run->store_error));
      ok = FALSE;
    }
  else if (outputs && run->store != NULL)
    ok = _fg_outputs_write (run->exp, run->store, run->out_dir, NULL, error);
  g_clear_pointer (&run->progress, _fg_progress_free);
  g_clear_pointer (&run->store, _fg_results_close);
  g_clear_error (&run->store_error);
  g_mutex_clear (&run->lock);
  g_free (run->out_dir);
  g_free (run);
  return ok;
}

/**
 * fg_experiment_run:
 * @exp: an experiment loaded with a registry
 * @options: (nullable): how to run (default: one cell at a time into the default directory)
 * @summary: (out) (optional): what was done
 * @error: return location for a #GError
 *
 * Runs every cell not yet stored in OUT/results.jsonl (each finished cell is stored at once, so
 * an interrupted run resumes where it stopped), then writes OUT/table.{md,csv,tex,json}.  A cell
 * whose split, fit or prediction fails is stored with status "error" and the others still run.
 * OUT/experiment.exp gets a copy of the experiment file; an OUT that holds another
 * experiment's results is refused with %FG_EXPERIMENT_ERROR_RESULTS.
 *
 * Returns: %FALSE only when the run as a whole cannot go on (unwritable output, results of
 *   another experiment); cancellation is not an error (see @summary's n_cancelled).
 */
gboolean
fg_experiment_run (FgExperiment *exp, const FgRunOptions *options, FgRunSummary *summary,
                   GError **error)
{
  g_autoptr (GPtrArray) todo = NULL;
  RunCtx *run;
  guint jobs;
  gboolean ok;

  g_return_val_if_fail (exp != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  run = _fg_run_begin (exp, options, summary, TRUE, &todo, error);
  if (run == NULL)
    return FALSE;
  jobs = MAX (run->options->jobs, 1u);
  jobs = MIN (jobs, MAX (todo->len, 1u));
  if (run->options->no_isolate)
    ok = run_in_process (run, todo, jobs, error);
  else
    ok = _fg_workers_run (exp, run->out_dir, todo, jobs, &run->sink, error);
  if (!ok)
    {
      _fg_run_end (run, FALSE, NULL);
      return FALSE;
    }
  return _fg_run_end (run, TRUE, error);
}
