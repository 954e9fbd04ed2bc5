/* SPDX-License-Identifier: MIT */
/* flowgmm tests — a well-formed plugin exercising every parameter type and component kind the
 * loader checks, with knobs that make a fit or a load fail on purpose. */
#include "fixture.h"

#include <math.h>
#include <string.h>

/* ---- dataset "good-data": separated 2-D clusters, class k around (4k, 0) ---------------- */
static const FgParamSpec data_params[] = {
  FG_PARAM_SPEC_INT ("n", "60", 4, 100000, "training examples"),
  FG_PARAM_SPEC_INT ("classes", "2", 2, 50, "number of classes"),
  FG_PARAM_SPEC_DOUBLE ("noise", "0.5", 0.0, 100.0, "standard deviation around each centre"),
  FG_PARAM_SPEC_INT ("nan_row", "-1", -1, INFINITY, "put a NaN in this training row (-1: none)"),
  FG_PARAM_SPEC_PATH ("n_file", NULL, "a text file holding n (instead of the key n)"),
  FG_PARAM_SPEC_END,
};

static FgDataset *
data_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  gsize n = (gsize) fg_params_get_int (params, "n");
  guint K = (guint) fg_params_get_int (params, "classes");
  double noise = fg_params_get_double (params, "noise");
  gint64 nan_row = fg_params_get_int (params, "nan_row");
  g_autoptr (FgDataset) ds = fg_dataset_new ("good-data");
  FgRng rng;

  if (fg_params_has (params, "n_file"))
    {
      g_autofree char *text = NULL;
      if (!g_file_get_contents (fg_params_get_string (params, "n_file"), &text, NULL, error))
        return NULL;
      n = (gsize) g_ascii_strtoull (text, NULL, 10);
      if (n < 4)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA, "good-data: n_file: n < 4");
          return NULL;
        }
    }

  fg_rng_init (&rng, 7, 0);
  for (int p = 0; p < 2; p++)
    {
      gsize rows = p == 0 ? n : n / 2;
      FgTensor *x = fg_tensor_new_2d (rows, 2);
      gint32 *y = g_new (gint32, rows);
      for (gsize i = 0; i < rows; i++)
        {
          float *r = fg_tensor_row (x, i);
          y[i] = (gint32) (i % K);
          r[0] = (float) (4.0 * y[i] + noise * fg_rng_normal (&rng));
          r[1] = (float) (noise * fg_rng_normal (&rng));
        }
      if (p == 0 && nan_row >= 0 && (gsize) nan_row < rows)
        fg_tensor_row (x, (gsize) nan_row)[1] = NAN;
      if (!fg_dataset_set_part (ds, p == 0 ? FG_PART_TRAIN : FG_PART_TEST, x, y, error))
        {
          fg_tensor_free (x);
          g_free (y);
          return NULL;
        }
    }
  if (!fg_dataset_finish (ds, error))
    return NULL;
  return g_steal_pointer (&ds);
}

static const FgDatasetVTable data_vtable = { .struct_size = sizeof (FgDatasetVTable),
                                             .load = data_load };

/* ---- baseline "good-baseline": k nearest labeled neighbours ------------------------------ */
static const FgParamSpec baseline_params[] = {
  FG_PARAM_SPEC_INT ("k", "1", 1, 20, "neighbours"),
  FG_PARAM_SPEC_CHOICE ("metric", "l2", "l2|cosine", "distance"),
  FG_PARAM_SPEC_DOUBLE ("rate", "0.5", 0.0, 1.0, "an unused number in [0, 1]"),
  FG_PARAM_SPEC_BOOL ("fail", "false", "make fit fail with a numeric error"),
  FG_PARAM_SPEC_STRING ("label", NULL, "an optional free-text parameter"),
  FG_PARAM_SPEC_PATH ("file", NULL, "an optional file parameter: fit writes the number of "
                      "labeled points to it"),
  FG_PARAM_SPEC_END,
};

typedef struct {
  gint64 k;
  gboolean cosine, fail;
  char *file;
  FgTensor *x;
  gint32 *y;
  gsize n;
  guint K;
} Knn;

static gpointer
knn_create (const FgParams *params, FgRng *rng, GError **error)
{
  Knn *self = g_new0 (Knn, 1);
  self->k = fg_params_get_int (params, "k");
  self->cosine = g_strcmp0 (fg_params_get_string (params, "metric"), "cosine") == 0;
  self->fail = fg_params_get_bool (params, "fail");
  self->file = g_strdup (fg_params_get_string (params, "file"));
  return self;
}

