/* SPDX-License-Identifier: MIT */
/* flowgmm — template plugin: copy this file to start a new plugin.
 *
 * One shared object may hold several components.  This one holds three, one per kind a new
 * author most often writes:
 *
 *   dataset  "template-blobs"     Gaussian blobs, one per class, generated from a seed
 *   flow     "template-affine"    an elementwise affine flow z = (x + b)·exp(s), log-det = Σ s
 *   baseline "template-centroid"  nearest class centroid, with shrinkage towards the global mean
 *
 * Steps to make your own (see doc/plugin-guide.md for the long version):
 *  1. Copy this file to plugins/<kind>/<name>.c; the descriptor's name must equal <name>, the
 *     file's basename, or the loader rejects it.
 *  2. Declare each component's parameters in a static FgParamSpec array: the host validates
 *     experiment-file keys against it and `flowgmm describe` prints it.
 *  3. Fill one vtable per component, starting with its struct_size (sizeof the vtable type).
 *  4. End with FG_PLUGIN_DEFINE (descriptor): the one exported symbol.
 *  5. Add it to the kind's Makefile.am.inc fragment (a libtool module; copy the template's
 *     lines in plugins/Makefile.am.inc) — or build out of tree with `pkg-config --cflags --libs
 *     flowgmm`.
 *
 * Rules every plugin follows: report errors through GError (never print or exit); draw random
 * numbers only from the FgRng you are given; keep nothing global (several cells may run at once
 * on different threads); free everything in destroy.
 */
#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

/* ======================================================================================== */
/* Dataset: Gaussian blobs                                                                   */
/* ======================================================================================== */

static const FgParamSpec blobs_params[] = {
  FG_PARAM_SPEC_INT ("n", "600", 4, 10000000, "training examples (the test part is n/2)"),
  FG_PARAM_SPEC_INT ("classes", "3", 2, 1000, "number of classes, one blob each"),
  FG_PARAM_SPEC_INT ("dim", "2", 1, 100000, "dimension of each example"),
  FG_PARAM_SPEC_DOUBLE ("spread", "1.0", 0.0, INFINITY,
                        "standard deviation of each blob around its centre"),
  FG_PARAM_SPEC_DOUBLE ("separation", "4.0", 0.0, INFINITY, "distance of the centres from 0"),
  FG_PARAM_SPEC_INT ("seed", "0", 0, INFINITY, "seed of the generator (the data, not the split)"),
  FG_PARAM_SPEC_END,
};

/* Fill n examples: class i % K, centre on a scaled random direction per class. */
static void
blobs_fill (FgRng *rng, const float *centres, guint K, gsize dim, double spread, FgTensor *x,
            gint32 *y)
{
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    {
      guint k = (guint) (i % K);
      float *row = fg_tensor_row (x, i);
      y[i] = (gint32) k;
      for (gsize j = 0; j < dim; j++)
        row[j] = centres[k * dim + j] + (float) (spread * fg_rng_normal (rng));
    }
}

static FgDataset *
blobs_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  gsize n = (gsize) fg_params_get_int (params, "n");
  guint K = (guint) fg_params_get_int (params, "classes");
  gsize dim = (gsize) fg_params_get_int (params, "dim");
  double spread = fg_params_get_double (params, "spread");
  double sep = fg_params_get_double (params, "separation");
  g_autoptr (FgDataset) ds = fg_dataset_new ("template-blobs");
  g_autofree float *centres = g_new (float, K * dim);
  FgRng rng;

  /* The data depend only on the data seed, never on the cell: the host caches the set. */
  fg_rng_init (&rng, (guint64) fg_params_get_int (params, "seed"), fg_rng_stream_id ("blobs"));
  for (guint k = 0; k < K; k++)
    {
      double norm = 0.0;
      float *c = centres + k * dim;
      fg_rng_fill_normal (&rng, c, dim, 0.0f, 1.0f);
      for (gsize j = 0; j < dim; j++)
        norm += (double) c[j] * c[j];
      norm = sqrt (norm) + 1e-12;
      for (gsize j = 0; j < dim; j++)
        c[j] = (float) (sep * c[j] / norm);
    }

  fg_dataset_set_classes (ds, K, NULL);
  for (int p = 0; p < 2; p++)
    {
      FgPart part = p == 0 ? FG_PART_TRAIN : FG_PART_TEST;
      gsize rows = p == 0 ? n : MAX (n / 2, (gsize) K);
      FgTensor *x = fg_tensor_new_2d (rows, dim);
      gint32 *y = g_new (gint32, rows);
      blobs_fill (&rng, centres, K, dim, spread, x, y);
      if (!fg_dataset_set_part (ds, part, x, y, error))
        {
          fg_tensor_free (x); /* not taken on error */
          g_free (y);
          return NULL;
        }
    }
  if (!fg_dataset_finish (ds, error))
    return NULL;
  return g_steal_pointer (&ds);
}

static const FgDatasetVTable blobs_vtable = {
  .struct_size = sizeof (FgDatasetVTable),
  .load = blobs_load,
};

