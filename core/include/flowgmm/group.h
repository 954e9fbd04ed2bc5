/* SPDX-License-Identifier: MIT */
/* flowgmm — a group of processes training one model together (data parallelism).
 *
 * A data-parallel cell (the experiment key ranks_per_cell) is trained by a group of MPI ranks:
 * each rank runs the step on its own slice of the batch, and the group sums what the slices
 * contribute before anything depends on the whole batch.  The trainer sums the weights'
 * gradients this way before each optimizer step; a layer whose forward pass needs statistics of
 * the whole batch (batch norm: Σx and Σx² per channel in the forward pass, Σdy and Σdy·x̂ in the
 * backward pass) sums them with fg_group_sum_doubles () through the group it finds in
 * FgFlowRun.group, and saves that pointer for its backward function.
 *
 * Every member of the group must make the same calls in the same order (they are collective),
 * and every member receives the same bits: the sums are taken in rank order, each element
 * accumulated in double (fg_group_sum_floats), so the result does not depend on the MPI
 * library's reduction algorithm and parameters stay bit-identical across the group.
 *
 * A NULL group is a group of one: the functions do nothing and succeed, so code written for a
 * group runs unchanged in a single process.  Groups are made by the MPI runner (a build with
 * --with-mpi); this header needs no MPI.
 *
 * Part of the plugin ABI. */
#pragma once

#include <flowgmm/error.h>
#include <flowgmm/weights.h>

G_BEGIN_DECLS

typedef struct _FgGroup FgGroup;

/* This process's rank in the group, 0 … size − 1 (0 for NULL). */
FG_API guint    fg_group_get_rank (const FgGroup *group);
/* Number of processes in the group (1 for NULL). */
FG_API guint    fg_group_get_size (const FgGroup *group);
/* Replace buf[0 … n) on every member by the elementwise sum over the members. */
FG_API gboolean fg_group_sum_floats (const FgGroup *group, float *buf, gsize n, GError **error);
FG_API gboolean fg_group_sum_doubles (const FgGroup *group, double *buf, gsize n,
                                      GError **error);
/* Sum the gradients of the trainable weights of `set` over the group (one collective call for
 * the whole set; `scratch` holds fg_weight_set_numel (set) floats, or is NULL to allocate). */
FG_API gboolean fg_group_sum_grads (const FgGroup *group, FgWeightSet *set, float *scratch,
                                    GError **error);
/* Bytes this member has sent for the group's sums so far, and the seconds spent in them. */
FG_API guint64  fg_group_get_bytes_sent (const FgGroup *group);
FG_API double   fg_group_get_seconds (const FgGroup *group);

G_END_DECLS
