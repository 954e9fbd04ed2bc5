/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the template plugin (plugins/template.c), loaded through the registry as a
 * new plugin author's copy would be:
 *
 * - template-blobs: deterministic for its seed, the sizes and classes it promises;
 * - template-affine: exact inverse, log-det = Σ s for every example, gradients of z and of the
 *   log-det against finite differences, image-shaped inputs;
 * - template-centroid: separates well-separated blobs, probabilities sum to one, the optional
 *   k-means step, a width mismatch is an error;
 * - a third-party flow plugs into the core's `flowgmm` method (flow = template-affine) and
 *   trains without touching the host.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#include "gradcheck.h"
#include "registry-helpers.h"

static const FgComponent *
component (FgKind kind, const char *name)
{
  g_autoptr (GError) error = NULL;
  const FgComponent *c = fg_registry_find (th_registry (), kind, name, &error);
  g_assert_no_error (error);
  g_assert_nonnull (c);
  return c;
}

static FgDataset *
load_blobs (const char *const *settings)
{
  const FgComponent *c = component (FG_KIND_DATASET, "template-blobs");
  const FgDatasetVTable *vt = c->vtable;
  g_autoptr (FgParams) p = th_params_new (c, settings);
  g_autoptr (GError) error = NULL;
  FgLoadContext ctx = { NULL, { 0 } };
  FgDataset *ds = vt->load (p, &ctx, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ds);
  return ds;
}

static void
test_plugin_loads (void)
{
  const FgComponent *c;
  const FgPluginRecord *rec;
  c = component (FG_KIND_BASELINE, "template-centroid");
  rec = fg_registry_get_provider (th_registry (), c);
  g_assert_nonnull (rec);
  g_assert_cmpstr (rec->info->name, ==, "template");
  g_assert_null (rec->error);
  g_assert_nonnull (fg_registry_lookup (th_registry (), FG_KIND_DATASET, "template-blobs"));
  g_assert_nonnull (fg_registry_lookup (th_registry (), FG_KIND_FLOW, "template-affine"));
}

static void
test_blobs (void)
{
  static const char *const settings[] = { "n=90", "classes=3", "dim=4", "seed=5", NULL };
  g_autoptr (FgDataset) a = load_blobs (settings);
  g_autoptr (FgDataset) b = load_blobs (settings);
  const FgDataPart *train = fg_dataset_get_part (a, FG_PART_TRAIN);
  const FgDataPart *test = fg_dataset_get_part (a, FG_PART_TEST);
  guint counts[3] = { 0 };
  g_assert_cmpuint (train->n, ==, 90);
  g_assert_cmpuint (test->n, ==, 45);
  g_assert_cmpuint (fg_dataset_get_dim (a), ==, 4);
  g_assert_cmpuint (fg_dataset_get_n_classes (a), ==, 3);
  for (gsize i = 0; i < train->n; i++)
    counts[train->y[i]]++;
  g_assert_cmpuint (counts[0], ==, 30);
  g_assert_cmpuint (counts[2], ==, 30);
  /* the same seed gives the same data */
  g_assert_cmpfloat (fg_tensor_max_abs_diff (&train->x, &fg_dataset_get_part (b, FG_PART_TRAIN)->x),
                     ==, 0.0);
}

typedef struct {
  const FgFlowVTable *vt;
  gpointer self;
  FgWeightSet *weights;
} Affine;

static void
affine_init (Affine *f, const FgSampleShape *shape, const char *const *settings)
{
  const FgComponent *c = component (FG_KIND_FLOW, "template-affine");
  g_autoptr (FgParams) p = th_params_new (c, settings);
  g_autoptr (GError) error = NULL;
  FgRng rng;
  fg_rng_init (&rng, 1, 0);
  f->vt = c->vtable;
  f->weights = fg_weight_set_new ();
  f->self = f->vt->create (p, shape, f->weights, &rng, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->self);
  /* give every log-scale and shift its own value so that the test sees each one */
  for (guint w = 0; w < fg_weight_set_len (f->weights); w++)
    {
      FgWeight *weight = fg_weight_set_get (f->weights, w);
      for (gsize j = 0; j < fg_tensor_numel (&weight->value); j++)
        weight->value.data[j] = 0.3f * (float) (j % 5) - 0.4f + 0.1f * (float) w;
    }
}

static void
affine_clear (Affine *f)
{
  f->vt->destroy (f->self);
  fg_weight_set_free (f->weights);
}

