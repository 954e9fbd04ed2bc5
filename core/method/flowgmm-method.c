/* flowgmm — the `flowgmm` method: a flow plugin, a latent Gaussian mixture and a loss plugin
 * trained together (paper §3), registered as a built-in baseline component.
 *
 * fit () builds the flow for the split's example shape, places the mixture's means, and runs
 * the training loop: each step copies the step's labeled and unlabeled rows into preallocated
 * buffers, resets the tape, asks the loss for the scalar objective, back-propagates, clips the
 * flow's gradient norm and updates with Adam/AdamW at the scheduled learning rate.  Once the
 * first steps have sized the tape's arena, a step allocates nothing from the heap.
 * predict () runs the flow in evaluation mode (no dropout) in chunks and applies the Bayes
 * classifier of eq. 5.  A NaN or diverging loss ends fit () with FG_ERROR_NUMERIC naming the
 * epoch, the step and the quantity, which the runner records as the cell's result.
 *
 * The flow and loss are FG_PARAM_COMPONENT parameters: whoever resolved the parameters
 * (fg_registry_resolve_params (), as the experiment loader does) bound them to the components
 * of its registry, and the method runs those, so it never looks a name up itself.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/parallel.h>
#include <flowgmm/registry.h>
#include <flowgmm/split.h>
#include <flowgmm/optim.h>
#include <flowgmm/io.h>
#include <flowgmm/gmm.h>
#include <flowgmm/loss.h>

#include "loader/builtins.h"

/* ======================================================================================== */
/* Parameters                                                                                 */
/* ======================================================================================== */

static const FgParamSpec trainer_params[] = {
  FG_PARAM_SPEC_COMPONENT ("flow", "realnvp-mlp", "flow",
                           "the flow f; configure it with flow.* keys"),
  FG_PARAM_SPEC_COMPONENT ("loss", "flowgmm-nll", "loss",
                           "the objective (flowgmm-nll, flowgmm-cons, flowgmm-em); loss.* keys"),
  FG_PARAM_SPEC_BOOL ("labeled_only", "false",
                      "train on the labeled points only (the supervised FlowGMM of the paper)"),
  FG_PARAM_SPEC_INT ("epochs", "15", 0, 1e9,
                     "passes over the unlabeled pool (over the labeled points when there is "
                     "none or labeled_only); authors' tabular default 15"),
  FG_PARAM_SPEC_INT ("iterations", "0", 0, 1e12,
                     "when > 0, train for exactly this many steps instead of `epochs` (toys: "
                     "2001 or 5001)"),
  FG_PARAM_SPEC_INT ("labeled_batch", "0", 0, INFINITY,
                     "labeled points per step; 0 = all of them every step (authors' tabular); "
                     "smaller batches cycle through reshuffled labeled points"),
  FG_PARAM_SPEC_INT ("unlabeled_batch", "5000", 1, INFINITY,
                     "unlabeled points per step (authors' tabular 5000)"),
  FG_PARAM_SPEC_CHOICE ("unlabeled_order", "fixed", "fixed|shuffle|sample",
                        "fixed: consecutive batches in pool order (authors' tabular); shuffle: "
                        "a new permutation every epoch; sample: with replacement (toy notebooks)"),
  FG_PARAM_SPEC_CHOICE ("optimizer", "adamw", "adamw|adam",
                        "AdamW (decoupled decay, authors' tabular) or Adam (L2 decay)"),
  FG_PARAM_SPEC_DOUBLE ("lr", "1e-3", 1e-12, INFINITY, "learning rate of the flow"),
  FG_PARAM_SPEC_DOUBLE ("weight_decay", "1e-5", 0.0, INFINITY,
                        "weight decay of the flow's weights (authors' tabular 1e-5; toys 1e-2)"),
  FG_PARAM_SPEC_DOUBLE ("clip", "100", 0.0, INFINITY,
                        "clip the flow's gradient to this global L2 norm (0 = off)"),
  FG_PARAM_SPEC_CHOICE ("schedule", "cosine", "constant|cosine|step|wilson",
                        "learning-rate schedule over training, stepped every iteration: cosine "
                        "with floor (authors' tabular cosLr), step ÷10 at 50 % and 80 % (toys), "
                        "wilson"),
  FG_PARAM_SPEC_DOUBLE ("lr_floor", NULL, 0.0, 1.0,
                        "floor factor of cosine/wilson (default 1e-3 and 0.01)"),
  FG_PARAM_SPEC_DOUBLE ("step_gamma", "0.1", 1e-12, 1.0, "decay factor of the step schedule"),
  FG_PARAM_SPEC_CHOICE ("means", "random", "random|tabular|circle|data|given",
                        "placement of the mixture means: r·N(0, I) (paper, images, toys); the "
                        "authors' tabular rule; a circle; r × class means of the labeled latents "
                        "(App. B); means_values"),
  FG_PARAM_SPEC_DOUBLE ("means_r", "1.0", 0.0, INFINITY,
                        "r: scale (random, data) or radius (circle)"),
  FG_PARAM_SPEC_DOUBLE ("means_angle", "0", -INFINITY, INFINITY,
                        "circle: angle of class 0 in degrees; class k at angle + 360·k/K"),
  FG_PARAM_SPEC_STRING ("means_values", NULL,
                        "given means: K rows separated by ';' of D numbers separated by ','"),
  FG_PARAM_SPEC_BOOL ("means_trainable", "false", "learn the means (App. B; own Adam at gmm_lr)"),
  FG_PARAM_SPEC_DOUBLE ("sigma", "1.0", 1e-6, INFINITY,
                        "standard deviation σ of every component (1: paper, images, toys; the "
                        "authors' tabular runs use softplus(1) = 1.3132616875182228)"),
  FG_PARAM_SPEC_BOOL ("sigma_trainable", "false",
                      "learn σ = softplus(c) (own Adam at gmm_lr)"),
  FG_PARAM_SPEC_DOUBLE ("gmm_lr", "1e-2", 1e-12, INFINITY,
                        "learning rate of trainable means/σ (authors: 1e-2, constant)"),
  FG_PARAM_SPEC_DOUBLE ("input_noise", "0", 0.0, INFINITY,
                        "standard deviation of Gaussian noise added to the inputs of perturbed "
                        "passes (flowgmm-cons's x′ and x″)"),
  FG_PARAM_SPEC_INT ("predict_batch", "1024", 1, INFINITY, "rows per evaluation chunk"),
  FG_PARAM_SPEC_DOUBLE ("max_loss", NULL, -INFINITY, INFINITY,
                        "stop as diverged when the loss exceeds this (NaN and ±inf always stop)"),
  FG_PARAM_SPEC_PATH ("checkpoint", NULL,
                      "save the trained weights (flow and mixture) here; \"{seed}\" is replaced "
                      "by the cell's seed"),
  FG_PARAM_SPEC_PATH ("init_checkpoint", NULL,
                      "load the weights from this checkpoint before training (\"{seed}\" as "
                      "above); with epochs = 0 the method only evaluates it"),
  FG_PARAM_SPEC_END,
};

