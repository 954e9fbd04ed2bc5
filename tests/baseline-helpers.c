/* SPDX-License-Identifier: MIT */
/* flowgmm tests — shared fixtures of the baseline tests (see baseline-helpers.h). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "baseline-helpers.h"

gboolean
bt_model_init (BtModel *m, const char *name, const char *const *settings, guint64 seed,
               GError **error)
{
  memset (m, 0, sizeof *m);
  m->component = fg_registry_lookup (th_registry (), FG_KIND_BASELINE, name);
  if (m->component == NULL)
    g_error ("baseline '%s' is not registered: is FLOWGMM_PLUGIN_PATH set to the build's "
             "plugins/baselines/.libs?", name);
  m->vt = m->component->vtable;
  m->params = fg_params_new (m->component->params);
  if (!th_params_set_all (m->params, settings, error))
    {
      bt_model_clear (m);
      return FALSE;
    }
  fg_rng_init (&m->rng, seed, fg_rng_stream_id (name));
  m->self = m->vt->create (m->params, &m->rng, error);
  if (m->self == NULL)
    {
      bt_model_clear (m);
      return FALSE;
    }
  return TRUE;
}

void
bt_model_clear (BtModel *m)
{
  if (m->self != NULL)
    m->vt->destroy (m->self);
  m->self = NULL;
  g_clear_pointer (&m->params, fg_params_free);
}

static void
part_init (FgDataPart *p, const FgTensor *x, const gint32 *y)
{
  memset (p, 0, sizeof *p);
  if (x == NULL)
    {
      p->x = fg_tensor_wrap_2d (NULL, 0, 1);
      return;
    }
  p->x = *x;
  p->y = y;
  p->n = fg_tensor_rows (x);
}

void
bt_split_init (FgSplit *split, guint n_classes, const FgTensor *lx, const gint32 *ly,
               const FgTensor *ux, const FgTensor *vx, const gint32 *vy)
{
  memset (split, 0, sizeof *split);
  split->n_classes = n_classes;
  split->dim = fg_tensor_cols (lx);
  split->shape.ndim = 1;
  split->shape.dims[0] = split->dim;
  part_init (&split->labeled, lx, ly);
  part_init (&split->unlabeled, ux, NULL);
  part_init (&split->validation, vx, vy);
  split->fingerprint = "test";
}

void
bt_fit (BtModel *m, const FgSplit *split)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = m->vt->fit (m->self, split, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
}

double
bt_accuracy (BtModel *m, const FgTensor *x, const gint32 *y, guint K)
{
  gsize n = fg_tensor_rows (x), correct = 0;
  g_autofree gint32 *labels = g_new (gint32, n);
  g_autofree float *proba = g_new (float, n * K);
  g_autoptr (GError) error = NULL;
  g_assert_true (m->vt->predict (m->self, x, labels, proba, &error));
  g_assert_no_error (error);
  for (gsize i = 0; i < n; i++)
    {
      double s = 0;
      g_assert_cmpint (labels[i], >=, 0);
      g_assert_cmpint (labels[i], <, (gint) K);
      for (guint k = 0; k < K; k++)
        {
          g_assert_true (isfinite (proba[i * K + k]));
          g_assert_cmpfloat (proba[i * K + k], >=, 0.0);
          s += proba[i * K + k];
        }
      g_assert_cmpfloat_with_epsilon (s, 1.0, 1e-4);
      correct += labels[i] == y[i];
    }
  return n ? (double) correct / (double) n : NAN;
}

void
bt_blobs (guint64 seed, gsize n, gsize dim, guint K, double sep, FgTensor **x, gint32 **y)
{
  FgRng rng;
  g_autofree float *centres = g_new (float, K * dim);
  fg_rng_init (&rng, seed, 17);
  for (guint k = 0; k < K; k++)
    {
      double norm = 0;
      fg_rng_fill_normal (&rng, centres + k * dim, dim, 0.0f, 1.0f);
      for (gsize j = 0; j < dim; j++)
        norm += (double) centres[k * dim + j] * centres[k * dim + j];
      norm = sqrt (norm) + 1e-12;
      for (gsize j = 0; j < dim; j++)
        centres[k * dim + j] = (float) (sep * centres[k * dim + j] / norm);
    }
  *x = fg_tensor_new_2d (n, dim);
  *y = g_new (gint32, n);
  for (gsize i = 0; i < n; i++)
    {
      guint k = (guint) (i % K);
      float *r = fg_tensor_row (*x, i);
      (*y)[i] = (gint32) k;
      for (gsize j = 0; j < dim; j++)
        r[j] = centres[k * dim + j] + (float) fg_rng_normal (&rng);
    }
}
