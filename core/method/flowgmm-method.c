/* SPDX-License-Identifier: MIT */
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
#include <flowgmm/neighbors.h>

#include "loader/builtins.h"

/* ======================================================================================== */
/* Parameters                                                                                 */
/* ======================================================================================== */

static const FgParamSpec trainer_params[] = {
  FG_PARAM_SPEC_COMPONENT ("flow", "realnvp-mlp", "flow",
                           "the flow f; configure it with flow.* keys"),
  FG_PARAM_SPEC_COMPONENT ("loss", "flowgmm-cons", "loss",
                           "the objective (flowgmm-nll, flowgmm-cons, flowgmm-em); loss.* keys "
                           "(default flowgmm-cons: the consistency term regularises best on "
                           "vector data; the authors' tabular runs use flowgmm-nll)"),
  FG_PARAM_SPEC_BOOL ("labeled_only", "false",
                      "train on the labeled points only (the supervised FlowGMM of the paper)"),
  FG_PARAM_SPEC_INT ("epochs", "15", 0, 1e9,
                     "passes over the unlabeled pool (over the labeled points when there is "
                     "none or labeled_only); authors' tabular default 15.  Used when given; "
                     "when neither epochs nor iterations is given, training takes "
                     "default_iterations steps"),
  FG_PARAM_SPEC_INT ("iterations", "0", 0, 1e12,
                     "when > 0, train for exactly this many steps instead of `epochs` (toys: "
                     "2001 or 5001)"),
  FG_PARAM_SPEC_INT ("default_iterations", "1000", 1, 1e12,
                     "steps when neither epochs nor iterations is given"),
  FG_PARAM_SPEC_CHOICE ("refit", "em", "none|em",
                        "em: between training phases, refit the mixture to the latents (App. "
                        "A's M-step: labeled latents by their class, unlabeled ones by their "
                        "responsibilities) — means unless means_trainable or a given placement, "
                        "σ unless sigma is given or trainable"),
  FG_PARAM_SPEC_INT ("refit_every", "0", 0, 1e12,
                     "steps between refits and validation checks; 0: a tenth of training"),
  FG_PARAM_SPEC_INT ("refit_max_rows", "4096", 1, 1e9,
                     "unlabeled rows (an even spread of the pool) a refit looks at"),
  FG_PARAM_SPEC_BOOL ("early_stopping", "true",
                      "keep the model (flow and mixture) with the best validation accuracy "
                      "among the checks every refit_every steps and the end; needs validation "
                      "points, else the last model is kept"),
  FG_PARAM_SPEC_INT ("labeled_batch", "0", 0, INFINITY,
                     "labeled points per step; 0 = all of them every step (authors' tabular); "
                     "smaller batches cycle through reshuffled labeled points"),
  FG_PARAM_SPEC_INT ("unlabeled_batch", "256", 1, INFINITY,
                     "unlabeled points per step (authors' tabular 5000)"),
  FG_PARAM_SPEC_CHOICE ("unlabeled_order", "shuffle", "fixed|shuffle|sample",
                        "fixed: consecutive batches in pool order (authors' tabular); shuffle: "
                        "a new permutation every epoch; sample: with replacement (toy notebooks)"),
  FG_PARAM_SPEC_CHOICE ("optimizer", "adamw", "adamw|adam",
                        "AdamW (decoupled decay, authors' tabular) or Adam (L2 decay)"),
  FG_PARAM_SPEC_DOUBLE ("lr", "1e-3", 1e-12, INFINITY, "learning rate of the flow"),
  FG_PARAM_SPEC_DOUBLE ("weight_decay", "1e-3", 0.0, INFINITY,
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
  FG_PARAM_SPEC_CHOICE ("means", "data", "random|tabular|circle|data|given",
                        "placement of the mixture means: r·N(0, I) (paper, images, toys); the "
                        "authors' tabular rule; a circle; r × class means of the labeled latents "
                        "(App. B); means_values"),
  FG_PARAM_SPEC_DOUBLE ("means_r", "1.0", 0.0, INFINITY,
                        "r: scale (random, data) or radius (circle)"),
  FG_PARAM_SPEC_DOUBLE ("means_angle", "0", -INFINITY, INFINITY,
                        "circle: angle of class 0 in degrees; class k at angle + 360·k/K"),
  FG_PARAM_SPEC_STRING ("means_values", NULL,
                        "given means: K rows separated by ';' of D numbers separated by ','"),
  FG_PARAM_SPEC_BOOL ("means_trainable", NULL,
                      "learn the means (App. B; own Adam at gmm_lr); unset: true with means = "
                      "data, else false"),
  FG_PARAM_SPEC_DOUBLE ("sigma", NULL, 1e-6, INFINITY,
                        "standard deviation σ of every component (1: paper, images, toys; the "
                        "authors' tabular runs use softplus(1) = 1.3132616875182228); unset: "
                        "the pooled within-class spread of the labeled latents with means = "
                        "data, else 1"),
  FG_PARAM_SPEC_BOOL ("sigma_trainable", "false",
                      "learn σ = softplus(c) (own Adam at gmm_lr)"),
  FG_PARAM_SPEC_DOUBLE ("gmm_lr", "1e-2", 1e-12, INFINITY,
                        "learning rate of trainable means/σ (authors: 1e-2, constant)"),
  FG_PARAM_SPEC_DOUBLE ("input_noise", "0", 0.0, INFINITY,
                        "standard deviation of Gaussian noise added to the inputs of perturbed "
                        "passes (flowgmm-cons's x′ and x″)"),
  FG_PARAM_SPEC_CHOICE ("graph", "none", "none|smooth",
                        "smooth: at every phase, the current model's responsibilities of the "
                        "unlabeled pool are smoothed over a k-nearest-neighbour graph of the pool "
                        "and the labeled rows (labeled rows clamped to their class; LapGMM's "
                        "Laplacian-regularised E-step) and become the soft targets of the "
                        "unlabeled term and the weights of the EM refit"),
  FG_PARAM_SPEC_INT ("graph_k", "10", 1, 100000,
                     "neighbours per row of the graph (graph, graph_predict, "
                     "neighbor_consistency)"),
  FG_PARAM_SPEC_CHOICE ("graph_weights", "local", "unit|local",
                        "edge weights: 1, or exp(−‖xi−xj‖²/(σi σj)) with σi the distance to "
                        "the k-th neighbour (local scaling)"),
  FG_PARAM_SPEC_DOUBLE ("graph_alpha", "0.99", 0.0, 0.999999,
                        "weight α of the neighbours in F ← αSF + (1−α)P"),
  FG_PARAM_SPEC_INT ("graph_iterations", "50", 0, 100000,
                     "products with S per smoothing"),
  FG_PARAM_SPEC_DOUBLE ("graph_prior", "1", 0.0, 1.0,
                        "weight of the model's responsibilities in the prior P of an unlabeled "
                        "row (labeled rows: 1); 0 gives plain label spreading's targets"),
  FG_PARAM_SPEC_CHOICE ("graph_predict", "auto", "auto|true|false",
                      "auto: true for vector examples with at most 20000 training rows (pool "
                      "and labeled), else false.  true: predict p(y|x) ∝ α·mean of the smoothed distributions F of x's graph_k "
                      "nearest training rows + (1−α)·w·p_flow(y|x), F smoothed from the trained "
                      "model's responsibilities weighted by w; the flow alone or w from {1, 0.3, "
                      "0.1, 0}, whichever predicts the validation rows best (ties: the earlier; "
                      "w = graph_prior without validation rows)"),
  FG_PARAM_SPEC_BOOL ("neighbor_consistency", "false",
                      "flowgmm-cons: the pseudo-label of an unlabeled row comes from a random "
                      "one of its graph_k nearest neighbours in data space (x″) instead of a "
                      "second perturbation of the row itself"),
  FG_PARAM_SPEC_INT ("predict_batch", "1024", 1, INFINITY, "rows per evaluation chunk"),
  FG_PARAM_SPEC_DOUBLE ("max_loss", NULL, -INFINITY, INFINITY,
                        "stop as diverged when the loss exceeds this (NaN and ±inf always stop)"),
  FG_PARAM_SPEC_PATH ("checkpoint", NULL,
                      "save the trained weights (flow and mixture) here; \"{seed}\" is replaced "
                      "by the cell's seed"),
  FG_PARAM_SPEC_PATH ("init_checkpoint", NULL,
                      "load the weights from this checkpoint, or from a training state "
                      "(OUT/resume/*/flowgmm-state.fgw), before training (\"{seed}\" as "
                      "above); with epochs = 0 the method only evaluates it"),
  FG_PARAM_SPEC_END,
};

typedef enum { ORDER_FIXED, ORDER_SHUFFLE, ORDER_SAMPLE } UnlabeledOrder;

/* graph_predict = auto: on for vector examples with at most this many graph rows */
#define GRAPH_AUTO_MAX_ROWS 20000
typedef enum { GRAPH_PREDICT_AUTO, GRAPH_PREDICT_ON, GRAPH_PREDICT_OFF } GraphPredict;

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
  gboolean sigma_auto, refit_em, early_stopping;
  gint64 default_iterations, refit_every, refit_max_rows;
  gboolean graph_smooth, neighbor_cons;
  GraphPredict graph_predict;
  gsize graph_k;
  FgKnnWeight graph_weights;
  double graph_alpha, graph_prior;
  guint graph_iterations;
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
  /* graph_predict: the training rows' index, their smoothed distributions and w */
  FgNeighborIndex *gindex;
  FgKnnGraph *graph;
  float *gF;
  double gw;
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
  g_clear_pointer (&self->gindex, fg_neighbor_index_free);
  g_clear_pointer (&self->graph, fg_knn_graph_free);
  g_free (self->gF);
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
  self->default_iterations = fg_params_get_int (params, "default_iterations");
  if (self->iterations == 0 && fg_params_is_default (params, "epochs"))
    self->iterations = self->default_iterations;
  self->refit_em = g_strcmp0 (fg_params_get_string (params, "refit"), "em") == 0;
  self->refit_every = fg_params_get_int (params, "refit_every");
  self->refit_max_rows = fg_params_get_int (params, "refit_max_rows");
  self->early_stopping = fg_params_get_bool (params, "early_stopping");
  self->graph_smooth = g_strcmp0 (fg_params_get_string (params, "graph"), "smooth") == 0;
  self->graph_k = (gsize) fg_params_get_int (params, "graph_k");
  self->graph_weights = g_strcmp0 (fg_params_get_string (params, "graph_weights"), "unit") == 0
                          ? FG_KNN_WEIGHT_UNIT
                          : FG_KNN_WEIGHT_LOCAL;
  self->graph_alpha = fg_params_get_double (params, "graph_alpha");
  self->graph_prior = fg_params_get_double (params, "graph_prior");
  self->graph_iterations = (guint) fg_params_get_int (params, "graph_iterations");
  self->neighbor_cons = fg_params_get_bool (params, "neighbor_consistency");
  s = fg_params_get_string (params, "graph_predict");
  self->graph_predict = g_strcmp0 (s, "true") == 0 ? GRAPH_PREDICT_ON
                        : g_strcmp0 (s, "false") == 0 ? GRAPH_PREDICT_OFF
                                                      : GRAPH_PREDICT_AUTO;
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
  self->means_trainable = fg_params_has (params, "means_trainable")
                            ? fg_params_get_bool (params, "means_trainable")
                            : self->means == FG_GMM_MEANS_DATA;
  /* σ unset: estimated with means = data, else 1 */
  self->sigma_auto = !fg_params_has (params, "sigma") && self->means == FG_GMM_MEANS_DATA;
  self->sigma = fg_params_has (params, "sigma") ? fg_params_get_double (params, "sigma") : 1.0;
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

/* σ = softplus(raw) in double, the value a checkpoint's float raw weight stands for. */
static double
softplus_of_raw (float raw)
{
  double r = raw;
  return r > 30.0 ? r : log1p (exp (r));
}

/* Fix an estimated σ at a value its float raw weight reproduces exactly, so that a model
 * reloaded from a checkpoint computes the same numbers. */
static void
set_estimated_sigma (Trainer *self, double sigma)
{
  fg_gmm_set_sigma (self->gmm, sigma);
  self->sigma = softplus_of_raw (fg_gmm_get_sigma_raw (self->gmm)->value.data[0]);
  fg_gmm_set_sigma (self->gmm, self->sigma);
  fg_gmm_set_trainable (self->gmm, self->means_trainable, self->sigma_trainable);
}

static gboolean
load_checkpoint (Trainer *self, const char *path, GError **error)
{
  g_autoptr (FgWeightSet) all = combined_set (self, FALSE);
  FgWeightSet *sets[2] = { self->flow_weights, self->gmm_weights };
  /* A subset: a training state (OUT/resume/…/flowgmm-state.fgw) holds the weights too. */
  if (!fg_weight_set_load_subset (all, path, error))
    return FALSE;
  for (guint s = 0; s < 2; s++)
    for (guint i = 0; i < fg_weight_set_len (sets[s]); i++)
      {
        FgWeight *w = fg_weight_set_get (sets[s], i);
        fg_tensor_copy_into (&w->value, &fg_weight_set_lookup (all, w->name)->value);
      }
  /* A trainable σ lives in its raw weight; a fixed one stays as configured. */
  if (!self->sigma_trainable && self->sigma_auto)
    set_estimated_sigma (self, softplus_of_raw (fg_gmm_get_sigma_raw (self->gmm)->value.data[0]));
  else if (!self->sigma_trainable)
    fg_gmm_set_sigma (self->gmm, self->sigma);
  return TRUE;
}

/* ======================================================================================== */
/* Evaluation                                                                                 */
/* ======================================================================================== */

/* x has the model's width and, unless `what` is NULL (during fit), the model is fitted. */
static gboolean
check_input (const Trainer *self, const FgTensor *x, const char *what, GError **error)
{
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
  return TRUE;
}

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
  if (!check_input (self, x, what, error))
    return FALSE;
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

/* A row of class probabilities that is not finite (a latent that overflowed) becomes uniform:
 * smoothing would spread it over the graph. */
static void
sanitize_rows (float *p, gsize n, guint K)
{
  for (gsize i = 0; i < n; i++)
    {
      gboolean ok = TRUE;
      for (guint k = 0; k < K && ok; k++)
        ok = isfinite (p[i * K + k]);
      if (!ok)
        for (guint k = 0; k < K; k++)
          p[i * K + k] = 1.0f / (float) K;
    }
}

/* graph_predict: rows [0, n) of `proba` (the flow's p(y|x), n × K) become
 * normalise(α · Σ_j ω_ij F[nb_ij] / Σ_j ω_ij + (1 − α) · w · proba_i), nb the k nearest
 * training rows of each row at squared distances d2, ω their edge weights; labels the argmax
 * (ties to the smaller class). */
static void
graph_combine (const Trainer *self, const FgKnnGraph *graph, const float *F, double w,
               const guint32 *nb, const float *d2, gsize n, float *proba, gint32 *labels)
{
  const guint K = self->K;
  const gsize k = self->graph_k;
  const double a = self->graph_alpha;
  g_autofree double *p = g_new (double, K), *om = g_new (double, k);
  for (gsize i = 0; i < n; i++)
    {
      double sum = 0.0, osum = 0.0;
      float *pi = proba + i * K;
      guint best = 0;
      fg_knn_graph_query_weights (graph, d2 + i * k, nb + i * k, om);
      for (gsize j = 0; j < k; j++)
        osum += om[j];
      for (guint c = 0; c < K; c++)
        p[c] = (1.0 - a) * w * pi[c];
      for (gsize j = 0; j < k && osum > 0.0; j++)
        {
          const float *fj = F + (gsize) nb[i * k + j] * K;
          for (guint c = 0; c < K; c++)
            p[c] += a * om[j] / osum * fj[c];
        }
      for (guint c = 0; c < K; c++)
        sum += p[c];
      for (guint c = 0; c < K; c++)
        {
          pi[c] = sum > 0.0 ? (float) (p[c] / sum) : 1.0f / (float) K;
          if (pi[c] > pi[best])
            best = c;
        }
      if (labels != NULL)
        labels[i] = (gint32) best;
    }
}

static gboolean
trainer_predict (gpointer data, const FgTensor *x, gint32 *labels_out, float *proba_out,
                 GError **error)
{
  Trainer *self = data;
  const gsize n = fg_tensor_rows (x);
  g_autofree float *own = NULL;
  g_autofree guint32 *nb = NULL;
  g_autofree float *d2 = NULL;
  PredictOut o = { labels_out, proba_out };
  if (self->gindex == NULL)
    return for_each_latent (self, x, "predict", predict_chunk, &o, error);
  if (o.proba == NULL)
    o.proba = own = g_new (float, MAX (n, 1) * self->K);
  if (!for_each_latent (self, x, "predict", predict_chunk, &o, error))
    return FALSE;
  sanitize_rows (o.proba, n, self->K);
  nb = g_new (guint32, self->predict_batch * self->graph_k);
  d2 = g_new (float, self->predict_batch * self->graph_k);
  for (gsize start = 0; start < n; start += self->predict_batch)
    {
      const gsize rows = MIN (self->predict_batch, n - start);
      g_autoptr (FgTensor) chunk = fg_tensor_new_2d (rows, self->D);
      for (gsize i = 0; i < rows; i++)
        memcpy (fg_tensor_row (chunk, i), fg_tensor_row (x, start + i),
                self->D * sizeof (float));
      if (!fg_neighbor_index_query (self->gindex, chunk, self->graph_k, nb, d2, error))
        return FALSE;
      graph_combine (self, self->graph, self->gF, self->gw, nb, d2, rows,
                     o.proba + start * self->K, labels_out + start);
    }
  return TRUE;
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

static gboolean decode_in_place (Trainer *self, float *out, gsize n, GError **error);

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
  return decode_in_place (self, out, n, error);
}

/* x = f⁻¹(z) for the n latents in buf, chunk by chunk, in place. */
static gboolean
decode_in_place (Trainer *self, float *out, gsize n, GError **error)
{
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

/* ---- analysis (doc/analysis.md) ---------------------------------------------------------- */

/* log p(x, k) = log N(f(x); μ_k, σ²I) − log K + log|det ∂f/∂x|, K per row. */
static void
joint_chunk (const Trainer *self, gsize start, const FgTensor *z, const FgTensor *logdet,
             gpointer data)
{
  double *out = (double *) data + start * self->K;
  const gsize n = fg_tensor_rows (z);
  const double log_k = log ((double) self->K);
  FgTensor z2 = fg_tensor_wrap_2d (z->data, n, self->D);
  fg_gmm_log_prob_components (self->gmm, &z2, out);
  for (gsize i = 0; i < n; i++)
    for (guint k = 0; k < self->K; k++)
      out[i * self->K + k] += (double) fg_tensor_row (logdet, i)[0] - log_k;
}

static gboolean
trainer_log_joint (gpointer data, const FgTensor *x, double *out, GError **error)
{
  Trainer *self = data;
  return for_each_latent (self, x, "log_joint", joint_chunk, out, error);
}

static gboolean
trainer_latent_means (gpointer data, float *means_out, GError **error)
{
  Trainer *self = data;
  if (!self->fitted)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "flowgmm: latent_means before fit");
      return FALSE;
    }
  memcpy (means_out, fg_gmm_get_means (self->gmm)->value.data,
          (gsize) self->K * self->D * sizeof (float));
  return TRUE;
}