typedef enum { ORDER_FIXED, ORDER_SHUFFLE, ORDER_SAMPLE } UnlabeledOrder;

typedef struct {
  /* Configuration. */
  const FgComponent *flow_c, *loss_c;
  FgParams *flow_params, *loss_params;
  gboolean labeled_only;
  gint64 epochs, iterations;
  gsize labeled_batch, unlabeled_batch, predict_batch;
  UnlabeledOrder order;
  FgOptimKind optimizer;
  double lr, weight_decay, clip, step_gamma, lr_floor;
  FgScheduleKind schedule;
  FgGmmMeansInit means;
  double means_r, means_angle, sigma, gmm_lr, input_noise, max_loss;
  char *means_values, *checkpoint, *init_checkpoint;
  gboolean means_trainable, sigma_trainable;
  FgRng rng; /* the cell's stream (copied) */

  /* The trained model. */
  gpointer loss;
  gpointer flow;
  FgWeightSet *flow_weights, *gmm_weights;
  FgGmm *gmm;
  FgTape *tape;
  FgSampleShape shape;
  gsize D;
  guint K;
  gboolean fitted;
} Trainer;

static const FgFlowVTable *
flow_vt (const Trainer *self)
{
  return self->flow_c->vtable;
}

static const FgLossVTable *
loss_vt (const Trainer *self)
{
  return self->loss_c->vtable;
}

static void
trainer_destroy (gpointer data)
{
  Trainer *self = data;
  if (self == NULL)
    return;
  if (self->flow != NULL)
    flow_vt (self)->destroy (self->flow);
  if (self->loss != NULL)
    loss_vt (self)->destroy (self->loss);
  g_clear_pointer (&self->gmm, fg_gmm_free);
  g_clear_pointer (&self->flow_weights, fg_weight_set_free);
  g_clear_pointer (&self->gmm_weights, fg_weight_set_free);
  g_clear_pointer (&self->tape, fg_tape_free);
  g_clear_pointer (&self->flow_params, fg_params_free);
  g_clear_pointer (&self->loss_params, fg_params_free);
  g_free (self->means_values);
  g_free (self->checkpoint);
  g_free (self->init_checkpoint);
  g_free (self);
}

/* The component bound to COMPONENT parameter `key` and a copy of its parameters. */
static gboolean
resolve_component (const FgParams *params, const char *key, FgKind kind,
                   const FgComponent **component, FgParams **sub, GError **error)
{
  const FgComponent *c = fg_params_get_resolved_component (params, key);
  const FgParams *given = fg_params_get_component (params, key);
  if (c == NULL || given == NULL || c->kind != kind)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "flowgmm: %s: the %s component '%s' is not resolved (resolve the method's "
                   "parameters with fg_registry_resolve_params () after setting them)",
                   key, fg_kind_to_string (kind), fg_params_get_string (params, key));
      return FALSE;
    }
  *component = c;
  *sub = fg_params_copy (given);
  return TRUE;
}

static gpointer
trainer_create (const FgParams *params, FgRng *rng, GError **error)
{
  Trainer *self = g_new0 (Trainer, 1);
  const char *s;

  if (!resolve_component (params, "flow", FG_KIND_FLOW, &self->flow_c, &self->flow_params, error)
      || !resolve_component (params, "loss", FG_KIND_LOSS, &self->loss_c, &self->loss_params,
                             error))
    {
      trainer_destroy (self);
      return NULL;
    }
  self->loss = loss_vt (self)->create (self->loss_params, error);
  if (self->loss == NULL)
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the loss gave no reason");
      g_prefix_error (error, "flowgmm: loss '%s': ", self->loss_c->name);
      trainer_destroy (self);
      return NULL;
    }

  self->labeled_only = fg_params_get_bool (params, "labeled_only");
  self->epochs = fg_params_get_int (params, "epochs");
  self->iterations = fg_params_get_int (params, "iterations");
  self->labeled_batch = (gsize) fg_params_get_int (params, "labeled_batch");
  self->unlabeled_batch = (gsize) fg_params_get_int (params, "unlabeled_batch");
  self->predict_batch = (gsize) fg_params_get_int (params, "predict_batch");
  s = fg_params_get_string (params, "unlabeled_order");
  self->order = g_strcmp0 (s, "shuffle") == 0  ? ORDER_SHUFFLE
                : g_strcmp0 (s, "sample") == 0 ? ORDER_SAMPLE
                                               : ORDER_FIXED;
  self->optimizer = g_strcmp0 (fg_params_get_string (params, "optimizer"), "adam") == 0
                        ? FG_OPTIM_ADAM
                        : FG_OPTIM_ADAMW;
  self->lr = fg_params_get_double (params, "lr");
  self->weight_decay = fg_params_get_double (params, "weight_decay");
  self->clip = fg_params_get_double (params, "clip");
  if (!fg_schedule_kind_from_string (fg_params_get_string (params, "schedule"), &self->schedule,
                                     error)
      || !fg_gmm_means_init_from_string (fg_params_get_string (params, "means"), &self->means,
                                         error))
    {
      g_prefix_error (error, "flowgmm: ");
      trainer_destroy (self);
      return NULL;
    }
  self->lr_floor = fg_params_has (params, "lr_floor") ? fg_params_get_double (params, "lr_floor")
                                                      : NAN;
  self->step_gamma = fg_params_get_double (params, "step_gamma");
  self->means_r = fg_params_get_double (params, "means_r");
  self->means_angle = fg_params_get_double (params, "means_angle") * G_PI / 180.0;
  self->means_values = g_strdup (fg_params_get_string (params, "means_values"));
  self->means_trainable = fg_params_get_bool (params, "means_trainable");
  self->sigma = fg_params_get_double (params, "sigma");
  self->sigma_trainable = fg_params_get_bool (params, "sigma_trainable");
  self->gmm_lr = fg_params_get_double (params, "gmm_lr");
  self->input_noise = fg_params_get_double (params, "input_noise");
  self->max_loss = fg_params_has (params, "max_loss") ? fg_params_get_double (params, "max_loss")
                                                      : INFINITY;
  self->checkpoint = g_strdup (fg_params_get_string (params, "checkpoint"));
  self->init_checkpoint = g_strdup (fg_params_get_string (params, "init_checkpoint"));
  if (self->means == FG_GMM_MEANS_GIVEN && self->means_values == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "flowgmm: means = given needs means_values");
      trainer_destroy (self);
      return NULL;
    }
  if (rng != NULL)
    self->rng = *rng;
  else
    fg_rng_init (&self->rng, 0, fg_rng_stream_id ("flowgmm"));
  return self;
}

/* ======================================================================================== */
/* Checkpoints: the flow's and the mixture's weights in one file                              */
/* ======================================================================================== */

/* A set with the same names and shapes as the model's weights (values copied when `copy`). */
static FgWeightSet *
combined_set (const Trainer *self, gboolean copy)
{
  FgWeightSet *all = fg_weight_set_new ();
  const FgWeightSet *sets[2] = { self->flow_weights, self->gmm_weights };
  for (guint s = 0; s < 2; s++)
    for (guint i = 0; i < fg_weight_set_len (sets[s]); i++)
      {
        const FgWeight *w = fg_weight_set_get (sets[s], i);
        FgWeight *c = fg_weight_set_add (all, w->name, w->value.ndim, w->value.shape, w->decay);
        if (copy)
          fg_tensor_copy_into (&c->value, &w->value);
      }
  return all;
}

