/* SPDX-License-Identifier: MIT */
/* flowgmm — fully connected network with dropout (baseline "mlp") and the Π-model on it
 * (baseline "pi-model"), trained with the core's autodiff and optimizer.
 *
 * Network (paper App. D; REFERENCE §3 `SmallNN`): `depth` hidden layers of `hidden` units,
 *     Linear → ReLU → Dropout(p)   repeated `depth` times, then Linear → K logits.
 * The paper's "3-layer NN" has depth 3 (the default); the authors' code (SmallNN) has depth 2.
 * Weights start as PyTorch's Linear: U(±1/√fan_in) for weights and biases (init = glorot:
 * U(±√(6/(fan_in + fan_out))), scikit-learn's MLPClassifier).
 *
 * mlp:       loss = mean cross-entropy on a labeled batch; one epoch = one pass over the
 *            labeled points (batch = 0: all of them, one step per epoch, as the authors).
 * pi-model:  loss = CE(labeled batch) + w(t) · C(unlabeled batch), where
 *                C = Σ_{b,k} (softmax(f(x_b))_k − softmax(f(x_b))_k^{detached})² / (B·K·K),
 *            the two passes differing only by their dropout masks and the second one carrying
 *            no gradient: oil's PiModel, softmax_mse_loss = mse_loss(p1, p2) / K, i.e. the mean
 *            over the B·K entries divided again by K.  (The paper writes ‖g(x'') − g(x')‖² per
 *            point: that is K² times larger for the same λ; λ here is the code's cons_weight.)
 *            w(t) = cons_weight · min(1, t / rampup), t in epochs (FG_SCHEDULE_LINEAR_RAMP;
 *            rampup = 0: the full weight from the start, as the authors' code).  One epoch
 *            is one pass over the unlabeled points in batches of unlabeled_batch; labeled
 *            batches are drawn alongside, cycling through reshuffled labeled points.
 * Both:      Adam or AdamW (decoupled weight decay, the authors' AdamW(wd 1e-5)), learning
 *            rate lr × schedule (cosine with floor 1e-3 stepped per step, oil's cosLr, or
 *            constant).  The last epoch's weights are kept; validation is never used.
 *            Prediction: dropout off, softmax of the logits.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#define MAX_DEPTH 16
#define PREDICT_BLOCK 256

#define NET_PARAMS(lr, epochs)                                                                 \
  FG_PARAM_SPEC_INT ("hidden", "512", 1, 1000000, "units per hidden layer"),                    \
  FG_PARAM_SPEC_INT ("depth", "3", 1, MAX_DEPTH,                                                \
                     "hidden layers (paper: 3; the authors' code: 2)"),                         \
  FG_PARAM_SPEC_DOUBLE ("dropout", "0.5", 0.0, 0.99, "dropout probability after each hidden "   \
                        "layer"),                                                               \
  FG_PARAM_SPEC_DOUBLE ("lr", lr, 0.0, INFINITY, "learning rate"),                              \
  FG_PARAM_SPEC_INT ("epochs", epochs, 1, 100000000, "training epochs"),                        \
  FG_PARAM_SPEC_INT ("batch", "0", 0, INFINITY,                                                 \
                     "labeled points per step (0: all of them, as the authors)"),               \
  FG_PARAM_SPEC_CHOICE ("optimizer", "adamw", "adam|adamw",                                     \
                        "Adam (weight decay as L2 in the gradient) or AdamW (decoupled)"),      \
  FG_PARAM_SPEC_DOUBLE ("weight_decay", "1e-5", 0.0, INFINITY,                                  \
                        "weight decay on every weight and bias (authors: AdamW, 1e-5)"),        \
  FG_PARAM_SPEC_CHOICE ("schedule", "cosine", "cosine|constant",                                \
                        "learning-rate schedule per step (cosine: oil's cosLr, floor 1e-3)"),   \
  FG_PARAM_SPEC_CHOICE ("init", "pytorch", "pytorch|glorot",                                    \
                        "weights and biases U(±b): b = 1/√fan_in (PyTorch's Linear, the "       \
                        "authors') or √(6/(fan_in + fan_out)) (scikit-learn's MLPClassifier)")

static const FgParamSpec mlp_params[] = {
  NET_PARAMS ("3e-4", "500"),
  FG_PARAM_SPEC_END,
};

static const FgParamSpec pi_params[] = {
  NET_PARAMS ("1e-3", "50"),
  FG_PARAM_SPEC_DOUBLE ("cons_weight", "30", 0.0, INFINITY,
                        "consistency weight λ (paper: 30), on mean((p1 − p2)²)/K"),
  FG_PARAM_SPEC_DOUBLE ("rampup", "5", 0.0, INFINITY,
                        "epochs over which the weight rises linearly from 0 (0: none)"),
  FG_PARAM_SPEC_INT ("unlabeled_batch", "2000", 1, INFINITY,
                     "unlabeled points per step (paper: 2000 on UCI, n_l on text)"),
  FG_PARAM_SPEC_END,
};

typedef struct {
  /* parameters */
  gboolean pi;
  gsize hidden, depth, batch, unlabeled_batch;
  double dropout, lr, weight_decay, cons_weight, rampup;
  gint64 epochs;
  FgOptimKind optim;
  FgScheduleKind schedule;
  gboolean glorot;
  FgRng *rng;

  /* model */
  guint K;
  gsize dim;
  FgWeightSet *weights;
  FgWeight *w[MAX_DEPTH + 1], *b[MAX_DEPTH + 1];
  guint n_layers; /* depth + 1 */
  FgTape *tape;
  double last_loss;
} Mlp;

