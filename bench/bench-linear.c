/* SPDX-License-Identifier: MIT */
/* flowgmm — micro-benchmark: a linear layer's forward + backward on the tape against the
 * machine's plain cblas_sgemm rate for the same three products.
 *
 * One step is what a training loop does for one layer:
 *   reset; y = fg_op_linear (x, W, b); loss = fg_op_sum (y); backward
 * with x, W and b all weights, so the backward computes dX = dY·Wᵀ, dW = xᵀ·dY and db.
 * FLOPs per step: 3 × 2·N·in·out (the bias, the sum and the bias gradient are not counted).
 * The reference times the three cblas_sgemm calls alone, with the same shapes, layouts and
 * beta as the tape uses.  Times are medians over repeats of calibrated batches of steps, the
 * tape and the reference timed in alternation.
 *
 *   make bench && OPENBLAS_NUM_THREADS=1 ./bench/bench-linear [--act tanh]
 *
 * With --act, each shape also compares fg_op_linear followed by the activation op with the
 * fused fg_op_linear_act (same loss and backward).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <flowgmm/flowgmm.h>

typedef struct {
  gsize n, in, out;
} Shape;

static const Shape default_shapes[] = {
  { 256, 21, 256 },
  { 256, 256, 256 },
  { 256, 512, 512 },
  { 5000, 768, 1024 },
};

static gint opt_repeats = 7;
static gdouble opt_min_ms = 200.0;
static gchar **opt_shapes = NULL;
static gchar *opt_act = NULL;

static GOptionEntry entries[] = {
  { "repeats", 'r', 0, G_OPTION_ARG_INT, &opt_repeats, "Timed repeats (median reported)", "N" },
  { "min-ms", 'm', 0, G_OPTION_ARG_DOUBLE, &opt_min_ms, "Minimum duration of one repeat", "MS" },
  { "shape", 's', 0, G_OPTION_ARG_STRING_ARRAY, &opt_shapes, "A shape NxINxOUT (repeatable)",
    "N×IN×OUT" },
  { "act", 'a', 0, G_OPTION_ARG_STRING, &opt_act,
    "Also compare fg_op_linear + activation op with fg_op_linear_act (tanh, relu, sigmoid, "
    "softplus)", "ACT" },
  { NULL }
};

typedef struct {
  FgTape *tape;
  FgWeight *x, *w, *b;
  /* plain sgemm operands */
  float *y, *g;
  Shape s;
  FgActivation act;
} Bench;

static void
tape_step (Bench *bn)
{
  FgTape *tape = bn->tape;
  fg_tape_reset (tape);
  FgVar *y = fg_op_linear (tape, fg_tape_weight (tape, bn->x), fg_tape_weight (tape, bn->w),
                           fg_tape_weight (tape, bn->b));
  FgVar *loss = fg_op_sum (tape, y, FG_AXIS_ALL);
  if (!fg_tape_backward (tape, loss, NULL))
    g_error ("backward failed");
}

static FgVar *
activation_op (FgTape *tape, FgVar *y, FgActivation act)
{
  switch (act)
    {
    case FG_ACT_RELU:
      return fg_op_relu (tape, y);
    case FG_ACT_SIGMOID:
      return fg_op_sigmoid (tape, y);
    case FG_ACT_SOFTPLUS:
      return fg_op_softplus (tape, y);
    case FG_ACT_TANH:
    default:
      return fg_op_tanh (tape, y);
    }
}

static void
tape_step_act (Bench *bn, gboolean fused)
{
  FgTape *tape = bn->tape;
  fg_tape_reset (tape);
  FgVar *x = fg_tape_weight (tape, bn->x), *w = fg_tape_weight (tape, bn->w);
  FgVar *b = fg_tape_weight (tape, bn->b);
  FgVar *y = fused ? fg_op_linear_act (tape, x, w, b, bn->act, 0.0f)
                   : activation_op (tape, fg_op_linear (tape, x, w, b), bn->act);
  if (!fg_tape_backward (tape, fg_op_sum (tape, y, FG_AXIS_ALL), NULL))
    g_error ("backward failed");
}

static void
tape_step_unfused (Bench *bn)
{
  tape_step_act (bn, FALSE);
}

