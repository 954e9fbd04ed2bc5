/* SPDX-License-Identifier: MIT */
/* flowgmm — model analysis on plain arrays: calibration (NLL, ECE, Brier, reliability bins,
 * temperature scaling), out-of-domain detection (AUROC, AUPR, FPR at 95 % TPR) and the distance
 * to the decision boundary of a latent Gaussian mixture (paper §6, App. F).
 *
 * Conventions (doc/analysis.md):
 *  - probabilities are n × K row-major floats, or log-probabilities n × K doubles (the *_log
 *    functions, −inf for 0), labels in [0, K) (a label < 0 is not scored);
 *  - temperature T scales log-probabilities: q_k ∝ p_k^(1/T), i.e. softmax(log p / T), which is
 *    classic temperature scaling of the logits (log p differs from them by a per-row constant).
 *    For FlowGMM's mixture of N(μ_k, σ²I) with uniform weights it is exactly σ² → T·σ² (§6.1);
 *    a class with p_k = 0 stays at 0;
 *  - ECE uses n_bins equal-width bins of the top-class confidence, bin b = ((b−1)/M, b/M]
 *    (Guo et al. 2017): ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|;
 *  - Brier = (1/n) Σ_i Σ_k (q_ik − 1[y_i = k])² (the multi-class score, in [0, 2]);
 *  - out-of-domain scores: higher means "in-domain"; in-domain examples are the positives.
 */
#pragma once

#include <glib.h>
#include <flowgmm/error.h>

G_BEGIN_DECLS

#define FG_ECE_BINS 15
/* NLL counts a true class of probability 0 as this (−log: 27.6 nats); others exactly. */
#define FG_PROBA_FLOOR 1e-12

typedef struct {
  gsize  n;        /* examples scored (label ≥ 0) */
  double accuracy; /* of the argmax (lowest k on ties) */
  double nll;      /* mean −log q_y (q_y = 0 counted as FG_PROBA_FLOOR) */
  double ece;
  double brier;
} FgCalibration;

/* Reliability diagram data: per bin, the number of examples, their mean confidence and their
 * accuracy (NAN for empty bins).  Arrays of n_bins, caller-allocated. */
typedef struct {
  guint   n_bins;
  gsize  *count;
  double *confidence;
  double *accuracy;
} FgReliability;

/* The metrics of probabilities `proba` (n × K) tempered at `temperature` (> 0; 1: as given)
 * against labels y.  `rel` (nullable) receives the reliability bins (rel->n_bins bins, which
 * also sets the ECE's bin count; FG_ECE_BINS when rel is NULL).  FALSE with FG_ERROR_NUMERIC
 * for a non-finite or negative probability (naming the row) or FG_ERROR_DATA for a label ≥ K. */
FG_API gboolean fg_calibration_compute (const float *proba, const gint32 *y, gsize n, guint K,
                                        double temperature, FgCalibration *out,
                                        FgReliability *rel, GError **error);

/* Mean NLL of softmax(log p / T) over the scored rows (no floor; rows whose true class has
 * p = 0 are skipped: no T changes them). */
FG_API double   fg_tempered_nll (const float *proba, const gint32 *y, gsize n, guint K,
                                 double temperature);

/* The temperature T minimising fg_tempered_nll () on (proba, y): Brent's method on u = log T
 * after bracketing the minimum by expanding steps from u = 0 (the NLL is unimodal in u).  T is
 * kept in [e^−20, e^20]; a minimum at a bound (e.g. every row already correct and certain)
 * returns the bound.  FG_ERROR_DATA when no row is scored. */
FG_API gboolean fg_temperature_fit (const float *proba, const gint32 *y, gsize n, guint K,
                                    double *temperature, GError **error);

/* The same on log-probabilities (n × K doubles, −inf for p = 0): what a method that gives
 * log p(x, y = k) offers (fg_log_joint_to_log_posterior ()), free of the underflow of
 * probabilities far from 1 (FlowGMM's posteriors in a high-dimensional latent space).  A NaN or
 * +inf entry is an error (FG_ERROR_NUMERIC). */
FG_API gboolean fg_calibration_compute_log (const double *logp, const gint32 *y, gsize n, guint K,
                                            double temperature, FgCalibration *out,
                                            FgReliability *rel, GError **error);
FG_API double   fg_tempered_nll_log (const double *logp, const gint32 *y, gsize n, guint K,
                                     double temperature);
FG_API gboolean fg_temperature_fit_log (const double *logp, const gint32 *y, gsize n, guint K,
                                        double *temperature, GError **error);
/* log p of n × K probabilities (−inf for 0); FG_ERROR_NUMERIC for a non-finite or negative one. */
FG_API gboolean fg_proba_to_log (const float *proba, gsize n, guint K, double *logp,
                                 GError **error);
/* Rows of log p(x, y = k) (n × K) normalised in place to log p(y = k | x). */
FG_API void     fg_log_joint_to_log_posterior (double *log_joint, gsize n, guint K);

typedef struct {
  double auroc;  /* P(s_in > s_out) + P(s_in = s_out)/2 */
  double aupr;   /* average precision, in-domain positive: Σ (R_k − R_{k−1}) P_k (scikit-learn) */
  double fpr95;  /* share of out-of-domain scores ≥ the largest threshold with TPR ≥ 0.95 */
} FgOodMetrics;

/* Detection metrics of scores s_in (positives) against s_out.  Non-finite scores are allowed:
 * −inf ranks lowest, +inf highest; NaN is an error (FG_ERROR_NUMERIC).  Both sets non-empty. */
FG_API gboolean fg_ood_metrics (const double *s_in, gsize n_in, const double *s_out, gsize n_out,
                                FgOodMetrics *out, GError **error);

/* Distance from each latent z_i (n × D) to the decision boundary between its two closest means
 * μ', μ'' of `means` (K × D, K ≥ 2): the distance to their bisecting hyperplane,
 *   d = (‖μ'' − z‖² − ‖μ' − z‖²) / (2‖μ' − μ''‖) ≥ 0   (paper §6.2),
 * in double.  nearest (nullable) gets μ''s index. */
FG_API void     fg_decision_distance (const float *z, gsize n, gsize D, const float *means,
                                      guint K, double *d, gint32 *nearest);

/* Counts of `values` in n_bins equal-width bins over [lo, hi] (values outside are clamped into
 * the end bins; non-finite ones are not counted). */
FG_API void     fg_histogram (const double *values, gsize n, double lo, double hi, guint n_bins,
                              gsize *counts);

G_END_DECLS