static gpointer
net_create (const FgParams *params, FgRng *rng, gboolean pi)
{
  Mlp *self = g_new0 (Mlp, 1);
  self->pi = pi;
  self->hidden = (gsize) fg_params_get_int (params, "hidden");
  self->depth = (gsize) fg_params_get_int (params, "depth");
  self->dropout = fg_params_get_double (params, "dropout");
  self->lr = fg_params_get_double (params, "lr");
  self->epochs = fg_params_get_int (params, "epochs");
  self->batch = (gsize) fg_params_get_int (params, "batch");
  self->optim = g_strcmp0 (fg_params_get_string (params, "optimizer"), "adam") == 0
                  ? FG_OPTIM_ADAM : FG_OPTIM_ADAMW;
  self->weight_decay = fg_params_get_double (params, "weight_decay");
  self->schedule = g_strcmp0 (fg_params_get_string (params, "schedule"), "cosine") == 0
                     ? FG_SCHEDULE_COSINE : FG_SCHEDULE_CONSTANT;
  self->glorot = g_strcmp0 (fg_params_get_string (params, "init"), "glorot") == 0;
  if (pi)
    {
      self->cons_weight = fg_params_get_double (params, "cons_weight");
      self->rampup = fg_params_get_double (params, "rampup");
      self->unlabeled_batch = (gsize) fg_params_get_int (params, "unlabeled_batch");
    }
  self->rng = rng;
  return self;
}

static gpointer
mlp_create (const FgParams *params, FgRng *rng, GError **error)
{
  return net_create (params, rng, FALSE);
}

static gpointer
pi_create (const FgParams *params, FgRng *rng, GError **error)
{
  return net_create (params, rng, TRUE);
}

static void
net_clear (Mlp *self)
{
  g_clear_pointer (&self->weights, fg_weight_set_free);
  g_clear_pointer (&self->tape, fg_tape_free);
  self->n_layers = 0;
}

/* Weights for dim → hidden^depth → K, initialised as PyTorch's nn.Linear (or Glorot-uniform,
 * biases included, as scikit-learn's MLPClassifier for ReLU networks). */
static void
net_build (Mlp *self, gsize dim, guint K)
{
  gsize in = dim;
  net_clear (self);
  self->dim = dim;
  self->K = K;
  self->weights = fg_weight_set_new ();
  self->n_layers = (guint) self->depth + 1;
  for (guint l = 0; l < self->n_layers; l++)
    {
      gsize out = l + 1 < self->n_layers ? self->hidden : K;
      char name[32];
      float bound = (float) (self->glorot ? sqrt (6.0 / (double) (in + out))
                                          : 1.0 / sqrt ((double) in));
      g_snprintf (name, sizeof name, "fc%u.weight", l);
      self->w[l] = fg_weight_set_add_2d (self->weights, name, in, out, TRUE);
      g_snprintf (name, sizeof name, "fc%u.bias", l);
      self->b[l] = fg_weight_set_add_2d (self->weights, name, 1, out, TRUE);
      fg_weight_init_uniform (self->w[l], self->rng, bound);
      fg_weight_init_uniform (self->b[l], self->rng, bound);
      in = out;
    }
  self->tape = fg_tape_new ();
}

