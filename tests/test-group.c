/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the sums of a group over MPI (flowgmm/group.h), run on several ranks by
 * tests/test-mpi.sh: every sum equals a naive sum of every rank's values in rank order (each
 * rank can make all ranks' values from their seeds), bit for bit for the ordered sum, within
 * float rounding for MPI_Allreduce.  Exits non-zero on the first failure, naming it. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>

#include <flowgmm/flowgmm.h>

#include "numeric/group-mpi.h"

static int rank, size;

#define FAIL(...)                                                                              \
  do                                                                                           \
    {                                                                                          \
      fprintf (stderr, "rank %d: ", rank);                                                     \
      fprintf (stderr, __VA_ARGS__);                                                           \
      fputc ('\n', stderr);                                                                    \
      MPI_Abort (MPI_COMM_WORLD, 1);                                                           \
    }                                                                                          \
  while (0)

/* The values rank r contributes to a test of n values. */
static void
values (int r, gsize n, guint64 test, float *out)
{
  FgRng rng;
  fg_rng_init (&rng, test, (guint64) r);
  for (gsize i = 0; i < n; i++)
    out[i] = (float) (fg_rng_normal (&rng) * pow (10.0, (double) (i % 7) - 3.0));
}

static void
check_floats (FgGroup *group, gsize n, guint64 test, gboolean exact)
{
  g_autofree float *buf = g_new0 (float, MAX (n, 1));
  g_autofree float *other = g_new0 (float, MAX (n, 1));
  g_autofree double *ref = g_new0 (double, MAX (n, 1));
  g_autofree double *mag = g_new0 (double, MAX (n, 1));
  g_autoptr (GError) error = NULL;

  for (int r = 0; r < size; r++)
    {
      values (r, n, test, other);
      for (gsize i = 0; i < n; i++)
        {
          ref[i] += (double) other[i];
          mag[i] += fabs ((double) other[i]);
        }
    }
  values (rank, n, test, buf);
  if (!fg_group_sum_floats (group, buf, n, &error))
    FAIL ("sum of %zu floats: %s", n, error->message);
  for (gsize i = 0; i < n; i++)
    {
      float want = (float) ref[i];
      if (exact ? memcmp (&buf[i], &want, sizeof want) != 0
                : fabs ((double) buf[i] - ref[i]) > 1e-6 * mag[i])
        FAIL ("sum of %zu floats, element %zu: %.9g, expected %.9g", n, i, buf[i], want);
    }
}

static void
check_doubles (FgGroup *group, gsize n, guint64 test)
{
  g_autofree double *buf = g_new0 (double, MAX (n, 1));
  g_autofree double *ref = g_new0 (double, MAX (n, 1));
  g_autofree float *v = g_new0 (float, MAX (n, 1));
  g_autoptr (GError) error = NULL;

  for (int r = 0; r < size; r++)
    {
      values (r, n, test, v);
      for (gsize i = 0; i < n; i++)
        ref[i] += (double) v[i] / 3.0;
    }
  values (rank, n, test, v);
  for (gsize i = 0; i < n; i++)
    buf[i] = (double) v[i] / 3.0;
  if (!fg_group_sum_doubles (group, buf, n, &error))
    FAIL ("sum of %zu doubles: %s", n, error->message);
  if (n > 0 && memcmp (buf, ref, n * sizeof (double)) != 0)
    FAIL ("sum of %zu doubles differs from the sum in rank order", n);
}

