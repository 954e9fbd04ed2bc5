/* SPDX-License-Identifier: MIT */
/* Rejected: the descriptor's name is not the file's basename. */
#include "fixture.h"

FIXTURE_PLUGIN ("some-other-name", "name-mismatch-baseline")
FG_PLUGIN_DEFINE (fixture_info)
