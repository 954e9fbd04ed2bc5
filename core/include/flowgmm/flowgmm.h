/* SPDX-License-Identifier: MIT */
/* flowgmm — umbrella header for the host runtime and the plugin ABI. */
#pragma once

#include <flowgmm/error.h>
#include <flowgmm/tensor.h>
#include <flowgmm/rng.h>
#include <flowgmm/weights.h>
#include <flowgmm/tape.h>
#include <flowgmm/optim.h>
#include <flowgmm/params.h>
#include <flowgmm/dataset.h>
#include <flowgmm/split.h>
#include <flowgmm/plugin.h>
#include <flowgmm/registry.h>
#include <flowgmm/experiment.h>
#include <flowgmm/io.h>
#include <flowgmm/gmm.h>
#include <flowgmm/loss.h>
#include <flowgmm/neighbors.h>
#include <flowgmm/figure.h>
#include <flowgmm/parallel.h>
#include <flowgmm/analysis.h>

G_BEGIN_DECLS

/* fg_version () is declared in <flowgmm/error.h>. */
/* The thread budget, fg_set_num_threads () and fg_get_num_threads (), is in <flowgmm/parallel.h>. */

G_END_DECLS
