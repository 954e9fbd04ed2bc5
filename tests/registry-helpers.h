/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the registry and component parameters as the tests that load plugins use
 * them. */
#pragma once

#include <flowgmm/flowgmm.h>

G_BEGIN_DECLS

/* The process-wide registry of a test: the core's built-in components and the build's plugins
 * ($FLOWGMM_PLUGIN_PATH), loaded on first use.  Parameters of the flowgmm method are resolved
 * against it (fg_registry_resolve_params ()), which binds the flow and loss the method runs. */
FgRegistry *th_registry (void);

/* Set "key=value" strings (NULL-terminated; NULL for none) on params; FALSE with the error of
 * the first fg_params_set that fails.  A string without '=' is a mistake in the test. */
gboolean th_params_set_all (FgParams *params, const char *const *settings, GError **error);

/* A component's parameters with `settings` set, asserting that they are valid. */
FgParams *th_params_new (const FgComponent *c, const char *const *settings);

/* A flow's partial passes (forward_to, inverse_from) refuse a layer past its last, n_layers,
 * with FG_ERROR_INVALID_PARAM: asserted on input x (a row batch of the flow's shape). */
void th_assert_partial_passes_reject_layer (const FgFlowVTable *vt, gpointer flow,
                                            const FgTensor *x, guint n_layers);

G_END_DECLS
