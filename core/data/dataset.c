/* flowgmm — data sets as loaded by dataset plugins. */
#include "config.h"

#include <string.h>

#include <flowgmm/dataset.h>

struct _FgDataset {
  gint ref_count;
  char *name;
  guint n_classes;
  char **class_names;          /* n_classes entries or NULL */
  FgSampleShape shape;         /* ndim 0 until known */
  FgTensor *x[FG_N_PARTS];     /* owned */
  gint32 *y[FG_N_PARTS];       /* owned, may be NULL */
  FgDataPart parts[FG_N_PARTS];
  guint32 *labeled_idx;
  gsize n_labeled_idx;
  char *note;
};

/**
 * fg_part_to_string:
 * @part: a part
 *
 * Returns: "train", "validation" or "test".
 */
const char *
fg_part_to_string (FgPart part)
{
  switch (part)
    {
    case FG_PART_TRAIN: return "train";
    case FG_PART_VAL: return "validation";
    case FG_PART_TEST: return "test";
    default: return "unknown";
    }
}

/**
 * fg_sample_shape_numel:
 * @shape: a sample shape
 *
 * Returns: the number of scalars in one example.
 */
gsize
fg_sample_shape_numel (const FgSampleShape *shape)
{
  gsize n = 1;
  g_return_val_if_fail (shape != NULL, 0);
  if (shape->ndim == 0)
    return 0;
  for (guint i = 0; i < shape->ndim; i++)
    n *= shape->dims[i];
  return n;
}

/**
 * fg_dataset_new:
 * @name: a display name (usually the dataset component's name)
 *
 * Returns: (transfer full): an empty data set.
 */
FgDataset *
fg_dataset_new (const char *name)
{
  FgDataset *ds = g_new0 (FgDataset, 1);
  ds->ref_count = 1;
  ds->name = g_strdup (name ? name : "dataset");
  return ds;
}

/**
 * fg_dataset_ref:
 * @ds: a data set
 *
 * Returns: @ds with one more reference.  Data sets are immutable once finished, so references
 *   may be shared across threads.
 */
FgDataset *
fg_dataset_ref (FgDataset *ds)
{
  g_return_val_if_fail (ds != NULL, NULL);
  g_atomic_int_inc (&ds->ref_count);
  return ds;
}

/**
 * fg_dataset_unref:
 * @ds: (nullable): a data set
 */
void
fg_dataset_unref (FgDataset *ds)
{
  if (ds == NULL || !g_atomic_int_dec_and_test (&ds->ref_count))
    return;
  for (int p = 0; p < FG_N_PARTS; p++)
    {
      fg_tensor_free (ds->x[p]);
      g_free (ds->y[p]);
    }
  g_strfreev (ds->class_names);
  g_free (ds->labeled_idx);
  g_free (ds->note);
  g_free (ds->name);
  g_free (ds);
}

static gboolean
reshape_part (FgDataset *ds, FgPart p, GError **error)
{
  FgTensor view;
  gsize shape[4];
  if (ds->x[p] == NULL || ds->shape.ndim != 3)
    return TRUE;
  shape[0] = fg_tensor_rows (ds->x[p]);
  shape[1] = ds->shape.dims[0];
  shape[2] = ds->shape.dims[1];
  shape[3] = ds->shape.dims[2];
  if (!fg_tensor_reshape (ds->x[p], 4, shape, &view))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: %s part has %" G_GSIZE_FORMAT " values per example, not %" G_GSIZE_FORMAT
                   "x%" G_GSIZE_FORMAT "x%" G_GSIZE_FORMAT,
                   ds->name, fg_part_to_string (p), fg_tensor_cols (ds->x[p]), shape[1], shape[2],
                   shape[3]);
      return FALSE;
    }
  ds->parts[p].x = view;
  return TRUE;
}