/* h = f_{:layer}(x) of rows [start, start + rows) of x, on the trainer's tape (evaluation). */
static FgVar *
partial_forward (Trainer *self, const FgTensor *x, gsize start, gsize rows, guint layer,
                 GError **error)
{
  FgTensor view = fg_tensor_view_rows (x, start, rows);
  FgFlowRun run;
  FgVar *xv;
  memset (&run, 0, sizeof run);
  run.rng = &self->rng;
  xv = fg_tensor_is_contiguous (&view) ? fg_tape_constant (self->tape, &view)
                                       : fg_tape_constant_copy (self->tape, &view);
  return flow_vt (self)->forward_to (self->flow, self->tape, xv, layer, &run, error);
}

/* Per-example groups of a layer's activation: channels of an image-shaped activation
 * [N, C, H, W] (σ_c over examples and positions), single features of a flat one. */
static void
activation_groups (const FgTensor *h, gsize *n_groups, gsize *group_len)
{
  const gsize per = fg_tensor_cols (h);
  if (h->ndim == 4)
    {
      *n_groups = h->shape[1];
      *group_len = per / h->shape[1];
    }
  else
    {
      *n_groups = per;
      *group_len = 1;
    }
}

/* Eq. 8: x(α) = f_{:ℓ}⁻¹(f_{:ℓ}(x) + α σ_c δ_c), σ_c the standard deviation of group c of layer
 * ℓ over x_ref. */
