/* SPDX-License-Identifier: MIT */
/* flowgmm — loss plugin "flowgmm": the FlowGMM objectives.
 *
 *   flowgmm-nll   eq. 4:  λ·mean_lab[−log p(x|y)] + a·mean_unlab[−log p(x)]
 *   flowgmm-cons  eq. 4 + w(epoch)·mean_unlab[−log p(x′ | ŷ(x″))]           (eq. 7)
 *   flowgmm-em    App. A: λ·mean_lab[−log p(x|y)] + a·mean_unlab E_q[−log p(x, t)]
 *
 * with log p(x|y) = log N(f(x); μ_y, σ²I) + log|det ∂f/∂x| (no log π_y: REFERENCE §0 and
 * pitfall 3), log p(x) = logsumexp_k [log N(f(x); μ_k, σ²I)] − log K + log|det|, per-example
 * values summed over dimensions and never divided by D.
 *
 * All three share one fused op: given the component log-densities C [N, K] of the step's
 * latents and their log-dets [N, 1], every row i may carry a hard-label term (weight α_i,
 * label y_i), a mixture term (β_i) and a soft-target term (γ_i, responsibilities q_i):
 *
 *   L = Σ_i α_i·(−C[i, y_i] − ld_i) + β_i·(−lse_i + log K − ld_i)
 *         + γ_i·(−Σ_k q_ik·C[i, k] + log K − ld_i)
 *
 * accumulated in double, with dL/dC[i, k] = −α_i·[k = y_i] − β_i·softmax(C_i)_k − γ_i·q_ik and
 * dL/d ld_i = −(α_i + β_i + γ_i).  The means (1/n) are folded into the weights.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>
#include <flowgmm/loss.h>

/* ======================================================================================== */
/* The shared objective op                                                                    */
/* ======================================================================================== */

typedef struct {
  gsize N;
  guint K;
  gint32 *y;    /* N: hard label or −1 */
  double *alpha, *beta, *gamma; /* N weights each */
  float *q;     /* N × K soft targets (rows with γ_i > 0), or NULL */
  double *lse;  /* N: logsumexp_k C[i, k] (filled by the op) */
} Roles;

static Roles *
roles_new (FgTape *tape, gsize N, guint K, gboolean soft)
{
  Roles *r = fg_tape_alloc (tape, sizeof *r);
  r->N = N;
  r->K = K;
  r->y = fg_tape_alloc (tape, MAX (N, 1) * sizeof (gint32));
  r->alpha = fg_tape_alloc (tape, MAX (N, 1) * sizeof (double));
  r->beta = fg_tape_alloc (tape, MAX (N, 1) * sizeof (double));
  r->gamma = fg_tape_alloc (tape, MAX (N, 1) * sizeof (double));
  r->lse = fg_tape_alloc (tape, MAX (N, 1) * sizeof (double));
  r->q = soft ? fg_tape_alloc_floats (tape, MAX (N * K, 1)) : NULL;
  for (gsize i = 0; i < N; i++)
    {
      r->y[i] = -1;
      r->alpha[i] = r->beta[i] = r->gamma[i] = 0.0;
    }
  if (r->q != NULL)
    memset (r->q, 0, N * K * sizeof (float));
  return r;
}

static double
row_lse (const float *c, guint K)
{
  double m = -INFINITY, s = 0.0;
  for (guint k = 0; k < K; k++)
    m = MAX (m, (double) c[k]);
  if (!isfinite (m))
    return m;
  for (guint k = 0; k < K; k++)
    s += exp ((double) c[k] - m);
  return m + log (s);
}

