/* SPDX-License-Identifier: MIT */
/* Rejected: the entry symbol returns no descriptor. */
#include "fixture.h"

FG_PLUGIN_EXPORT const FgPluginInfo *fg_plugin_query (void);

const FgPluginInfo *
fg_plugin_query (void)
{
  return NULL;
}