/* ======================================================================================== */
/* Flow: elementwise affine  z = (x + b) ⊙ exp(s),  log|det| = Σ_j s_j                        */
/* ======================================================================================== */

static const FgParamSpec affine_params[] = {
  FG_PARAM_SPEC_DOUBLE ("init_scale", "0.0", -10.0, 10.0, "initial value of every log-scale s"),
  FG_PARAM_SPEC_END,
};

typedef struct {
  FgWeight *log_scale; /* [1, D] */
  FgWeight *shift;     /* [1, D] */
} Affine;

static gpointer
affine_create (const FgParams *params, const FgSampleShape *shape, FgWeightSet *weights,
               FgRng *rng, GError **error)
{
  Affine *self;
  gsize dim = fg_sample_shape_numel (shape);
  if (dim == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "template-affine: empty input");
      return NULL;
    }
  self = g_new0 (Affine, 1);
  /* Weight names must be unique within the set: prefix them with the component. */
  self->log_scale = fg_weight_set_add_2d (weights, "affine.log_scale", 1, dim, FALSE);
  self->shift = fg_weight_set_add_2d (weights, "affine.shift", 1, dim, FALSE);
  fg_weight_init_const (self->log_scale, (float) fg_params_get_double (params, "init_scale"));
  fg_weight_init_const (self->shift, 0.0f);
  return self;
}

static FgVar *
affine_forward (gpointer data, FgTape *tape, FgVar *x, const FgFlowRun *run, FgVar **logdet,
                GError **error)
{
  Affine *self = data;
  FgVar *s = fg_tape_weight (tape, self->log_scale);
  FgVar *b = fg_tape_weight (tape, self->shift);
  gsize n = fg_tensor_rows (&x->value), shape[2] = { 1, 1 };
  FgVar *x2, *z, *ones, *sum_s;

  /* Treat images as rows of C·H·W values; the result keeps x's shape. */
  x2 = fg_op_reshape (tape, x, 2, (gsize[]){ n, fg_tensor_cols (&x->value) });
  z = fg_op_mul (tape, fg_op_add (tape, x2, b), fg_op_exp (tape, s));
  /* The log-det is the same for every example: Σ s, broadcast to [n, 1]. */
  sum_s = fg_op_sum (tape, s, FG_AXIS_ALL);
  shape[0] = n;
  ones = fg_tape_empty (tape, 2, shape);
  fg_tensor_fill (&ones->value, 1.0f);
  *logdet = fg_op_mul (tape, ones, sum_s);
  if (z == NULL || *logdet == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "template-affine: forward failed");
      return NULL;
    }
  return fg_op_reshape (tape, z, x->value.ndim, x->value.shape);
}

static FgVar *
affine_inverse (gpointer data, FgTape *tape, FgVar *z, GError **error)
{
  Affine *self = data;
  FgVar *s = fg_tape_weight (tape, self->log_scale);
  FgVar *b = fg_tape_weight (tape, self->shift);
  gsize n = fg_tensor_rows (&z->value);
  FgVar *z2 = fg_op_reshape (tape, z, 2, (gsize[]){ n, fg_tensor_cols (&z->value) });
  FgVar *x = fg_op_sub (tape, fg_op_mul (tape, z2, fg_op_exp (tape, fg_op_neg (tape, s))), b);
  if (x == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "template-affine: inverse failed");
      return NULL;
    }
  return fg_op_reshape (tape, x, z->value.ndim, z->value.shape);
}

static void
affine_destroy (gpointer data)
{
  g_free (data); /* the weights belong to the weight set */
}

static const FgFlowVTable affine_vtable = {
  .struct_size = sizeof (FgFlowVTable),
  .create = affine_create,
  .forward = affine_forward,
  .inverse = affine_inverse,
  .destroy = affine_destroy,
};

/* ======================================================================================== */
/* Baseline: nearest class centroid                                                           */
/* ======================================================================================== */

static const FgParamSpec centroid_params[] = {
  FG_PARAM_SPEC_DOUBLE ("shrink", "0.0", 0.0, 1.0,
                        "pull each centroid towards the mean of all labeled points by this "
                        "fraction"),
  FG_PARAM_SPEC_BOOL ("use_unlabeled", "false",
                      "refine the centroids with one k-means step over the unlabeled points"),
  FG_PARAM_SPEC_END,
};

typedef struct {
  double shrink;
  gboolean use_unlabeled;
  guint K;
  gsize dim;
  float *centroids; /* K × dim */
} Centroid;

static gpointer
centroid_create (const FgParams *params, FgRng *rng, GError **error)
{
  Centroid *self = g_new0 (Centroid, 1);
  self->shrink = fg_params_get_double (params, "shrink");
  self->use_unlabeled = fg_params_get_bool (params, "use_unlabeled");
  return self;
}

