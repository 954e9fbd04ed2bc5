/* flowgmm — the preprocessing of a split (private to libflowgmm; used by split.c).
 *
 * The split keys it reads are declared with the others in split.c (fg_split_param_specs):
 * dequantize_logit, logit_constraint, standardize, pca, pca_whiten, l2_normalize.  The steps run
 * in that order; statistics are fitted on the training sets (labeled + unlabeled) only and
 * applied to every set.
 */
#pragma once

#include <flowgmm/dataset.h>
#include <flowgmm/params.h>

G_BEGIN_DECLS

/* The four sets of a split, in this order, then extra rows transformed like them (never part
 * of the fit), e.g. out-of-domain data scored by the cell's model. */
enum { FG_PP_LABELED, FG_PP_UNLABELED, FG_PP_VALIDATION, FG_PP_TEST, FG_PP_EXTRA, FG_PP_N_SETS };

typedef struct {
  FgPreprocessing info;          /* what FgSplit.preprocessing points to */
  char           *description;   /* owned; info.description */
  double         *logdet[FG_PP_N_SETS]; /* owned; NULL when not invertible or no such set */
  gsize           out_dim;       /* features per example after the steps */
  gboolean        reshaped;      /* pca changed the example shape to [out_dim] */
} FgPreprocessState;

/* Apply the preprocessing selected by `split_params` to the sets in place.  `x[s]` are owned
 * contiguous tensors (fg_tensor_new); a NULL entry is a set that does not exist.  pca replaces
 * the tensors (the old ones are freed).  `seed` is the cell seed (dequantisation noise).  On
 * error the tensors may be partly transformed and `state` must still be cleared. */
gboolean _fg_preprocess_apply (const FgParams *split_params, guint64 seed,
                               FgTensor *x[FG_PP_N_SETS], FgPreprocessState *state,
                               GError **error);
void     _fg_preprocess_state_clear (FgPreprocessState *state);

G_END_DECLS