static gboolean
save_checkpoint (const Trainer *self, const char *path, GError **error)
{
  g_autoptr (FgWeightSet) all = combined_set (self, TRUE);
  return fg_weight_set_save (all, path, error);
}

static gboolean
load_checkpoint (Trainer *self, const char *path, GError **error)
{
  g_autoptr (FgWeightSet) all = combined_set (self, FALSE);
  FgWeightSet *sets[2] = { self->flow_weights, self->gmm_weights };
  if (!fg_weight_set_load (all, path, error))
    return FALSE;
  for (guint s = 0; s < 2; s++)
    for (guint i = 0; i < fg_weight_set_len (sets[s]); i++)
      {
        FgWeight *w = fg_weight_set_get (sets[s], i);
        fg_tensor_copy_into (&w->value, &fg_weight_set_lookup (all, w->name)->value);
      }
  /* A trainable σ lives in its raw weight; a fixed one stays as configured. */
  if (!self->sigma_trainable)
    fg_gmm_set_sigma (self->gmm, self->sigma);
  return TRUE;
}

/* ======================================================================================== */
/* Evaluation                                                                                 */
/* ======================================================================================== */

/* Latents of rows [0, n) of x in evaluation mode, chunk by chunk; `each` receives every chunk's
 * z and log|det ∂f/∂x| ([rows, 1]), valid until the next chunk.  `what` names the public
 * entry for errors (it needs a fitted model); NULL during fit. */
typedef void (*LatentFunc) (const Trainer *self, gsize start, const FgTensor *z,
                            const FgTensor *logdet, gpointer data);

static gboolean
for_each_latent (Trainer *self, const FgTensor *x, const char *what, LatentFunc each,
                 gpointer data, GError **error)
{
  const gsize n = fg_tensor_rows (x);
  gboolean grad_was, ok = TRUE;
  FgFlowRun run;
  if (what != NULL && !self->fitted)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "flowgmm: %s before fit", what);
      return FALSE;
    }
  if (fg_tensor_cols (x) != self->D)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "flowgmm: fitted on %" G_GSIZE_FORMAT " features, asked about %" G_GSIZE_FORMAT,
                   self->D, fg_tensor_cols (x));
      return FALSE;
    }
  grad_was = fg_tape_get_grad_enabled (self->tape);
  memset (&run, 0, sizeof run);
  run.train = FALSE;
  run.rng = &self->rng;
  fg_tape_set_grad_enabled (self->tape, FALSE);
  for (gsize start = 0; start < n && ok; start += self->predict_batch)
    {
      const gsize rows = MIN (self->predict_batch, n - start);
      FgTensor view = fg_tensor_view_rows (x, start, rows);
      FgVar *xv, *z, *logdet = NULL;
      fg_tape_reset (self->tape);
      xv = fg_tensor_is_contiguous (&view) ? fg_tape_constant (self->tape, &view)
                                           : fg_tape_constant_copy (self->tape, &view);
      z = flow_vt (self)->forward (self->flow, self->tape, xv, &run, &logdet, error);
      if (z == NULL)
        {
          if (error != NULL && *error == NULL)
            g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the flow gave no result");
          g_prefix_error (error, "flow '%s': ", self->flow_c->name);
          ok = FALSE;
          break;
        }
      each (self, start, &z->value, &logdet->value, data);
    }
  fg_tape_reset (self->tape);
  fg_tape_set_grad_enabled (self->tape, grad_was);
  return ok;
}

typedef struct {
  gint32 *labels;
  float *proba;
} PredictOut;

static void
predict_chunk (const Trainer *self, gsize start, const FgTensor *z, const FgTensor *logdet,
              gpointer data)
{
  PredictOut *o = data;
  fg_gmm_predict (self->gmm, z, o->labels + start,
                  o->proba != NULL ? o->proba + start * self->K : NULL);
}

static gboolean
trainer_predict (gpointer data, const FgTensor *x, gint32 *labels_out, float *proba_out,
                 GError **error)
{
  Trainer *self = data;
  PredictOut o = { labels_out, proba_out };
  return for_each_latent (self, x, "predict", predict_chunk, &o, error);
}

/* log p(x) = log p_Z(f(x)) + log|det ∂f/∂x| per row, from the chunk's latents and log-dets. */
static void
density_chunk (const Trainer *self, gsize start, const FgTensor *z, const FgTensor *logdet,
               gpointer data)
{
  double *out = (double *) data + start;
  const gsize n = fg_tensor_rows (z);
  FgTensor z2 = fg_tensor_wrap_2d (z->data, n, self->D);
  fg_gmm_log_prob (self->gmm, &z2, out);
  for (gsize i = 0; i < n; i++)
    out[i] += (double) fg_tensor_row (logdet, i)[0];
}

static gboolean
trainer_log_density (gpointer data, const FgTensor *x, double *out, GError **error)
{
  Trainer *self = data;
  return for_each_latent (self, x, "log_density", density_chunk, out, error);
}

/* Copy each chunk's latents into rows of a caller matrix (dim floats per row). */
static void
copy_chunk (const Trainer *self, gsize start, const FgTensor *z, const FgTensor *logdet,
              gpointer data)
{
  float *out = data;
  for (gsize i = 0; i < fg_tensor_rows (z); i++)
    memcpy (out + (start + i) * self->D, fg_tensor_row (z, i), self->D * sizeof (float));
}

/* z = f(x) in evaluation mode (the latent space of figures and of the Bayes classifier). */
static gboolean
trainer_embed (gpointer data, const FgTensor *x, float *z_out, GError **error)
{
  Trainer *self = data;
  return for_each_latent (self, x, "embed", copy_chunk, z_out, error);
}

/* z ~ N(μ_k, T·σ² I) (k < 0: k uniform per sample), then x = f⁻¹(z) unless `latent`
 * (App. H: class-conditional samples at temperature T). */