static void
check_grads (FgGroup *group)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (GError) error = NULL;
  FgWeight *a = fg_weight_set_add_2d (set, "a", 3, 5, TRUE);
  FgWeight *fixed = fg_weight_set_add_2d (set, "fixed", 2, 2, FALSE);
  FgWeight *b = fg_weight_set_add_2d (set, "b", 1, 7, FALSE);
  float ref_a[15], ref_b[7], v[22];

  fixed->trainable = FALSE;
  memset (ref_a, 0, sizeof ref_a);
  memset (ref_b, 0, sizeof ref_b);
  /* The reference: a double sum in rank order, rounded once. */
  for (int i = 0; i < 22; i++)
    {
      double acc = 0;
      for (int r = 0; r < size; r++)
        {
          values (r, 22, 99, v);
          acc += (double) v[i];
        }
      if (i < 15)
        ref_a[i] = (float) acc;
      else
        ref_b[i - 15] = (float) acc;
    }
  values (rank, 22, 99, v);
  memcpy (a->grad.data, v, 15 * sizeof (float));
  memcpy (b->grad.data, v + 15, 7 * sizeof (float));
  if (!fg_group_sum_grads (group, set, NULL, &error))
    FAIL ("sum of gradients: %s", error->message);
  if (memcmp (a->grad.data, ref_a, sizeof ref_a) != 0
      || memcmp (b->grad.data, ref_b, sizeof ref_b) != 0)
    FAIL ("summed gradients differ from the sum in rank order");
}

/* Batch norm over a batch of 7 images split 2/2/3 over 3 ranks (or whatever the size gives)
 * against the op on the whole batch in this process: outputs, input gradients, the summed γ and
 * β gradients and the running statistics agree within float rounding. */
static gboolean
close_to (float a, float b)
{
  return fabsf (a - b) <= 2e-5f * (1.0f + fabsf (b));
}

static void
check_batch_norm (FgGroup *group)
{
  enum { N = 7, C = 3, H = 2, W = 2, P = H * W };
  const gsize full_shape[4] = { N, C, H, W };
  const gsize a = (gsize) N * (gsize) rank / (gsize) size;
  const gsize e = (gsize) N * (gsize) (rank + 1) / (gsize) size;
  const gsize part_shape[4] = { e - a, C, H, W };
  float xs[N * C * P], gs[N * C * P];
  FgRng rng;
  struct {
    FgWeightSet *set;
    FgWeight *x, *gamma, *beta, *mean, *var;
    FgTape *tape;
    FgVar *y;
  } r[2];
  g_autoptr (GError) error = NULL;

  fg_rng_init (&rng, 7, 7);
  for (gsize i = 0; i < G_N_ELEMENTS (xs); i++)
    {
      xs[i] = (float) (fg_rng_normal (&rng) * 2.0 + (double) ((i / P) % C));
      gs[i] = (float) fg_rng_normal (&rng);
    }
  for (guint k = 0; k < 2; k++) /* 0: whole batch here; 1: this rank's slice, over the group */
    {
      const gsize *shape = k == 0 ? full_shape : part_shape;
      const gsize off = k == 0 ? 0 : a * C * P;
      FgTensor seed;
      r[k].set = fg_weight_set_new ();
      r[k].x = fg_weight_set_add (r[k].set, "x", 4, shape, FALSE);
      r[k].gamma = fg_weight_set_add_2d (r[k].set, "gamma", 1, C, FALSE);
      r[k].beta = fg_weight_set_add_2d (r[k].set, "beta", 1, C, FALSE);
      r[k].mean = fg_weight_set_add_2d (r[k].set, "mean", 1, C, FALSE);
      r[k].var = fg_weight_set_add_2d (r[k].set, "var", 1, C, FALSE);
      memcpy (r[k].x->value.data, xs + off, fg_tensor_numel (&r[k].x->value) * sizeof (float));
      for (int c = 0; c < C; c++)
        {
          r[k].gamma->value.data[c] = 1.0f + 0.25f * (float) c;
          r[k].beta->value.data[c] = -0.5f + 0.5f * (float) c;
          r[k].var->value.data[c] = 1.0f;
        }
      r[k].tape = fg_tape_new ();
      r[k].y = fg_op_batch_norm2d_group (r[k].tape, fg_tape_weight (r[k].tape, r[k].x),
                                         fg_tape_weight (r[k].tape, r[k].gamma),
                                         fg_tape_weight (r[k].tape, r[k].beta),
                                         &r[k].mean->value, &r[k].var->value, 0.1f, 1e-5f, TRUE,
                                         FG_ACT_NONE, k == 0 ? NULL : group);
      if (r[k].y == NULL)
        FAIL ("batch norm %u gave no result", k);
      seed = fg_tensor_wrap (gs + off, 4, shape);
      if (!fg_tape_backward_seed (r[k].tape, r[k].y, &seed, &error))
        FAIL ("batch norm backward: %s", error->message);
    }
  if (!fg_group_sum_floats (group, r[1].gamma->grad.data, C, &error)
      || !fg_group_sum_floats (group, r[1].beta->grad.data, C, &error))
    FAIL ("sum of γ, β gradients: %s", error->message);
  for (gsize i = 0; i < (e - a) * C * P; i++)
    if (!close_to (r[1].y->value.data[i], r[0].y->value.data[a * C * P + i])
        || !close_to (r[1].x->grad.data[i], r[0].x->grad.data[a * C * P + i]))
      FAIL ("batch norm over the group, element %zu: y %g vs %g, dx %g vs %g", i,
            r[1].y->value.data[i], r[0].y->value.data[a * C * P + i], r[1].x->grad.data[i],
            r[0].x->grad.data[a * C * P + i]);
  for (int c = 0; c < C; c++)
    if (!close_to (r[1].gamma->grad.data[c], r[0].gamma->grad.data[c])
        || !close_to (r[1].beta->grad.data[c], r[0].beta->grad.data[c])
        || !close_to (r[1].mean->value.data[c], r[0].mean->value.data[c])
        || !close_to (r[1].var->value.data[c], r[0].var->value.data[c]))
      FAIL ("batch norm over the group, channel %d: dγ, dβ or running statistics differ", c);
  for (guint k = 0; k < 2; k++)
    {
      fg_tape_free (r[k].tape);
      fg_weight_set_free (r[k].set);
    }
}

