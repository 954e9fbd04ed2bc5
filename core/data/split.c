/* flowgmm — the reproducible per-cell split of a data set. */
#include "config.h"

#include <string.h>

#include <flowgmm/io.h>
#include <flowgmm/rng.h>
#include <flowgmm/split.h>

#include "data/preprocess-private.h"

static const FgParamSpec split_specs[] = {
  FG_PARAM_SPEC_INT ("labeled", "-1", -1, INFINITY,
                     "labeled training points, class-balanced; -1: the data set's own labeled "
                     "subset, else every labeled training point"),
  FG_PARAM_SPEC_INT ("labeled_per_class", "0", 0, INFINITY,
                     "labeled points per class (instead of labeled); 0: unused"),
  FG_PARAM_SPEC_PATH ("labeled_indices", NULL,
                      "file of 0-based training rows to label; '{seed}' in the name is "
                      "replaced by the cell seed; may be gzip-compressed"),
  FG_PARAM_SPEC_CHOICE ("labeled_indices_format", "list", "list|line-per-seed",
                        "list: all numbers in the file; line-per-seed: line number <seed> "
                        "(0-based) of the file, as the FlowGMM authors' split files"),
  FG_PARAM_SPEC_INT ("unlabeled", "-1", -1, INFINITY,
                     "unlabeled points drawn from the rest of the training part; -1: all"),
  FG_PARAM_SPEC_INT ("validation", "0", 0, INFINITY,
                     "validation points drawn from the training part when the data set has no "
                     "validation part (0: none); with a validation part: at most this many of it"),
  FG_PARAM_SPEC_PATH ("validation_indices", NULL,
                      "file of 0-based training rows for validation ('{seed}' replaced)"),
  FG_PARAM_SPEC_CHOICE ("unlabeled_pool", "rest", "rest|rest+val|train|train+val",
                        "the unlabeled set every method sees: rest: the training rows that are "
                        "neither labeled nor validation; +val: also the validation inputs; "
                        "train: also the labeled inputs (train+val: every training row, the "
                        "FlowGMM authors' tabular pool); appended after preprocessing, which "
                        "stays fitted on labeled + rest"),
  FG_PARAM_SPEC_INT ("test", "0", 0, INFINITY,
                     "test points held out of the training part when the data set has no test "
                     "part (drawn once with data_seed, the same for every cell seed)"),
  FG_PARAM_SPEC_INT ("data_seed", "0", 0, INFINITY, "seed of the held-out test draw"),
  /* Preprocessing: fitted on the training rows (labeled + unlabeled) only, applied to every
   * set, in this order (preprocess.c). */
  FG_PARAM_SPEC_BOOL ("dequantize_logit", "false",
                      "images in [0, 1]: u = (255x + U[0,1))/256 with noise drawn once per cell "
                      "seed, then y = logit(0.5 + c(u - 0.5)), c = logit_constraint; the "
                      "per-example log-det is kept (FgSplit.preprocessing)"),
  FG_PARAM_SPEC_DOUBLE ("logit_constraint", "0.9", 0.001, 0.999,
                        "c of dequantize_logit: squeezes u into [0.5 - c/2, 0.5 + c/2] before "
                        "the logit (the FlowGMM authors' 0.9)"),
  FG_PARAM_SPEC_BOOL ("standardize", "false",
                      "z-score every feature with the mean and standard deviation (ddof 0) of "
                      "the training rows; a constant feature is only centred"),
  FG_PARAM_SPEC_INT ("pca", "0", 0, INFINITY,
                     "project onto the first k principal components of the training rows (after "
                     "standardize; LAPACK); 0: off"),
  FG_PARAM_SPEC_BOOL ("pca_whiten", "false",
                      "divide each principal component by its standard deviation"),
  FG_PARAM_SPEC_BOOL ("l2_normalize", "false",
                      "scale every example to unit Euclidean norm, last (as the paper's kNN and "
                      "label-spreading baselines)"),
  /* Augmentation: described to the method (FgSplit.augment), drawn per training step. */
  FG_PARAM_SPEC_INT ("augment_crop_pad", "0", 0, 4096,
                     "image data: at every training step, a random crop of the original size "
                     "from the image zero-padded by this many pixels per side (the FlowGMM "
                     "authors' RandomCrop padding 4); 0: off"),
  FG_PARAM_SPEC_BOOL ("augment_flip", "false",
                      "image data: at every training step, mirror each image left-right with "
                      "probability 1/2 (the authors' CIFAR-10 and SVHN runs)"),
  FG_PARAM_SPEC_END,
};

/**
 * fg_split_param_specs:
 *
 * Returns: the split keys valid in every [dataset:NAME] group.
 */
const FgParamSpec *
fg_split_param_specs (void)
{
  return split_specs;
}

typedef struct {
  guint32 *idx;
  gsize n;
} IndexSet;