static gboolean
trainer_feature_inversion (gpointer data, const FgTensor *x_ref, const FgTensor *x, guint layer,
                           gsize channel, const double *alphas, gsize n_alphas, float *out,
                           double *sigma_out, GError **error)
{
  Trainer *self = data;
  const FgFlowVTable *fvt = flow_vt (self);
  const gsize n = fg_tensor_rows (x), n_ref = fg_tensor_rows (x_ref);
  const gboolean grad_was = fg_tape_get_grad_enabled (self->tape);
  double sum = 0, sq = 0, count = 0, sigma;
  gsize n_groups = 0, group_len = 0;
  gboolean ok = FALSE;

  if (!check_input (self, x, "feature_inversion", error)
      || !check_input (self, x_ref, "feature_inversion", error))
    return FALSE;
  if (!FG_VTABLE_HAS (fvt, FgFlowVTable, forward_to)
      || !FG_VTABLE_HAS (fvt, FgFlowVTable, inverse_from))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "flowgmm: the flow '%s' cannot run part of its layers (no forward_to and "
                   "inverse_from)", self->flow_c->name);
      return FALSE;
    }
  if (n_ref < 2)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "flowgmm: feature_inversion needs at least 2 reference rows for σ_c");
      return FALSE;
    }
  fg_tape_set_grad_enabled (self->tape, FALSE);
  /* σ_c over the reference rows (two passes would need the activations twice: one pass of
   * sums in double is enough at these sizes). */
  for (gsize start = 0; start < n_ref; start += self->predict_batch)
    {
      const gsize rows = MIN (self->predict_batch, n_ref - start);
      FgVar *h;
      fg_tape_reset (self->tape);
      h = partial_forward (self, x_ref, start, rows, layer, error);
      if (h == NULL)
        goto out;
      activation_groups (&h->value, &n_groups, &group_len);
      if (channel >= n_groups)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "flowgmm: feature %" G_GSIZE_FORMAT " of layer %u, which has %"
                       G_GSIZE_FORMAT " (expected 0..%" G_GSIZE_FORMAT ")",
                       channel, layer, n_groups, n_groups - 1);
          goto out;
        }
      for (gsize i = 0; i < rows; i++)
        {
          const float *row = fg_tensor_row (&h->value, i) + channel * group_len;
          for (gsize j = 0; j < group_len; j++)
            {
              sum += row[j];
              sq += (double) row[j] * row[j];
              count++;
            }
        }
    }
  sigma = sqrt (MAX (sq / count - (sum / count) * (sum / count), 0.0));
  if (sigma_out != NULL)
    *sigma_out = sigma;

  for (gsize a = 0; a < n_alphas; a++)
    for (gsize start = 0; start < n; start += self->predict_batch)
      {
        const gsize rows = MIN (self->predict_batch, n - start);
        FgVar *h, *xr;
        fg_tape_reset (self->tape);
        h = partial_forward (self, x, start, rows, layer, error);
        if (h == NULL)
          goto out;
        activation_groups (&h->value, &n_groups, &group_len);
        for (gsize i = 0; i < rows; i++)
          {
            float *row = fg_tensor_row (&h->value, i) + channel * group_len;
            for (gsize j = 0; j < group_len; j++)
              row[j] += (float) (alphas[a] * sigma);
          }
        xr = fvt->inverse_from (self->flow, self->tape, h, layer, error);
        if (xr == NULL)
          goto out;
        for (gsize i = 0; i < rows; i++)
          memcpy (out + (a * n + start + i) * self->D, fg_tensor_row (&xr->value, i),
                  self->D * sizeof (float));
      }
  ok = TRUE;
out:
  if (!ok && error != NULL && *error == NULL)
    g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the flow gave no result");
  if (!ok)
    g_prefix_error (error, "flow '%s': ", self->flow_c->name);
  fg_tape_reset (self->tape);
  fg_tape_set_grad_enabled (self->tape, grad_was);
  return ok;
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

/* The mixture fitted to latents (App. A's M-step with shared σ): labeled rows count for their
 * class, unlabeled rows by their responsibilities under the current mixture. */
typedef struct {
  double *sum;        /* K × D: Σ w z */
  double *w;          /* K: Σ w */
  double sq;          /* Σ w ‖z‖² */
  const gint32 *y;    /* labels of the rows, or NULL: responsibilities */
  const float *q;     /* with y NULL: given weights of the rows (rows × K), or NULL */
  gint32 *labels;     /* predict_batch (responsibilities only) */
  float *proba;       /* predict_batch × K */
} MixStats;

static void
stats_chunk (const Trainer *self, gsize start, const FgTensor *z, const FgTensor *logdet,
             gpointer data)
{
  MixStats *st = data;
  const gsize n = fg_tensor_rows (z), D = self->D;
  if (st->y == NULL && st->q == NULL)
    fg_gmm_predict (self->gmm, z, st->labels, st->proba);
  for (gsize i = 0; i < n; i++)
    {
      const float *zr = fg_tensor_row (z, i);
      double zz = 0.0;
      for (gsize j = 0; j < D; j++)
        zz += (double) zr[j] * zr[j];
      for (guint k = 0; k < self->K; k++)
        {
          double w = st->y != NULL   ? (st->y[start + i] == (gint32) k)
                     : st->q != NULL ? st->q[(start + i) * self->K + k]
                                     : st->proba[i * self->K + k];
          double *sk = st->sum + (gsize) k * D;
          if (w < 1e-8)
            continue;
          for (gsize j = 0; j < D; j++)
            sk[j] += w * zr[j];
          st->w[k] += w;
          st->sq += w * zz;
        }
    }
}

