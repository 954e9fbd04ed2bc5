/* SPDX-License-Identifier: MIT */
/* flowgmm tests — a baseline that crashes on purpose (a signal, abort (), a kill as the kernel's
 * out-of-memory killer sends, or exit ()) in the phase asked for, to test that the runner keeps a
 * crashing cell from taking the run down.  Without a crash it predicts class 0. */
#include "fixture.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static const FgParamSpec crash_params[] = {
  FG_PARAM_SPEC_CHOICE ("crash", "none", "none|segv|abort|kill|exit", "how to crash"),
  FG_PARAM_SPEC_CHOICE ("phase", "fit", "create|fit|predict", "when to crash"),
  FG_PARAM_SPEC_END,
};

typedef struct {
  const char *crash, *phase;
  guint n_classes;
} Crash;

static void
maybe_crash (const Crash *self, const char *phase)
{
  if (g_strcmp0 (self->phase, phase) != 0 || g_strcmp0 (self->crash, "none") == 0)
    return;
  if (g_strcmp0 (self->crash, "segv") == 0)
    {
      /* A real fault, but with the default action even under a sanitizer's handler. */
      signal (SIGSEGV, SIG_DFL);
      raise (SIGSEGV);
    }
  else if (g_strcmp0 (self->crash, "abort") == 0)
    abort ();
  else if (g_strcmp0 (self->crash, "kill") == 0)
    raise (SIGKILL);
  else
    exit (3);
}

static gpointer
crash_create (const FgParams *params, FgRng *rng, GError **error)
{
  Crash *self = g_new0 (Crash, 1);
  self->crash = fg_params_get_string (params, "crash");
  self->phase = fg_params_get_string (params, "phase");
  maybe_crash (self, "create");
  return self;
}

static gboolean
crash_fit (gpointer data, const FgSplit *split, GError **error)
{
  Crash *self = data;
  maybe_crash (self, "fit");
  self->n_classes = split->n_classes;
  return TRUE;
}

static gboolean
crash_predict (gpointer self, const FgTensor *x, gint32 *labels, float *proba, GError **error)
{
  const Crash *c = self;
  maybe_crash (c, "predict");
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    {
      labels[i] = 0;
      for (guint k = 0; proba != NULL && k < c->n_classes; k++)
        proba[i * c->n_classes + k] = k == 0 ? 1.0f : 0.0f;
    }
  return TRUE;
}

static const FgBaselineVTable crash_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = crash_create,
  .fit = crash_fit,
  .predict = crash_predict,
  .destroy = fixture_destroy,
};

static const FgComponent components[] = {
  { FG_KIND_BASELINE, "crash-baseline", "crashes on purpose", crash_params, &crash_vtable,
    { 0 } },
  { 0 },
};

static const FgPluginInfo info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "crash",
  .version = "1",
  .license = "MIT",
  .description = "test fixture that crashes",
  .components = components,
};

FG_PLUGIN_DEFINE (info)
