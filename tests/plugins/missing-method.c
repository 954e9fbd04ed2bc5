/* SPDX-License-Identifier: MIT */
/* Rejected: a baseline without its required predict method. */
#include "fixture.h"

static const FgBaselineVTable vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = fixture_create,
  .fit = fixture_fit,
  .predict = NULL,
  .destroy = fixture_destroy,
};
static const FgComponent components[] = {
  { FG_KIND_BASELINE, "missing-method-baseline", "fixture", fixture_params, &vtable, { 0 } },
  { 0 },
};
static const FgPluginInfo info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "missing-method",
  .version = "1",
  .license = "MIT",
  .description = "test fixture",
  .components = components,
};
FG_PLUGIN_DEFINE (info)