/* Refit the means (set_means) and/or σ (set_sigma) to the latents of the labeled points and of
 * `ux` (nullable), weighted by `uq` (rows × K; NULL: the current responsibilities).  σ² is the weighted within-component mean square per dimension, its
 * denominator less one per component used; too few points leave σ as it is. */
static gboolean
refit_mixture (Trainer *self, const FgSplit *split, const FgTensor *ux, const float *uq,
               gboolean set_means, gboolean set_sigma, GError **error)
{
  const gsize D = self->D;
  const guint K = self->K;
  g_autofree double *sum = g_new0 (double, (gsize) K * D);
  g_autofree double *w = g_new0 (double, K);
  g_autofree gint32 *labels = g_new (gint32, self->predict_batch);
  g_autofree float *proba = g_new (float, self->predict_batch * K);
  MixStats st = { sum, w, 0.0, split->labeled.y, NULL, labels, proba };
  double total = 0.0, within;
  guint used = 0;
  float *mu = fg_gmm_get_means (self->gmm)->value.data;

  if (split->labeled.n > 0
      && !for_each_latent (self, &split->labeled.x, NULL, stats_chunk, &st, error))
    return FALSE;
  st.y = NULL;
  st.q = uq;
  if (ux != NULL && fg_tensor_rows (ux) > 0
      && !for_each_latent (self, ux, NULL, stats_chunk, &st, error))
    return FALSE;
  within = st.sq;
  for (guint k = 0; k < K; k++)
    {
      double norm2 = 0.0;
      if (w[k] <= 0.0)
        continue;
      used++;
      total += w[k];
      for (gsize j = 0; j < D; j++)
        {
          double m = sum[(gsize) k * D + j] / w[k];
          norm2 += m * m;
          if (set_means)
            mu[(gsize) k * D + j] = (float) m;
        }
      within -= w[k] * norm2;
    }
  if (set_sigma && total - used >= 1.0 && within > 0.0)
    {
      set_estimated_sigma (self, sqrt (within / ((double) D * (total - used))));
    }
  return TRUE;
}

/* Validation accuracy of the current model (NAN without validation points). */
static gboolean
validation_accuracy (Trainer *self, const FgSplit *split, gint32 *labels, double *acc,
                     GError **error)
{
  PredictOut o = { labels, NULL };
  gsize hit = 0;
  *acc = NAN;
  if (split->validation.n == 0 || split->validation.y == NULL)
    return TRUE;
  if (!for_each_latent (self, &split->validation.x, NULL, predict_chunk, &o, error))
    return FALSE;
  for (gsize i = 0; i < split->validation.n; i++)
    hit += labels[i] == split->validation.y[i];
  *acc = (double) hit / (double) split->validation.n;
  return TRUE;
}

/* The model so far, for early stopping: the flow's and the mixture's weights and σ. */
typedef struct {
  FgWeightSet *weights; /* combined_set () copy */
  double sigma;
  double accuracy;
} Snapshot;

static void
snapshot_save (const Trainer *self, Snapshot *snap, double accuracy)
{
  const FgWeightSet *sets[2] = { self->flow_weights, self->gmm_weights };
  if (snap->weights == NULL)
    snap->weights = combined_set (self, FALSE);
  for (guint s = 0; s < 2; s++)
    for (guint i = 0; i < fg_weight_set_len (sets[s]); i++)
      {
        const FgWeight *w = fg_weight_set_get (sets[s], i);
        fg_tensor_copy_into (&fg_weight_set_lookup (snap->weights, w->name)->value, &w->value);
      }
  snap->sigma = fg_gmm_get_sigma (self->gmm);
  snap->accuracy = accuracy;
}

static void
snapshot_restore (Trainer *self, const Snapshot *snap)
{
  FgWeightSet *sets[2] = { self->flow_weights, self->gmm_weights };
  for (guint s = 0; s < 2; s++)
    for (guint i = 0; i < fg_weight_set_len (sets[s]); i++)
      {
        FgWeight *w = fg_weight_set_get (sets[s], i);
        fg_tensor_copy_into (&w->value, &fg_weight_set_lookup (snap->weights, w->name)->value);
      }
  if (!self->sigma_trainable)
    {
      self->sigma = snap->sigma;
      fg_gmm_set_sigma (self->gmm, snap->sigma);
      fg_gmm_set_trainable (self->gmm, self->means_trainable, FALSE);
    }
}

static void
snapshot_clear (Snapshot *snap)
{
  g_clear_pointer (&snap->weights, fg_weight_set_free);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Snapshot, snapshot_clear)

/* Between training phases: refit the mixture, then keep the model if validation says so. */
static gboolean
phase_check (Trainer *self, const FgSplit *split, const FgTensor *ux, const float *uq,
             gboolean refit_means, gboolean refit_sigma, gint32 *val_labels, Snapshot *best,
             GError **error)
{
  double acc;
  if ((refit_means || refit_sigma)
      && !refit_mixture (self, split, ux, uq, refit_means, refit_sigma, error))
    return FALSE;
  if (val_labels == NULL)
    return TRUE;
  if (!validation_accuracy (self, split, val_labels, &acc, error))
    return FALSE;
  g_debug ("flowgmm: phase check: validation accuracy %.4f, σ %.4g", acc,
           fg_gmm_get_sigma (self->gmm));
  if (best->weights == NULL || acc > best->accuracy)
    snapshot_save (self, best, acc);
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
  /* An estimated σ lives in its raw weight (set_estimated_sigma). */
  if (self->sigma_auto && !self->sigma_trainable)
    set_estimated_sigma (self, softplus_of_raw (fg_gmm_get_sigma_raw (self->gmm)->value.data[0]));
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
      return init_means_from_data (self, split, &means_rng, error)
             && (!self->sigma_auto
                 || refit_mixture (self, split, NULL, NULL, FALSE, TRUE, error));
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

/* Everything one fit () works on: the split, the step's buffers, the optimizers and the
 * training state, all allocated before the first step. */
typedef struct {
  Trainer          *self;
  const FgSplit    *split;
  gsize             n_l, n_lb, n_ub, steps_per_epoch, total_steps, dim;
  Pool              pool;
  const float     **pool_rows;
  guint32          *lperm, *uperm;
  float            *xbuf, *x2buf;  /* the step's inputs x′ and, when augmenting, x″ */
  const float     **src_rows;     /* the step's rows before augmentation */
  gint32           *ybuf;
  FgOptimizer      *opt, *gmm_opt;
  FgLossBatch      *batch;
  FgRng             order_rng, batch_rng, aug_rng;
  FgSchedule        sched;
  const FgAugment  *aug;
  const FgGroup    *group;        /* data-parallel training over n_ranks > 1 */
  guint             n_ranks, rank;
  float            *grad_scratch; /* for the group's gradient sums */
  const FgResume   *rs;
  char             *state_path;   /* where the training state is saved, or NULL */
  TrainState        ts;
  gsize             start_step;
  gint64            t_start, t_last_save, t_last_report;
  double            nll_sum;      /* mean NLLs since the last progress line, for bits/dim */
  gsize             nll_n, rows_done;
  gboolean          show_bpd;
  /* Phases: EM refits of the mixture and validation checks every `period` steps. */
  gsize             period;
  gboolean          refit_means, refit_sigma;
  FgTensor         *ux;           /* the unlabeled rows a refit embeds, or NULL */
  gint32           *val_labels;   /* early stopping's buffer, or NULL: no checks */
  Snapshot          best;
  /* The neighbour graph (graph, neighbor_consistency): its nodes are the pool's rows, then the
   * labeled rows. */
  FgKnnGraph       *graph;
  FgTensor         *gx;           /* the nodes' inputs */
  float            *gp, *gq;      /* nodes × K: responsibilities (prior), smoothed targets */
  gint32           *glabels;      /* nodes: scratch for predictions */
  guint8           *gclamp;       /* nodes: the labeled ones */
  guint32          *uidx;         /* pool indices of the step's unlabeled rows */
  float            *tbuf;         /* n_ub × K: the step's targets */
  float            *uq;           /* rows of ux × K: the refit's weights (graph), or NULL */
} Fit;

static void
fit_clear (Fit *f)
{
  g_free (f->pool_rows);
  g_free (f->lperm);
  g_free (f->uperm);
  g_free (f->xbuf);
  g_free (f->x2buf);
  g_free (f->src_rows);
  g_free (f->ybuf);
  g_free (f->grad_scratch);
  g_clear_pointer (&f->opt, fg_optimizer_free);
  g_clear_pointer (&f->gmm_opt, fg_optimizer_free);
  g_clear_pointer (&f->batch, fg_loss_batch_free);
  g_free (f->state_path);
  g_clear_pointer (&f->ux, fg_tensor_free);
  g_free (f->val_labels);
  snapshot_clear (&f->best);
  g_clear_pointer (&f->graph, fg_knn_graph_free);
  g_clear_pointer (&f->gx, fg_tensor_free);
  g_free (f->gp);
  g_free (f->gq);
  g_free (f->glabels);
  g_free (f->gclamp);
  g_free (f->uidx);
  g_free (f->tbuf);
  g_free (f->uq);
}

/* What fit () refuses before building anything. */
static gboolean
fit_check_split (const Trainer *self, const FgSplit *split, GError **error)
{
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
  if (split->labeled.n > 0
      && (split->labeled.y == NULL || !check_labels (&split->labeled, split->n_classes, error)))
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_DATA, "flowgmm: labeled points without labels");
      return FALSE;
    }
  return TRUE;
}

