/* SPDX-License-Identifier: MIT */
/* Rejected: a vtable whose struct_size says it ends before the required methods. */
#include "fixture.h"

static const FgBaselineVTable vtable = {
  .struct_size = G_STRUCT_OFFSET (FgBaselineVTable, fit),
  .create = fixture_create,
  .fit = fixture_fit,
  .predict = fixture_predict,
  .destroy = fixture_destroy,
};
static const FgComponent components[] = {
  { FG_KIND_BASELINE, "small-vtable-baseline", "fixture", fixture_params, &vtable, { 0 } },
  { 0 },
};
static const FgPluginInfo info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "small-vtable",
  .version = "1",
  .license = "MIT",
  .description = "test fixture",
  .components = components,
};
FG_PLUGIN_DEFINE (info)