/* Tape leaves of the weights, in the order w0, b0, w1, b1, ... (2 · n_layers). */
static void
net_leaves (Mlp *self, FgTape *tape, FgVar **leaves)
{
  for (guint l = 0; l < self->n_layers; l++)
    {
      leaves[2 * l] = fg_tape_weight (tape, self->w[l]);
      leaves[2 * l + 1] = fg_tape_weight (tape, self->b[l]);
    }
}

/* Logits of x ([N, dim]); dropout drawn from rng when train. */
static FgVar *
net_forward (const Mlp *self, FgTape *tape, FgVar *const *leaves, FgVar *x, FgRng *rng,
             gboolean train)
{
  FgVar *h = x;
  for (guint l = 0; l < self->n_layers; l++)
    {
      h = fg_op_linear (tape, h, leaves[2 * l], leaves[2 * l + 1]);
      if (l + 1 < self->n_layers)
        {
          h = fg_op_relu (tape, h);
          h = fg_op_dropout (tape, h, (float) self->dropout, rng, train);
        }
    }
  return h;
}

/* The detached target of the consistency term: softmax of a second dropout pass over xu,
 * computed without gradient (oil's .detach ()). */
static FgVar *
consistency_target (const Mlp *self, FgTape *tape, FgVar *const *leaves, FgVar *xu, FgRng *rng)
{
  gboolean grad = fg_tape_get_grad_enabled (tape);
  FgVar *p2;
  fg_tape_set_grad_enabled (tape, FALSE);
  p2 = fg_op_softmax (tape, net_forward (self, tape, leaves, xu, rng, TRUE));
  fg_tape_set_grad_enabled (tape, grad);
  return p2;
}

/* The training objective of one step: mean CE on (xl, yl), plus for the Π-model
 * cons_w · mean((p1 − target)²)/K with p1 = softmax of a dropout pass over xu (xu and target
 * NULL: none). */
static FgVar *
step_loss (const Mlp *self, FgTape *tape, FgVar *const *leaves, FgVar *xl, const gint32 *yl,
           FgVar *xu, FgVar *target, double cons_w, FgRng *rng)
{
  FgVar *logp = fg_op_log_softmax (tape, net_forward (self, tape, leaves, xl, rng, TRUE));
  FgVar *loss = fg_op_neg (tape, fg_op_mean (tape, fg_op_gather (tape, logp, yl), FG_AXIS_ALL));
  if (xu != NULL && target != NULL && cons_w > 0.0)
    {
      FgVar *p1 = fg_op_softmax (tape, net_forward (self, tape, leaves, xu, rng, TRUE));
      FgVar *cons = fg_op_mean (tape, fg_op_square (tape, fg_op_sub (tape, p1, target)),
                                FG_AXIS_ALL);
      loss = fg_op_add (tape, loss, fg_op_scale (tape, cons, (float) (cons_w / self->K)));
    }
  return loss;
}

/* Copy rows idx[0..n) of part x into arena memory as an [n, dim] constant. */
static FgVar *
gather_rows (FgTape *tape, const FgTensor *x, const guint32 *idx, gsize n, gsize dim)
{
  FgVar *v = fg_tape_empty_2d (tape, n, dim);
  for (gsize i = 0; i < n; i++)
    memcpy (fg_tensor_row (&v->value, i), fg_tensor_row (x, idx[i]), dim * sizeof (float));
  return v;
}

/* Next `n` indices from a cyclic reshuffled order over [0, total). */
typedef struct {
  guint32 *order;
  gsize total, pos;
} Cycler;

static void
cycler_init (Cycler *c, gsize total, FgRng *rng)
{
  c->order = g_new (guint32, MAX (total, (gsize) 1));
  c->total = total;
  c->pos = 0;
  fg_rng_permutation (rng, c->order, total);
}

static void
cycler_take (Cycler *c, FgRng *rng, guint32 *out, gsize n)
{
  for (gsize i = 0; i < n; i++)
    {
      if (c->pos == c->total)
        {
          fg_rng_shuffle (rng, c->order, c->total);
          c->pos = 0;
        }
      out[i] = c->order[c->pos++];
    }
}

