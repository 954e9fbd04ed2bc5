/* SPDX-License-Identifier: MIT */
/* Rejected: a shared object without the fg_plugin_query entry symbol. */
#include "config.h"

#include <glib.h>

__attribute__ ((visibility ("default"))) int fg_not_a_plugin (void);

int
fg_not_a_plugin (void)
{
  return 42;
}