struct _FgSplitData {
  FgSplit split;
  FgDataPart test;
  FgDataset *ds;
  IndexSet labeled, unlabeled, validation, test_rows; /* rows of train (or of VAL/TEST part) */
  gboolean val_from_part, test_from_part;
  FgTensor *owned_x[FG_PP_N_SETS]; /* the sets, then the extra rows (nullable) */
  gint32 *owned_y[4];
  char *fingerprint;
  FgFitHooks hooks;
  FgAugment augment;
  char *resume_dir;
  FgResume resume;
  FgPreprocessState pp;
};

static gint
compare_u32 (gconstpointer a, gconstpointer b)
{
  guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;
  return x < y ? -1 : x > y;
}

static void
index_set_sort (IndexSet *s)
{
  if (s->n > 1)
    qsort (s->idx, s->n, sizeof *s->idx, compare_u32);
}

static void
index_set_append (IndexSet *s, const IndexSet *add)
{
  s->idx = g_renew (guint32, s->idx, MAX (s->n + add->n, 1));
  memcpy (s->idx + s->n, add->idx, add->n * sizeof *add->idx);
  s->n += add->n;
}

static gboolean
read_index_file (const char *path_template, const char *format, guint64 seed, guint32 limit,
                 const char *key, IndexSet *out, GError **error)
{
  g_autofree char *path = fg_path_expand_seed (path_template, seed);
  g_autofree char *text = NULL;
  gsize len = 0;
  const char *start, *end;

  if (!fg_file_read_all (path, 0, &text, &len, error))
    {
      g_prefix_error (error, "split key '%s': ", key);
      return FALSE;
    }
  start = text;
  end = text + len;
  if (g_strcmp0 (format, "line-per-seed") == 0)
    {
      guint64 line = 0;
      while (line < seed && start < end)
        {
          const char *nl = memchr (start, '\n', (gsize) (end - start));
          if (nl == NULL)
            {
              start = end;
              break;
            }
          start = nl + 1;
          line++;
        }
      if (start >= end)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "split key '%s': %s has no line for seed %" G_GUINT64_FORMAT
                       " (only %" G_GUINT64_FORMAT " lines)",
                       key, path, seed, line);
          return FALSE;
        }
      {
        const char *nl = memchr (start, '\n', (gsize) (end - start));
        if (nl != NULL)
          end = nl;
      }
    }
  {
    g_autofree char *what = g_strdup_printf ("%s (split key '%s')", path, key);
    out->idx = fg_parse_indices (start, (gsize) (end - start), limit, what, &out->n, error);
  }
  if (out->idx == NULL)
    return FALSE;
  if (out->n == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "split key '%s': %s lists no rows", key, path);
      return FALSE;
    }
  return TRUE;
}

/* Where the rows of each state came from (a file named in messages), by state: 1 test,
 * 2 validation, 3 labeled. */
typedef struct {
  char *file[4];
} RowSources;

static void
row_sources_clear (RowSources *src)
{
  for (guint i = 0; i < G_N_ELEMENTS (src->file); i++)
    g_clear_pointer (&src->file[i], g_free);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (RowSources, row_sources_clear)

/* Take rows from `take` out of `avail`, failing if one is not available (already used, or
 * without a label when `need_label`).  `path`: the file that listed them, or NULL. */
static gboolean
claim_rows (const IndexSet *take, guint8 *state, const gint32 *y, gboolean need_label,
            const char *what, const char *path, const RowSources *src, GError **error)
{
  g_autofree char *from = path ? g_strdup_printf (" (listed in %s)", path) : g_strdup ("");
  for (gsize i = 0; i < take->n; i++)
    {
      guint32 r = take->idx[i];
      if (state[r] != 0)
        {
          static const char *const used_by[] = { "", "the test set", "the validation set",
                                                 "the labeled set", "the labeled set" };
          g_autofree char *other = state[r] < 4 && src->file[state[r]] != NULL
                                       ? g_strdup_printf (" (from %s)", src->file[state[r]])
                                       : g_strdup ("");
          g_set_error (error, FG_ERROR, FG_ERROR_DATA, "split: %s row %u%s is already in %s%s",
                       what, r, from,
                       state[r] == 4 ? "this list (listed twice)" : used_by[state[r]], other);
          return FALSE;
        }
      if (need_label && y[r] < 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA, "split: %s row %u%s has no label", what, r,
                       from);
          return FALSE;
        }
      state[r] = 4; /* temporarily: catches duplicates within the list */
    }
  return TRUE;
}

static void
mark_rows (const IndexSet *s, guint8 *state, guint8 mark)
{
  for (gsize i = 0; i < s->n; i++)
    state[s->idx[i]] = mark;
}

/* Draw n random available labeled rows. */
static gboolean
draw_random (FgRng *rng, const guint8 *state, const gint32 *y, gsize n_rows, gsize n,
             gboolean need_label, const char *key, IndexSet *out, GError **error)
{
  g_autofree guint32 *pool = g_new (guint32, n_rows ? n_rows : 1);
  gsize n_pool = 0;
  for (gsize r = 0; r < n_rows; r++)
    if (state[r] == 0 && (!need_label || y[r] >= 0))
      pool[n_pool++] = (guint32) r;
  if (n > n_pool)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "split key '%s': asks for %" G_GSIZE_FORMAT " rows but only %" G_GSIZE_FORMAT
                   " %sare left",
                   key, n, n_pool, need_label ? "labeled training rows " : "training rows ");
      return FALSE;
    }
  fg_rng_shuffle (rng, pool, n_pool);
  out->n = n;
  out->idx = g_new (guint32, n ? n : 1);
  memcpy (out->idx, pool, n * sizeof *pool);
  return TRUE;
}

