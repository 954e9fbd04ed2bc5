/* SPDX-License-Identifier: MIT */
/* flowgmm tests — see registry-helpers.h. */
#include "config.h"

#include "registry-helpers.h"

FgRegistry *
th_registry (void)
{
  static FgRegistry *reg = NULL;
  if (reg == NULL)
    {
      reg = fg_registry_new_with_builtins ();
      fg_registry_load_default (reg, NULL);
    }
  return reg;
}

gboolean
th_params_set_all (FgParams *params, const char *const *settings, GError **error)
{
  for (guint i = 0; settings != NULL && settings[i] != NULL; i++)
    {
      g_auto (GStrv) kv = g_strsplit (settings[i], "=", 2);
      g_assert_nonnull (kv[1]);
      if (!fg_params_set (params, kv[0], kv[1], error))
        return FALSE;
    }
  return TRUE;
}

FgParams *
th_params_new (const FgComponent *c, const char *const *settings)
{
  g_autoptr (GError) error = NULL;
  FgParams *p = fg_params_new (c->params);
  g_assert_true (th_params_set_all (p, settings, &error));
  g_assert_no_error (error);
  return p;
}

void
th_assert_partial_passes_reject_layer (const FgFlowVTable *vt, gpointer flow, const FgTensor *x,
                                       guint n_layers)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  g_assert_null (vt->forward_to (flow, tape, fg_tape_constant (tape, x), n_layers + 1, NULL,
                                 &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_clear_error (&error);
  g_assert_null (vt->inverse_from (flow, tape, fg_tape_constant (tape, x), n_layers + 1, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
}