static gboolean
knn_fit (gpointer data, const FgSplit *split, GError **error)
{
  Knn *self = data;
  if (self->fail)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC, "good-baseline: loss is NaN (on purpose)");
      return FALSE;
    }
  self->x = fg_tensor_copy (&split->labeled.x);
  self->n = split->labeled.n;
  self->y = g_new (gint32, self->n);
  memcpy (self->y, split->labeled.y, self->n * sizeof (gint32));
  self->K = split->n_classes;
  if (self->file != NULL)
    {
      g_autofree char *text = g_strdup_printf ("%" G_GSIZE_FORMAT "\n", self->n);
      return g_file_set_contents (self->file, text, -1, error);
    }
  return TRUE;
}

static double
dist (const Knn *self, const float *a, const float *b, gsize d)
{
  double s = 0, na = 0, nb = 0, dot = 0;
  for (gsize j = 0; j < d; j++)
    {
      s += ((double) a[j] - b[j]) * ((double) a[j] - b[j]);
      na += (double) a[j] * a[j];
      nb += (double) b[j] * b[j];
      dot += (double) a[j] * b[j];
    }
  return self->cosine ? 1.0 - dot / (sqrt (na * nb) + 1e-12) : s;
}

static gboolean
knn_predict (gpointer data, const FgTensor *x, gint32 *labels, float *proba, GError **error)
{
  Knn *self = data;
  gsize d = fg_tensor_cols (x);
  g_autofree double *best = g_new (double, self->k);
  g_autofree gint32 *best_y = g_new (gint32, self->k);
  g_autofree guint *votes = g_new (guint, self->K);
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    {
      gsize kk = MIN ((gsize) self->k, self->n), filled = 0;
      guint arg = 0;
      for (gsize j = 0; j < self->n; j++)
        {
          double dj = dist (self, fg_tensor_row (x, i), fg_tensor_row (self->x, j), d);
          gsize pos = filled < kk ? filled++ : kk;
          if (pos == kk && dj >= best[kk - 1])
            continue;
          if (pos == kk)
            pos = kk - 1;
          while (pos > 0 && best[pos - 1] > dj)
            {
              best[pos] = best[pos - 1];
              best_y[pos] = best_y[pos - 1];
              pos--;
            }
          best[pos] = dj;
          best_y[pos] = self->y[j];
        }
      memset (votes, 0, self->K * sizeof (guint));
      for (gsize j = 0; j < filled; j++)
        votes[best_y[j]]++;
      for (guint c = 1; c < self->K; c++)
        if (votes[c] > votes[arg])
          arg = c;
      labels[i] = (gint32) arg;
      if (proba)
        for (guint c = 0; c < self->K; c++)
          proba[i * self->K + c] = (float) votes[c] / (float) filled;
    }
  return TRUE;
}

static void
knn_destroy (gpointer data)
{
  Knn *self = data;
  fg_tensor_free (self->x);
  g_free (self->y);
  g_free (self->file);
  g_free (self);
}

static const FgBaselineVTable knn_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = knn_create,
  .fit = knn_fit,
  .predict = knn_predict,
  .destroy = knn_destroy,
};

/* ---- baseline "good-wrapper": a COMPONENT parameter naming another baseline --------------- */
static const FgParamSpec wrapper_params[] = {
  FG_PARAM_SPEC_COMPONENT ("inner", "good-baseline", "baseline", "the baseline to wrap"),
  FG_PARAM_SPEC_DOUBLE ("weight", "1.0", 0.0, 10.0, "an unused weight"),
  FG_PARAM_SPEC_END,
};

static const FgBaselineVTable wrapper_vtable = FIXTURE_BASELINE_VTABLE;

/* ---- loss "good-loss": only here so the loss kind is checked by the loader ---------------- */
static gpointer
loss_create (const FgParams *params, GError **error)
{
  return g_new0 (int, 1);
}

static FgVar *
loss_compute (gpointer self, FgLossBatch *batch, GError **error)
{
  g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED, "good-loss computes nothing");
  return NULL;
}

static const FgLossVTable loss_vtable = {
  .struct_size = sizeof (FgLossVTable),
  .create = loss_create,
  .compute = loss_compute,
  .destroy = g_free,
};

static const FgComponent components[] = {
  { FG_KIND_DATASET, "good-data", "separated 2-D clusters", data_params, &data_vtable, { 0 } },
  { FG_KIND_BASELINE, "good-baseline", "k nearest labeled neighbours", baseline_params,
    &knn_vtable, { 0 } },
  { FG_KIND_BASELINE, "good-wrapper", "wraps another baseline", wrapper_params, &wrapper_vtable,
    { 0 } },
  { FG_KIND_LOSS, "good-loss", "a loss that is only loaded", NULL, &loss_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "good",
  .version = "1.0",
  .license = "MIT",
  .description = "well-formed test fixture",
  .components = components,
};

FG_PLUGIN_DEFINE (info)