/* Class-balanced draw: per_class[k] rows of class k. */
static gboolean
draw_balanced (FgRng *rng, const FgDataset *ds, const guint8 *state, const gint32 *y,
               gsize n_rows, const gsize *per_class, const char *key, gsize asked, IndexSet *out,
               GError **error)
{
  guint K = fg_dataset_get_n_classes (ds);
  gsize total = 0;
  g_autofree gsize *avail = g_new0 (gsize, K);
  g_autofree guint32 **pools = g_new0 (guint32 *, K);
  gboolean ok = TRUE;

  for (gsize r = 0; r < n_rows; r++)
    if (state[r] == 0 && y[r] >= 0)
      avail[y[r]]++;
  for (guint k = 0; k < K; k++)
    {
      total += per_class[k];
      if (per_class[k] > avail[k])
        {
          const char *name = fg_dataset_get_class_name (ds, k);
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "split key '%s' = %" G_GSIZE_FORMAT ": needs %" G_GSIZE_FORMAT
                       " labeled examples of class %u%s%s%s but only %" G_GSIZE_FORMAT
                       " are available (after the test and validation draws)",
                       key, asked, per_class[k], k, name ? " ('" : "", name ? name : "",
                       name ? "')" : "", avail[k]);
          return FALSE;
        }
    }
  for (guint k = 0; k < K; k++)
    pools[k] = g_new (guint32, avail[k] ? avail[k] : 1), avail[k] = 0;
  for (gsize r = 0; r < n_rows; r++)
    if (state[r] == 0 && y[r] >= 0)
      pools[y[r]][avail[y[r]]++] = (guint32) r;
  out->idx = g_new (guint32, total ? total : 1);
  out->n = 0;
  for (guint k = 0; k < K; k++)
    {
      fg_rng_shuffle (rng, pools[k], avail[k]);
      memcpy (out->idx + out->n, pools[k], per_class[k] * sizeof (guint32));
      out->n += per_class[k];
      g_free (pools[k]);
    }
  return ok;
}

/* Copy rows of a part into a new contiguous tensor (keeping the image shape). */
static FgTensor *
gather_rows (const FgDataPart *part, const IndexSet *rows, gint32 **y_out)
{
  gsize shape[4];
  FgTensor *x;
  gsize cols = fg_tensor_cols (&part->x);
  for (guint d = 0; d < part->x.ndim; d++)
    shape[d] = part->x.shape[d];
  shape[0] = rows->n;
  x = fg_tensor_new (part->x.ndim, shape);
  if (y_out != NULL)
    *y_out = part->y ? g_new (gint32, rows->n ? rows->n : 1) : NULL;
  for (gsize i = 0; i < rows->n; i++)
    {
      memcpy (fg_tensor_row (x, i), fg_tensor_row (&part->x, rows->idx[i]), cols * sizeof (float));
      if (y_out != NULL && part->y != NULL)
        (*y_out)[i] = part->y[rows->idx[i]];
    }
  return x;
}

static void
set_out_part (FgSplitData *d, int slot, FgDataPart *dst, const FgDataPart *src,
              const IndexSet *rows, gboolean keep_labels)
{
  gint32 *y = NULL;
  d->owned_x[slot] = gather_rows (src, rows, keep_labels ? &y : NULL);
  d->owned_y[slot] = y;
  dst->x = *d->owned_x[slot];
  dst->y = y;
  dst->n = rows->n;
}

/* Appends the rows of `add` (already preprocessed, same columns) to the unlabeled set. */
static void
extend_unlabeled (FgSplitData *d, const FgTensor *add, const double *add_logdet)
{
  FgTensor *u = d->owned_x[1];
  gsize n_u = fg_tensor_rows (u), n_a = fg_tensor_rows (add), cols = fg_tensor_cols (u);
  gsize shape[4];
  FgTensor *x;
  for (guint k = 0; k < u->ndim; k++)
    shape[k] = u->shape[k];
  shape[0] = n_u + n_a;
  x = fg_tensor_new (u->ndim, shape);
  if (n_u > 0)
    memcpy (fg_tensor_row (x, 0), fg_tensor_row (u, 0), n_u * cols * sizeof (float));
  if (n_a > 0)
    memcpy (fg_tensor_row (x, n_u), fg_tensor_row (add, 0), n_a * cols * sizeof (float));
  fg_tensor_free (u);
  d->owned_x[1] = x;
  if (d->pp.logdet[FG_PP_UNLABELED] != NULL)
    {
      d->pp.logdet[FG_PP_UNLABELED] = g_renew (double, d->pp.logdet[FG_PP_UNLABELED],
                                               MAX (n_u + n_a, 1));
      for (gsize i = 0; i < n_a; i++)
        d->pp.logdet[FG_PP_UNLABELED][n_u + i] = add_logdet ? add_logdet[i] : 0.0;
      d->pp.info.unlabeled_logdet = d->pp.logdet[FG_PP_UNLABELED];
    }
}

