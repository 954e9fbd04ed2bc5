/* SPDX-License-Identifier: MIT */
/* flowgmm — components compiled into libflowgmm itself (private). */
#pragma once

#include <flowgmm/plugin.h>

G_BEGIN_DECLS

/* NULL-terminated list of the core's own descriptors, registered by
 * fg_registry_new_with_builtins (). */
extern const FgPluginInfo *const _fg_builtin_plugins[];

/* The `flowgmm` method (core/method/flowgmm-method.c). */
extern const FgPluginInfo _fg_trainer_plugin_info;

G_END_DECLS