int
main (int argc, char **argv)
{
  static const gsize sizes[] = { 0, 1, 2, 3, 5, 64, 1000, 4097 };
  FgGroup *ordered, *allreduce;
  int provided;

  MPI_Init_thread (&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank (MPI_COMM_WORLD, &rank);
  MPI_Comm_size (MPI_COMM_WORLD, &size);
  ordered = _fg_group_new_mpi (MPI_COMM_WORLD, FG_GROUP_REDUCE_ORDERED);
  allreduce = _fg_group_new_mpi (MPI_COMM_WORLD, FG_GROUP_REDUCE_ALLREDUCE);
  if (fg_group_get_rank (ordered) != (guint) rank || fg_group_get_size (ordered) != (guint) size
      || fg_group_get_rank (NULL) != 0 || fg_group_get_size (NULL) != 1)
    FAIL ("rank or size");

  for (guint t = 0; t < G_N_ELEMENTS (sizes); t++)
    {
      check_floats (ordered, sizes[t], t, TRUE);
      check_floats (allreduce, sizes[t], t, FALSE);
      check_doubles (ordered, sizes[t], t + 100);
    }
  check_grads (ordered);
  check_batch_norm (ordered);
  {
    /* A NULL group is a group of one: nothing changes. */
    float x[2] = { 1.5f, -2.0f };
    if (!fg_group_sum_floats (NULL, x, 2, NULL) || x[0] != 1.5f || x[1] != -2.0f)
      FAIL ("NULL group");
  }
  if (size > 1 && (fg_group_get_bytes_sent (ordered) == 0 || fg_group_get_seconds (ordered) < 0))
    FAIL ("no bytes counted");
  _fg_group_free (ordered);
  _fg_group_free (allreduce);
  if (rank == 0)
    printf ("group sums on %d ranks: ok\n", size);
  MPI_Finalize ();
  return 0;
}