static IndexSet
all_rows (gsize n)
{
  IndexSet s;
  s.n = n;
  s.idx = g_new (guint32, n ? n : 1);
  for (gsize i = 0; i < n; i++)
    s.idx[i] = (guint32) i;
  return s;
}

static void
hash_set (GChecksum *sum, const char *tag, const IndexSet *s)
{
  guint64 n = s->n;
  g_checksum_update (sum, (const guchar *) tag, (gssize) strlen (tag) + 1);
  g_checksum_update (sum, (const guchar *) &n, sizeof n);
  g_checksum_update (sum, (const guchar *) s->idx, (gssize) (s->n * sizeof (guint32)));
}

/* What drawing one split works on. */
typedef struct {
  FgSplitData      *d;
  FgDataset        *ds;
  const FgParams   *params;
  guint64           seed;
  const FgDataPart *train, *val_part, *test_part;
  guint8           *state; /* per training row: 0 free, 1 test, 2 validation, 3 labeled */
  guint             K;
  gint64            labeled, per_class, unlabeled, validation, test;
  const char       *labeled_path, *val_path;
  RowSources       *src;   /* the files the rows of each state came from, for messages */
} SplitCtx;

/* The split keys, and the combinations that make no sense. */
static gboolean
read_split_keys (SplitCtx *s, GError **error)
{
  s->labeled = fg_params_get_int (s->params, "labeled");
  s->per_class = fg_params_get_int (s->params, "labeled_per_class");
  s->labeled_path = fg_params_get_string (s->params, "labeled_indices");
  s->unlabeled = fg_params_get_int (s->params, "unlabeled");
  s->validation = fg_params_get_int (s->params, "validation");
  s->val_path = fg_params_get_string (s->params, "validation_indices");
  s->test = fg_params_get_int (s->params, "test");
  if ((s->labeled_path != NULL) + (s->per_class > 0) + (s->labeled >= 0) > 1)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "split keys 'labeled', 'labeled_per_class' and 'labeled_indices' exclude "
                   "each other: set one");
      return FALSE;
    }
  if (s->labeled == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "split key 'labeled' = 0: a classifier needs labeled examples "
                   "(-1 takes the data set's own labeled subset or every label)");
      return FALSE;
    }
  return TRUE;
}

/* Labeled rows fixed in advance (a file, or the data set's own) are reserved first, so that
 * the random test and validation draws can never take them. */
static gboolean
reserve_fixed_labeled (SplitCtx *s, GError **error)
{
  FgSplitData *d = s->d;
  if (s->labeled_path != NULL)
    {
      s->src->file[3] = fg_path_expand_seed (s->labeled_path, s->seed);
      if (!read_index_file (s->labeled_path,
                            fg_params_get_string (s->params, "labeled_indices_format"), s->seed,
                            (guint32) s->train->n, "labeled_indices", &d->labeled, error)
          || !claim_rows (&d->labeled, s->state, s->train->y, TRUE, "labeled", s->src->file[3],
                          s->src, error))
        return FALSE;
      mark_rows (&d->labeled, s->state, 3);
    }
  else if (s->per_class == 0 && s->labeled < 0)
    {
      gsize n_own = 0;
      const guint32 *own = fg_dataset_get_labeled_indices (s->ds, &n_own);
      if (own != NULL)
        {
          d->labeled.n = n_own;
          d->labeled.idx = g_new (guint32, n_own);
          memcpy (d->labeled.idx, own, n_own * sizeof *own);
          if (!claim_rows (&d->labeled, s->state, s->train->y, TRUE, "the data set's labeled",
                           NULL, s->src, error))
            return FALSE;
          mark_rows (&d->labeled, s->state, 3);
        }
    }
  return TRUE;
}

/* 1. test: the data set's own test part, or `test` training rows held out (drawn from the
 * data seed, so every cell seed shares them). */
static gboolean
choose_test (SplitCtx *s, GError **error)
{
  FgSplitData *d = s->d;
  FgRng rng;
  if (s->test_part != NULL)
    {
      if (s->test > 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "split key 'test' = %" G_GINT64_FORMAT ": the data set has its own test "
                       "part; remove the key",
                       s->test);
          return FALSE;
        }
      d->test_rows = all_rows (s->test_part->n);
      d->test_from_part = TRUE;
      return TRUE;
    }
  if (s->test <= 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "split: data set '%s' has no test part; set test = N to hold N training "
                   "points out",
                   fg_dataset_get_name (s->ds));
      return FALSE;
    }
  fg_rng_init (&rng, (guint64) fg_params_get_int (s->params, "data_seed"),
               fg_rng_stream_id ("split/test"));
  if (!draw_random (&rng, s->state, s->train->y, s->train->n, (gsize) s->test, TRUE, "test",
                    &d->test_rows, error))
    return FALSE;
  mark_rows (&d->test_rows, s->state, 1);
  return TRUE;
}