/**
 * fg_dataset_set_part:
 * @ds: a data set
 * @part: which part
 * @x: (transfer full): the examples, made with fg_tensor_new*: N×D or N×C×H×W
 * @y: (transfer full) (nullable): N labels (g_malloc'ed), -1 for unknown
 * @error: return location for a #GError (%FG_ERROR_DATA)
 *
 * Checks that every value is finite, that labels are -1 or within the classes (when set) and
 * that the width agrees with the other parts.  On error nothing is taken and the caller still
 * owns @x and @y.
 *
 * Returns: %TRUE on success.
 */
gboolean
fg_dataset_set_part (FgDataset *ds, FgPart part, FgTensor *x, gint32 *y, GError **error)
{
  gsize bad, n, cols;
  g_return_val_if_fail (ds != NULL && x != NULL, FALSE);
  g_return_val_if_fail (part < FG_N_PARTS, FALSE);

  n = fg_tensor_rows (x);
  cols = fg_tensor_cols (x);
  if (n == 0 || cols == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: %s part is empty", ds->name,
                   fg_part_to_string (part));
      return FALSE;
    }
  for (int p = 0; p < FG_N_PARTS; p++)
    if (p != (int) part && ds->x[p] != NULL && fg_tensor_cols (ds->x[p]) != cols)
      {
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "%s: %s part has %" G_GSIZE_FORMAT " features but the %s part has %" G_GSIZE_FORMAT,
                     ds->name, fg_part_to_string (part), cols, fg_part_to_string ((FgPart) p),
                     fg_tensor_cols (ds->x[p]));
        return FALSE;
      }
  if (!fg_tensor_all_finite (x, &bad))
    {
      gsize row = bad / cols, col = bad % cols;
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: %s part: non-finite value (NaN or Inf) at row %" G_GSIZE_FORMAT
                   ", column %" G_GSIZE_FORMAT " (0-based)",
                   ds->name, fg_part_to_string (part), row, col);
      return FALSE;
    }
  if (y != NULL)
    for (gsize i = 0; i < n; i++)
      if (y[i] < -1 || (ds->n_classes > 0 && y[i] >= (gint32) ds->n_classes))
        {
          if (ds->n_classes > 0)
            g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                         "%s: %s part: label %d at row %" G_GSIZE_FORMAT
                         " is outside the %u classes (0..%u, or -1 for unknown)",
                         ds->name, fg_part_to_string (part), y[i], i, ds->n_classes,
                         ds->n_classes - 1);
          else
            g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                         "%s: %s part: negative label %d at row %" G_GSIZE_FORMAT
                         " (only -1 means unknown)",
                         ds->name, fg_part_to_string (part), y[i], i);
          return FALSE;
        }

  fg_tensor_free (ds->x[part]);
  g_free (ds->y[part]);
  ds->x[part] = x;
  ds->y[part] = y;
  ds->parts[part].x = *x;
  ds->parts[part].y = y;
  ds->parts[part].n = n;
  return reshape_part (ds, part, error);
}

/**
 * fg_dataset_set_classes:
 * @ds: a data set
 * @n_classes: number of classes
 * @names: (nullable) (array length=n_classes): class names
 */
void
fg_dataset_set_classes (FgDataset *ds, guint n_classes, const char *const *names)
{
  g_return_if_fail (ds != NULL);
  ds->n_classes = n_classes;
  g_clear_pointer (&ds->class_names, g_strfreev);
  if (names != NULL)
    {
      ds->class_names = g_new0 (char *, n_classes + 1);
      for (guint k = 0; k < n_classes; k++)
        ds->class_names[k] = g_strdup (names[k] ? names[k] : "");
    }
}

/**
 * fg_dataset_set_image_shape:
 * @ds: a data set
 * @c: channels
 * @h: height
 * @w: width
 * @error: return location for a #GError
 *
 * Declares that examples are C×H×W images; every part is viewed as N×C×H×W.
 *
 * Returns: %TRUE when every part has C·H·W values per example.
 */
gboolean
fg_dataset_set_image_shape (FgDataset *ds, gsize c, gsize h, gsize w, GError **error)
{
  g_return_val_if_fail (ds != NULL, FALSE);
  g_return_val_if_fail (c > 0 && h > 0 && w > 0, FALSE);
  ds->shape.ndim = 3;
  ds->shape.dims[0] = c;
  ds->shape.dims[1] = h;
  ds->shape.dims[2] = w;
  for (int p = 0; p < FG_N_PARTS; p++)
    if (!reshape_part (ds, (FgPart) p, error))
      return FALSE;
  return TRUE;
}

