/* SPDX-License-Identifier: MIT */
/* flowgmm — the latent Gaussian mixture of FlowGMM and its Bayes classifier.
 *
 * K components N(μ_k, σ² I) over D latent dimensions with uniform weights π_k = 1/K (paper
 * eqs. 2–5).  The means are a [K, D] weight ("gmm.means") and σ a [1, 1] weight holding the raw
 * value c with σ = softplus(c) ("gmm.sigma_raw", the authors' parametrisation); both live in a
 * weight set chosen by the caller and are constants (not trainable) unless asked for.  While σ
 * is fixed, the exact double given at creation is used, not softplus of the stored float.
 *
 *   log N(z; μ_k, σ²I) = −‖z − μ_k‖² / (2σ²) − D·log σ − (D/2)·log 2π
 *   log p(z | y)       = log N(z; μ_y, σ²I)                      (no log π_y: REFERENCE §0)
 *   log p(z)           = logsumexp_k [log N(z; μ_k, σ²I)] − log K
 *   p(y | z)           = softmax_k [log N(z; μ_k, σ²I)]          (eq. 5; uniform π cancels)
 *
 * Distances and reductions accumulate in double.  Latents may be [N, D] or N×C×H×W with
 * C·H·W = D.  The tape ops (fg_gmm_op_*) give gradients into z and, when trainable, into the
 * means and σ; the plain helpers evaluate without a tape.
 */
#pragma once

#include <glib.h>
#include <flowgmm/tape.h>
#include <flowgmm/weights.h>
#include <flowgmm/rng.h>

G_BEGIN_DECLS

typedef struct _FgGmm FgGmm;

/* How the means are placed (see fg_gmm_init_means ()). */
typedef enum {
  FG_GMM_MEANS_RANDOM = 0, /* μ_k = r·ε_k, ε_k ~ N(0, I): images and toy data (r = 1) */
  FG_GMM_MEANS_TABULAR,    /* the authors' tabular rule: K = 2 → ±μ, ‖μ‖ = 3.75, μ ∝ ε;
                            * K > 2 → 0.56·ε_k (r unused) */
  FG_GMM_MEANS_CIRCLE,     /* first two coordinates r·(cos θ_k, sin θ_k), θ_k = θ0 + 2πk/K,
                            * the rest 0 (the authors' toy placements) */
  FG_GMM_MEANS_DATA,       /* r × the mean latent of each class's labeled points (App. B):
                            * fg_gmm_init_means_from_latents () */
  FG_GMM_MEANS_GIVEN,      /* explicit values: fg_gmm_set_means () */
} FgGmmMeansInit;

FG_API gboolean    fg_gmm_means_init_from_string (const char *name, FgGmmMeansInit *init,
                                                  GError **error);
FG_API const char *fg_gmm_means_init_to_string (FgGmmMeansInit init);

/* A mixture of n_classes ≥ 1 components over dim ≥ 1 dimensions with standard deviation
 * sigma > 0 (finite).  Its two weights are added to `weights` (borrowed; must outlive the
 * mixture), not trainable and with no weight decay; the means start at 0. */
FG_API FgGmm   *fg_gmm_new (guint n_classes, gsize dim, double sigma, FgWeightSet *weights);
FG_API void     fg_gmm_free (FgGmm *gmm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgGmm, fg_gmm_free)

FG_API guint     fg_gmm_get_n_classes (const FgGmm *gmm);
FG_API gsize     fg_gmm_get_dim (const FgGmm *gmm);
/* The current σ: the fixed value, or softplus of the raw weight while σ is trainable. */
FG_API double    fg_gmm_get_sigma (const FgGmm *gmm);
/* Fix σ (not trainable afterwards unless fg_gmm_set_trainable () says so again). */
FG_API void      fg_gmm_set_sigma (FgGmm *gmm, double sigma);
FG_API FgWeight *fg_gmm_get_means (const FgGmm *gmm);     /* [K, D] */
FG_API FgWeight *fg_gmm_get_sigma_raw (const FgGmm *gmm); /* [1, 1], σ = softplus(value) */
/* Make the means and/or σ learnable (App. B).  Making σ trainable stores its current value as
 * the raw weight softplus⁻¹(σ). */
FG_API void      fg_gmm_set_trainable (FgGmm *gmm, gboolean means, gboolean sigma);

/* Place the means by a data-free rule (RANDOM, TABULAR, CIRCLE).  `r` scales (RANDOM), or is
 * the radius (CIRCLE); `angle` is θ0 in radians (CIRCLE).  Draws only from `rng` (RANDOM and
 * TABULAR).  DATA and GIVEN are programmer errors here: use the functions below. */
FG_API void     fg_gmm_init_means (FgGmm *gmm, FgGmmMeansInit init, double r, double angle,
                                   FgRng *rng);
/* Copy K × D row-major values into the means. */
FG_API void     fg_gmm_set_means (FgGmm *gmm, const float *means);
/* μ_k = r·mean{z_i : y_i = k} over the n = rows(z) latents (labels y in [0, K) or −1 to skip).
 * A class without any point gets r·ε, ε ~ N(0, I) from `rng`, and is counted in *n_missing
 * (nullable). */
FG_API void     fg_gmm_init_means_from_latents (FgGmm *gmm, const FgTensor *z, const gint32 *y,
                                                double r, FgRng *rng, guint *n_missing);
/* Parse "m11,m12,...;m21,..." (K rows of D numbers) into the means.  FG_ERROR_INVALID_PARAM
 * names what does not fit. */
FG_API gboolean fg_gmm_set_means_from_string (FgGmm *gmm, const char *text, GError **error);

/* ---- Tape ops (gradients into z and, when trainable, the means and σ) ------------------- */
/* [N, K]: log N(z_i; μ_k, σ²I).  One fused op: distances in double, one backward. */
FG_API FgVar *fg_gmm_op_log_prob_components (FgGmm *gmm, FgTape *tape, FgVar *z);
/* [N, 1]: log N(z_i; μ_{y_i}, σ²I) (y copied; y_i < 0 gives 0 with no gradient). */
FG_API FgVar *fg_gmm_op_log_prob_class (FgGmm *gmm, FgTape *tape, FgVar *z, const gint32 *y);
/* [N, 1]: log p(z_i) = logsumexp_k log N(z_i; μ_k) − log K. */
FG_API FgVar *fg_gmm_op_log_prob (FgGmm *gmm, FgTape *tape, FgVar *z);
/* [N, K]: log p(k | z_i) (log-softmax of the component log-densities). */
FG_API FgVar *fg_gmm_op_log_posterior (FgGmm *gmm, FgTape *tape, FgVar *z);

/* ---- Plain evaluation (no tape; double) ----------------------------------------------------- */
/* out[i·K + k] = log N(z_i; μ_k, σ²I) for the N = rows(z) latents. */
FG_API void fg_gmm_log_prob_components (const FgGmm *gmm, const FgTensor *z, double *out);
/* out[i] = log p(z_i) (mixture, with log π = −log K). */
FG_API void fg_gmm_log_prob (const FgGmm *gmm, const FgTensor *z, double *out);
/* The Bayes classifier: labels (nullable) = argmax_k p(k | z_i) (lowest k on ties) and proba
 * (nullable, N × K row-major) = p(k | z_i) (eq. 5). */
FG_API void fg_gmm_predict (const FgGmm *gmm, const FgTensor *z, gint32 *labels, float *proba);

G_END_DECLS