static gboolean
trainer_sample (gpointer data, gint k, gsize n, gboolean latent, double temperature, FgRng *rng,
                float *out, GError **error)
{
  Trainer *self = data;
  const float *mu;
  double sd;
  if (!self->fitted)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "flowgmm: sample before fit");
      return FALSE;
    }
  if (k >= (gint) self->K || !(temperature >= 0.0) || rng == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "flowgmm: sample of class %d (of %u) at temperature %g", k, self->K,
                   temperature);
      return FALSE;
    }
  mu = fg_gmm_get_means (self->gmm)->value.data;
  sd = sqrt (temperature) * fg_gmm_get_sigma (self->gmm);
  for (gsize i = 0; i < n; i++)
    {
      const guint c = k >= 0 ? (guint) k : (guint) fg_rng_below (rng, self->K);
      float *z = out + i * self->D;
      for (gsize j = 0; j < self->D; j++)
        z[j] = (float) (mu[(gsize) c * self->D + j] + sd * fg_rng_normal (rng));
    }
  if (latent)
    return TRUE;

  /* x = f⁻¹(z), chunk by chunk, in place. */
  {
    const gboolean grad_was = fg_tape_get_grad_enabled (self->tape);
    gboolean ok = TRUE;
    fg_tape_set_grad_enabled (self->tape, FALSE);
    for (gsize start = 0; start < n && ok; start += self->predict_batch)
      {
        const gsize rows = MIN (self->predict_batch, n - start);
        gsize shape[FG_TENSOR_MAX_DIMS];
        FgTensor zt;
        FgVar *x;
        shape[0] = rows;
        for (guint d = 0; d < self->shape.ndim; d++)
          shape[d + 1] = self->shape.dims[d];
        zt = fg_tensor_wrap (out + start * self->D, self->shape.ndim + 1, shape);
        fg_tape_reset (self->tape);
        x = flow_vt (self)->inverse (self->flow, self->tape, fg_tape_constant (self->tape, &zt),
                                     error);
        if (x == NULL)
          {
            if (error != NULL && *error == NULL)
              g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the flow's inverse gave no result");
            g_prefix_error (error, "flow '%s': ", self->flow_c->name);
            ok = FALSE;
            break;
          }
        for (gsize i = 0; i < rows; i++)
          memcpy (out + (start + i) * self->D, fg_tensor_row (&x->value, i),
                  self->D * sizeof (float));
      }
    fg_tape_reset (self->tape);
    fg_tape_set_grad_enabled (self->tape, grad_was);
    return ok;
  }
}

/* Data-dependent means (App. B): copy the labeled latents, then average per class. */
static void
collect_chunk (const Trainer *self, gsize start, const FgTensor *z, const FgTensor *logdet,
              gpointer data)
{
  FgTensor *all = data;
  FgTensor dst = fg_tensor_view_rows (all, start, fg_tensor_rows (z));
  for (gsize i = 0; i < fg_tensor_rows (z); i++)
    memcpy (fg_tensor_row (&dst, i), fg_tensor_row (z, i), self->D * sizeof (float));
}

static gboolean
init_means_from_data (Trainer *self, const FgSplit *split, FgRng *rng, GError **error)
{
  g_autoptr (FgTensor) z = fg_tensor_new_2d (MAX (split->labeled.n, 1), self->D);
  FgTensor zv = fg_tensor_view_rows (z, 0, split->labeled.n);
  guint missing = 0;
  if (split->labeled.n > 0
      && !for_each_latent (self, &split->labeled.x, NULL, collect_chunk, &zv, error))
    return FALSE;
  fg_gmm_init_means_from_latents (self->gmm, &zv, split->labeled.y, self->means_r, rng, &missing);
  if (missing > 0)
    g_message ("flowgmm: %u of %u classes have no labeled point: their means are random",
               missing, self->K);
  return TRUE;
}

/* ======================================================================================== */
/* Training state: what a run needs to go on exactly where it stopped                        */
/* ======================================================================================== */

/* Everything of fit () that changes from step to step, besides the weights and optimizers. */
typedef struct {
  guint64 step;        /* steps done */
  guint64 lpos;        /* position in the labeled cycle */
  guint64 epoch_steps; /* steps in the current progress window */
  double epoch_loss;
  guint64 total_steps, n_l, pool_n; /* what the state was made for (checked on load) */
  FgRng *order_rng, *batch_rng, *aug_rng;
  guint32 *lperm, *uperm;
} TrainState;

#define STATE_FILE "flowgmm-state.fgw"

static void
rng_pack (const FgRng *r, guint64 out[6])
{
  memcpy (out, r->s, sizeof r->s);
  memcpy (&out[4], &r->spare_normal, sizeof (double));
  out[5] = r->has_spare ? 1 : 0;
}

static void
rng_unpack (const guint64 in[6], FgRng *r)
{
  memcpy (r->s, in, sizeof r->s);
  memcpy (&r->spare_normal, &in[4], sizeof (double));
  r->has_spare = in[5] != 0;
}

/* The model's weights (copied), the optimizers' moments and the loop's state in one set; the
 * same structure for saving and for loading. */
static FgWeightSet *
state_set (const Trainer *self, const TrainState *ts, const FgOptimizer *opt,
           const FgOptimizer *gmm_opt)
{
  FgWeightSet *set = combined_set (self, TRUE);
  const guint64 counters[6] = { ts->step, ts->lpos, ts->epoch_steps, ts->total_steps, ts->n_l,
                                ts->pool_n };
  const FgRng *rngs[4] = { &self->rng, ts->order_rng, ts->batch_rng, ts->aug_rng };
  guint64 packed[4][6];
  for (guint i = 0; i < 4; i++)
    rng_pack (rngs[i], packed[i]);
  fg_weight_set_add_bytes (set, "state/counters", counters, sizeof counters);
  fg_weight_set_add_bytes (set, "state/epoch-loss", &ts->epoch_loss, sizeof ts->epoch_loss);
  fg_weight_set_add_bytes (set, "state/rngs", packed, sizeof packed);
  fg_weight_set_add_bytes (set, "state/labeled-order", ts->lperm, ts->n_l * sizeof (guint32));
  fg_weight_set_add_bytes (set, "state/unlabeled-order", ts->uperm,
                           ts->pool_n * sizeof (guint32));
  fg_optimizer_save_state (opt, set, "optimizer/flow/");
  if (gmm_opt != NULL)
    fg_optimizer_save_state (gmm_opt, set, "optimizer/gmm/");
  return set;
}

static gboolean
state_save (const Trainer *self, const TrainState *ts, const FgOptimizer *opt,
            const FgOptimizer *gmm_opt, const char *path, GError **error)
{
  g_autoptr (FgWeightSet) set = state_set (self, ts, opt, gmm_opt);
  return fg_weight_set_save (set, path, error);
}