static void
tape_step_fused (Bench *bn)
{
  tape_step_act (bn, TRUE);
}

/* The same three products as the tape: forward with beta 0 (after the bias is written the tape
 * uses beta 1 on it; same cost), dX and dW accumulated (beta 1) into the weights' gradients. */
static void
sgemm_step (Bench *bn)
{
  const int n = (int) bn->s.n, in = (int) bn->s.in, out = (int) bn->s.out;
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, out, in, 1.0f, bn->x->value.data,
               in, bn->w->value.data, out, 0.0f, bn->y, out);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, in, out, 1.0f, bn->g, out,
               bn->w->value.data, out, 1.0f, bn->x->grad.data, in);
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, in, out, n, 1.0f, bn->x->value.data, in,
               bn->g, out, 1.0f, bn->w->grad.data, out);
}

static int
cmp_double (const void *a, const void *b)
{
  const double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* Seconds per call of fn, batched so one timing lasts about opt_min_ms. */
static int
calibrate (void (*fn) (Bench *), Bench *bn)
{
  for (int i = 0; i < 3; i++) /* warm-up: arena, OpenBLAS buffers, caches */
    fn (bn);
  gint64 t0 = g_get_monotonic_time ();
  fn (bn);
  double once = MAX ((double) (g_get_monotonic_time () - t0), 1.0) * 1e-6;
  return (int) MAX (1.0, opt_min_ms * 1e-3 / once);
}

static double
time_batch (void (*fn) (Bench *), Bench *bn, int batch)
{
  gint64 start = g_get_monotonic_time ();
  for (int i = 0; i < batch; i++)
    fn (bn);
  return (double) (g_get_monotonic_time () - start) * 1e-6 / batch;
}

/* Medians of the tape step and of the plain sgemm triple.  The two are timed in alternation,
 * so that a slow spell of a shared machine (the second vCPU is not always a full core) hits
 * both rather than whichever ran during it. */
static void
time_both (void (*fa) (Bench *), void (*fb) (Bench *), Bench *bn, double *t_tape,
           double *t_blas)
{
  const int bt = calibrate (fa, bn), bb = calibrate (fb, bn);
  double *tt = g_new (double, opt_repeats), *tb = g_new (double, opt_repeats);
  for (int r = 0; r < opt_repeats; r++)
    {
      tt[r] = time_batch (fa, bn, bt);
      tb[r] = time_batch (fb, bn, bb);
    }
  qsort (tt, opt_repeats, sizeof (double), cmp_double);
  qsort (tb, opt_repeats, sizeof (double), cmp_double);
  *t_tape = tt[opt_repeats / 2];
  *t_blas = tb[opt_repeats / 2];
  g_free (tt);
  g_free (tb);
}

static gboolean
parse_shape (const char *str, Shape *s)
{
  unsigned long a, b, c;
  char tail;
  if (sscanf (str, "%lux%lux%lu%c", &a, &b, &c, &tail) != 3 || !a || !b || !c)
    return FALSE;
  s->n = a;
  s->in = b;
  s->out = c;
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— linear layer fwd+bwd vs sgemm");
  g_autoptr (GError) error = NULL;
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || opt_repeats < 1)
    {
      g_printerr ("bench-linear: %s\n", error ? error->message : "--repeats must be >= 1");
      return 2;
    }

  GArray *shapes = g_array_new (FALSE, FALSE, sizeof (Shape));
  if (opt_shapes != NULL)
    for (char **p = opt_shapes; *p; p++)
      {
        Shape s;
        if (!parse_shape (*p, &s))
          {
            g_printerr ("bench-linear: bad shape '%s' (want NxINxOUT)\n", *p);
            return 2;
          }
        g_array_append_val (shapes, s);
      }
  else
    g_array_append_vals (shapes, default_shapes, G_N_ELEMENTS (default_shapes));

  FgActivation act = FG_ACT_NONE;
  if (opt_act != NULL)
    {
      static const char *names[] = { "relu", "tanh", "sigmoid", "softplus" };
      static const FgActivation acts[] = { FG_ACT_RELU, FG_ACT_TANH, FG_ACT_SIGMOID,
                                           FG_ACT_SOFTPLUS };
      for (guint i = 0; i < G_N_ELEMENTS (names); i++)
        if (g_strcmp0 (opt_act, names[i]) == 0)
          act = acts[i];
      if (act == FG_ACT_NONE)
        {
          g_printerr ("bench-linear: unknown activation '%s'\n", opt_act);
          return 2;
        }
    }

  const char *env = g_getenv ("OPENBLAS_NUM_THREADS");
#ifdef HAVE_OPENBLAS_GET_NUM_THREADS
  printf ("# bench-linear: OPENBLAS_NUM_THREADS=%s (OpenBLAS uses %d), median of %d repeats "
          ">= %.0f ms\n",
          env ? env : "(unset)", openblas_get_num_threads (), opt_repeats, opt_min_ms);
#else
  printf ("# bench-linear: OPENBLAS_NUM_THREADS=%s, median of %d repeats >= %.0f ms\n",
          env ? env : "(unset)", opt_repeats, opt_min_ms);
#endif
  printf ("# step = fg_op_linear + fg_op_sum + backward (dX, dW, db) + reset; "
          "FLOPs = 3 x 2*N*IN*OUT\n");
  printf ("%-18s %12s %10s %12s %10s %7s %12s\n", "N x IN -> OUT", "tape us/step", "GFLOP/s",
          "sgemm us", "GFLOP/s", "ratio", "overhead us");

  for (guint k = 0; k < shapes->len; k++)
    {
      const Shape s = g_array_index (shapes, Shape, k);
      g_autoptr (FgWeightSet) set = fg_weight_set_new ();
      FgRng rng;
      fg_rng_init (&rng, 42, k);
      Bench bn = { .s = s, .act = act };
      bn.x = fg_weight_set_add_2d (set, "x", s.n, s.in, FALSE);
      bn.w = fg_weight_set_add_2d (set, "w", s.in, s.out, TRUE);
      bn.b = fg_weight_set_add_2d (set, "b", 1, s.out, FALSE);
      fg_weight_init_uniform (bn.x, &rng, 1.0f);
      fg_weight_init_uniform (bn.w, &rng, 0.1f);
      fg_weight_init_uniform (bn.b, &rng, 0.1f);
      bn.tape = fg_tape_new ();
      bn.y = fg_alloc_floats (s.n * s.out);
      bn.g = fg_alloc_floats (s.n * s.out);
      for (gsize i = 0; i < s.n * s.out; i++)
        bn.g[i] = 1.0f;

      const double flops = 3.0 * 2.0 * (double) s.n * (double) s.in * (double) s.out;
      double t_tape, t_blas;
      FgTapeStats st0, st1;
      time_both (tape_step, sgemm_step, &bn, &t_tape, &t_blas);
      fg_tape_get_stats (bn.tape, &st0);
      tape_step (&bn);
      fg_tape_get_stats (bn.tape, &st1);

      char label[64];
      g_snprintf (label, sizeof label, "%" G_GSIZE_FORMAT "x%" G_GSIZE_FORMAT "->%" G_GSIZE_FORMAT,
                  s.n, s.in, s.out);
      printf ("%-18s %12.1f %10.1f %12.1f %10.1f %7.2f %12.1f%s\n", label, t_tape * 1e6,
              flops / t_tape * 1e-9, t_blas * 1e6, flops / t_blas * 1e-9, t_blas / t_tape,
              (t_tape - t_blas) * 1e6,
              st1.heap_allocs != st0.heap_allocs ? "  (tape allocated from the heap!)" : "");
      if (bn.act != FG_ACT_NONE)
        {
          double t_unfused, t_fused;
          time_both (tape_step_unfused, tape_step_fused, &bn, &t_unfused, &t_fused);
          printf ("%-18s %12s linear+%s %.1f us, linear_act %.1f us: fused saves %.1f us "
                  "(%.0f %%)\n",
                  "", "", opt_act, t_unfused * 1e6, t_fused * 1e6, (t_unfused - t_fused) * 1e6,
                  100.0 * (t_unfused - t_fused) / t_unfused);
        }
      fflush (stdout);

      fg_tape_free (bn.tape);
      fg_free_aligned (bn.y);
      fg_free_aligned (bn.g);
    }
  g_array_unref (shapes);
  g_strfreev (opt_shapes);
  g_free (opt_act);
  return 0;
}
