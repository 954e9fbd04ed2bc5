/* SPDX-License-Identifier: MIT */
/* Rejected: a declared parameter whose default lies outside its own range. */
#include "fixture.h"

static const FgParamSpec params[] = {
  FG_PARAM_SPEC_INT ("k", "50", 1, 20, "a neighbour count whose default is out of range"),
  FG_PARAM_SPEC_END,
};
static const FgBaselineVTable vtable = FIXTURE_BASELINE_VTABLE;
static const FgComponent components[] = {
  { FG_KIND_BASELINE, "bad-params-baseline", "fixture", params, &vtable, { 0 } },
  { 0 },
};
static const FgPluginInfo info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "bad-params",
  .version = "1",
  .license = "MIT",
  .description = "test fixture",
  .components = components,
};
FG_PLUGIN_DEFINE (info)
