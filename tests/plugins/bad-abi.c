/* SPDX-License-Identifier: MIT */
/* Rejected: built for a future ABI version. */
#include "fixture.h"

static const FgBaselineVTable vtable = FIXTURE_BASELINE_VTABLE;
static const FgComponent components[] = {
  { FG_KIND_BASELINE, "bad-abi-baseline", "fixture", fixture_params, &vtable, { 0 } },
  { 0 },
};
static const FgPluginInfo info = {
  .abi_version = FG_PLUGIN_ABI_VERSION + 1,
  .struct_size = sizeof (FgPluginInfo),
  .name = "bad-abi",
  .version = "1",
  .license = "MIT",
  .description = "test fixture",
  .components = components,
};
FG_PLUGIN_DEFINE (info)
