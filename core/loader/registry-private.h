/* SPDX-License-Identifier: MIT */
/* flowgmm — registry internals shared between registry.c and registry-default.c. */
#pragma once

#include <flowgmm/registry.h>

G_BEGIN_DECLS

/* Clears the process's default registry if it is `reg` (called when `reg` is freed). */
void _fg_registry_forget_default (FgRegistry *reg);

G_END_DECLS