static void
test_affine_inverse_and_logdet (void)
{
  static const FgSampleShape shapes[] = { { 1, { 7, 1, 1 } }, { 3, { 2, 3, 2 } } };
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      Affine f;
      g_autoptr (FgTape) tape = fg_tape_new ();
      g_autoptr (GError) error = NULL;
      gsize D = fg_sample_shape_numel (&shapes[s]), N = 9;
      gsize shape[4] = { N, shapes[s].dims[0], shapes[s].dims[1], shapes[s].dims[2] };
      g_autoptr (FgTensor) x = fg_tensor_new (shapes[s].ndim + 1, shape);
      FgFlowRun run = { FALSE, NULL, { 0 } };
      FgVar *z, *back, *logdet = NULL;
      const FgTensor *ls;
      double sum_s = 0.0;
      FgRng rng;

      affine_init (&f, &shapes[s], NULL);
      fg_rng_init (&rng, 3, 0);
      fg_rng_fill_normal (&rng, x->data, fg_tensor_numel (x), 0.0f, 2.0f);
      z = f.vt->forward (f.self, tape, fg_tape_constant (tape, x), &run, &logdet, &error);
      g_assert_no_error (error);
      g_assert_true (fg_tensor_same_shape (&z->value, x));
      g_assert_cmpuint (fg_tensor_rows (&logdet->value), ==, N);
      g_assert_cmpuint (fg_tensor_cols (&logdet->value), ==, 1);
      back = f.vt->inverse (f.self, tape, z, &error);
      g_assert_no_error (error);
      g_assert_cmpfloat (fg_tensor_max_abs_diff (&back->value, x), <, 1e-5);

      /* z = (x + b)·exp(s) elementwise; log|det| = Σ s for every example */
      ls = &fg_weight_set_lookup (f.weights, "affine.log_scale")->value;
      for (gsize j = 0; j < D; j++)
        sum_s += ls->data[j];
      for (gsize i = 0; i < N; i++)
        {
          const float *b = fg_weight_set_lookup (f.weights, "affine.shift")->value.data;
          g_assert_cmpfloat_with_epsilon (fg_tensor_row (&logdet->value, i)[0], sum_s, 1e-5);
          for (gsize j = 0; j < D; j++)
            g_assert_cmpfloat_with_epsilon (fg_tensor_row (&z->value, i)[j],
                                            (fg_tensor_row (x, i)[j] + b[j]) * expf (ls->data[j]),
                                            1e-4);
        }
      affine_clear (&f);
    }
}

typedef struct {
  Affine *f;
  gboolean want_logdet;
} AffineBuild;

static FgVar *
build_affine (FgTape *tape, FgVar *const *inputs, gpointer user_data)
{
  AffineBuild *b = user_data;
  FgFlowRun run = { FALSE, NULL, { 0 } };
  FgVar *logdet = NULL;
  /* inputs[0] is x; the flow's own weights are leaves it makes itself */
  FgVar *z = b->f->vt->forward (b->f->self, tape, inputs[0], &run, &logdet, NULL);
  return b->want_logdet ? logdet : z;
}

static void
test_affine_gradients (void)
{
  FgSampleShape shape = { 1, { 5, 1, 1 } };
  Affine f;
  g_autoptr (FgWeightSet) xs = fg_weight_set_new ();
  FgWeight *inputs[3];
  GcOptions opts;
  FgRng rng;

  affine_init (&f, &shape, NULL);
  inputs[0] = fg_weight_set_add_2d (xs, "x", 6, 5, FALSE);
  fg_rng_init (&rng, 4, 0);
  fg_rng_fill_normal (&rng, inputs[0]->value.data, 30, 0.0f, 1.0f);
  inputs[1] = fg_weight_set_lookup (f.weights, "affine.log_scale");
  inputs[2] = fg_weight_set_lookup (f.weights, "affine.shift");
  gc_options_init (&opts);
  for (int want_logdet = 0; want_logdet < 2; want_logdet++)
    {
      AffineBuild b = { &f, want_logdet };
      /* the weights enter through the flow's own leaves, so check them as well as x */
      gc_assert (inputs, 3, build_affine, &b, &opts, want_logdet ? "affine log-det" : "affine z");
    }
  affine_clear (&f);
}

static FgSplitData *
blobs_split (FgDataset *ds, const char *labeled_per_class, guint64 seed)
{
  g_autoptr (FgParams) p = fg_params_new (fg_split_param_specs ());
  g_autoptr (GError) error = NULL;
  FgSplitData *sd;
  g_assert_true (fg_params_set (p, "labeled_per_class", labeled_per_class, &error));
  sd = fg_split_data_new (ds, p, seed, &error);
  g_assert_no_error (error);
  return sd;
}

