/* An out-of-tree plugin as a third party would write it: one file, built with nothing but
 * `cc -shared -fPIC $(pkg-config --cflags --libs flowgmm)` against an installed flowgmm
 * (tests/check-install.sh).  Dataset "oot-stripes": points on K horizontal stripes, class =
 * stripe, with jitter from the data seed. */
#include <flowgmm/flowgmm.h>

static const FgParamSpec stripes_params[] = {
  FG_PARAM_SPEC_INT ("n", "120", 4, 1000000, "training points (the test part is n/2)"),
  FG_PARAM_SPEC_INT ("classes", "2", 2, 100, "stripes, one class each"),
  FG_PARAM_SPEC_INT ("seed", "0", 0, INFINITY, "seed of the jitter"),
  FG_PARAM_SPEC_END,
};

static FgDataset *
stripes_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  gsize n = (gsize) fg_params_get_int (params, "n");
  guint K = (guint) fg_params_get_int (params, "classes");
  g_autoptr (FgDataset) ds = fg_dataset_new ("oot-stripes");
  FgRng rng;

  fg_rng_init (&rng, (guint64) fg_params_get_int (params, "seed"), fg_rng_stream_id ("stripes"));
  fg_dataset_set_classes (ds, K, NULL);
  for (int p = 0; p < 2; p++)
    {
      gsize rows = p == 0 ? n : n / 2;
      FgTensor *x = fg_tensor_new_2d (rows, 2);
      gint32 *y = g_new (gint32, rows);
      for (gsize i = 0; i < rows; i++)
        {
          float *row = fg_tensor_row (x, i);
          y[i] = (gint32) (i % K);
          row[0] = (float) (4.0 * fg_rng_normal (&rng));
          row[1] = (float) (3.0 * y[i] + 0.3 * fg_rng_normal (&rng));
        }
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

static const FgDatasetVTable stripes_vtable = {
  .struct_size = sizeof (FgDatasetVTable),
  .load = stripes_load,
};

static const FgComponent stripes_components[] = {
  { FG_KIND_DATASET, "oot-stripes", "points on horizontal stripes, one class each",
    stripes_params, &stripes_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo stripes_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "oot-stripes",
  .version = "1.0",
  .license = "MIT",
  .description = "an out-of-tree test plugin",
  .components = stripes_components,
};

FG_PLUGIN_DEFINE (stripes_info)