/* Restore a state saved by state_save (); on error nothing of the run has changed. */
static gboolean
state_load (Trainer *self, TrainState *ts, FgOptimizer *opt, FgOptimizer *gmm_opt,
            const char *path, GError **error)
{
  g_autoptr (FgWeightSet) set = state_set (self, ts, opt, gmm_opt);
  FgWeightSet *model[2] = { self->flow_weights, self->gmm_weights };
  FgRng *rngs[4] = { &self->rng, ts->order_rng, ts->batch_rng, ts->aug_rng };
  guint64 counters[6], packed[4][6];

  if (!fg_weight_set_load (set, path, error))
    return FALSE;
  fg_weight_get_bytes (fg_weight_set_lookup (set, "state/counters"), counters, sizeof counters);
  if (counters[3] != ts->total_steps || counters[4] != ts->n_l || counters[5] != ts->pool_n
      || counters[0] > ts->total_steps)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "training state '%s' was made for %" G_GUINT64_FORMAT " steps over %"
                   G_GUINT64_FORMAT " labeled and %" G_GUINT64_FORMAT " pool rows, this run has "
                   "%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT
                   " (delete it to start afresh)",
                   path, counters[3], counters[4], counters[5], ts->total_steps, ts->n_l,
                   ts->pool_n);
      return FALSE;
    }
  if (!fg_optimizer_load_state (opt, set, "optimizer/flow/", error)
      || (gmm_opt != NULL && !fg_optimizer_load_state (gmm_opt, set, "optimizer/gmm/", error)))
    {
      g_prefix_error (error, "training state '%s': ", path);
      return FALSE;
    }
  for (guint s = 0; s < 2; s++)
    for (guint i = 0; i < fg_weight_set_len (model[s]); i++)
      {
        FgWeight *w = fg_weight_set_get (model[s], i);
        fg_tensor_copy_into (&w->value, &fg_weight_set_lookup (set, w->name)->value);
      }
  ts->step = counters[0];
  ts->lpos = counters[1];
  ts->epoch_steps = counters[2];
  fg_weight_get_bytes (fg_weight_set_lookup (set, "state/epoch-loss"), &ts->epoch_loss,
                       sizeof ts->epoch_loss);
  fg_weight_get_bytes (fg_weight_set_lookup (set, "state/rngs"), packed, sizeof packed);
  for (guint i = 0; i < 4; i++)
    rng_unpack (packed[i], rngs[i]);
  fg_weight_get_bytes (fg_weight_set_lookup (set, "state/labeled-order"), ts->lperm,
                       ts->n_l * sizeof (guint32));
  fg_weight_get_bytes (fg_weight_set_lookup (set, "state/unlabeled-order"), ts->uperm,
                       ts->pool_n * sizeof (guint32));
  return TRUE;
}

/* "1h02m", "3m05s", "12s" (no heap: progress lines are made inside the training loop). */
static void
format_duration (char *buf, gsize size, double seconds)
{
  if (!isfinite (seconds) || seconds < 0)
    g_strlcpy (buf, "?", size);
  else if (seconds >= 3600)
    g_snprintf (buf, size, "%dh%02dm", (int) (seconds / 3600), (int) fmod (seconds / 60, 60));
  else if (seconds >= 60)
    g_snprintf (buf, size, "%dm%02ds", (int) (seconds / 60), (int) fmod (seconds, 60));
  else
    g_snprintf (buf, size, "%.0fs", seconds);
}

/* ======================================================================================== */
/* Training                                                                                   */
/* ======================================================================================== */

/* The rows a step may draw unlabeled points from. */
typedef struct {
  const float **rows;
  gsize n;
} Pool;

static void
pool_add (Pool *p, const FgDataPart *part)
{
  for (gsize i = 0; i < part->n; i++)
    p->rows[p->n++] = fg_tensor_row (&part->x, i);
}

static gboolean
check_finite_step (const Trainer *self, double value, const char *what, guint64 step,
                   guint64 steps_per_epoch, GError **error)
{
  if (isfinite (value) && (g_strcmp0 (what, "loss") != 0 || value <= self->max_loss))
    return TRUE;
  g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
               "diverged at epoch %" G_GUINT64_FORMAT " step %" G_GUINT64_FORMAT
               " (iteration %" G_GUINT64_FORMAT "): the %s is %g%s",
               step / steps_per_epoch + 1, step % steps_per_epoch + 1, step + 1, what, value,
               isfinite (value) ? " (above max_loss)" : "");
  return FALSE;
}

static gboolean
check_labels (const FgDataPart *part, guint K, GError **error)
{
  for (gsize i = 0; i < part->n; i++)
    if (part->y[i] < 0 || (guint) part->y[i] >= K)
      {
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "flowgmm: labeled row %" G_GSIZE_FORMAT " has label %d outside [0, %u)", i,
                     part->y[i], K);
        return FALSE;
      }
  return TRUE;
}

static gboolean
build_model (Trainer *self, const FgSplit *split, GError **error)
{
  FgRng init_rng, means_rng;
  fg_rng_fork (&self->rng, fg_rng_stream_id ("flow-init"), &init_rng);
  fg_rng_fork (&self->rng, fg_rng_stream_id ("gmm-means"), &means_rng);

  self->K = split->n_classes;
  self->D = split->dim;
  self->shape = split->shape;
  self->flow_weights = fg_weight_set_new ();
  self->gmm_weights = fg_weight_set_new ();
  self->tape = fg_tape_new ();
  /* each step clips by the global norm: take it during backward (fg_tape_grad_norm) */
  fg_tape_set_track_grad_norms (self->tape, TRUE);
  self->flow = flow_vt (self)->create (self->flow_params, &split->shape, self->flow_weights,
                                       &init_rng, error);
  if (self->flow == NULL)
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the flow gave no reason");
      g_prefix_error (error, "flow '%s': ", self->flow_c->name);
      return FALSE;
    }
  self->gmm = fg_gmm_new (self->K, self->D, self->sigma, self->gmm_weights);
  fg_gmm_set_trainable (self->gmm, self->means_trainable, self->sigma_trainable);

  if (self->init_checkpoint != NULL)
    {
      g_autofree char *path = fg_path_expand_seed (self->init_checkpoint, split->seed);
      if (!load_checkpoint (self, path, error))
        {
          g_prefix_error (error, "init_checkpoint: ");
          return FALSE;
        }
      return TRUE;
    }
  switch (self->means)
    {
    case FG_GMM_MEANS_GIVEN:
      return fg_gmm_set_means_from_string (self->gmm, self->means_values, error);
    case FG_GMM_MEANS_DATA:
      return init_means_from_data (self, split, &means_rng, error);
    case FG_GMM_MEANS_RANDOM:
    case FG_GMM_MEANS_TABULAR:
    case FG_GMM_MEANS_CIRCLE:
    default:
      fg_gmm_init_means (self->gmm, self->means, self->means_r, self->means_angle, &means_rng);
      return TRUE;
    }
}

/* The flow's optional init () on the batch x, in training mode, with its own RNG stream. */
static gboolean
flow_init_from_batch (Trainer *self, const FgTensor *x, GError **error)
{
  FgRng init_rng;
  FgFlowRun run;
  gboolean ok;
  memset (&run, 0, sizeof run);
  fg_rng_fork (&self->rng, fg_rng_stream_id ("flow-data-init"), &init_rng);
  run.train = TRUE;
  run.rng = &init_rng;
  fg_tape_reset (self->tape);
  ok = flow_vt (self)->init (self->flow, self->tape, fg_tape_constant (self->tape, x), &run,
                             error);
  fg_tape_reset (self->tape);
  if (!ok)
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the flow's init gave no reason");
      g_prefix_error (error, "flow '%s': ", self->flow_c->name);
    }
  return ok;
}

/* Data-parallel step, after each rank's backward on its slice: agree on the loss and on whether
 * to go on (a rank whose loss or backward failed, or an interrupted run, stops every rank at the
 * same step), then sum the gradients over the group.  `value` is this rank's share of the loss
 * (NaN when it failed, with `local` saying why); *total the whole batch's loss. */
