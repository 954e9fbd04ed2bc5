/* SPDX-License-Identifier: MIT */
/* Rejected: a component of a kind this host does not know. */
#include "fixture.h"

static const FgBaselineVTable vtable = FIXTURE_BASELINE_VTABLE;
static const FgComponent components[] = {
  { (FgKind) 99, "unknown-kind-thing", "fixture", fixture_params, &vtable, { 0 } },
  { 0 },
};
static const FgPluginInfo info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "unknown-kind",
  .version = "1",
  .license = "MIT",
  .description = "test fixture",
  .components = components,
};
FG_PLUGIN_DEFINE (info)