static gboolean
net_fit (gpointer data, const FgSplit *split, GError **error)
{
  Mlp *self = data;
  gsize nl = split->labeled.n, nu = split->unlabeled.n, dim = split->dim;
  gsize bl, bu = 0, steps_per_epoch, total_steps;
  gboolean use_unlab;
  g_autofree guint32 *li = NULL, *ui = NULL;
  g_autofree gint32 *ly = NULL;
  Cycler lab = { 0 }, unl = { 0 };
  FgOptimConfig cfg;
  g_autoptr (FgOptimizer) opt = NULL;
  FgSchedule lr_sched, ramp;
  FgVar *leaves[2 * (MAX_DEPTH + 1)];
  gsize step = 0;
  gboolean ok = TRUE;

  if (nl == 0 || split->labeled.y == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: the split has no labeled points",
                   self->pi ? "pi-model" : "mlp");
      return FALSE;
    }
  for (gsize i = 0; i < nl; i++)
    if (split->labeled.y[i] < 0 || (guint) split->labeled.y[i] >= split->n_classes)
      {
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "%s: labeled point %" G_GSIZE_FORMAT " has label %d outside [0, %u)",
                     self->pi ? "pi-model" : "mlp", i, split->labeled.y[i], split->n_classes);
        return FALSE;
      }
  use_unlab = self->pi && nu > 0;
  if (self->pi && nu == 0)
    g_message ("pi-model: no unlabeled points; training on the labeled points alone");

  net_build (self, dim, split->n_classes);
  bl = self->batch == 0 ? nl : MIN (self->batch, nl);
  if (use_unlab)
    {
      bu = MIN (self->unlabeled_batch, nu);
      steps_per_epoch = (nu + bu - 1) / bu;
    }
  else
    steps_per_epoch = (nl + bl - 1) / bl;
  total_steps = steps_per_epoch * (gsize) self->epochs;

  fg_optim_config_init (&cfg, self->optim);
  cfg.weight_decay = self->weight_decay;
  opt = fg_optimizer_new (&cfg, self->weights);
  fg_schedule_init (&lr_sched, self->schedule, (double) total_steps);
  fg_schedule_init (&ramp, FG_SCHEDULE_LINEAR_RAMP, self->rampup);

  li = g_new (guint32, bl);
  ly = g_new (gint32, bl);
  cycler_init (&lab, nl, self->rng);
  if (use_unlab)
    {
      ui = g_new (guint32, bu);
      cycler_init (&unl, nu, self->rng);
    }

  for (gint64 epoch = 0; epoch < self->epochs && ok; epoch++)
    {
      double epoch_loss = 0.0;
      for (gsize s = 0; s < steps_per_epoch; s++, step++)
        {
          FgVar *xl, *xu = NULL, *target = NULL, *loss;
          double cons_w = 0.0, t_epochs = (double) step / (double) steps_per_epoch;
          g_autoptr (GError) local = NULL;

          fg_tape_reset (self->tape);
          cycler_take (&lab, self->rng, li, bl);
          for (gsize i = 0; i < bl; i++)
            ly[i] = split->labeled.y[li[i]];
          xl = gather_rows (self->tape, &split->labeled.x, li, bl, dim);
          if (use_unlab)
            {
              /* one pass over the unlabeled points per epoch, reshuffled each epoch; the
               * last batch of an epoch may be short */
              gsize n = MIN (bu, nu - s * bu);
              cycler_take (&unl, self->rng, ui, n);
              xu = gather_rows (self->tape, &split->unlabeled.x, ui, n, dim);
              cons_w = self->cons_weight
                       * (self->rampup > 0.0 ? fg_schedule_factor (&ramp, t_epochs) : 1.0);
            }
          net_leaves (self, self->tape, leaves);
          if (xu != NULL && cons_w > 0.0)
            target = consistency_target (self, self->tape, leaves, xu, self->rng);
          loss = step_loss (self, self->tape, leaves, xl, ly, xu, target, cons_w, self->rng);
          fg_weight_set_zero_grad (self->weights);
          if (loss == NULL || !fg_tape_backward (self->tape, loss, &local))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "%s: the training step failed: %s",
                           self->pi ? "pi-model" : "mlp",
                           local ? local->message : "an op returned NULL");
              ok = FALSE;
              break;
            }
          if (!isfinite (loss->value.data[0]))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                           "%s: the loss is not finite at epoch %" G_GINT64_FORMAT
                           " (lr %g too large?)", self->pi ? "pi-model" : "mlp", epoch + 1,
                           self->lr);
              ok = FALSE;
              break;
            }
          epoch_loss += loss->value.data[0];
          fg_optimizer_step (opt, self->lr * fg_schedule_factor (&lr_sched, (double) step));
        }
      if (!ok)
        break;
      self->last_loss = epoch_loss / (double) steps_per_epoch;
      if (fg_split_cancelled (split))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "%s: cancelled",
                       self->pi ? "pi-model" : "mlp");
          ok = FALSE;
          break;
        }
      if (epoch % 10 == 9 || epoch + 1 == self->epochs)
        {
          char what[96];
          g_snprintf (what, sizeof what, "epoch %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT
                      " loss %.4g", epoch + 1, self->epochs, self->last_loss);
          fg_split_report_progress (split, (double) (epoch + 1) / (double) self->epochs, what);
        }
    }
  g_free (lab.order);
  g_free (unl.order);
  fg_tape_reset (self->tape);
  if (!ok)
    net_clear (self);
  return ok;
}