/**
 * fg_dataset_set_labeled_indices:
 * @ds: a data set
 * @idx: (array length=n): rows of the train part whose labels are given
 * @n: count
 */
void
fg_dataset_set_labeled_indices (FgDataset *ds, const guint32 *idx, gsize n)
{
  g_return_if_fail (ds != NULL);
  g_free (ds->labeled_idx);
  ds->labeled_idx = n ? g_new (guint32, n) : NULL;
  if (n)
    memcpy (ds->labeled_idx, idx, n * sizeof *idx);
  ds->n_labeled_idx = n;
}

/**
 * fg_dataset_set_note:
 * @ds: a data set
 * @note: (nullable): free text
 */
void
fg_dataset_set_note (FgDataset *ds, const char *note)
{
  g_return_if_fail (ds != NULL);
  g_free (ds->note);
  ds->note = g_strdup (note);
}

/** fg_dataset_get_name: @ds: a data set.  Returns: its name. */
const char *
fg_dataset_get_name (const FgDataset *ds)
{
  g_return_val_if_fail (ds != NULL, NULL);
  return ds->name;
}

/** fg_dataset_get_n_classes: @ds: a data set.  Returns: the number of classes. */
guint
fg_dataset_get_n_classes (const FgDataset *ds)
{
  g_return_val_if_fail (ds != NULL, 0);
  return ds->n_classes;
}

/**
 * fg_dataset_get_class_name:
 * @ds: a data set
 * @k: a class index
 *
 * Returns: (nullable): the class name, if the plugin gave names.
 */
const char *
fg_dataset_get_class_name (const FgDataset *ds, guint k)
{
  g_return_val_if_fail (ds != NULL, NULL);
  if (ds->class_names == NULL || k >= ds->n_classes)
    return NULL;
  return ds->class_names[k];
}

/** fg_dataset_get_sample_shape: @ds: a data set.  Returns: the shape of one example. */
const FgSampleShape *
fg_dataset_get_sample_shape (const FgDataset *ds)
{
  g_return_val_if_fail (ds != NULL, NULL);
  return &ds->shape;
}

/** fg_dataset_get_dim: @ds: a data set.  Returns: scalars per example (0 before any part). */
gsize
fg_dataset_get_dim (const FgDataset *ds)
{
  g_return_val_if_fail (ds != NULL, 0);
  for (int p = 0; p < FG_N_PARTS; p++)
    if (ds->x[p] != NULL)
      return fg_tensor_cols (ds->x[p]);
  return 0;
}

/**
 * fg_dataset_get_part:
 * @ds: a data set
 * @part: which part
 *
 * Returns: (nullable): the part, or %NULL if the data set has none.
 */
const FgDataPart *
fg_dataset_get_part (const FgDataset *ds, FgPart part)
{
  g_return_val_if_fail (ds != NULL && part < FG_N_PARTS, NULL);
  return ds->x[part] ? &ds->parts[part] : NULL;
}

/**
 * fg_dataset_get_labeled_indices:
 * @ds: a data set
 * @n: (out): count
 *
 * Returns: (nullable): the data set's own labeled subset of the train part.
 */
const guint32 *
fg_dataset_get_labeled_indices (const FgDataset *ds, gsize *n)
{
  g_return_val_if_fail (ds != NULL && n != NULL, NULL);
  *n = ds->n_labeled_idx;
  return ds->labeled_idx;
}

/** fg_dataset_get_note: @ds: a data set.  Returns: (nullable): the plugin's note. */
const char *
fg_dataset_get_note (const FgDataset *ds)
{
  g_return_val_if_fail (ds != NULL, NULL);
  return ds->note;
}

