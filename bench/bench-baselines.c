/* SPDX-License-Identifier: MIT */
/* flowgmm bench — fit and evaluate one baseline plugin on a split written by
 * bench/baselines_vs_sklearn.py, timing fit and predict.
 *
 *   bench-baselines [--threads N] [--repeat R] [--seed S] DIR METHOD [KEY=VALUE ...]
 *
 * DIR holds meta.txt ("n_labeled n_unlabeled n_test dim n_classes"), xl.f32, yl.i32, xu.f32,
 * xt.f32 and yt.i32: raw little-endian float32 rows and int32 labels.  METHOD is a baseline
 * component (knn, logreg, mlp, pi-model, label-spreading), loaded through the registry from
 * $FLOWGMM_PLUGIN_PATH; KEY=VALUE set its parameters.  --threads sets fg_set_num_threads (the
 * core's threads and OpenBLAS's).  Each of --repeat runs (default 3) creates, fits and
 * predicts the test part anew; the times printed are the minimum over runs, the accuracy the
 * first run's.  Prints one JSON object on stdout.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

static gpointer
read_raw (const char *dir, const char *name, gsize n_items, gsize item_size, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autofree char *data = NULL;
  gsize len = 0;
  gpointer out;
  if (!g_file_get_contents (path, &data, &len, error))
    return NULL;
  if (len != n_items * item_size)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: %" G_GSIZE_FORMAT " bytes, expected %" G_GSIZE_FORMAT, path, len,
                   n_items * item_size);
      return NULL;
    }
  out = fg_alloc_floats ((n_items * item_size + 3) / 4 + 1);
  if (len > 0)
    memcpy (out, data, len);
  return out;
}

static void
part_init (FgDataPart *p, float *x, gint32 *y, gsize n, gsize d)
{
  memset (p, 0, sizeof *p);
  p->x = fg_tensor_wrap_2d (x, n, d);
  p->y = y;
  p->n = n;
}

int
main (int argc, char **argv)
{
  gint threads = 0, repeat = 3;
  gint64 seed = 0;
  g_autoptr (GOptionContext) ctx = NULL;
  GOptionEntry entries[] = {
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "threads (0: library default)", "N" },
    { "repeat", 'r', 0, G_OPTION_ARG_INT, &repeat, "runs; times are the minimum", "R" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed, "seed of the method's generator", "S" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (FgRegistry) reg = NULL;
  g_autoptr (FgParams) params = NULL;
  g_autofree char *meta = NULL, *meta_path = NULL, *param_text = NULL;
  const FgComponent *comp;
  const FgBaselineVTable *vt;
  gsize nl, nu, nt, d;
  guint K;
  float *xl, *xu, *xt;
  gint32 *yl, *yt;
  FgSplit split;
  FgTensor test;
  double best_fit = INFINITY, best_pred = INFINITY, acc = NAN;
  g_autofree gint32 *labels = NULL;

  ctx = g_option_context_new ("DIR METHOD [KEY=VALUE ...] - time one baseline on a split");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc < 3)
    {
      g_printerr ("bench-baselines: %s\n", error ? error->message : "DIR and METHOD needed");
      return 2;
    }
  if (threads > 0)
    fg_set_num_threads ((guint) threads);

  meta_path = g_build_filename (argv[1], "meta.txt", NULL);
  if (!g_file_get_contents (meta_path, &meta, NULL, &error)
      || sscanf (meta, "%zu %zu %zu %zu %u", &nl, &nu, &nt, &d, &K) != 5)
    {
      g_printerr ("bench-baselines: %s: %s\n", meta_path, error ? error->message : "bad format");
      return 1;
    }
  xl = read_raw (argv[1], "xl.f32", nl * d, 4, &error);
  yl = xl ? read_raw (argv[1], "yl.i32", nl, 4, &error) : NULL;
  xu = yl ? read_raw (argv[1], "xu.f32", nu * d, 4, &error) : NULL;
  xt = xu ? read_raw (argv[1], "xt.f32", nt * d, 4, &error) : NULL;
  yt = xt ? read_raw (argv[1], "yt.i32", nt, 4, &error) : NULL;
  if (yt == NULL)
    {
      g_printerr ("bench-baselines: %s\n", error->message);
      return 1;
    }

  reg = fg_registry_new ();
  fg_registry_load_default (reg, NULL);
  comp = fg_registry_find (reg, FG_KIND_BASELINE, argv[2], &error);
  if (comp == NULL)
    {
      g_printerr ("bench-baselines: %s\n", error->message);
      return 1;
    }
  vt = comp->vtable;
  params = fg_params_new (comp->params);
  for (int i = 3; i < argc; i++)
    {
      g_auto (GStrv) kv = g_strsplit (argv[i], "=", 2);
      if (kv[1] == NULL || !fg_params_set (params, kv[0], kv[1], &error))
        {
          g_printerr ("bench-baselines: %s: %s\n", argv[i],
                      error ? error->message : "not KEY=VALUE");
          return 2;
        }
    }
  param_text = fg_params_to_string (params);

  memset (&split, 0, sizeof split);
  split.n_classes = K;
  split.dim = d;
  split.shape.ndim = 1;
  split.shape.dims[0] = d;
  part_init (&split.labeled, xl, yl, nl, d);
  part_init (&split.unlabeled, xu, NULL, nu, d);
  part_init (&split.validation, NULL, NULL, 0, d);
  split.fingerprint = "bench";
  split.seed = (guint64) seed;
  test = fg_tensor_wrap_2d (xt, nt, d);
  labels = g_new (gint32, MAX (nt, (gsize) 1));

  for (int r = 0; r < MAX (repeat, 1); r++)
    {
      FgRng rng;
      gpointer self;
      gint64 t0, t1, t2;
      fg_rng_init (&rng, (guint64) seed, fg_rng_stream_id (argv[2]));
      self = vt->create (params, &rng, &error);
      if (self == NULL)
        {
          g_printerr ("bench-baselines: create: %s\n", error->message);
          return 1;
        }
      t0 = g_get_monotonic_time ();
      if (!vt->fit (self, &split, &error))
        {
          g_printerr ("bench-baselines: fit: %s\n", error->message);
          return 1;
        }
      t1 = g_get_monotonic_time ();
      if (!vt->predict (self, &test, labels, NULL, &error))
        {
          g_printerr ("bench-baselines: predict: %s\n", error->message);
          return 1;
        }
      t2 = g_get_monotonic_time ();
      vt->destroy (self);
      best_fit = MIN (best_fit, (double) (t1 - t0) / 1e6);
      best_pred = MIN (best_pred, (double) (t2 - t1) / 1e6);
      if (r == 0)
        {
          gsize correct = 0;
          for (gsize i = 0; i < nt; i++)
            correct += labels[i] == yt[i];
          acc = nt ? (double) correct / (double) nt : NAN;
        }
    }
  printf ("{\"method\": \"%s\", \"params\": \"%s\", \"threads\": %u, \"fit_s\": %.6f, "
          "\"predict_s\": %.6f, \"accuracy\": %.9f}\n",
          argv[2], param_text, fg_get_num_threads (), best_fit, best_pred, acc);
  fg_free_aligned (xl);
  fg_free_aligned (yl);
  fg_free_aligned (xu);
  fg_free_aligned (xt);
  fg_free_aligned (yt);
  return 0;
}