static gboolean
net_predict (gpointer data, const FgTensor *x, gint32 *labels_out, float *proba_out,
             GError **error)
{
  Mlp *self = data;
  gsize rows = fg_tensor_rows (x);
  FgVar *leaves[2 * (MAX_DEPTH + 1)];

  if (self->weights == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "%s: predict before fit",
                   self->pi ? "pi-model" : "mlp");
      return FALSE;
    }
  if (fg_tensor_cols (x) != self->dim)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: fitted on %" G_GSIZE_FORMAT " features, asked about %" G_GSIZE_FORMAT,
                   self->pi ? "pi-model" : "mlp", self->dim, fg_tensor_cols (x));
      return FALSE;
    }
  fg_tape_set_grad_enabled (self->tape, FALSE);
  for (gsize r0 = 0; r0 < rows; r0 += PREDICT_BLOCK)
    {
      gsize m = MIN ((gsize) PREDICT_BLOCK, rows - r0);
      FgTensor view = fg_tensor_view_rows (x, r0, m);
      FgVar *xv, *p;
      view.ndim = 2;
      view.shape[1] = self->dim;
      view.shape[2] = view.shape[3] = 1;
      fg_tape_reset (self->tape);
      xv = fg_tape_constant (self->tape, &view);
      net_leaves (self, self->tape, leaves);
      p = fg_op_softmax (self->tape, net_forward (self, self->tape, leaves, xv, NULL, FALSE));
      if (p == NULL)
        {
          fg_tape_set_grad_enabled (self->tape, TRUE);
          g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "%s: the forward pass failed",
                       self->pi ? "pi-model" : "mlp");
          return FALSE;
        }
      for (gsize i = 0; i < m; i++)
        {
          const float *row = fg_tensor_row (&p->value, i);
          guint best = 0;
          for (guint c = 1; c < self->K; c++)
            if (row[c] > row[best])
              best = c;
          labels_out[r0 + i] = (gint32) best;
          if (proba_out != NULL)
            memcpy (proba_out + (r0 + i) * self->K, row, self->K * sizeof (float));
        }
    }
  fg_tape_reset (self->tape);
  fg_tape_set_grad_enabled (self->tape, TRUE);
  return TRUE;
}

static void
net_destroy (gpointer data)
{
  Mlp *self = data;
  if (self == NULL)
    return;
  net_clear (self);
  g_free (self);
}

static const FgBaselineVTable mlp_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = mlp_create,
  .fit = net_fit,
  .predict = net_predict,
  .destroy = net_destroy,
};

static const FgBaselineVTable pi_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = pi_create,
  .fit = net_fit,
  .predict = net_predict,
  .destroy = net_destroy,
};

static const FgComponent mlp_components[] = {
  { FG_KIND_BASELINE, "mlp",
    "fully connected ReLU network with dropout, cross-entropy on the labeled points (Adam)",
    mlp_params, &mlp_vtable, { 0 } },
  { FG_KIND_BASELINE, "pi-model",
    "Π-model: the mlp network plus dropout consistency on unlabeled points",
    pi_params, &pi_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo mlp_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "mlp",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "Neural-network baselines: the paper's 3-layer NN + dropout and the Π-model",
  .components = mlp_components,
};

FG_PLUGIN_DEFINE (mlp_info)