static guint
nearest (const Centroid *self, const float *x)
{
  guint best = 0;
  double best_d = INFINITY;
  for (guint k = 0; k < self->K; k++)
    {
      double d = 0.0;
      const float *c = self->centroids + k * self->dim;
      for (gsize j = 0; j < self->dim; j++)
        d += ((double) x[j] - c[j]) * ((double) x[j] - c[j]);
      if (d < best_d)
        best_d = d, best = k;
    }
  return best;
}

/* Mean of the rows of x assigned to each class (labels y, or nearest centroid when y is NULL),
 * accumulated in double. */
static void
accumulate (const Centroid *self, const FgDataPart *part, const gint32 *y, double *sum,
            double *count)
{
  for (gsize i = 0; i < part->n; i++)
    {
      const float *row = fg_tensor_row (&part->x, i);
      guint k = y ? (guint) y[i] : nearest (self, row);
      for (gsize j = 0; j < self->dim; j++)
        sum[k * self->dim + j] += row[j];
      count[k] += 1.0;
    }
}

static gboolean
centroid_fit (gpointer data, const FgSplit *split, GError **error)
{
  Centroid *self = data;
  g_autofree double *sum = NULL, *count = NULL, *all = NULL;
  double n_all = 0.0;

  self->K = split->n_classes;
  self->dim = split->dim;
  g_free (self->centroids);
  self->centroids = g_new0 (float, self->K * self->dim);
  sum = g_new0 (double, self->K * self->dim);
  count = g_new0 (double, self->K);
  all = g_new0 (double, self->dim);
  accumulate (self, &split->labeled, split->labeled.y, sum, count);
  for (guint k = 0; k < self->K; k++)
    {
      n_all += count[k];
      for (gsize j = 0; j < self->dim; j++)
        all[j] += sum[k * self->dim + j];
    }
  for (guint k = 0; k < self->K; k++)
    for (gsize j = 0; j < self->dim; j++)
      {
        double mean_all = all[j] / n_all;
        double mean_k = count[k] > 0 ? sum[k * self->dim + j] / count[k] : mean_all;
        self->centroids[k * self->dim + j] = (float) ((1.0 - self->shrink) * mean_k
                                                      + self->shrink * mean_all);
      }
  if (self->use_unlabeled && split->unlabeled.n > 0)
    {
      /* One k-means step: labeled points keep their class, unlabeled go to the nearest. */
      accumulate (self, &split->unlabeled, NULL, sum, count);
      for (guint k = 0; k < self->K; k++)
        if (count[k] > 0)
          for (gsize j = 0; j < self->dim; j++)
            self->centroids[k * self->dim + j] = (float) (sum[k * self->dim + j] / count[k]);
    }
  fg_split_report_progress (split, 1.0, "centroids computed");
  return TRUE;
}

static gboolean
centroid_predict (gpointer data, const FgTensor *x, gint32 *labels_out, float *proba_out,
                  GError **error)
{
  Centroid *self = data;
  if (fg_tensor_cols (x) != self->dim)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "template-centroid: fitted on %" G_GSIZE_FORMAT " features, asked about %"
                   G_GSIZE_FORMAT,
                   self->dim, fg_tensor_cols (x));
      return FALSE;
    }
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    {
      const float *row = fg_tensor_row (x, i);
      labels_out[i] = (gint32) nearest (self, row);
      if (proba_out != NULL)
        {
          /* softmax of minus half the squared distances (a unit-variance Gaussian classifier) */
          double *logit = g_newa (double, self->K), max = -INFINITY, z = 0.0;
          for (guint k = 0; k < self->K; k++)
            {
              double d = 0.0;
              for (gsize j = 0; j < self->dim; j++)
                {
                  double diff = (double) row[j] - self->centroids[k * self->dim + j];
                  d += diff * diff;
                }
              logit[k] = -0.5 * d;
              max = MAX (max, logit[k]);
            }
          for (guint k = 0; k < self->K; k++)
            z += exp (logit[k] - max);
          for (guint k = 0; k < self->K; k++)
            proba_out[i * self->K + k] = (float) (exp (logit[k] - max) / z);
        }
    }
  return TRUE;
}

static void
centroid_destroy (gpointer data)
{
  Centroid *self = data;
  if (self == NULL)
    return;
  g_free (self->centroids);
  g_free (self);
}

static const FgBaselineVTable centroid_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = centroid_create,
  .fit = centroid_fit,
  .predict = centroid_predict,
  .destroy = centroid_destroy,
};

/* ======================================================================================== */
/* The descriptor: the plugin's one exported symbol                                          */
/* ======================================================================================== */

static const FgComponent template_components[] = {
  { FG_KIND_DATASET, "template-blobs", "Gaussian blobs, one per class (template example)",
    blobs_params, &blobs_vtable, { 0 } },
  { FG_KIND_FLOW, "template-affine", "elementwise affine flow (template example)",
    affine_params, &affine_vtable, { 0 } },
  { FG_KIND_BASELINE, "template-centroid", "nearest class centroid (template example)",
    centroid_params, &centroid_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo template_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "template",
  .version = "1.0",
  .license = "MIT",
  .description = "A documented example of every common component kind; copy it",
  .components = template_components,
};

FG_PLUGIN_DEFINE (template_info)
