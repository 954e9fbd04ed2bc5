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

G_BEGIN_DECLS

/* "0.1.0" */
FG_API const char *fg_version (void);
/* Number of threads the numeric core may use for its own kernels and OpenBLAS (0 = all cores).
 * Never run an OpenBLAS pool and the core's threads at once: the core calls single-threaded
 * sgemm from its own threads when it splits work. */
FG_API void fg_set_num_threads (guint n);
FG_API guint fg_get_num_threads (void);

G_END_DECLS
