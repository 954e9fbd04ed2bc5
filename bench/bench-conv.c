/* SPDX-License-Identifier: MIT */
/* flowgmm — training-step throughput of the realnvp-conv flow (the authors' image RealNVP).
 *
 * One step: forward in training mode (fresh dequantisation noise, batch statistics), the loss
 * mean_n [½‖z_n‖² − logdet_n] (a standard normal latent; the GMM adds nothing measurable on
 * this scale), backward, and an Adam update of every weight.  bench/bench_conv_torch.py times
 * the same step in PyTorch; bench/bench-conv.sh runs both side by side.
 *
 *   bench-conv [--mid 64] [--blocks 8] [--scales 2] [--batch 64] [--threads 1] [--seconds 10]
 *              [--channels 1] [--size 28] [--variant affine]
 *
 * Prints one line: "images/s X step_ms Y steps N params P peak_rss_mb R loss L cpu_ms_step C"
 * (cpu_ms_step: the process's user + system CPU time per timed step, every thread included;
 * the figure to compare on a busy machine, where wall time counts other tenants' slices).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static double
cpu_seconds (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
         + ru.ru_stime.tv_usec / 1e6;
}

#include <flowgmm/flowgmm.h>

static gint opt_mid = 64, opt_blocks = 8, opt_scales = 2, opt_batch = 64, opt_threads = 1;
static gint opt_channels = 1, opt_size = 28, opt_warmup = 2;
static gdouble opt_seconds = 10.0;
static gchar *opt_variant = NULL;

static GOptionEntry entries[] = {
  { "mid", 0, 0, G_OPTION_ARG_INT, &opt_mid, "mid_channels (64)", "N" },
  { "blocks", 0, 0, G_OPTION_ARG_INT, &opt_blocks, "residual blocks (8)", "N" },
  { "scales", 0, 0, G_OPTION_ARG_INT, &opt_scales, "scales (2)", "N" },
  { "batch", 0, 0, G_OPTION_ARG_INT, &opt_batch, "images per step (64)", "N" },
  { "threads", 't', 0, G_OPTION_ARG_INT, &opt_threads, "fg_set_num_threads (1)", "N" },
  { "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &opt_seconds, "time budget after warm-up (10)", "S" },
  { "channels", 0, 0, G_OPTION_ARG_INT, &opt_channels, "image channels (1)", "C" },
  { "size", 0, 0, G_OPTION_ARG_INT, &opt_size, "image height and width (28)", "S" },
  { "variant", 0, 0, G_OPTION_ARG_STRING, &opt_variant, "affine, 1x1 or actnorm", "V" },
  { "warmup", 0, 0, G_OPTION_ARG_INT, &opt_warmup, "untimed steps first (2)", "N" },
  { NULL },
};

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- realnvp-conv training throughput");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("bench-conv: %s\n", error->message);
      return 2;
    }
  fg_set_num_threads ((guint) opt_threads);

  FgRegistry *reg = fg_registry_new_with_builtins ();
  fg_registry_load_default (reg, NULL);
  const FgComponent *c = fg_registry_find (reg, FG_KIND_FLOW, "realnvp-conv", &error);
  if (c == NULL)
    {
      g_printerr ("bench-conv: %s (set FLOWGMM_PLUGIN_PATH)\n", error->message);
      return 1;
    }
  g_autoptr (FgParams) params = fg_params_new (c->params);
  char buf[32];
  g_snprintf (buf, sizeof buf, "%d", opt_mid);
  gboolean ok = fg_params_set (params, "mid_channels", buf, &error);
  g_snprintf (buf, sizeof buf, "%d", opt_blocks);
  ok = ok && fg_params_set (params, "blocks", buf, &error);
  g_snprintf (buf, sizeof buf, "%d", opt_scales);
  ok = ok && fg_params_set (params, "scales", buf, &error);
  ok = ok && fg_params_set (params, "variant", opt_variant ? opt_variant : "affine", &error);
  if (!ok)
    {
      g_printerr ("bench-conv: %s\n", error->message);
      return 2;
    }
  const FgFlowVTable *vt = c->vtable;
  const gsize N = (gsize) opt_batch, C = (gsize) opt_channels, S = (gsize) opt_size;
  FgSampleShape shape = { 3, { C, S, S } };
  g_autoptr (FgWeightSet) weights = fg_weight_set_new ();
  FgRng rng, noise;
  fg_rng_init (&rng, 1, 1);
  fg_rng_init (&noise, 1, 2);
  gpointer flow = vt->create (params, &shape, weights, &rng, &error);
  if (flow == NULL)
    {
      g_printerr ("bench-conv: %s\n", error->message);
      return 1;
    }
  g_autoptr (FgTensor) x = fg_tensor_new (4, (gsize[]){ N, C, S, S });
  for (gsize i = 0; i < fg_tensor_numel (x); i++)
    x->data[i] = (float) fg_rng_below (&rng, 256) / 255.0f;

  FgOptimConfig cfg;
  fg_optim_config_init (&cfg, FG_OPTIM_ADAM);
  g_autoptr (FgOptimizer) opt = fg_optimizer_new (&cfg, weights);
  g_autoptr (FgTape) tape = fg_tape_new ();
  FgFlowRun run = { TRUE, &noise, { 0 } };
  double t0 = 0.0, c0 = 0.0, loss_sum = 0.0;
  const gsize warmup = (gsize) MAX (opt_warmup, 0);
  gsize steps = 0;
  fg_weight_set_zero_grad (weights);
  for (gsize it = 0;; it++)
    {
      if (it == warmup) /* warm-up steps size the tape's arena */
        {
          t0 = g_get_monotonic_time () / 1e6;
          c0 = cpu_seconds ();
        }
      fg_tape_reset (tape);
      FgVar *ld = NULL;
      FgVar *z = vt->forward (flow, tape, fg_tape_constant (tape, x), &run, &ld, &error);
      if (z == NULL)
        {
          g_printerr ("bench-conv: %s\n", error->message);
          return 1;
        }
      FgVar *z2 = fg_op_reshape (tape, z, 2, (gsize[]){ N, C * S * S });
      FgVar *nll = fg_op_sub (tape, fg_op_scale (tape, fg_op_sum (tape, fg_op_square (tape, z2),
                                                                  FG_AXIS_COLS),
                                                 0.5f),
                              ld);
      FgVar *loss = fg_op_mean (tape, nll, FG_AXIS_ALL);
      if (!fg_tape_backward (tape, loss, &error))
        {
          g_printerr ("bench-conv: %s\n", error->message);
          return 1;
        }
      fg_optimizer_step (opt, 1e-4);
      fg_weight_set_zero_grad (weights);
      if (it >= warmup)
        {
          steps++;
          loss_sum += loss->value.data[0];
          if (g_get_monotonic_time () / 1e6 - t0 >= opt_seconds && steps >= 2)
            break;
        }
    }
  const double dt = g_get_monotonic_time () / 1e6 - t0, dc = cpu_seconds () - c0;
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  printf ("images/s %.3f step_ms %.1f steps %zu params %zu peak_rss_mb %.0f loss %.4g "
          "cpu_ms_step %.1f\n",
          steps * N / dt, 1e3 * dt / steps, (size_t) steps,
          (size_t) fg_weight_set_numel (weights), ru.ru_maxrss / 1024.0, loss_sum / steps,
          1e3 * dc / steps);
  vt->destroy (flow);
  return 0;
}