/* The unlabeled pool (the split's unlabeled set: its key unlabeled_pool adds the labeled and
 * validation inputs, for every method alike), the batch sizes and the length of training. */
static gboolean
fit_plan (Fit *f, GError **error)
{
  Trainer *self = f->self;
  const FgSplit *split = f->split;
  f->n_l = split->labeled.n;
  if (!self->labeled_only)
    {
      f->pool_rows = g_new (const float *, MAX (split->unlabeled.n, 1));
      f->pool.rows = f->pool_rows;
      pool_add (&f->pool, &split->unlabeled);
    }
  if (f->n_l == 0 && f->pool.n == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "flowgmm: no training data (%s)",
                   self->labeled_only ? "labeled_only with no labeled point" : "empty split");
      return FALSE;
    }
  f->n_lb = self->labeled_batch == 0 ? f->n_l : MIN (self->labeled_batch, f->n_l);
  f->n_ub = f->pool.n == 0 ? 0
            : self->order == ORDER_SAMPLE ? self->unlabeled_batch
                                          : MIN (self->unlabeled_batch, f->pool.n);
  if (f->pool.n > 0)
    f->steps_per_epoch = (f->pool.n + self->unlabeled_batch - 1) / self->unlabeled_batch;
  else
    f->steps_per_epoch = (f->n_l + f->n_lb - 1) / f->n_lb;
  f->total_steps = self->iterations > 0 ? (gsize) self->iterations
                                        : (gsize) self->epochs * f->steps_per_epoch;
  return TRUE;
}

/* The neighbour graph over the pool's rows and the labeled rows (graph, neighbor_consistency),
 * when there is a pool. */
static gboolean
fit_graph_init (Fit *f, GError **error)
{
  Trainer *self = f->self;
  const FgSplit *split = f->split;
  const gsize n = f->pool.n + f->n_l;
  const guint K = self->K;
  if (self->graph_predict == GRAPH_PREDICT_AUTO)
    {
      /* vectors, not too many, all finite (non-finite inputs are the training loop's to
       * report) */
      gboolean on = self->shape.ndim == 1 && n <= GRAPH_AUTO_MAX_ROWS;
      for (gsize i = 0; i < f->pool.n && on; i++)
        for (gsize j = 0; j < f->dim && on; j++)
          on = isfinite (f->pool.rows[i][j]);
      for (gsize i = 0; i < f->n_l && on; i++)
        for (gsize j = 0; j < f->dim && on; j++)
          on = isfinite (fg_tensor_row (&split->labeled.x, i)[j]);
      self->graph_predict = on ? GRAPH_PREDICT_ON : GRAPH_PREDICT_OFF;
    }
  if (!(self->graph_smooth || self->neighbor_cons || self->graph_predict == GRAPH_PREDICT_ON)
      || f->pool.n == 0)
    return TRUE;
  if (self->graph_k >= n)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "flowgmm: graph_k = %" G_GSIZE_FORMAT " needs more than %" G_GSIZE_FORMAT
                   " training rows", self->graph_k, n);
      return FALSE;
    }
  f->gx = fg_tensor_new_2d (n, f->dim);
  for (gsize i = 0; i < f->pool.n; i++)
    memcpy (fg_tensor_row (f->gx, i), f->pool.rows[i], f->dim * sizeof (float));
  for (gsize i = 0; i < f->n_l; i++)
    memcpy (fg_tensor_row (f->gx, f->pool.n + i), fg_tensor_row (&split->labeled.x, i),
            f->dim * sizeof (float));
  f->graph = fg_knn_graph_new (f->gx, self->graph_k, self->graph_weights, error);
  if (f->graph == NULL)
    {
      g_prefix_error (error, "flowgmm: ");
      return FALSE;
    }
  f->gclamp = g_new0 (guint8, n);
  for (gsize i = 0; i < f->n_l; i++)
    f->gclamp[f->pool.n + i] = 1;
  if (!self->graph_smooth)
    return TRUE;
  f->gp = g_new (float, n * K);
  f->gq = g_new (float, n * K);
  f->glabels = g_new (gint32, n);
  f->tbuf = g_new (float, MAX (f->n_ub, 1) * K);
  return TRUE;
}

/* The smoothed targets of the current model: its responsibilities on the graph's nodes (one-hot
 * for the labeled ones), smoothed; and the refit's weights of the rows of ux. */
static gboolean
fit_graph_update (Fit *f, GError **error)
{
  Trainer *self = f->self;
  const guint K = self->K;
  PredictOut o = { f->glabels, f->gp };
  if (f->gq == NULL)
    return TRUE;
  if (!for_each_latent (self, f->gx, NULL, predict_chunk, &o, error))
    return FALSE;
  sanitize_rows (f->gp, f->pool.n, K);
  for (gsize i = 0; i < f->pool.n * K; i++)
    f->gp[i] *= (float) self->graph_prior;
  for (gsize i = 0; i < f->n_l; i++)
    {
      float *p = f->gp + (f->pool.n + i) * K;
      for (guint k = 0; k < K; k++)
        p[k] = (gint32) k == f->split->labeled.y[i] ? 1.0f : 0.0f;
    }
  fg_knn_graph_smooth (f->graph, f->gp, f->gclamp, K, self->graph_alpha,
                       self->graph_iterations, f->gq);
  if (f->uq != NULL)
    {
      const gsize rows = fg_tensor_rows (f->ux);
      for (gsize i = 0; i < rows; i++)
        memcpy (f->uq + i * K, f->gq + (i * f->pool.n / rows) * K, K * sizeof (float));
    }
  return TRUE;
}

/* graph_predict, after training: the trained model's responsibilities on the graph's nodes,
 * smoothed with prior weight w, for each candidate w; the one whose predictions of the
 * validation rows are best is kept (the larger w on ties; graph_prior without validation). */
static gboolean
fit_graph_final (Fit *f, GError **error)
{
  static const double candidates[] = { INFINITY, 1.0, 0.3, 0.1, 0.0 };
  Trainer *self = f->self;
  const FgSplit *split = f->split;
  const guint K = self->K;
  const gsize n = fg_tensor_rows (f->gx), nv = split->validation.n;
  const gboolean select = nv > 0 && split->validation.y != NULL;
  g_autofree float *P = g_new (float, n * K), *prior = g_new (float, n * K);
  g_autofree float *F = g_new (float, n * K), *vflow = NULL, *vp = NULL;
  g_autofree gint32 *labels = g_new (gint32, MAX (n, MAX (nv, 1)));
  g_autofree guint32 *nb = NULL;
  g_autofree float *d2 = NULL;
  PredictOut o = { labels, P };
  double best_acc = -1.0;

  if (!for_each_latent (self, f->gx, NULL, predict_chunk, &o, error))
    return FALSE;
  sanitize_rows (P, n, K);
  self->gindex = fg_neighbor_index_new (f->gx, FG_DISTANCE_L2, error);
  if (self->gindex == NULL)
    return FALSE;
  self->gF = g_new (float, n * K);
  if (select)
    {
      PredictOut ov;
      vflow = g_new (float, nv * K);
      vp = g_new (float, nv * K);
      ov.labels = labels;
      ov.proba = vflow;
      nb = g_new (guint32, nv * self->graph_k);
      d2 = g_new (float, nv * self->graph_k);
      if (!for_each_latent (self, &split->validation.x, NULL, predict_chunk, &ov, error)
          || !fg_neighbor_index_query (self->gindex, &split->validation.x, self->graph_k, nb,
                                       d2, error))
        return FALSE;
      sanitize_rows (vflow, nv, K);
    }
  for (guint c = 0; c < (select ? G_N_ELEMENTS (candidates) : 1); c++)
    {
      const double w = select ? candidates[c] : self->graph_prior;
      gsize hit = 0;
      double acc;
      if (isinf (w))
        {
          /* the flow alone */
          for (gsize i = 0; i < nv; i++)
            {
              guint best = 0;
              for (guint k = 1; k < K; k++)
                if (vflow[i * K + k] > vflow[i * K + best])
                  best = k;
              hit += (gint32) best == split->validation.y[i];
            }
          best_acc = (double) hit / (double) nv;
          self->gw = w;
          g_debug ("flowgmm: graph_predict: the flow alone: validation accuracy %.4f", best_acc);
          continue;
        }
      for (gsize i = 0; i < n * K; i++)
        prior[i] = (float) (w * P[i]);
      for (gsize i = 0; i < f->n_l; i++)
        for (guint k = 0; k < K; k++)
          prior[(f->pool.n + i) * K + k] = (gint32) k == split->labeled.y[i] ? 1.0f : 0.0f;
      fg_knn_graph_smooth (f->graph, prior, f->gclamp, K, self->graph_alpha,
                           self->graph_iterations, F);
      if (!select)
        {
          memcpy (self->gF, F, n * K * sizeof (float));
          self->gw = w;
          break;
        }
      memcpy (vp, vflow, nv * K * sizeof (float));
      graph_combine (self, f->graph, F, w, nb, d2, nv, vp, labels);
      for (gsize i = 0; i < nv; i++)
        hit += labels[i] == split->validation.y[i];
      acc = (double) hit / (double) nv;
      g_debug ("flowgmm: graph_predict: w = %g: validation accuracy %.4f", w, acc);
      if (acc > best_acc)
        {
          best_acc = acc;
          memcpy (self->gF, F, n * K * sizeof (float));
          self->gw = w;
        }
    }
  if (isinf (self->gw))
    {
      g_clear_pointer (&self->gindex, fg_neighbor_index_free);
      g_clear_pointer (&self->gF, g_free);
    }
  else
    self->graph = g_steal_pointer (&f->graph);
  return TRUE;
}