static gboolean
group_step (Trainer *self, const FgGroup *group, const FgSplit *split, double value,
            GError **local, gsize step, gsize steps_per_epoch, float *scratch,
            gboolean gmm_trainable, double *total, GError **error)
{
  double agree[3];
  agree[0] = isnan (value) ? 0.0 : value;
  agree[1] = isnan (value) ? 1.0 : 0.0;
  agree[2] = fg_split_cancelled (split) ? 1.0 : 0.0;
  if (!fg_group_sum_doubles (group, agree, 3, error))
    {
      g_clear_error (local);
      return FALSE;
    }
  if (agree[2] > 0)
    {
      g_clear_error (local);
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "cancelled at iteration %" G_GSIZE_FORMAT,
                   step + 1);
      return FALSE;
    }
  if (agree[1] > 0)
    {
      if (*local != NULL)
        g_propagate_prefixed_error (error, g_steal_pointer (local),
                                    "loss '%s' at iteration %" G_GSIZE_FORMAT ": ",
                                    self->loss_c->name, step + 1);
      else
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED,
                     "loss '%s' at iteration %" G_GSIZE_FORMAT ": failed on %g other rank(s) "
                     "of the data-parallel group", self->loss_c->name, step + 1, agree[1]);
      return FALSE;
    }
  *total = agree[0];
  if (!check_finite_step (self, *total, "loss", step, steps_per_epoch, error))
    return FALSE;
  if (!fg_group_sum_grads (group, self->flow_weights, scratch, error)
      || (gmm_trainable && !fg_group_sum_grads (group, self->gmm_weights, scratch, error)))
    return FALSE;
  return TRUE;
}

/* FNV-1a over the bits of every weight: equal on every rank of a data-parallel group. */
static guint64
weights_checksum (const Trainer *self)
{
  const FgWeightSet *sets[2] = { self->flow_weights, self->gmm_weights };
  guint64 h = G_GUINT64_CONSTANT (14695981039346656037);
  for (guint s = 0; s < 2; s++)
    for (guint i = 0; i < fg_weight_set_len (sets[s]); i++)
      {
        const FgWeight *w = fg_weight_set_get (sets[s], i);
        const guint8 *p = (const guint8 *) w->value.data;
        const gsize n = fg_tensor_numel (&w->value) * sizeof (float);
        for (gsize k = 0; k < n; k++)
          h = (h ^ p[k]) * G_GUINT64_CONSTANT (1099511628211);
      }
  return h;
}

