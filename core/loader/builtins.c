/* SPDX-License-Identifier: MIT */
/* flowgmm — the list of components compiled into libflowgmm. */
#include "config.h"

#include "loader/builtins.h"

const FgPluginInfo *const _fg_builtin_plugins[] = {
  &_fg_trainer_plugin_info,
  NULL,
};
