/* SPDX-License-Identifier: MIT */
/* flowgmm tests — gradient checking against central finite differences (see gradcheck.h). */
#include <math.h>
#include <string.h>

#include "gradcheck.h"

void
gc_options_init (GcOptions *opts)
{
  opts->eps = GC_DEFAULT_EPS;
  opts->atol = GC_DEFAULT_ATOL;
  opts->rtol = GC_DEFAULT_RTOL;
  opts->seed = 0x9e3779b97f4a7c15ull;
}

double
gc_project (const FgTensor *t, const float *r)
{
  const gsize rows = fg_tensor_rows (t), cols = fg_tensor_cols (t);
  double s = 0.0;
  for (gsize i = 0; i < rows; i++)
    {
      const float *x = fg_tensor_row (t, i);
      for (gsize j = 0; j < cols; j++)
        s += (double) r[i * cols + j] * (double) x[j];
    }
  return s;
}

/* Reset the tape with every byte of its arena set to 0xff (a NaN in float), so that a kernel
 * reading memory it did not write (e.g. accumulating into a gradient it was told is fresh)
 * produces NaN instead of silently reading the zeros of a newly mapped block. */
static void
poison_arena (FgTape *tape)
{
  FgTapeStats st0, st;
  fg_tape_reset (tape);
  fg_tape_get_stats (tape, &st0);
  for (;;)
    {
      guint8 *p = fg_tape_alloc (tape, 4096);
      fg_tape_get_stats (tape, &st);
      memset (p, 0xff, 4096);
      if (st.heap_allocs != st0.heap_allocs)
        break; /* walked past the last block */
    }
  fg_tape_reset (tape);
}

/* L = Σ r ⊙ build(...) with gradients off, on a reset tape. */
static gboolean
eval_loss (FgTape *tape, FgWeight *const *inputs, guint n_inputs, GcBuildFunc build,
           gpointer user_data, const float *r, gsize numel, double *loss)
{
  FgVar *leaves[16];
  fg_tape_reset (tape);
  fg_tape_set_grad_enabled (tape, FALSE);
  for (guint i = 0; i < n_inputs; i++)
    leaves[i] = fg_tape_weight (tape, inputs[i]);
  FgVar *out = build (tape, leaves, user_data);
  fg_tape_set_grad_enabled (tape, TRUE);
  if (out == NULL || fg_tensor_numel (&out->value) != numel)
    return FALSE;
  *loss = gc_project (&out->value, r);
  return TRUE;
}