static double
accuracy (const FgBaselineVTable *vt, gpointer self, const FgDataPart *part, guint K)
{
  g_autofree gint32 *labels = g_new (gint32, part->n);
  g_autofree float *proba = g_new (float, part->n * K);
  g_autoptr (GError) error = NULL;
  gsize right = 0;
  g_assert_true (vt->predict (self, &part->x, labels, proba, &error));
  g_assert_no_error (error);
  for (gsize i = 0; i < part->n; i++)
    {
      double sum = 0.0;
      g_assert_cmpint (labels[i], >=, 0);
      g_assert_cmpint (labels[i], <, (gint32) K);
      for (guint k = 0; k < K; k++)
        {
          g_assert_true (isfinite (proba[i * K + k]));
          sum += proba[i * K + k];
        }
      g_assert_cmpfloat_with_epsilon (sum, 1.0, 1e-4);
      right += labels[i] == part->y[i];
    }
  return (double) right / (double) part->n;
}

static void
test_centroid (void)
{
  static const char *const blob_settings[] = { "n=300", "classes=3", "dim=5", "spread=0.7", NULL };
  g_autoptr (FgDataset) ds = load_blobs (blob_settings);
  g_autoptr (FgSplitData) sd = blobs_split (ds, "3", 0);
  const FgComponent *c = component (FG_KIND_BASELINE, "template-centroid");
  const FgBaselineVTable *vt = c->vtable;
  static const char *const variants[][3] = { { NULL }, { "use_unlabeled=true", NULL },
                                             { "shrink=0.5", NULL } };
  for (guint v = 0; v < G_N_ELEMENTS (variants); v++)
    {
      g_autoptr (FgParams) p = th_params_new (c, variants[v]);
      g_autoptr (GError) error = NULL;
      FgRng rng;
      gpointer self;
      double acc;
      fg_rng_init (&rng, 0, 0);
      self = vt->create (p, &rng, &error);
      g_assert_true (vt->fit (self, fg_split_data_get_split (sd), &error));
      g_assert_no_error (error);
      acc = accuracy (vt, self, fg_split_data_get_test (sd), 3);
      g_test_message ("template-centroid %s: test accuracy %.3f",
                      variants[v][0] ? variants[v][0] : "(defaults)", acc);
      g_assert_cmpfloat (acc, >, 0.95);
      if (v == 0)
        {
          /* a width the model was not fitted on is an error, not a crash */
          g_autoptr (FgTensor) wrong = fg_tensor_new_2d (2, 3);
          gint32 labels[2];
          g_assert_false (vt->predict (self, wrong, labels, NULL, &error));
          g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
        }
      vt->destroy (self);
    }
}

static void
test_flow_plugs_into_flowgmm (void)
{
  static const char *const blob_settings[] = { "n=400", "classes=2", "dim=2", "spread=0.6",
                                               "separation=3", NULL };
  g_autoptr (FgDataset) ds = load_blobs (blob_settings);
  g_autoptr (FgSplitData) sd = blobs_split (ds, "5", 1);
  const FgComponent *c = component (FG_KIND_BASELINE, "flowgmm");
  const FgBaselineVTable *vt = c->vtable;
  const FgComponent *affine = component (FG_KIND_FLOW, "template-affine");
  g_autoptr (FgParams) p = fg_params_new (c->params);
  g_autoptr (GError) error = NULL;
  static const char *const settings[] = { "iterations=300", "unlabeled_batch=100", "lr=1e-2",
                                          "means=random", "means_r=2", NULL };
  gpointer self;
  FgRng rng;
  double acc;

  g_assert_true (fg_params_set_component (p, "flow", "template-affine", affine->params, &error));
  g_assert_true (fg_registry_resolve_params (th_registry (), p, &error));
  g_assert_no_error (error);
  for (guint i = 0; settings[i]; i++)
    {
      g_auto (GStrv) kv = g_strsplit (settings[i], "=", 2);
      g_assert_true (fg_params_set (p, kv[0], kv[1], &error));
      g_assert_no_error (error);
    }
  g_assert_true (fg_params_check_complete (p, &error));
  fg_rng_init (&rng, 2, 0);
  self = vt->create (p, &rng, &error);
  g_assert_no_error (error);
  g_assert_true (vt->fit (self, fg_split_data_get_split (sd), &error));
  g_assert_no_error (error);
  /* An elementwise affine flow can only rescale and shift each axis towards the fixed means,
   * so the check is that the plug-in trains and predicts sensibly, not that it is optimal. */
  acc = accuracy (vt, self, fg_split_data_get_test (sd), 2);
  g_test_message ("flowgmm with flow = template-affine: test accuracy %.3f", acc);
  g_assert_cmpfloat (acc, >, 0.5);
  vt->destroy (self);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/template/loads", test_plugin_loads);
  g_test_add_func ("/template/blobs", test_blobs);
  g_test_add_func ("/template/affine/inverse-and-logdet", test_affine_inverse_and_logdet);
  g_test_add_func ("/template/affine/gradients", test_affine_gradients);
  g_test_add_func ("/template/centroid", test_centroid);
  g_test_add_func ("/template/affine-in-flowgmm", test_flow_plugs_into_flowgmm);
  return g_test_run ();
}
