/* SPDX-License-Identifier: MIT */
/* Rejected: the descriptor claims to be smaller than ABI 1's minimum. */
#include "fixture.h"

FIXTURE_PLUGIN ("small-info", "small-info-baseline")
static FgPluginInfo shrunk;

FG_PLUGIN_EXPORT const FgPluginInfo *fg_plugin_query (void);

const FgPluginInfo *
fg_plugin_query (void)
{
  shrunk = fixture_info;
  shrunk.struct_size = 16;
  return &shrunk;
}
