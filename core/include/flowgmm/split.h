/* SPDX-License-Identifier: MIT */
/* flowgmm — the reproducible per-cell split of a data set (labeled / unlabeled / validation /
 * test) and the preprocessing fitted on its training part.
 *
 * The keys that configure it are declared in fg_split_param_specs () and are valid in every
 * [dataset:NAME] group of an experiment file beside the dataset plugin's own parameters.
 *
 * Order of the draws (each from its own RNG stream, so changing one size does not reshuffle the
 * others):
 *  1. test: the data set's test part, or `test` points held out of the train part with the
 *     fixed `data_seed` (the same test set for every cell seed);
 *  2. validation: the data set's validation part, or `validation` points drawn from what is
 *     left of the train part with the cell seed;
 *  3. labeled: given indices (`labeled_indices` file, or the data set's own), or a
 *     class-balanced draw of `labeled` points (or `labeled_per_class` per class);
 *  4. unlabeled: the rest of the train part, or a random `unlabeled` of them;
 *  5. preprocessing (keys dequantize_logit, standardize, pca, l2_normalize, in that order),
 *     fitted on labeled + unlabeled only and applied to every set; FgSplit.preprocessing
 *     describes it and holds the per-example log-determinants (dataset.h);
 *  6. the unlabeled pool (`unlabeled_pool`): train and train+val append the labeled inputs to
 *     the unlabeled set, then rest+val and train+val the validation inputs (after the rest).  The indices of "unlabeled" then include those rows of the train part (a data
 *     set's own validation part is not a row of it and is not listed).
 *
 * Augmentation (keys augment_crop_pad, augment_flip) is not applied here: FgSplit.augment
 * describes it and a method that trains in steps draws it for every step's rows with
 * fg_augment_apply () from its own generator (evaluation never sees it).
 */
#pragma once

#include <glib.h>
#include <flowgmm/params.h>
#include <flowgmm/dataset.h>
#include <flowgmm/rng.h>

G_BEGIN_DECLS

/* The declared split keys (ends with a NULL name). */
FG_API const FgParamSpec *fg_split_param_specs (void);

typedef struct _FgSplitData FgSplitData;

/* Build the split of `ds` for `seed` from split parameters (made with fg_split_param_specs ()).
 * Errors name the key and what was expected (e.g. a labeled size larger than a class allows). */
FG_API FgSplitData *fg_split_data_new (FgDataset *ds, const FgParams *split_params, guint64 seed,
                                       GError **error);
/* The same, also transforming `extra` (nullable; rows with the data set's dim, not used in any
 * fit) with the split's preprocessing: e.g. out-of-domain data scored by the cell's model. */
FG_API FgSplitData *fg_split_data_new_with_extra (FgDataset *ds, const FgParams *split_params,
                                                  guint64 seed, const FgTensor *extra,
                                                  GError **error);
FG_API void         fg_split_data_free (FgSplitData *data);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgSplitData, fg_split_data_free)

/* What the method sees (test part excluded). */
FG_API const FgSplit    *fg_split_data_get_split (const FgSplitData *data);
FG_API const FgDataPart *fg_split_data_get_test (const FgSplitData *data);
/* The extra rows after preprocessing (NULL when none were given) and, when the preprocessing is
 * invertible, their per-row log-determinants in *logdet (else NULL). */
FG_API const FgTensor   *fg_split_data_get_extra (const FgSplitData *data, const double **logdet);
/* Row indices into the data set's parts, for records and tests. */
FG_API const guint32 *fg_split_data_get_indices (const FgSplitData *data, const char *which,
                                                 gsize *n); /* "labeled", "unlabeled",
                                                               "validation", "test" */
/* Attach progress/cancellation hooks to the split handed to fit. */
FG_API void fg_split_data_set_hooks (FgSplitData *data, const FgFitHooks *hooks);
/* Offer the method a place and a policy for its resumable training state (FgSplit.resume;
 * copied, with its directory; NULL: none). */
FG_API void fg_split_data_set_resume (FgSplitData *data, const FgResume *resume);

/* Whether `aug` (nullable) changes anything. */
FG_API gboolean fg_augment_active (const FgAugment *aug);
/* One augmented copy of one example of `shape` (C×H×W; src and dst numel floats each, not
 * overlapping): a crop at offsets (dy, dx), each uniform in [0, 2·crop_pad], of the image
 * zero-padded by crop_pad pixels per side (dy drawn first), then a left-right mirror with
 * probability 1/2 (when flip).  Draws only from `rng`, in that order.  Other shapes, or an
 * inactive `aug`: a plain copy, no draw. */
FG_API void     fg_augment_apply (const FgAugment *aug, const FgSampleShape *shape,
                                  const float *src, float *dst, FgRng *rng);
/* The group of processes that fit this split together (borrowed; NULL: none). */
FG_API void fg_split_data_set_group (FgSplitData *data, const FgGroup *group);

G_END_DECLS