/* 2. validation: (a subset of) the data set's own part, a file, or drawn training rows. */
static gboolean
choose_validation (SplitCtx *s, GError **error)
{
  FgSplitData *d = s->d;
  const FgDataPart *val_part = s->val_part;
  FgRng rng;
  if (val_part != NULL)
    {
      d->val_from_part = TRUE;
      if (s->val_path != NULL)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "split key 'validation_indices': the data set has its own validation "
                       "part");
          return FALSE;
        }
      if (s->validation > 0 && (gsize) s->validation < val_part->n)
        {
          g_autofree guint8 *none = g_new0 (guint8, val_part->n);
          fg_rng_init (&rng, s->seed, fg_rng_stream_id ("split/validation"));
          if (!draw_random (&rng, none, val_part->y, val_part->n, (gsize) s->validation, TRUE,
                            "validation", &d->validation, error))
            return FALSE;
        }
      else
        d->validation = all_rows (val_part->n);
    }
  else if (s->val_path != NULL)
    {
      s->src->file[2] = fg_path_expand_seed (s->val_path, s->seed);
      if (!read_index_file (s->val_path, "list", s->seed, (guint32) s->train->n,
                            "validation_indices", &d->validation, error)
          || !claim_rows (&d->validation, s->state, s->train->y, TRUE, "validation",
                          s->src->file[2], s->src, error))
        return FALSE;
      mark_rows (&d->validation, s->state, 2);
    }
  else if (s->validation > 0)
    {
      fg_rng_init (&rng, s->seed, fg_rng_stream_id ("split/validation"));
      if (!draw_random (&rng, s->state, s->train->y, s->train->n, (gsize) s->validation, TRUE,
                        "validation", &d->validation, error))
        return FALSE;
      mark_rows (&d->validation, s->state, 2);
    }
  return TRUE;
}

/* 3. labeled (unless reserved above): balanced over the classes, or every labeled row left. */
static gboolean
choose_labeled (SplitCtx *s, GError **error)
{
  FgSplitData *d = s->d;
  const FgDataPart *train = s->train;
  FgRng rng;
  fg_rng_init (&rng, s->seed, fg_rng_stream_id ("split/labeled"));
  if (d->labeled.idx != NULL)
    ; /* from a file or the data set */
  else if (s->per_class > 0 || s->labeled > 0)
    {
      g_autofree gsize *want = g_new0 (gsize, s->K);
      const char *key = s->per_class > 0 ? "labeled_per_class" : "labeled";
      gsize asked = (gsize) (s->per_class > 0 ? s->per_class : s->labeled);
      if (s->per_class > 0)
        for (guint k = 0; k < s->K; k++)
          want[k] = (gsize) s->per_class;
      else
        {
          /* Equal shares; the remainder goes to randomly chosen classes. */
          g_autofree guint32 *order = g_new (guint32, s->K);
          for (guint k = 0; k < s->K; k++)
            want[k] = (gsize) s->labeled / s->K;
          fg_rng_permutation (&rng, order, s->K);
          for (guint k = 0; k < (gsize) s->labeled % s->K; k++)
            want[order[k]]++;
        }
      if (!draw_balanced (&rng, s->ds, s->state, train->y, train->n, want, key, asked,
                          &d->labeled, error))
        return FALSE;
    }
  else
    {
      d->labeled.idx = g_new (guint32, train->n);
      for (gsize r = 0; r < train->n; r++)
        if (s->state[r] == 0 && train->y[r] >= 0)
          d->labeled.idx[d->labeled.n++] = (guint32) r;
    }
  mark_rows (&d->labeled, s->state, 3);
  if (d->labeled.n == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "split: no labeled training rows are left");
      return FALSE;
    }
  return TRUE;
}

/* 4. unlabeled: `unlabeled` drawn rows, or every row left. */
static gboolean
choose_unlabeled (SplitCtx *s, GError **error)
{
  FgSplitData *d = s->d;
  FgRng rng;
  if (s->unlabeled >= 0)
    {
      fg_rng_init (&rng, s->seed, fg_rng_stream_id ("split/unlabeled"));
      return draw_random (&rng, s->state, s->train->y, s->train->n, (gsize) s->unlabeled, FALSE,
                          "unlabeled", &d->unlabeled, error);
    }
  d->unlabeled.idx = g_new (guint32, s->train->n);
  for (gsize r = 0; r < s->train->n; r++)
    if (s->state[r] == 0)
      d->unlabeled.idx[d->unlabeled.n++] = (guint32) r;
  return TRUE;
}

/* The rows of each set, in row order, copied out. */
static void
copy_sets (SplitCtx *s)
{
  FgSplitData *d = s->d;
  index_set_sort (&d->labeled);
  index_set_sort (&d->unlabeled);
  if (!d->val_from_part)
    index_set_sort (&d->validation);
  if (!d->test_from_part)
    index_set_sort (&d->test_rows);

  set_out_part (d, 0, &d->split.labeled, s->train, &d->labeled, TRUE);
  set_out_part (d, 1, &d->split.unlabeled, s->train, &d->unlabeled, FALSE);
  if (d->validation.n > 0)
    set_out_part (d, 2, &d->split.validation, d->val_from_part ? s->val_part : s->train,
                  &d->validation, TRUE);
  set_out_part (d, 3, &d->test, d->test_from_part ? s->test_part : s->train, &d->test_rows,
                TRUE);
}