static void
objective_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const Roles *r = *(Roles **) saved;
  const double g = out->grad.data[0];
  FgTensor *dc = fg_tape_grad (tape, in[0]);
  FgTensor *dld = fg_tape_grad (tape, in[1]);
  for (gsize i = 0; i < r->N; i++)
    {
      if (dc != NULL)
        {
          const float *c = fg_tensor_row (&in[0]->value, i);
          float *d = fg_tensor_row (dc, i);
          if (r->beta[i] != 0.0)
            for (guint k = 0; k < r->K; k++)
              d[k] -= (float) (g * r->beta[i] * exp ((double) c[k] - r->lse[i]));
          if (r->gamma[i] != 0.0)
            for (guint k = 0; k < r->K; k++)
              d[k] -= (float) (g * r->gamma[i] * r->q[i * r->K + k]);
          if (r->alpha[i] != 0.0 && r->y[i] >= 0)
            d[r->y[i]] -= (float) (g * r->alpha[i]);
        }
      if (dld != NULL)
        fg_tensor_row (dld, i)[0] -= (float) (g * (r->alpha[i] + r->beta[i] + r->gamma[i]));
    }
}

/* comp [N, K], logdet [N, 1] (any ld) -> [1, 1]. */
static FgVar *
objective_op (FgTape *tape, FgVar *comp, FgVar *logdet, Roles *r)
{
  FgVar *inputs[2] = { comp, logdet };
  gsize shape[2] = { 1, 1 };
  Roles **saved;
  FgVar *out;
  double total = 0.0;
  const double log_k = log ((double) r->K);
  if (comp == NULL || logdet == NULL)
    return NULL;
  g_return_val_if_fail (fg_tensor_rows (&comp->value) == r->N
                        && fg_tensor_cols (&comp->value) == r->K
                        && fg_tensor_rows (&logdet->value) == r->N
                        && fg_tensor_cols (&logdet->value) == 1, NULL);
  out = fg_tape_op_new (tape, 2, shape, inputs, 2, objective_backward, sizeof *saved,
                        (gpointer *) &saved);
  if (out == NULL)
    return NULL;
  *saved = r;
  for (gsize i = 0; i < r->N; i++)
    {
      const float *c = fg_tensor_row (&comp->value, i);
      const double ld = fg_tensor_row (&logdet->value, i)[0];
      r->lse[i] = 0.0;
      if (r->alpha[i] != 0.0 && r->y[i] >= 0)
        total += r->alpha[i] * (-(double) c[r->y[i]] - ld);
      if (r->beta[i] != 0.0)
        {
          r->lse[i] = row_lse (c, r->K);
          total += r->beta[i] * (-r->lse[i] + log_k - ld);
        }
      if (r->gamma[i] != 0.0)
        {
          double e = 0.0;
          for (guint k = 0; k < r->K; k++)
            e += (double) r->q[i * r->K + k] * c[k];
          total += r->gamma[i] * (-e + log_k - ld);
        }
    }
  out->value.data[0] = (float) total;
  return out;
}

/* ======================================================================================== */
/* Components                                                                                 */
/* ======================================================================================== */

typedef enum { LOSS_NLL, LOSS_CONS, LOSS_EM } LossKind;

typedef struct {
  LossKind kind;
  double label_weight;     /* λ */
  double unlabeled_weight; /* a */
  double cons_weight;
  double cons_rampup;      /* epochs */
  gboolean hard;           /* EM: hard (classification) E-step */
} Loss;

#define COMMON_PARAMS                                                                          \
  FG_PARAM_SPEC_DOUBLE ("label_weight", "1.0", 0.0, INFINITY,                                 \
                        "λ: weight of the mean labeled term −log p(x|y) (authors: 1 tabular, 3 " \
                        "images)"),                                                            \
  FG_PARAM_SPEC_DOUBLE ("unlabeled_weight", "1.0", 0.0, INFINITY,                             \
                        "a: weight of the mean unlabeled term (authors' tabular unlab_weight: " \
                        "0.6 AG-News, 0.2 Yahoo, 3 MINIBOONE, 10 HEPMASS)")

static const FgParamSpec nll_params[] = {
  COMMON_PARAMS,
  FG_PARAM_SPEC_END,
};