gboolean
gc_check (FgWeight *const *inputs, guint n_inputs, GcBuildFunc build, gpointer user_data,
          const GcOptions *opts, GcResult *result)
{
  GcOptions defaults;
  if (opts == NULL)
    {
      gc_options_init (&defaults);
      opts = &defaults;
    }
  g_assert_cmpuint (n_inputs, <=, 16);
  memset (result, 0, sizeof *result);

  g_autoptr (FgTape) tape = fg_tape_new ();
  FgVar *leaves[16];
  FgVar *out = NULL;
  /* Pass 0 warms the arena up, which is then poisoned; pass 1 is the one checked. */
  for (guint pass = 0; pass < 2; pass++)
    {
      if (pass == 1)
        poison_arena (tape);
      for (guint i = 0; i < n_inputs; i++)
        {
          if (inputs[i]->grad.data != NULL)
            memset (inputs[i]->grad.data, 0, fg_tensor_numel (&inputs[i]->grad) * sizeof (float));
          leaves[i] = fg_tape_weight (tape, inputs[i]);
        }
      out = build (tape, leaves, user_data);
      if (out == NULL)
        {
          g_snprintf (result->worst, sizeof result->worst, "build returned NULL");
          result->n_failed = 1;
          return FALSE;
        }
      if (pass == 0)
        {
          g_autofree float *ones = g_new (float, MAX (fg_tensor_numel (&out->value), 1));
          for (gsize k = 0; k < fg_tensor_numel (&out->value); k++)
            ones[k] = 1.0f;
          FgTensor s1 = fg_tensor_wrap_2d (ones, fg_tensor_rows (&out->value),
                                           fg_tensor_cols (&out->value));
          g_assert_true (fg_tape_backward_seed (tape, out, &s1, NULL));
        }
    }

  /* The projection r, fixed by the seed; contiguous with out's rows × cols. */
  const gsize numel = fg_tensor_numel (&out->value);
  float *r = g_new (float, MAX (numel, 1));
  FgRng rng;
  fg_rng_init (&rng, opts->seed, 7);
  fg_rng_fill_uniform (&rng, r, numel, -1.0f, 1.0f);
  FgTensor seed = fg_tensor_wrap_2d (r, fg_tensor_rows (&out->value), fg_tensor_cols (&out->value));
  g_autoptr (GError) error = NULL;
  if (!fg_tape_backward_seed (tape, out, &seed, &error))
    {
      g_snprintf (result->worst, sizeof result->worst, "backward failed: %s", error->message);
      result->n_failed = 1;
      g_free (r);
      return FALSE;
    }

  for (guint i = 0; i < n_inputs; i++)
    {
      FgWeight *w = inputs[i];
      if (!w->trainable || w->grad.data == NULL)
        continue;
      const gsize n = fg_tensor_numel (&w->value);
      float *analytic = g_new (float, MAX (n, 1));
      memcpy (analytic, w->grad.data, n * sizeof (float));
      for (gsize k = 0; k < n; k++)
        {
          float *x = &w->value.data[k];
          const float x0 = *x;
          const double h = opts->eps * MAX (1.0, fabs (x0));
          const float xp = (float) (x0 + h), xm = (float) (x0 - h);
          double lp = 0, lm = 0;
          *x = xp;
          gboolean ok = eval_loss (tape, inputs, n_inputs, build, user_data, r, numel, &lp);
          *x = xm;
          ok = ok && eval_loss (tape, inputs, n_inputs, build, user_data, r, numel, &lm);
          *x = x0;
          /* Divide by the step actually taken in float. */
          const double num = (lp - lm) / ((double) xp - (double) xm);
          const double ana = analytic[k];
          const double err = fabs (ana - num);
          const double tol = opts->atol + opts->rtol * MAX (fabs (ana), fabs (num));
          const double ratio = ok ? err / tol : INFINITY;
          result->n_checked++;
          if (!(ratio <= 1.0))
            result->n_failed++;
          result->max_abs_err = MAX (result->max_abs_err, err);
          if (!(ratio <= result->max_ratio))
            {
              result->max_ratio = ratio;
              g_snprintf (result->worst, sizeof result->worst,
                          "input %u element %" G_GSIZE_FORMAT ": analytic %.6g numeric %.6g",
                          i, k, ana, num);
            }
        }
      /* Leave the analytic gradient in place for callers that inspect it. */
      memcpy (w->grad.data, analytic, n * sizeof (float));
      g_free (analytic);
    }
  g_free (r);
  return result->n_failed == 0;
}

void
gc_assert (FgWeight *const *inputs, guint n_inputs, GcBuildFunc build, gpointer user_data,
           const GcOptions *opts, const char *what)
{
  GcResult res;
  gboolean ok = gc_check (inputs, n_inputs, build, user_data, opts, &res);
  g_test_message ("gradcheck %s: %" G_GSIZE_FORMAT " elements, %" G_GSIZE_FORMAT
                  " failed, max |err| %.3g, max err/tol %.3g (%s)",
                  what, res.n_checked, res.n_failed, res.max_abs_err, res.max_ratio, res.worst);
  if (!ok)
    g_printerr ("gradcheck %s FAILED: %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                " elements out of tolerance; worst %s (err/tol %.3g)\n",
                what, res.n_failed, res.n_checked, res.worst, res.max_ratio);
  g_assert_cmpuint (res.n_failed, ==, 0);
  g_assert_cmpuint (res.n_checked, >, 0);
}

double
gc_log_abs_det (double *a, gsize D)
{
  double ld = 0.0;
  for (gsize c = 0; c < D; c++)
    {
      gsize p = c;
      for (gsize r = c + 1; r < D; r++)
        if (fabs (a[r * D + c]) > fabs (a[p * D + c]))
          p = r;
      if (p != c)
        for (gsize j = 0; j < D; j++)
          {
            double t = a[c * D + j];
            a[c * D + j] = a[p * D + j];
            a[p * D + j] = t;
          }
      ld += log (fabs (a[c * D + c]));
      for (gsize r = c + 1; r < D; r++)
        {
          double m = a[r * D + c] / a[c * D + c];
          for (gsize j = c; j < D; j++)
            a[r * D + j] -= m * a[c * D + j];
        }
    }
  return ld;
}
