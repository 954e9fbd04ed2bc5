/* SPDX-License-Identifier: MIT */
/* Rejected after good.so: provides a baseline named like one of good's. */
#include "fixture.h"

FIXTURE_PLUGIN ("duplicate", "good-baseline")
FG_PLUGIN_DEFINE (fixture_info)