static gboolean
trainer_fit (gpointer data, const FgSplit *split, GError **error)
{
  Trainer *self = data;
  const gsize n_l = split->labeled.n;
  gsize n_lb, n_ub, steps_per_epoch, total_steps, dim;
  g_autofree const float **pool_rows = NULL;
  g_autofree guint32 *lperm = NULL, *uperm = NULL;
  g_autofree float *xbuf = NULL;
  g_autofree gint32 *ybuf = NULL;
  g_autoptr (FgOptimizer) opt = NULL, gmm_opt = NULL;
  g_autoptr (FgLossBatch) batch = NULL;
  FgRng order_rng, batch_rng;
  const FgGroup *group = fg_split_get_group (split);
  const guint n_ranks = fg_group_get_size (group), rank = fg_group_get_rank (group);
  g_autofree float *grad_scratch = NULL;
  FgOptimConfig cfg;
  FgSchedule sched;
  Pool pool = { NULL, 0 };
  const FgAugment *aug = fg_augment_active (split->augment) ? split->augment : NULL;
  FgRng aug_rng = { { 0 } };
  g_autofree float *x2buf = NULL;
  g_autofree const float **src_rows = NULL;
  g_autofree char *state_path = NULL;
  TrainState ts = { 0 };
  gsize start_step;
  gint64 t_start, t_last_save, t_last_report;
  double nll_sum = 0.0;
  gsize nll_n = 0, rows_done = 0;
  const FgResume *rs = split->resume;
  const gboolean show_bpd = split->preprocessing == NULL
                            || g_strcmp0 (split->preprocessing->description, "none") == 0;

  g_return_val_if_fail (self != NULL && split != NULL, FALSE);
  if (self->fitted)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "flowgmm: fit called twice");
      return FALSE;
    }
  if (split->n_classes < 1 || split->dim == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "flowgmm: no classes or empty examples");
      return FALSE;
    }
  if (n_l > 0 && (split->labeled.y == NULL || !check_labels (&split->labeled, split->n_classes,
                                                             error)))
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_DATA, "flowgmm: labeled points without labels");
      return FALSE;
    }
  if (!build_model (self, split, error))
    return FALSE;
  dim = self->D;

  /* The unlabeled pool: the split's unlabeled set (its key unlabeled_pool adds the labeled and
   * validation inputs, for every method alike). */
  if (!self->labeled_only)
    {
      pool_rows = g_new (const float *, MAX (split->unlabeled.n, 1));
      pool.rows = pool_rows;
      pool_add (&pool, &split->unlabeled);
    }
  if (n_l == 0 && pool.n == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "flowgmm: no training data (%s)",
                   self->labeled_only ? "labeled_only with no labeled point" : "empty split");
      return FALSE;
    }

  /* Batch sizes and the length of training. */
  n_lb = self->labeled_batch == 0 ? n_l : MIN (self->labeled_batch, n_l);
  n_ub = pool.n == 0 ? 0
         : self->order == ORDER_SAMPLE ? self->unlabeled_batch
                                       : MIN (self->unlabeled_batch, pool.n);
  if (pool.n > 0)
    steps_per_epoch = (pool.n + self->unlabeled_batch - 1) / self->unlabeled_batch;
  else
    steps_per_epoch = (n_l + n_lb - 1) / n_lb;
  total_steps = self->iterations > 0 ? (gsize) self->iterations
                                     : (gsize) self->epochs * steps_per_epoch;

  /* Buffers: everything a step touches is allocated here. */
  xbuf = g_new (float, MAX ((n_lb + n_ub) * dim, 1));
  src_rows = g_new (const float *, MAX (n_lb + n_ub, 1));
  if (aug != NULL)
    x2buf = g_new (float, MAX ((n_lb + n_ub) * dim, 1));
  ybuf = g_new (gint32, MAX (n_lb, 1));
  lperm = g_new (guint32, MAX (n_l, 1));
  uperm = g_new (guint32, MAX (pool.n, 1));
  for (gsize i = 0; i < n_l; i++)
    lperm[i] = (guint32) i;
  for (gsize i = 0; i < pool.n; i++)
    uperm[i] = (guint32) i;
  fg_rng_fork (&self->rng, fg_rng_stream_id ("batch-order"), &order_rng);
  fg_rng_fork (&self->rng, fg_rng_stream_id ("batch-noise"), &batch_rng);
  if (aug != NULL)
    fg_rng_fork (&self->rng, fg_rng_stream_id ("augment"), &aug_rng);
  if (n_ranks > 1)
    {
      /* Data-parallel: every rank draws the same batches (order_rng) and takes its slice; the
       * slices get their own dropout masks and noise; gradients are summed over the group
       * before each step, so the norm is taken after that sum. */
      FgRng base = batch_rng;
      if (rank > 0)
        fg_rng_fork (&base, rank, &batch_rng);
      fg_tape_set_track_grad_norms (self->tape, FALSE);
      grad_scratch = g_new (float, MAX (MAX (fg_weight_set_numel (self->flow_weights),
                                             fg_weight_set_numel (self->gmm_weights)),
                                        1));
    }

  fg_optim_config_init (&cfg, self->optimizer);
  cfg.weight_decay = self->weight_decay;
  opt = fg_optimizer_new (&cfg, self->flow_weights);
  if (self->means_trainable || self->sigma_trainable)
    {
      FgOptimConfig gcfg;
      fg_optim_config_init (&gcfg, FG_OPTIM_ADAM);
      gmm_opt = fg_optimizer_new (&gcfg, self->gmm_weights);
    }
  fg_schedule_init (&sched, self->schedule, (double) total_steps);
  sched.gamma = self->step_gamma;
  if (!isnan (self->lr_floor))
    sched.floor = self->lr_floor;

  fg_weight_set_zero_grad (self->flow_weights);
  batch = fg_loss_batch_new (self->gmm, flow_vt (self), self->flow, &batch_rng);
  fg_loss_batch_set_input_noise (batch, self->input_noise);

  /* Resume from the cell's saved training state, if any. */
  ts.total_steps = total_steps;
  ts.n_l = n_l;
  ts.pool_n = pool.n;
  ts.order_rng = &order_rng;
  ts.batch_rng = &batch_rng;
  ts.aug_rng = &aug_rng;
  ts.lperm = lperm;
  ts.uperm = uperm;
  if (rs != NULL && rs->dir != NULL
      && (rs->every_steps > 0 || rs->every_minutes > 0 || rs->run_steps > 0))
    state_path = g_build_filename (rs->dir, STATE_FILE, NULL);
  if (state_path != NULL && g_file_test (state_path, G_FILE_TEST_EXISTS))
    {
      if (!state_load (self, &ts, opt, gmm_opt, state_path, error))
        return FALSE;
      if (rank > 0)
        {
          /* The state is rank 0's (it writes it): this rank's masks and noise go on from a
           * stream of their own forked from it (exact only for flows that draw none). */
          FgRng base = batch_rng;
          fg_rng_fork (&base, rank, &batch_rng);
        }
      g_message ("flowgmm: resuming at step %" G_GUINT64_FORMAT " of %" G_GSIZE_FORMAT
                 " from %s", ts.step, total_steps, state_path);
    }
  start_step = (gsize) ts.step;
  t_start = t_last_save = t_last_report = g_get_monotonic_time ();

  for (gsize step = start_step; step < total_steps; step++)
    {
      const gsize b = step % steps_per_epoch;
      const double epoch = (double) step / (double) steps_per_epoch;
      gsize nu = 0, nl = n_lb;
      FgVar *loss;
      FgTensor x;
      gsize shape[FG_TENSOR_MAX_DIMS];
      GError *local = NULL;
      double value, norm;

      if (n_ranks == 1 && fg_split_cancelled (split))
        {
          /* Keep what was done: the next run goes on from here. */
          if (state_path != NULL && step > start_step)
            {
              ts.step = step;
              if (!state_save (self, &ts, opt, gmm_opt, state_path, error))
                return FALSE;
            }
          g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "cancelled at iteration %" G_GSIZE_FORMAT,
                       step + 1);
          return FALSE;
        }

      /* Labeled rows: all of them, or the next n_lb of a reshuffled cycle (authors' icycle). */
      if (n_lb == n_l)
        for (gsize i = 0; i < n_l; i++)
          {
            src_rows[i] = fg_tensor_row (&split->labeled.x, i);
            ybuf[i] = split->labeled.y[i];
          }
      else
        for (gsize i = 0; i < n_lb; i++)
          {
            if (ts.lpos == 0)
              fg_rng_shuffle (&order_rng, lperm, n_l);
            src_rows[i] = fg_tensor_row (&split->labeled.x, lperm[ts.lpos]);
            ybuf[i] = split->labeled.y[lperm[ts.lpos]];
            ts.lpos = (ts.lpos + 1) % n_l;
          }

      /* Unlabeled rows. */
      if (n_ub > 0)
        {
          const float **dst = src_rows + nl;
          if (self->order == ORDER_SAMPLE)
            {
              nu = n_ub;
              for (gsize i = 0; i < nu; i++)
                dst[i] = pool.rows[fg_rng_below (&order_rng, pool.n)];
            }
          else
            {
              const gsize start = b * self->unlabeled_batch;
              if (self->order == ORDER_SHUFFLE && b == 0)
                fg_rng_shuffle (&order_rng, uperm, pool.n);
              nu = MIN (self->unlabeled_batch, pool.n - start);
              for (gsize i = 0; i < nu; i++)
                dst[i] = pool.rows[uperm[start + i]];
            }
        }

      /* The step's rows, augmented when the split asks for it: x′ for training and, drawn
       * after all of x′, an independent x″ of the same rows (the authors' TransformTwice). */
      for (gsize i = 0; i < nl + nu; i++)
        fg_augment_apply (aug, &self->shape, src_rows[i], xbuf + i * dim, &aug_rng);
      if (aug != NULL)
        for (gsize i = 0; i < nl + nu; i++)
          fg_augment_apply (aug, &self->shape, src_rows[i], x2buf + i * dim, &aug_rng);

      shape[0] = nl + nu;
      for (guint d = 0; d < self->shape.ndim; d++)
        shape[d + 1] = self->shape.dims[d];
      x = fg_tensor_wrap (xbuf, self->shape.ndim + 1, shape);

      /* A flow with a data-dependent initialisation sees the first batch once (not when its
       * weights come from a checkpoint). */
      if (step == 0 && self->init_checkpoint == NULL
          && FG_VTABLE_HAS (flow_vt (self), FgFlowVTable, init)
          && !flow_init_from_batch (self, &x, error))
        return FALSE;

      fg_tape_reset (self->tape);
      if (n_ranks > 1)
        {
          /* This rank's slice: rows [a, e) of the step's nl + nu rows (labeled first), so each
           * rank holds at least one row as long as the batch has as many rows as the group. */
          const gsize n_all = nl + nu;
          const gsize a = n_all * rank / n_ranks, e = n_all * (rank + 1) / n_ranks;
          FgTensor slice;
          if (n_all < n_ranks)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                           "flowgmm: a batch of %" G_GSIZE_FORMAT " rows cannot be split over %u "
                           "ranks (ranks_per_cell)", n_all, n_ranks);
              return FALSE;
            }
          slice = fg_tensor_view_rows (&x, a, e - a);
          fg_loss_batch_begin (batch, self->tape, &slice, a < nl ? MIN (nl, e) - a : 0,
                               a < nl ? ybuf + a : NULL);
          if (aug != NULL)
            {
              FgTensor x2 = fg_tensor_wrap (x2buf, self->shape.ndim + 1, shape);
              FgTensor slice2 = fg_tensor_view_rows (&x2, a, e - a);
              fg_loss_batch_set_second_view (batch, &slice2);
            }
          fg_loss_batch_set_group (batch, group, nl, nu);
        }
      else
        {
          fg_loss_batch_begin (batch, self->tape, &x, nl, ybuf);
          if (aug != NULL)
            {
              FgTensor x2 = fg_tensor_wrap (x2buf, self->shape.ndim + 1, shape);
              fg_loss_batch_set_second_view (batch, &x2);
            }
        }
      fg_loss_batch_set_progress (batch, step, epoch, (double) total_steps / steps_per_epoch);
      loss = loss_vt (self)->compute (self->loss, batch, &local);
      if (loss == NULL && n_ranks == 1)
        {
          if (local == NULL)
            g_set_error (&local, FG_ERROR, FG_ERROR_FAILED, "the loss gave no result");
          g_propagate_prefixed_error (error, local,
                                      "loss '%s' at epoch %" G_GSIZE_FORMAT " step %" G_GSIZE_FORMAT
                                      ": ",
                                      self->loss_c->name, step / steps_per_epoch + 1, b + 1);
          return FALSE;
        }
      value = loss != NULL ? loss->value.data[0] : NAN;
      if (n_ranks == 1 && !check_finite_step (self, value, "loss", step, steps_per_epoch, error))
        return FALSE;
      {
        const double nll = fg_loss_batch_get_mean_nll (batch);
        if (isfinite (nll))
          {
            nll_sum += nll;
            nll_n++;
          }
      }

      /* The flow's gradients are zero here: cleared before the loop, then by each update. */
      fg_weight_set_zero_grad (self->gmm_weights);
      if (loss != NULL && !fg_tape_backward (self->tape, loss, &local))
        {
          if (n_ranks == 1)
            {
              g_propagate_prefixed_error (error, local,
                                          "backward at iteration %" G_GSIZE_FORMAT ": ", step + 1);
              return FALSE;
            }
          loss = NULL;
        }
      if (n_ranks > 1)
        {
          if (!group_step (self, group, split, loss != NULL ? value : NAN, &local, step,
                           steps_per_epoch, grad_scratch, gmm_opt != NULL, &value, error))
            return FALSE;
          norm = fg_weight_set_grad_norm (self->flow_weights);
        }
      else
        norm = fg_tape_grad_norm (self->tape, self->flow_weights);
      /* Clip, update and clear in one pass over the weights: the backward pass (or the group's
       * sum) has given the gradient norm (a non-finite norm updates nothing and stops the run). */
      norm = fg_optimizer_step_clip_norm (opt, self->lr * fg_schedule_factor (&sched, (double) step),
                                          norm, self->clip, TRUE);
      if (!check_finite_step (self, norm, "flow's gradient norm", step, steps_per_epoch, error))
        return FALSE;
      if (gmm_opt != NULL)
        {
          norm = fg_weight_set_grad_norm (self->gmm_weights);
          if (!check_finite_step (self, norm, "mixture's gradient norm", step, steps_per_epoch,
                                  error))
            return FALSE;
          fg_optimizer_step (gmm_opt, self->gmm_lr);
        }

      ts.epoch_loss += value;
      ts.epoch_steps++;
      rows_done += nl + nu;
      {
        const gint64 now = g_get_monotonic_time ();
        const gsize done = step + 1;
        gboolean stop;
        /* A line per epoch, and every few seconds within long epochs. */
        if (b == steps_per_epoch - 1 || done == total_steps || now - t_last_report >= 5000000)
          {
            char what[256], bpd[32] = "", rate[64] = "", left[32];
            const double secs = (double) (now - t_start) / 1e6;
            if (show_bpd && nll_n > 0)
              g_snprintf (bpd, sizeof bpd, " bits/dim %.4f",
                          (nll_sum / (double) nll_n + (double) dim * log (256.0))
                              / ((double) dim * G_LN2));
            if (secs > 0 && done > start_step)
              {
                format_duration (left, sizeof left,
                                 secs / (double) (done - start_step)
                                     * (double) (total_steps - done));
                g_snprintf (rate, sizeof rate, " %.1f samples/s, %s left",
                            (double) rows_done / secs, left);
              }
            g_snprintf (what, sizeof what,
                        "step %" G_GSIZE_FORMAT "/%" G_GSIZE_FORMAT " epoch %" G_GSIZE_FORMAT
                        "/%.4g loss %.6g%s%s",
                        done, total_steps, step / steps_per_epoch + 1,
                        (double) total_steps / steps_per_epoch,
                        ts.epoch_loss / (double) ts.epoch_steps, bpd, rate);
            fg_split_report_progress (split, (double) done / (double) total_steps, what);
            t_last_report = now;
            nll_sum = 0.0;
            nll_n = 0;
            if (b == steps_per_epoch - 1 || done == total_steps)
              {
                ts.epoch_loss = 0.0;
                ts.epoch_steps = 0;
              }
          }

        /* Save the training state at the end of a step (everything of the next one is in it). */
        stop = state_path != NULL && rs->run_steps > 0 && done - start_step >= rs->run_steps
               && done < total_steps;
        /* In a data-parallel group every rank holds the same state: the first one writes it. */
        if (state_path != NULL && rank == 0
            && (stop || done == total_steps
                || (rs->every_steps > 0 && done % rs->every_steps == 0)
                || (rs->every_minutes > 0
                    && (double) (now - t_last_save) >= rs->every_minutes * 60e6)))
          {
            ts.step = done;
            if (!state_save (self, &ts, opt, gmm_opt, state_path, error))
              {
                g_prefix_error (error, "flowgmm: ");
                return FALSE;
              }
            t_last_save = g_get_monotonic_time ();
          }
        if (stop)
          {
            g_set_error (error, FG_ERROR, FG_ERROR_INTERRUPTED,
                         "flowgmm: stopped after %" G_GUINT64_FORMAT " steps of this run "
                         "(run_steps) at step %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                         "; the next run resumes from %s",
                         rs->run_steps, done, total_steps, state_path);
            return FALSE;
          }
      }
    }
  fg_tape_reset (self->tape);
  self->fitted = TRUE;

  if (n_ranks > 1)
    g_debug ("flowgmm: rank %u of %u: parameters checksum %016" G_GINT64_MODIFIER "x", rank,
             n_ranks, weights_checksum (self));
  /* In a data-parallel group every rank holds the same weights: the first one writes them. */
  if (self->checkpoint != NULL && rank == 0)
    {
      g_autofree char *path = fg_path_expand_seed (self->checkpoint, split->seed);
      if (!save_checkpoint (self, path, error))
        {
          g_prefix_error (error, "checkpoint: ");
          return FALSE;
        }
    }
  return TRUE;
}

static const FgBaselineVTable trainer_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = trainer_create,
  .fit = trainer_fit,
  .predict = trainer_predict,
  .destroy = trainer_destroy,
  .embed = trainer_embed,
  .sample = trainer_sample,
  .log_density = trainer_log_density,
};

static const FgComponent trainer_components[] = {
  { FG_KIND_BASELINE, "flowgmm",
    "FlowGMM: a normalizing flow with a Gaussian-mixture latent, one component per class",
    trainer_params, &trainer_vtable, { 0 } },
  { 0 },
};

const FgPluginInfo _fg_trainer_plugin_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "core",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "Methods built into libflowgmm",
  .components = trainer_components,
};