/* The step's targets: the smoothed rows of its unlabeled rows. */
static void
fit_graph_targets (Fit *f, gsize nu)
{
  const guint K = f->self->K;
  if (f->gq == NULL)
    return;
  for (gsize i = 0; i < nu; i++)
    memcpy (f->tbuf + i * K, f->gq + (gsize) f->uidx[i] * K, K * sizeof (float));
}

/* Buffers, random streams, optimizers, schedule and loss batch: everything a step touches. */
static void
fit_allocate (Fit *f)
{
  Trainer *self = f->self;
  const gsize rows = f->n_lb + f->n_ub;
  FgOptimConfig cfg;
  f->xbuf = g_new (float, MAX (rows * f->dim, 1));
  f->src_rows = g_new (const float *, MAX (rows, 1));
  f->uidx = g_new (guint32, MAX (f->n_ub, 1));
  if (f->aug != NULL || (f->graph != NULL && self->neighbor_cons))
    f->x2buf = g_new (float, MAX (rows * f->dim, 1));
  f->ybuf = g_new (gint32, MAX (f->n_lb, 1));
  f->lperm = g_new (guint32, MAX (f->n_l, 1));
  f->uperm = g_new (guint32, MAX (f->pool.n, 1));
  for (gsize i = 0; i < f->n_l; i++)
    f->lperm[i] = (guint32) i;
  for (gsize i = 0; i < f->pool.n; i++)
    f->uperm[i] = (guint32) i;
  fg_rng_fork (&self->rng, fg_rng_stream_id ("batch-order"), &f->order_rng);
  fg_rng_fork (&self->rng, fg_rng_stream_id ("batch-noise"), &f->batch_rng);
  if (f->x2buf != NULL)
    fg_rng_fork (&self->rng, fg_rng_stream_id ("augment"), &f->aug_rng);
  if (f->n_ranks > 1)
    {
      /* Data-parallel: every rank draws the same batches (order_rng) and takes its slice; the
       * slices get their own dropout masks and noise; gradients are summed over the group
       * before each step, so the norm is taken after that sum. */
      FgRng base = f->batch_rng;
      if (f->rank > 0)
        fg_rng_fork (&base, f->rank, &f->batch_rng);
      fg_tape_set_track_grad_norms (self->tape, FALSE);
      f->grad_scratch = g_new (float, MAX (MAX (fg_weight_set_numel (self->flow_weights),
                                                fg_weight_set_numel (self->gmm_weights)),
                                           1));
    }

  fg_optim_config_init (&cfg, self->optimizer);
  cfg.weight_decay = self->weight_decay;
  f->opt = fg_optimizer_new (&cfg, self->flow_weights);
  if (self->means_trainable || self->sigma_trainable)
    {
      FgOptimConfig gcfg;
      fg_optim_config_init (&gcfg, FG_OPTIM_ADAM);
      f->gmm_opt = fg_optimizer_new (&gcfg, self->gmm_weights);
    }
  fg_schedule_init (&f->sched, self->schedule, (double) f->total_steps);
  f->sched.gamma = self->step_gamma;
  if (!isnan (self->lr_floor))
    f->sched.floor = self->lr_floor;

  fg_weight_set_zero_grad (self->flow_weights);
  f->batch = fg_loss_batch_new (self->gmm, flow_vt (self), self->flow, &f->batch_rng);
  fg_loss_batch_set_input_noise (f->batch, self->input_noise);
}

/* Resume from the cell's saved training state, if any. */
static gboolean
fit_resume (Fit *f, GError **error)
{
  const FgResume *rs = f->rs;
  TrainState *ts = &f->ts;
  ts->total_steps = f->total_steps;
  ts->n_l = f->n_l;
  ts->pool_n = f->pool.n;
  ts->order_rng = &f->order_rng;
  ts->batch_rng = &f->batch_rng;
  ts->aug_rng = &f->aug_rng;
  ts->lperm = f->lperm;
  ts->uperm = f->uperm;
  if (rs != NULL && rs->dir != NULL
      && (rs->every_steps > 0 || rs->every_minutes > 0 || rs->run_steps > 0))
    f->state_path = g_build_filename (rs->dir, STATE_FILE, NULL);
  if (f->state_path != NULL && g_file_test (f->state_path, G_FILE_TEST_EXISTS))
    {
      if (!state_load (f->self, ts, f->opt, f->gmm_opt, f->state_path, error))
        return FALSE;
      if (f->rank > 0)
        {
          /* The state is rank 0's (it writes it): this rank's masks and noise go on from a
           * stream of their own forked from it (exact only for flows that draw none). */
          FgRng base = f->batch_rng;
          fg_rng_fork (&base, f->rank, &f->batch_rng);
        }
      g_message ("flowgmm: resuming at step %" G_GUINT64_FORMAT " of %" G_GSIZE_FORMAT
                 " from %s", ts->step, f->total_steps, f->state_path);
    }
  f->start_step = (gsize) ts->step;
  f->t_start = f->t_last_save = f->t_last_report = g_get_monotonic_time ();
  return TRUE;
}

/* The step's rows: the labeled ones (all of them, or the next n_lb of a reshuffled cycle: the
 * authors' icycle) and the unlabeled ones (the next batch of the pool's order, or sampled).
 * Returns the number of unlabeled rows. */
static gsize
fit_gather_rows (Fit *f, gsize b)
{
  const Trainer *self = f->self;
  const FgDataPart *lab = &f->split->labeled;
  const float **dst = f->src_rows + f->n_lb;
  gsize nu = 0;
  if (f->n_lb == f->n_l)
    for (gsize i = 0; i < f->n_l; i++)
      {
        f->src_rows[i] = fg_tensor_row (&lab->x, i);
        f->ybuf[i] = lab->y[i];
      }
  else
    for (gsize i = 0; i < f->n_lb; i++)
      {
        if (f->ts.lpos == 0)
          fg_rng_shuffle (&f->order_rng, f->lperm, f->n_l);
        f->src_rows[i] = fg_tensor_row (&lab->x, f->lperm[f->ts.lpos]);
        f->ybuf[i] = lab->y[f->lperm[f->ts.lpos]];
        f->ts.lpos = (f->ts.lpos + 1) % f->n_l;
      }
  if (f->n_ub == 0)
    return 0;
  if (self->order == ORDER_SAMPLE)
    {
      nu = f->n_ub;
      for (gsize i = 0; i < nu; i++)
        {
          f->uidx[i] = (guint32) fg_rng_below (&f->order_rng, f->pool.n);
          dst[i] = f->pool.rows[f->uidx[i]];
        }
    }
  else
    {
      const gsize start = b * self->unlabeled_batch;
      if (self->order == ORDER_SHUFFLE && b == 0)
        fg_rng_shuffle (&f->order_rng, f->uperm, f->pool.n);
      nu = MIN (self->unlabeled_batch, f->pool.n - start);
      for (gsize i = 0; i < nu; i++)
        {
          f->uidx[i] = f->uperm[start + i];
          dst[i] = f->pool.rows[f->uidx[i]];
        }
    }
  return nu;
}

/* The step's inputs, augmented when the split asks for it: x′ for training and, drawn after
 * all of x′, an independent x″ of the same rows (the authors' TransformTwice).  `shape` gets
 * the batch's tensor shape. */
