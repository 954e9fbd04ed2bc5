/* SPDX-License-Identifier: MIT */
/* Rejected: declares no components. */
#include "fixture.h"

static const FgComponent components[] = { { 0 } };
static const FgPluginInfo info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "no-components",
  .version = "1",
  .license = "MIT",
  .description = "test fixture",
  .components = components,
};
FG_PLUGIN_DEFINE (info)