static const FgParamSpec cons_params[] = {
  COMMON_PARAMS,
  FG_PARAM_SPEC_DOUBLE ("cons_weight", "1.0", 0.0, INFINITY,
                        "final weight of the consistency term −log p(x′|ŷ(x″)) (eq. 7)"),
  FG_PARAM_SPEC_DOUBLE ("cons_rampup", "0", 0.0, INFINITY,
                        "epochs of the linear ramp-up: weight · min(1, (epoch + 1)/rampup), "
                        "epoch counted from 0 (authors: 100 CIFAR, 1000 MNIST; 0 = no ramp, the "
                        "default, which suits the vector data of the method's defaults)"),
  FG_PARAM_SPEC_END,
};

static const FgParamSpec em_params[] = {
  COMMON_PARAMS,
  FG_PARAM_SPEC_BOOL ("hard", "false",
                      "hard E-step: put each unlabeled point wholly in its most probable class "
                      "(classification EM) instead of soft responsibilities"),
  FG_PARAM_SPEC_END,
};

static Loss *
loss_new (LossKind kind, const FgParams *params)
{
  Loss *self = g_new0 (Loss, 1);
  self->kind = kind;
  self->label_weight = fg_params_get_double (params, "label_weight");
  self->unlabeled_weight = fg_params_get_double (params, "unlabeled_weight");
  if (kind == LOSS_CONS)
    {
      self->cons_weight = fg_params_get_double (params, "cons_weight");
      self->cons_rampup = fg_params_get_double (params, "cons_rampup");
    }
  if (kind == LOSS_EM)
    self->hard = fg_params_get_bool (params, "hard");
  return self;
}

static gpointer
nll_create (const FgParams *params, GError **error)
{
  return loss_new (LOSS_NLL, params);
}

static gpointer
cons_create (const FgParams *params, GError **error)
{
  return loss_new (LOSS_CONS, params);
}

static gpointer
em_create (const FgParams *params, GError **error)
{
  return loss_new (LOSS_EM, params);
}

static void
loss_destroy (gpointer data)
{
  g_free (data);
}

/* The consistency weight at the batch's epoch: the authors' per-epoch linear ramp. */
static double
cons_weight_now (const Loss *self, FgLossBatch *batch)
{
  double epoch = floor (fg_loss_batch_get_epoch (batch));
  if (self->cons_rampup <= 0.0)
    return self->cons_weight;
  return self->cons_weight * MIN (1.0, (epoch + 1.0) / self->cons_rampup);
}