/* 6. the unlabeled pool: labeled and validation inputs appended after preprocessing, so the
 * fitted statistics do not depend on the pool. */
static void
extend_pool (FgSplitData *d, const char *pool)
{
  if (g_str_has_prefix (pool, "train"))
    {
      extend_unlabeled (d, d->owned_x[0], d->pp.logdet[FG_PP_LABELED]);
      index_set_append (&d->unlabeled, &d->labeled);
    }
  if (g_str_has_suffix (pool, "+val") && d->owned_x[2] != NULL)
    {
      extend_unlabeled (d, d->owned_x[2], d->pp.logdet[FG_PP_VALIDATION]);
      if (!d->val_from_part)
        index_set_append (&d->unlabeled, &d->validation);
    }
  index_set_sort (&d->unlabeled);
  d->split.unlabeled.n = fg_tensor_rows (d->owned_x[1]);
  d->split.labeled.x = *d->owned_x[0];
  d->split.unlabeled.x = *d->owned_x[1];
  if (d->owned_x[2] != NULL)
    d->split.validation.x = *d->owned_x[2];
  d->test.x = *d->owned_x[3];
}

/* A digest of the rows of every set (and of the pool), identical for identical splits. */
static void
set_fingerprint (FgSplitData *d, const char *pool)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  hash_set (sum, "labeled", &d->labeled);
  hash_set (sum, "unlabeled", &d->unlabeled);
  if (strcmp (pool, "rest") != 0)
    g_checksum_update (sum, (const guchar *) pool, (gssize) strlen (pool) + 1);
  hash_set (sum, d->val_from_part ? "validation-part" : "validation", &d->validation);
  hash_set (sum, d->test_from_part ? "test-part" : "test", &d->test_rows);
  d->fingerprint = g_strndup (g_checksum_get_string (sum), 16);
}

/* The examples' shape after preprocessing, and the augmentation keys, which need image-shaped
 * examples as loaded. */
static gboolean
describe_examples (SplitCtx *s, GError **error)
{
  FgSplitData *d = s->d;
  const char *key;
  d->split.n_classes = s->K;
  d->split.shape = *fg_dataset_get_sample_shape (s->ds);
  d->split.dim = fg_dataset_get_dim (s->ds);
  if (d->pp.reshaped)
    {
      memset (&d->split.shape, 0, sizeof d->split.shape);
      d->split.shape.ndim = 1;
      d->split.shape.dims[0] = d->pp.out_dim;
      d->split.dim = d->pp.out_dim;
    }
  d->split.preprocessing = &d->pp.info;
  d->augment.crop_pad = (guint) fg_params_get_int (s->params, "augment_crop_pad");
  d->augment.flip = fg_params_get_bool (s->params, "augment_flip");
  if (!fg_augment_active (&d->augment))
    return TRUE;
  key = d->augment.crop_pad > 0 ? "augment_crop_pad" : "augment_flip";
  if (d->split.shape.ndim != 3)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "split key '%s': needs image-shaped examples (C×H×W); this data set's "
                   "examples are %" G_GSIZE_FORMAT "-vectors",
                   key, d->split.dim);
      return FALSE;
    }
  if (g_strcmp0 (d->pp.info.description, "none") != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "split key '%s': augmentation works on the pixels as loaded (crops pad "
                   "with black), so it cannot follow the preprocessing '%s'; let the flow "
                   "dequantise instead (e.g. realnvp-conv)",
                   key, d->pp.info.description);
      return FALSE;
    }
  d->split.augment = &d->augment;
  return TRUE;
}

/**
 * fg_split_data_new:
 * @ds: a finished data set
 * @split_params: values for fg_split_param_specs ()
 * @seed: the cell seed
 * @error: return location for a #GError
 *
 * Draws the split (see split.h for the order) and copies the rows of each set.
 *
 * Returns: (transfer full) (nullable): the split.
 */
FgSplitData *
fg_split_data_new (FgDataset *ds, const FgParams *split_params, guint64 seed, GError **error)
{
  return fg_split_data_new_with_extra (ds, split_params, seed, NULL, error);
}

/**
 * fg_split_data_new_with_extra:
 * @ds: a data set
 * @split_params: split keys
 * @seed: the cell seed
 * @extra: (nullable): further rows, with the data set's example shape, to transform with the
 *   split's preprocessing (fitted without them), e.g. out-of-domain data
 * @error: return location for a #GError
 *
 * As fg_split_data_new (); the transformed extra rows are fg_split_data_get_extra ().
 *
 * Returns: (transfer full) (nullable): the split.
 */
