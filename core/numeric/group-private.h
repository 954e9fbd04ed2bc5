/* SPDX-License-Identifier: MIT */
/* flowgmm — how a group (flowgmm/group.h) is made: an implementation of its two sums.
 *
 * The MPI runner makes groups over MPI communicators (group-mpi.c, built with --with-mpi);
 * tests may make others.  Both sums must give every member the same bits. */
#pragma once

#include <flowgmm/group.h>

G_BEGIN_DECLS

typedef struct {
  /* Elementwise sums over the group, in place; add the bytes this member sent to *bytes. */
  gboolean (*sum_floats) (gpointer data, float *buf, gsize n, guint64 *bytes, GError **error);
  gboolean (*sum_doubles) (gpointer data, double *buf, gsize n, guint64 *bytes, GError **error);
  void (*free) (gpointer data);
} FgGroupImpl;

/* A group of `size` members of which this process is `rank`; `data` is the implementation's,
 * freed by impl->free with the group. */
FgGroup *_fg_group_new (const FgGroupImpl *impl, gpointer data, guint rank, guint size);
void     _fg_group_free (FgGroup *group);

G_END_DECLS