static FgTensor
fit_fill_inputs (Fit *f, gsize n, gsize shape[FG_TENSOR_MAX_DIMS])
{
  const Trainer *self = f->self;
  for (gsize i = 0; i < n; i++)
    fg_augment_apply (f->aug, &self->shape, f->src_rows[i], f->xbuf + i * f->dim, &f->aug_rng);
  if (f->x2buf != NULL && self->neighbor_cons && f->graph != NULL)
    /* x″ of an unlabeled row: a random one of its nearest neighbours (graph consistency) */
    for (gsize i = 0; i < n; i++)
      {
        const float *src = f->src_rows[i];
        if (i >= f->n_lb)
          {
            const guint32 *nb = fg_knn_graph_get_neighbors (f->graph, f->uidx[i - f->n_lb]);
            src = fg_tensor_row (f->gx, nb[fg_rng_below (&f->aug_rng, self->graph_k)]);
          }
        fg_augment_apply (f->aug, &self->shape, src, f->x2buf + i * f->dim, &f->aug_rng);
      }
  else if (f->x2buf != NULL)
    for (gsize i = 0; i < n; i++)
      fg_augment_apply (f->aug, &self->shape, f->src_rows[i], f->x2buf + i * f->dim,
                        &f->aug_rng);
  shape[0] = n;
  for (guint d = 0; d < self->shape.ndim; d++)
    shape[d + 1] = self->shape.dims[d];
  return fg_tensor_wrap (f->xbuf, self->shape.ndim + 1, shape);
}

/* Hand the loss the step's batch (nl labeled rows first, then nu unlabeled), or this rank's
 * slice of it in a data-parallel group. */
static gboolean
fit_begin_batch (Fit *f, const FgTensor *x, gsize nl, gsize nu, const gsize *shape,
                 GError **error)
{
  Trainer *self = f->self;
  if (f->n_ranks > 1)
    {
      /* This rank's slice: rows [a, e) of the step's nl + nu rows (labeled first), so each
       * rank holds at least one row as long as the batch has as many rows as the group. */
      const gsize n_all = nl + nu;
      const gsize a = n_all * f->rank / f->n_ranks, e = n_all * (f->rank + 1) / f->n_ranks;
      FgTensor slice;
      if (n_all < f->n_ranks)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "flowgmm: a batch of %" G_GSIZE_FORMAT " rows cannot be split over %u "
                       "ranks (ranks_per_cell)", n_all, f->n_ranks);
          return FALSE;
        }
      slice = fg_tensor_view_rows (x, a, e - a);
      fg_loss_batch_begin (f->batch, self->tape, &slice, a < nl ? MIN (nl, e) - a : 0,
                           a < nl ? f->ybuf + a : NULL);
      if (f->gq != NULL && e > nl)
        fg_loss_batch_set_targets (f->batch, f->tbuf + (MAX (a, nl) - nl) * self->K);
      if (f->x2buf != NULL)
        {
          FgTensor x2 = fg_tensor_wrap (f->x2buf, self->shape.ndim + 1, shape);
          FgTensor slice2 = fg_tensor_view_rows (&x2, a, e - a);
          fg_loss_batch_set_second_view (f->batch, &slice2);
        }
      fg_loss_batch_set_group (f->batch, f->group, nl, nu);
    }
  else
    {
      fg_loss_batch_begin (f->batch, self->tape, x, nl, f->ybuf);
      if (f->gq != NULL && nu > 0)
        fg_loss_batch_set_targets (f->batch, f->tbuf);
      if (f->x2buf != NULL)
        {
          FgTensor x2 = fg_tensor_wrap (f->x2buf, self->shape.ndim + 1, shape);
          fg_loss_batch_set_second_view (f->batch, &x2);
        }
    }
  return TRUE;
}

/* One optimisation step on the batch x (nl labeled rows first): the loss, its gradients
 * (summed over a data-parallel group), the clipped flow update and the mixture's.  *value gets
 * the loss. */
static gboolean
fit_update (Fit *f, gsize step, const FgTensor *x, gsize nl, gsize nu, const gsize *shape,
            double *value, GError **error)
{
  Trainer *self = f->self;
  const gsize b = step % f->steps_per_epoch;
  const double epoch = (double) step / (double) f->steps_per_epoch;
  GError *local = NULL;
  FgVar *loss;
  double norm, nll;

  fg_tape_reset (self->tape);
  if (!fit_begin_batch (f, x, nl, nu, shape, error))
    return FALSE;
  fg_loss_batch_set_progress (f->batch, step, epoch, (double) f->total_steps / f->steps_per_epoch);
  loss = loss_vt (self)->compute (self->loss, f->batch, &local);
  if (loss == NULL && f->n_ranks == 1)
    {
      if (local == NULL)
        g_set_error (&local, FG_ERROR, FG_ERROR_FAILED, "the loss gave no result");
      g_propagate_prefixed_error (error, local,
                                  "loss '%s' at epoch %" G_GSIZE_FORMAT " step %" G_GSIZE_FORMAT
                                  ": ",
                                  self->loss_c->name, step / f->steps_per_epoch + 1, b + 1);
      return FALSE;
    }
  *value = loss != NULL ? loss->value.data[0] : NAN;
  if (f->n_ranks == 1 && !check_finite_step (self, *value, "loss", step, f->steps_per_epoch,
                                             error))
    return FALSE;
  nll = fg_loss_batch_get_mean_nll (f->batch);
  if (isfinite (nll))
    {
      f->nll_sum += nll;
      f->nll_n++;
    }

  /* The flow's gradients are zero here: cleared before the loop, then by each update. */
  fg_weight_set_zero_grad (self->gmm_weights);
  if (loss != NULL && !fg_tape_backward (self->tape, loss, &local))
    {
      if (f->n_ranks == 1)
        {
          g_propagate_prefixed_error (error, local,
                                      "backward at iteration %" G_GSIZE_FORMAT ": ", step + 1);
          return FALSE;
        }
      loss = NULL;
    }
  if (f->n_ranks > 1)
    {
      if (!group_step (self, f->group, f->split, loss != NULL ? *value : NAN, &local, step,
                       f->steps_per_epoch, f->grad_scratch, f->gmm_opt != NULL, value, error))
        return FALSE;
      norm = fg_weight_set_grad_norm (self->flow_weights);
    }
  else
    norm = fg_tape_grad_norm (self->tape, self->flow_weights);
  /* Clip, update and clear in one pass over the weights: the backward pass (or the group's
   * sum) has given the gradient norm (a non-finite norm updates nothing and stops the run). */
  norm = fg_optimizer_step_clip_norm (f->opt,
                                      self->lr * fg_schedule_factor (&f->sched, (double) step),
                                      norm, self->clip, TRUE);
  if (!check_finite_step (self, norm, "flow's gradient norm", step, f->steps_per_epoch, error))
    return FALSE;
  if (f->gmm_opt != NULL)
    {
      norm = fg_weight_set_grad_norm (self->gmm_weights);
      if (!check_finite_step (self, norm, "mixture's gradient norm", step, f->steps_per_epoch,
                              error))
        return FALSE;
      fg_optimizer_step (f->gmm_opt, self->gmm_lr);
    }
  return TRUE;
}

/* A progress line per epoch, and every few seconds within long epochs. */
static void
fit_report (Fit *f, gsize step, gint64 now)
{
  const gsize b = step % f->steps_per_epoch, done = step + 1, spe = f->steps_per_epoch;
  const gboolean epoch_end = b == spe - 1 || done == f->total_steps;
  char what[256], bpd[32] = "", rate[64] = "", left[32];
  const double secs = (double) (now - f->t_start) / 1e6;
  if (!epoch_end && now - f->t_last_report < 5000000)
    return;
  if (f->show_bpd && f->nll_n > 0)
    g_snprintf (bpd, sizeof bpd, " bits/dim %.4f",
                (f->nll_sum / (double) f->nll_n + (double) f->dim * log (256.0))
                    / ((double) f->dim * G_LN2));
  if (secs > 0 && done > f->start_step)
    {
      format_duration (left, sizeof left,
                       secs / (double) (done - f->start_step)
                           * (double) (f->total_steps - done));
      g_snprintf (rate, sizeof rate, " %.1f samples/s, %s left", (double) f->rows_done / secs,
                  left);
    }
  g_snprintf (what, sizeof what,
              "step %" G_GSIZE_FORMAT "/%" G_GSIZE_FORMAT " epoch %" G_GSIZE_FORMAT
              "/%.4g loss %.6g%s%s",
              done, f->total_steps, step / spe + 1, (double) f->total_steps / spe,
              f->ts.epoch_loss / (double) f->ts.epoch_steps, bpd, rate);
  fg_split_report_progress (f->split, (double) done / (double) f->total_steps, what);
  f->t_last_report = now;
  f->nll_sum = 0.0;
  f->nll_n = 0;
  if (epoch_end)
    {
      f->ts.epoch_loss = 0.0;
      f->ts.epoch_steps = 0;
    }
}