/**
 * fg_dataset_finish:
 * @ds: a data set
 * @error: return location for a #GError (%FG_ERROR_DATA)
 *
 * Completes what the plugin left implicit and checks the whole: a train part exists; the number
 * of classes (max label + 1 if unset) covers every label; the train part holds at least two
 * known classes; the labeled indices are valid rows with known labels.
 *
 * Returns: %TRUE if the data set is usable.
 */
gboolean
fg_dataset_finish (FgDataset *ds, GError **error)
{
  const FgDataPart *train;
  gint32 max_label = -1;
  guint *counts;
  guint present = 0;

  g_return_val_if_fail (ds != NULL, FALSE);
  train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  if (train == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: no training examples", ds->name);
      return FALSE;
    }
  if (train->y == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: the training examples have no labels",
                   ds->name);
      return FALSE;
    }
  {
    static const char *const part_names[FG_N_PARTS] = { "training", "validation", "test" };
    gsize n_rows = 0, max_row = 0;
    int max_part = 0;
    for (int p = 0; p < FG_N_PARTS; p++)
      if (ds->y[p] != NULL)
        for (gsize i = 0; i < ds->parts[p].n; i++)
          {
            n_rows++;
            if (ds->y[p][i] > max_label)
              {
                max_label = ds->y[p][i];
                max_part = p;
                max_row = i;
              }
          }
    /* The class count is the largest label + 1: a stray huge label would make it (and every
     * per-class array) enormous.  Labels are class indices, so K cannot exceed the rows. */
    if (ds->n_classes == 0 && (gsize) max_label >= MAX (n_rows, (gsize) 2))
      {
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "%s: label %d (%s part, row %" G_GSIZE_FORMAT ", counting from 1) is not a "
                     "class index: labels are 0 .. K-1 with K at most the %" G_GSIZE_FORMAT
                     " labeled rows",
                     ds->name, max_label, part_names[max_part], max_row + 1, n_rows);
        return FALSE;
      }
  }
  if (ds->n_classes == 0)
    ds->n_classes = (guint) (max_label + 1);
  else if (max_label >= (gint32) ds->n_classes)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: label %d is outside the %u classes",
                   ds->name, max_label, ds->n_classes);
      return FALSE;
    }
  counts = g_new0 (guint, ds->n_classes + 1);
  for (gsize i = 0; i < train->n; i++)
    if (train->y[i] >= 0)
      counts[train->y[i]]++;
  for (guint k = 0; k < ds->n_classes; k++)
    present += counts[k] > 0;
  g_free (counts);
  if (present < 2)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: the training labels hold %s; classification needs at least two",
                   ds->name, present == 0 ? "no known class" : "only one class");
      return FALSE;
    }
  for (gsize i = 0; i < ds->n_labeled_idx; i++)
    if (ds->labeled_idx[i] >= train->n || train->y[ds->labeled_idx[i]] < 0)
      {
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "%s: labeled index %u is %s", ds->name, ds->labeled_idx[i],
                     ds->labeled_idx[i] >= train->n ? "past the end of the training examples"
                                                    : "a row without a label");
        return FALSE;
      }
  if (ds->shape.ndim == 0)
    {
      ds->shape.ndim = 1;
      ds->shape.dims[0] = fg_tensor_cols (ds->x[FG_PART_TRAIN]);
    }
  return TRUE;
}

/**
 * fg_split_report_progress:
 * @split: the split handed to fit
 * @fraction: done so far, in [0, 1]
 * @what: (nullable): a short status
 */
void
fg_split_report_progress (const FgSplit *split, double fraction, const char *what)
{
  if (split != NULL && split->hooks != NULL && split->hooks->progress != NULL)
    split->hooks->progress (split->hooks->user_data, CLAMP (fraction, 0.0, 1.0), what);
}

/**
 * fg_split_cancelled:
 * @split: the split handed to fit
 *
 * Returns: %TRUE when the run is being interrupted; a long fit should stop with an error.
 */
gboolean
fg_split_cancelled (const FgSplit *split)
{
  if (split != NULL && split->hooks != NULL && split->hooks->cancelled != NULL)
    return split->hooks->cancelled (split->hooks->user_data);
  return FALSE;
}