FgSplitData *
fg_split_data_new_with_extra (FgDataset *ds, const FgParams *split_params, guint64 seed,
                              const FgTensor *extra, GError **error)
{
  g_autoptr (FgSplitData) d = NULL;
  g_autofree guint8 *state = NULL;
  g_auto (RowSources) src = { { NULL } };
  SplitCtx s = { 0 };
  const char *pool;

  s.src = &src;
  g_return_val_if_fail (ds != NULL && split_params != NULL, NULL);
  s.train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_return_val_if_fail (s.train != NULL && s.train->y != NULL, NULL);
  s.ds = ds;
  s.params = split_params;
  s.seed = seed;
  s.val_part = fg_dataset_get_part (ds, FG_PART_VAL);
  s.test_part = fg_dataset_get_part (ds, FG_PART_TEST);
  s.K = fg_dataset_get_n_classes (ds);
  if (!read_split_keys (&s, error))
    return NULL;

  d = g_new0 (FgSplitData, 1);
  d->ds = fg_dataset_ref (ds);
  s.d = d;
  s.state = state = g_new0 (guint8, s.train->n);
  if (!reserve_fixed_labeled (&s, error) || !choose_test (&s, error)
      || !choose_validation (&s, error) || !choose_labeled (&s, error)
      || !choose_unlabeled (&s, error))
    return NULL;
  copy_sets (&s);

  /* 5. preprocessing, fitted on labeled + unlabeled (slots 0 and 1 of owned_x) */
  if (extra != NULL)
    {
      if (fg_tensor_cols (extra) != fg_dataset_get_dim (ds))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "extra rows of %" G_GSIZE_FORMAT " features for a data set of %"
                       G_GSIZE_FORMAT, fg_tensor_cols (extra), fg_dataset_get_dim (ds));
          return NULL;
        }
      d->owned_x[FG_PP_EXTRA] = fg_tensor_new_2d (fg_tensor_rows (extra), fg_tensor_cols (extra));
      for (gsize i = 0; i < fg_tensor_rows (extra); i++)
        memcpy (fg_tensor_row (d->owned_x[FG_PP_EXTRA], i), fg_tensor_row (extra, i),
                fg_tensor_cols (extra) * sizeof (float));
    }
  if (!_fg_preprocess_apply (split_params, seed, d->owned_x, &d->pp, error))
    return NULL;
  pool = fg_params_get_string (split_params, "unlabeled_pool");
  extend_pool (d, pool);
  set_fingerprint (d, pool);
  if (!describe_examples (&s, error))
    return NULL;
  d->split.fingerprint = d->fingerprint;
  d->split.seed = seed;
  return g_steal_pointer (&d);
}

/**
 * fg_split_data_free:
 * @data: (nullable): a split
 */
void
fg_split_data_free (FgSplitData *data)
{
  if (data == NULL)
    return;
  for (int i = 0; i < 4; i++)
    g_free (data->owned_y[i]);
  for (int i = 0; i < FG_PP_N_SETS; i++)
    fg_tensor_free (data->owned_x[i]);
  g_free (data->labeled.idx);
  g_free (data->unlabeled.idx);
  g_free (data->validation.idx);
  g_free (data->test_rows.idx);
  g_free (data->fingerprint);
  g_free (data->resume_dir);
  _fg_preprocess_state_clear (&data->pp);
  fg_dataset_unref (data->ds);
  g_free (data);
}

/**
 * fg_split_data_get_split:
 * @data: a split
 *
 * Returns: what a method's fit sees (no test part).
 */
const FgSplit *
fg_split_data_get_split (const FgSplitData *data)
{
  g_return_val_if_fail (data != NULL, NULL);
  return &data->split;
}

/**
 * fg_split_data_get_test:
 * @data: a split
 *
 * Returns: the test examples and labels.
 */
const FgDataPart *
fg_split_data_get_test (const FgSplitData *data)
{
  g_return_val_if_fail (data != NULL, NULL);
  return &data->test;
}

/**
 * fg_split_data_get_extra:
 * @data: a split
 * @logdet: (out) (optional): per-row log-determinant of the preprocessing (NULL when it is not
 *   invertible or there is none)
 *
 * Returns: (nullable): the extra rows given to fg_split_data_new_with_extra (), preprocessed
 *   (rows × the split's dim), or %NULL when none were given.
 */
const FgTensor *
fg_split_data_get_extra (const FgSplitData *data, const double **logdet)
{
  g_return_val_if_fail (data != NULL, NULL);
  if (logdet != NULL)
    *logdet = data->pp.logdet[FG_PP_EXTRA];
  return data->owned_x[FG_PP_EXTRA];
}

/**
 * fg_split_data_get_indices:
 * @data: a split
 * @which: "labeled", "unlabeled", "validation" or "test"
 * @n: (out): count
 *
 * Returns: (nullable): the rows of the set (rows of the train part, or of the data set's own
 *   validation/test part when it has one), sorted.
 */
