/* SPDX-License-Identifier: MIT */
/* flowgmm tests — shared pieces of the fixture plugins.  Each fixture breaks exactly one rule of
 * the plugin ABI so that the loader test can check the matching rejection. */
#pragma once

#include "config.h"

#include <flowgmm/flowgmm.h>

static gpointer G_GNUC_UNUSED
fixture_create (const FgParams *params, FgRng *rng, GError **error)
{
  return g_new0 (int, 1);
}

static gboolean G_GNUC_UNUSED
fixture_fit (gpointer self, const FgSplit *split, GError **error)
{
  return TRUE;
}

static gboolean G_GNUC_UNUSED
fixture_predict (gpointer self, const FgTensor *x, gint32 *labels, float *proba, GError **error)
{
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    labels[i] = 0;
  return TRUE;
}

static void G_GNUC_UNUSED
fixture_destroy (gpointer self)
{
  g_free (self);
}

static const FgParamSpec fixture_params[] G_GNUC_UNUSED = {
  FG_PARAM_SPEC_INT ("k", "1", 1, 20, "a parameter"),
  FG_PARAM_SPEC_END,
};

#define FIXTURE_BASELINE_VTABLE                                              \
  {                                                                          \
    .struct_size = sizeof (FgBaselineVTable), .create = fixture_create,      \
    .fit = fixture_fit, .predict = fixture_predict, .destroy = fixture_destroy \
  }

/* A descriptor named `plugin` with one baseline component `component`. */
#define FIXTURE_PLUGIN(plugin, component)                                          \
  static const FgBaselineVTable fixture_vtable = FIXTURE_BASELINE_VTABLE;          \
  static const FgComponent fixture_components[] = {                                \
    { FG_KIND_BASELINE, component, "fixture", fixture_params, &fixture_vtable, { 0 } }, \
    { 0 },                                                                         \
  };                                                                               \
  static const FgPluginInfo fixture_info = {                                       \
    .abi_version = FG_PLUGIN_ABI_VERSION,                                          \
    .struct_size = sizeof (FgPluginInfo),                                          \
    .name = plugin,                                                                \
    .version = "1",                                                                \
    .license = "MIT",                                                              \
    .description = "test fixture",                                                 \
    .components = fixture_components,                                              \
  };