/* Save the training state at the end of a step when it is due (everything of the next step is
 * in it); stop with FG_ERROR_INTERRUPTED once this run has done its run_steps.  In a
 * data-parallel group every rank holds the same state: the first one writes it. */
static gboolean
fit_save_state (Fit *f, gsize done, gint64 now, GError **error)
{
  const FgResume *rs = f->rs;
  gboolean stop;
  if (f->state_path == NULL)
    return TRUE;
  stop = rs->run_steps > 0 && done - f->start_step >= rs->run_steps && done < f->total_steps;
  if (f->rank == 0
      && (stop || done == f->total_steps || (rs->every_steps > 0 && done % rs->every_steps == 0)
          || (rs->every_minutes > 0
              && (double) (now - f->t_last_save) >= rs->every_minutes * 60e6)))
    {
      f->ts.step = done;
      if (!state_save (f->self, &f->ts, f->opt, f->gmm_opt, f->state_path, error))
        {
          g_prefix_error (error, "flowgmm: ");
          return FALSE;
        }
      f->t_last_save = g_get_monotonic_time ();
    }
  if (stop)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INTERRUPTED,
                   "flowgmm: stopped after %" G_GUINT64_FORMAT " steps of this run "
                   "(run_steps) at step %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                   "; the next run resumes from %s",
                   rs->run_steps, done, f->total_steps, f->state_path);
      return FALSE;
    }
  return TRUE;
}

/* Cancelled: keep what was done (the next run goes on from here) and say so. */
static gboolean
fit_cancel (Fit *f, gsize step, GError **error)
{
  if (f->state_path != NULL && step > f->start_step)
    {
      f->ts.step = step;
      if (!state_save (f->self, &f->ts, f->opt, f->gmm_opt, f->state_path, error))
        return FALSE;
    }
  g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "cancelled at iteration %" G_GSIZE_FORMAT,
               step + 1);
  return FALSE;
}

/* The training loop, from the resumed step to the last.  A data-parallel group learns of a
 * cancellation in its step (group_step), so that every rank stops at the same one. */
/* The phases' plan: what a refit updates, the rows it embeds, and the first validation check
 * (the model before training is a candidate too; the best model is not kept across a
 * resume). */
static gboolean
fit_phases_init (Fit *f, GError **error)
{
  Trainer *self = f->self;
  const FgSplit *split = f->split;
  f->period = self->refit_every > 0 ? (gsize) self->refit_every
                                    : MAX (f->total_steps / 10, (gsize) 1);
  f->refit_means = self->refit_em && self->means == FG_GMM_MEANS_DATA && !self->means_trainable
                   && self->init_checkpoint == NULL;
  f->refit_sigma = self->refit_em && self->sigma_auto && !self->sigma_trainable
                   && self->init_checkpoint == NULL;
  f->best.accuracy = -1.0;
  if ((f->refit_means || f->refit_sigma) && f->pool.n > 0)
    {
      /* an even spread of the pool */
      const gsize rows = MIN (f->pool.n, (gsize) self->refit_max_rows);
      f->ux = fg_tensor_new_2d (rows, f->dim);
      for (gsize i = 0; i < rows; i++)
        memcpy (fg_tensor_row (f->ux, i), f->pool.rows[i * f->pool.n / rows],
                f->dim * sizeof (float));
      if (f->gq != NULL)
        f->uq = g_new (float, rows * self->K);
    }
  if (self->early_stopping && split->validation.n > 0 && split->validation.y != NULL)
    f->val_labels = g_new (gint32, split->validation.n);
  if (!fit_graph_update (f, error))
    return FALSE;
  return f->val_labels == NULL || f->start_step > 0
         || phase_check (self, split, f->ux, f->uq, FALSE, FALSE, f->val_labels, &f->best,
                         error);
}

/* After training: a last refit and check, then the best model checked on validation. */
static gboolean
fit_phases_finish (Fit *f, GError **error)
{
  Trainer *self = f->self;
  double acc;
  if (f->total_steps > 0
      && (!fit_graph_update (f, error)
          || !phase_check (self, f->split, f->ux, f->uq, f->refit_means, f->refit_sigma,
                           f->val_labels, &f->best, error)))
    return FALSE;
  if (f->best.weights == NULL)
    return TRUE;
  if (!validation_accuracy (self, f->split, f->val_labels, &acc, error))
    return FALSE;
  if (f->best.accuracy > acc)
    snapshot_restore (self, &f->best);
  return TRUE;
}

static gboolean
fit_loop (Fit *f, GError **error)
{
  Trainer *self = f->self;
  for (gsize step = f->start_step; step < f->total_steps; step++)
    {
      gsize shape[FG_TENSOR_MAX_DIMS];
      gsize nu;
      FgTensor x;
      double value;
      gint64 now;

      if (f->n_ranks == 1 && fg_split_cancelled (f->split))
        return fit_cancel (f, step, error);
      if (step > 0 && step % f->period == 0
          && (!fit_graph_update (f, error)
              || !phase_check (self, f->split, f->ux, f->uq, f->refit_means, f->refit_sigma,
                               f->val_labels, &f->best, error)))
        return FALSE;
      nu = fit_gather_rows (f, step % f->steps_per_epoch);
      fit_graph_targets (f, nu);
      x = fit_fill_inputs (f, f->n_lb + nu, shape);
      /* A flow with a data-dependent initialisation sees the first batch once (not when its
       * weights come from a checkpoint). */
      if (step == 0 && self->init_checkpoint == NULL
          && FG_VTABLE_HAS (flow_vt (self), FgFlowVTable, init)
          && !flow_init_from_batch (self, &x, error))
        return FALSE;
      if (!fit_update (f, step, &x, f->n_lb, nu, shape, &value, error))
        return FALSE;
      f->ts.epoch_loss += value;
      f->ts.epoch_steps++;
      f->rows_done += f->n_lb + nu;
      now = g_get_monotonic_time ();
      fit_report (f, step, now);
      if (!fit_save_state (f, step + 1, now, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
trainer_fit (gpointer data, const FgSplit *split, GError **error)
{
  Trainer *self = data;
  Fit f = { 0 };
  gboolean ok = FALSE;

  g_return_val_if_fail (self != NULL && split != NULL, FALSE);
  if (!fit_check_split (self, split, error) || !build_model (self, split, error))
    return FALSE;
  f.self = self;
  f.split = split;
  f.dim = self->D;
  f.aug = fg_augment_active (split->augment) ? split->augment : NULL;
  f.group = fg_split_get_group (split);
  f.n_ranks = fg_group_get_size (f.group);
  f.rank = fg_group_get_rank (f.group);
  f.rs = split->resume;
  f.show_bpd = split->preprocessing == NULL
               || g_strcmp0 (split->preprocessing->description, "none") == 0;
  if (!fit_plan (&f, error) || !fit_graph_init (&f, error))
    goto out;
  fit_allocate (&f);
  if (!fit_resume (&f, error) || !fit_phases_init (&f, error) || !fit_loop (&f, error))
    goto out;
  fg_tape_reset (self->tape);
  if (!fit_phases_finish (&f, error)
      || (self->graph_predict == GRAPH_PREDICT_ON && f.graph != NULL
          && !fit_graph_final (&f, error)))
    goto out;
  self->fitted = TRUE;
  ok = TRUE;

  if (f.n_ranks > 1)
    g_debug ("flowgmm: rank %u of %u: parameters checksum %016" G_GINT64_MODIFIER "x; group "
             "sums: %" G_GUINT64_FORMAT " bytes sent in %.3f s", f.rank, f.n_ranks,
             weights_checksum (self), fg_group_get_bytes_sent (f.group),
             fg_group_get_seconds (f.group));
  /* In a data-parallel group every rank holds the same weights: the first one writes them. */
  if (self->checkpoint != NULL && f.rank == 0)
    {
      g_autofree char *path = fg_path_expand_seed (self->checkpoint, split->seed);
      if (!save_checkpoint (self, path, error))
        {
          g_prefix_error (error, "checkpoint: ");
          ok = FALSE;
        }
    }
out:
  fit_clear (&f);
  return ok;
}

/* x = f⁻¹(z) for any n latents (interpolations, figures). */
static gboolean
trainer_decode (gpointer data, const float *z, gsize n, float *x_out, GError **error)
{
  Trainer *self = data;
  if (!self->fitted)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "flowgmm: decode before fit");
      return FALSE;
    }
  if (x_out != z)
    memcpy (x_out, z, n * self->D * sizeof (float));
  return decode_in_place (self, x_out, n, error);
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
  .decode = trainer_decode,
  .log_joint = trainer_log_joint,
  .latent_means = trainer_latent_means,
  .feature_inversion = trainer_feature_inversion,
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