const guint32 *
fg_split_data_get_indices (const FgSplitData *data, const char *which, gsize *n)
{
  const IndexSet *s = NULL;
  g_return_val_if_fail (data != NULL && which != NULL && n != NULL, NULL);
  if (strcmp (which, "labeled") == 0)
    s = &data->labeled;
  else if (strcmp (which, "unlabeled") == 0)
    s = &data->unlabeled;
  else if (strcmp (which, "validation") == 0)
    s = &data->validation;
  else if (strcmp (which, "test") == 0)
    s = &data->test_rows;
  if (s == NULL)
    {
      *n = 0;
      return NULL;
    }
  *n = s->n;
  return s->idx;
}

/**
 * fg_augment_active:
 * @aug: (nullable): an augmentation
 *
 * Returns: %TRUE when @aug crops or flips.
 */
gboolean
fg_augment_active (const FgAugment *aug)
{
  return aug != NULL && (aug->crop_pad > 0 || aug->flip);
}

/**
 * fg_augment_apply:
 * @aug: (nullable): the augmentation (FgSplit.augment)
 * @shape: the shape of one example
 * @src: the example, numel (@shape) floats
 * @dst: (out caller-allocates): its augmented copy, numel (@shape) floats, not overlapping @src
 * @rng: the generator of the draws
 *
 * Draws one augmentation of @src into @dst: for C×H×W examples a random crop of the image
 * zero-padded by crop_pad pixels per side (offsets dy then dx, each uniform in
 * [0, 2·crop_pad]), then a left-right mirror with probability 1/2 when flip is set — the order
 * of torchvision's RandomCrop and RandomHorizontalFlip.  Anything else is copied unchanged.
 */
void
fg_augment_apply (const FgAugment *aug, const FgSampleShape *shape, const float *src,
                  float *dst, FgRng *rng)
{
  gsize C, H, W, dy = 0, dx = 0, pad;
  gboolean mirror = FALSE;

  g_return_if_fail (shape != NULL && src != NULL && dst != NULL);
  if (!fg_augment_active (aug) || shape->ndim != 3)
    {
      memcpy (dst, src, fg_sample_shape_numel (shape) * sizeof (float));
      return;
    }
  g_return_if_fail (rng != NULL);
  C = shape->dims[0];
  H = shape->dims[1];
  W = shape->dims[2];
  pad = aug->crop_pad;
  if (pad > 0)
    {
      dy = (gsize) fg_rng_below (rng, 2 * pad + 1);
      dx = (gsize) fg_rng_below (rng, 2 * pad + 1);
    }
  if (aug->flip)
    mirror = fg_rng_below (rng, 2) == 1;

  /* dst[y][x] = padded[y + dy][x' + dx] with x' the (mirrored) column; padded[r][c] =
   * src[r − pad][c − pad] inside the image, 0 outside. */
  for (gsize c = 0; c < C; c++)
    for (gsize y = 0; y < H; y++)
      {
        float *out = dst + (c * H + y) * W;
        const gssize sy = (gssize) (y + dy) - (gssize) pad;
        const float *in = src + (c * H + (gsize) MAX (sy, 0)) * W;
        if (sy < 0 || sy >= (gssize) H)
          {
            memset (out, 0, W * sizeof (float));
            continue;
          }
        for (gsize x = 0; x < W; x++)
          {
            const gssize sx = (gssize) (x + dx) - (gssize) pad;
            out[mirror ? W - 1 - x : x] = sx >= 0 && sx < (gssize) W ? in[sx] : 0.0f;
          }
      }
}

/**
 * fg_split_data_set_resume:
 * @data: a split
 * @resume: (nullable): where and how often the fit keeps its training state (copied, with its
 *   directory), or %NULL for nowhere
 *
 * Sets FgSplit.resume.
 */
void
fg_split_data_set_resume (FgSplitData *data, const FgResume *resume)
{
  g_return_if_fail (data != NULL);
  g_clear_pointer (&data->resume_dir, g_free);
  data->split.resume = NULL;
  if (resume == NULL)
    return;
  data->resume = *resume;
  data->resume_dir = g_strdup (resume->dir);
  data->resume.dir = data->resume_dir;
  data->split.resume = &data->resume;
}

/**
 * fg_split_data_set_hooks:
 * @data: a split
 * @hooks: (nullable): progress and cancellation hooks (copied)
 */
void
fg_split_data_set_hooks (FgSplitData *data, const FgFitHooks *hooks)
{
  g_return_if_fail (data != NULL);
  if (hooks == NULL)
    {
      data->split.hooks = NULL;
      return;
    }
  data->hooks = *hooks;
  data->split.hooks = &data->hooks;
}

/**
 * fg_split_get_group:
 * @split: a split
 *
 * Returns: (nullable) (transfer none): the group of processes fitting @split together, each on
 *   its share of every batch (data-parallel training), or %NULL when the fit runs alone.
 */
const FgGroup *
fg_split_get_group (const FgSplit *split)
{
  g_return_val_if_fail (split != NULL, NULL);
  return split->group;
}

/**
 * fg_split_data_set_group:
 * @data: a split
 * @group: (nullable): the group of processes that fit the split together (borrowed: it must
 *   outlive the fit), or %NULL
 */
void
fg_split_data_set_group (FgSplitData *data, const FgGroup *group)
{
  g_return_if_fail (data != NULL);
  data->split.group = group;
}