static FgVar *
loss_compute (gpointer data, FgLossBatch *batch, GError **error)
{
  const Loss *self = data;
  FgTape *tape = fg_loss_batch_get_tape (batch);
  FgGmm *gmm = fg_loss_batch_get_gmm (batch);
  const guint K = fg_loss_batch_get_n_classes (batch);
  const gsize n_l = fg_loss_batch_get_n (batch, FG_LOSS_SET_LABELED);
  const gsize n_u = fg_loss_batch_get_n (batch, FG_LOSS_SET_UNLABELED);
  const gsize N = n_l + n_u;
  /* Means over the whole step's sets (over a data-parallel group, larger than n_l and n_u). */
  const gsize n_l_all = fg_loss_batch_get_n_total (batch, FG_LOSS_SET_LABELED);
  const gsize n_u_all = fg_loss_batch_get_n_total (batch, FG_LOSS_SET_UNLABELED);
  const gint32 *labels = fg_loss_batch_get_labels (batch);
  const guint perturb = self->kind == LOSS_CONS ? FG_LOSS_FORWARD_PERTURB : 0;
  const float *targets;
  FgVar *z, *ld, *comp;
  Roles *r;

  if (N == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "flowgmm loss: empty batch");
      return NULL;
    }
  z = fg_loss_batch_forward (batch, fg_loss_batch_get_x (batch, FG_LOSS_SET_ALL), perturb, &ld,
                             error);
  if (z == NULL)
    return NULL;
  comp = fg_gmm_op_log_prob_components (gmm, tape, z);
  if (comp == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "flowgmm loss: mixture op failed");
      return NULL;
    }
  targets = n_u > 0 ? fg_loss_batch_get_targets (batch) : NULL;
  r = roles_new (tape, N, K, self->kind == LOSS_EM || targets != NULL);

  for (gsize i = 0; i < n_l; i++)
    {
      r->y[i] = labels[i];
      r->alpha[i] = self->label_weight / (double) n_l_all;
    }
  if (n_u > 0)
    {
      const double a = self->unlabeled_weight / (double) n_u_all;
      switch (self->kind)
        {
        case LOSS_NLL:
          for (gsize i = n_l; i < N; i++)
            r->beta[i] = a;
          break;
        case LOSS_CONS:
          {
            /* ŷ from a second, independently perturbed pass, without gradient (eq. 7): of the
             * second augmentation x″ of the rows when the method augments (TransformTwice). */
            FgVar *ld2, *z2;
            const double w = cons_weight_now (self, batch) / (double) n_u_all;
            z2 = fg_loss_batch_forward (batch,
                                        fg_loss_batch_get_x_second (batch, FG_LOSS_SET_UNLABELED),
                                        FG_LOSS_FORWARD_PERTURB | FG_LOSS_FORWARD_NO_GRAD, &ld2,
                                        error);
            if (z2 == NULL)
              return NULL;
            fg_gmm_predict (gmm, &z2->value, r->y + n_l, NULL);
            for (gsize i = n_l; i < N; i++)
              {
                r->beta[i] = a;
                r->alpha[i] = w;
              }
            break;
          }
        case LOSS_EM:
          /* E-step: responsibilities of the current model, held fixed (no gradient). */
          for (gsize i = n_l; i < N; i++)
            {
              const float *c = fg_tensor_row (&comp->value, i);
              float *q = r->q + i * K;
              r->gamma[i] = a;
              if (self->hard)
                {
                  guint best = 0;
                  for (guint k = 1; k < K; k++)
                    if (c[k] > c[best])
                      best = k;
                  q[best] = 1.0f;
                }
              else
                {
                  const double lse = row_lse (c, K);
                  for (guint k = 0; k < K; k++)
                    q[k] = (float) exp ((double) c[k] - lse);
                }
            }
          break;
        }
      if (targets != NULL)
        /* The trainer's soft targets (e.g. graph-smoothed responsibilities) replace the
         * unlabeled term's own E-step: E_q[−log p(x, t)] with q given. */
        for (gsize i = n_l; i < N; i++)
          {
            r->beta[i] = 0.0;
            r->gamma[i] = a;
            memcpy (r->q + i * K, targets + (i - n_l) * K, K * sizeof (float));
          }
    }
  return objective_op (tape, comp, ld, r);
}

static const FgLossVTable nll_vtable = {
  .struct_size = sizeof (FgLossVTable),
  .create = nll_create,
  .compute = loss_compute,
  .destroy = loss_destroy,
};

static const FgLossVTable cons_vtable = {
  .struct_size = sizeof (FgLossVTable),
  .create = cons_create,
  .compute = loss_compute,
  .destroy = loss_destroy,
};

static const FgLossVTable em_vtable = {
  .struct_size = sizeof (FgLossVTable),
  .create = em_create,
  .compute = loss_compute,
  .destroy = loss_destroy,
};

static const FgComponent flowgmm_loss_components[] = {
  { FG_KIND_LOSS, "flowgmm-nll", "FlowGMM joint likelihood of labeled and unlabeled data (eq. 4)",
    nll_params, &nll_vtable, { 0 } },
  { FG_KIND_LOSS, "flowgmm-cons", "FlowGMM-cons: eq. 4 plus the consistency term of eq. 7",
    cons_params, &cons_vtable, { 0 } },
  { FG_KIND_LOSS, "flowgmm-em", "FlowGMM trained by EM (App. A): fixed responsibilities, M-step",
    em_params, &em_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo flowgmm_loss_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "flowgmm",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "FlowGMM objectives: likelihood (eq. 4), consistency (eq. 7), EM (App. A)",
  .components = flowgmm_loss_components,
};

FG_PLUGIN_DEFINE (flowgmm_loss_info)
