/* SPDX-License-Identifier: MIT */
/* flowgmm — a group of processes training one model together: the sums every member takes part
 * in, over an implementation chosen by whoever made the group (the MPI runner).  A NULL group is
 * a group of one.  See flowgmm/group.h. */
#include "config.h"

#include <string.h>

#include "numeric/group-private.h"
#include "numeric/numeric-private.h"

struct _FgGroup {
  const FgGroupImpl *impl;
  gpointer data;
  guint rank, size;
  guint64 bytes;
  gint64 usec;
};

FgGroup *
_fg_group_new (const FgGroupImpl *impl, gpointer data, guint rank, guint size)
{
  FgGroup *group;

  g_return_val_if_fail (impl != NULL && impl->sum_floats != NULL && impl->sum_doubles != NULL,
                        NULL);
  g_return_val_if_fail (size >= 1 && rank < size, NULL);

  group = g_new0 (FgGroup, 1);
  group->impl = impl;
  group->data = data;
  group->rank = rank;
  group->size = size;
  return group;
}

void
_fg_group_free (FgGroup *group)
{
  if (group == NULL)
    return;
  if (group->impl->free != NULL)
    group->impl->free (group->data);
  g_free (group);
}

/**
 * fg_group_get_rank:
 * @group: (nullable): a group
 *
 * Returns: this process's rank in @group, 0 for %NULL.
 */
guint
fg_group_get_rank (const FgGroup *group)
{
  return group != NULL ? group->rank : 0;
}

/**
 * fg_group_get_size:
 * @group: (nullable): a group
 *
 * Returns: the number of processes in @group, 1 for %NULL.
 */
guint
fg_group_get_size (const FgGroup *group)
{
  return group != NULL ? group->size : 1;
}

/* The group's counters change inside the sums, which are const to their callers: a group is
 * shared read-only by everything that trains one model in this process (one thread). */
static FgGroup *
mutable_group (const FgGroup *group)
{
  return (FgGroup *) group;
}

/* Times a sum and counts its bytes; a group of one has nothing to do. */
static gboolean
timed_sum (const FgGroup *group, gboolean floats, gpointer buf, gsize n, GError **error)
{
  FgGroup *g = mutable_group (group);
  gint64 t0;
  gboolean ok;

  if (group == NULL || group->size == 1)
    return TRUE;
  t0 = g_get_monotonic_time ();
  ok = floats ? group->impl->sum_floats (group->data, buf, n, &g->bytes, error)
              : group->impl->sum_doubles (group->data, buf, n, &g->bytes, error);
  g->usec += g_get_monotonic_time () - t0;
  return ok;
}

/**
 * fg_group_sum_floats:
 * @group: (nullable): a group
 * @buf: (array length=n): the values of this member, replaced by the sums
 * @n: number of values (the same on every member)
 * @error: return location for a #GError
 *
 * Replaces @buf on every member by the elementwise sum over the members, taken in rank order
 * with a double accumulator, so every member gets the same bits.  Collective: every member must
 * call it with the same @n.  Nothing to do for a %NULL group or a group of one.
 *
 * Returns: %FALSE with %FG_ERROR_IO when the communication failed.
 */
gboolean
fg_group_sum_floats (const FgGroup *group, float *buf, gsize n, GError **error)
{
  g_return_val_if_fail (buf != NULL || n == 0, FALSE);
  return timed_sum (group, TRUE, buf, n, error);
}

/**
 * fg_group_sum_doubles:
 * @group: (nullable): a group
 * @buf: (array length=n): the values of this member, replaced by the sums
 * @n: number of values (the same on every member)
 * @error: return location for a #GError
 *
 * fg_group_sum_floats () for doubles (sums in rank order).
 *
 * Returns: %FALSE with %FG_ERROR_IO when the communication failed.
 */
gboolean
fg_group_sum_doubles (const FgGroup *group, double *buf, gsize n, GError **error)
{
  g_return_val_if_fail (buf != NULL || n == 0, FALSE);
  return timed_sum (group, FALSE, buf, n, error);
}

/**
 * fg_group_sum_grads:
 * @group: (nullable): a group
 * @set: weights whose gradients hold this member's contribution
 * @scratch: (nullable): fg_weight_set_numel (@set) floats to pack the gradients into, or %NULL
 *   to allocate them for this call
 * @error: return location for a #GError
 *
 * Sums the gradients of the trainable weights of @set over the group in one call of
 * fg_group_sum_floats (): packed in the set's order, summed, unpacked.  Collective.
 *
 * Returns: %FALSE with %FG_ERROR_IO when the communication failed.
 */
gboolean
fg_group_sum_grads (const FgGroup *group, FgWeightSet *set, float *scratch, GError **error)
{
  const gsize n = fg_weight_set_numel (set);
  g_autofree float *owned = NULL;
  gsize off = 0;
  guint len;

  g_return_val_if_fail (set != NULL, FALSE);
  if (group == NULL || group->size == 1 || n == 0)
    return TRUE;
  if (scratch == NULL)
    scratch = owned = g_new (float, n);
  len = fg_weight_set_len (set);
  for (guint i = 0; i < len; i++)
    {
      const FgWeight *w = fg_weight_set_get (set, i);
      const gsize k = fg_tensor_numel (&w->value);
      if (!w->trainable)
        continue;
      memcpy (scratch + off, w->grad.data, k * sizeof (float));
      off += k;
    }
  if (!fg_group_sum_floats (group, scratch, n, error))
    return FALSE;
  off = 0;
  for (guint i = 0; i < len; i++)
    {
      FgWeight *w = fg_weight_set_get (set, i);
      const gsize k = fg_tensor_numel (&w->value);
      if (!w->trainable)
        continue;
      memcpy (w->grad.data, scratch + off, k * sizeof (float));
      off += k;
    }
  return TRUE;
}

/**
 * fg_group_get_bytes_sent:
 * @group: (nullable): a group
 *
 * Returns: the bytes this member has sent in the group's sums so far (0 for %NULL).
 */
guint64
fg_group_get_bytes_sent (const FgGroup *group)
{
  return group != NULL ? group->bytes : 0;
}

/**
 * fg_group_get_seconds:
 * @group: (nullable): a group
 *
 * Returns: the wall time this member has spent in the group's sums so far (0 for %NULL).
 */
double
fg_group_get_seconds (const FgGroup *group)
{
  return group != NULL ? (double) group->usec / 1e6 : 0.0;
}
