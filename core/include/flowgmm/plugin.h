/* SPDX-License-Identifier: MIT */
/* flowgmm — THE plugin ABI.
 *
 * A plugin is a shared object exporting exactly one symbol, fg_plugin_query (), which returns a
 * const FgPluginInfo.  The host checks, in order: abi_version == FG_PLUGIN_ABI_VERSION; the
 * struct sizes; non-NULL strings and name == the file's basename; each component's kind, vtable
 * size, required methods and parameter specs; and that no kind/name is registered twice.
 *
 * Compatibility rules:
 *  - FG_PLUGIN_ABI_VERSION is bumped on ANY incompatible change (reordered or removed fields,
 *    changed signatures).  A plugin built for another version is rejected.
 *  - It moves together with libflowgmm's SONAME (SONAME number + 1 == FG_PLUGIN_ABI_VERSION,
 *    checked by configure, which reads the #define below) and names the installed plugin
 *    directory, $(libdir)/flowgmm/plugins-N.  Policy and bump rules: doc/versioning.md.
 *  - Structs and vtables only grow at the end.  Every vtable starts with its own struct_size, so
 *    the host can tell whether an optional method appended later is present (FG_VTABLE_HAS).
 *
 * Which headers are the plugin ABI.  This header and every header a plugin may use are part
 * of ABI version 1 and follow the rules above: error.h, tensor.h, rng.h, weights.h, tape.h,
 * optim.h, vecmath.h and parallel.h (numeric core); params.h, dataset.h, split.h and io.h
 * (data); gmm.h, loss.h and neighbors.h (method building blocks).  registry.h, experiment.h
 * and figure.h are the host's API (the command-line program, embedding programs, tests): a
 * plugin does not call them, and they follow the library's version, not the plugin ABI.
 * <flowgmm/flowgmm.h> includes all of them.
 */
#pragma once

#include <glib.h>
#include <flowgmm/error.h>
#include <flowgmm/params.h>
#include <flowgmm/dataset.h>
#include <flowgmm/tape.h>
#include <flowgmm/weights.h>
#include <flowgmm/rng.h>

G_BEGIN_DECLS

#define FG_PLUGIN_ABI_VERSION 1u

typedef enum {
  FG_KIND_DATASET = 1,
  FG_KIND_FLOW = 2,
  FG_KIND_LOSS = 3,
  FG_KIND_BASELINE = 4,
} FgKind;

#define FG_KIND_FIRST FG_KIND_DATASET
#define FG_KIND_LAST FG_KIND_BASELINE

FG_API const char *fg_kind_to_string (FgKind kind); /* "dataset", "flow", "loss", "baseline" */
FG_API gboolean    fg_kind_from_string (const char *name, FgKind *kind);

/* ---- Dataset ------------------------------------------------------------------------------- */
typedef struct {
  const char *base_dir;  /* directory of the experiment file (PATH params are already resolved) */
  gpointer reserved[4];
} FgLoadContext;

typedef struct {
  gsize struct_size; /* sizeof (FgDatasetVTable) in the plugin's build */
  /* Required.  Load (or generate) the whole data set.  Deterministic for given params: the host
   * caches the result per process and shares it across cells.  The host calls
   * fg_dataset_finish () on the result; a plugin may call it first (it is idempotent), e.g. to
   * prefix its errors with the file's name. */
  FgDataset *(*load) (const FgParams *params, const FgLoadContext *ctx, GError **error);
} FgDatasetVTable;

/* ---- Flow ---------------------------------------------------------------------------------- */
typedef struct {
  gboolean train; /* dropout and other train-only behaviour on */
  FgRng   *rng;   /* for stochastic layers; never NULL when train is TRUE */
  /* ABI 1, added for data-parallel training (took one reserved slot): in training mode, the
   * group of processes whose batch slices together make the step's batch, or NULL (alone).  A
   * layer with batch statistics (batch norm) sums them over it with fg_group_sum_doubles ()
   * in forward and backward (flowgmm/group.h); other layers ignore it. */
  const FgGroup *group;
  gpointer reserved[1];
} FgFlowRun;

typedef struct {
  gsize struct_size;
  /* Required.  Build the flow for examples of `shape`, adding its weights to `weights` (names
   * unique, e.g. "c3.w1") and initialising them from `rng`. */
  gpointer (*create) (const FgParams *params, const FgSampleShape *shape, FgWeightSet *weights,
                      FgRng *rng, GError **error);
  /* Required.  z = f(x) with the same shape as x, and *logdet = log|det ∂f/∂x| per example as
   * an [N, 1] node.  Built from tape ops so gradients flow to the weights. */
  FgVar *(*forward) (gpointer self, FgTape *tape, FgVar *x, const FgFlowRun *run,
                     FgVar **logdet, GError **error);
  /* Required.  x = f⁻¹(z) (evaluation mode). */
  FgVar *(*inverse) (gpointer self, FgTape *tape, FgVar *z, GError **error);
  /* Required. */
  void (*destroy) (gpointer self);

  /* ---- Optional (test with FG_VTABLE_HAS), ABI 1 additions ---- */
  /* Data-dependent initialisation (e.g. ActNorm, Kingma & Dhariwal 2018): called once with the
   * first training batch x_batch (the shape forward takes) after create and before the first
   * training step, in training mode (`run`), and never when the weights come from a checkpoint
   * or a resumed run.  It may run forward passes on `tape` (the caller resets it afterwards)
   * and set weights from the data.  In data-parallel training every member gets the whole
   * first batch (not its slice) and run->group is NULL, so every member sets the same weights
   * as one process would. */
  gboolean (*init) (gpointer self, FgTape *tape, FgVar *x_batch, const FgFlowRun *run,
                    GError **error);
  /* ---- Optional, ABI 1 additions (after init): partial passes for feature visualisation
   * (paper eq. 8, doc/analysis.md).  A flow is f = f_L ∘ ... ∘ f_1; its "layers" are the steps
   * it chooses to expose, numbered 1..n_layers; layer 0 is the input itself. */
  /* The number L of exposed layers. */
  guint (*n_layers) (gpointer self);
  /* h = f_{:layer}(x) = f_layer ∘ ... ∘ f_1 (x), for 0 ≤ layer ≤ L, with x's shape (flows that
   * change the shape between layers give the shape of that layer).  Layer L is forward's z.
   * Evaluation mode unless run->train; run may be NULL. */
  FgVar *(*forward_to) (gpointer self, FgTape *tape, FgVar *x, guint layer, const FgFlowRun *run,
                        GError **error);
  /* x = f_{:layer}⁻¹(h) for h of layer `layer`'s shape (evaluation mode):
   * inverse_from (forward_to (x, ℓ), ℓ) = x. */
  FgVar *(*inverse_from) (gpointer self, FgTape *tape, FgVar *h, guint layer, GError **error);
} FgFlowVTable;

/* ---- Loss ---------------------------------------------------------------------------------- */
/* The batch a loss sees: the tape, the latent mixture, the labeled and unlabeled examples and a
 * way to push them through the flow.  Opaque; accessors in loss.h. */
typedef struct _FgLossBatch FgLossBatch;

typedef struct {
  gsize struct_size;
  /* Required. */
  gpointer (*create) (const FgParams *params, GError **error);
  /* Required.  The scalar ([1, 1]) objective to minimise for this batch. */
  FgVar *(*compute) (gpointer self, FgLossBatch *batch, GError **error);
  /* Required. */
  void (*destroy) (gpointer self);
} FgLossVTable;

/* ---- Baseline (any classifier the runner can fit and evaluate) ----------------------------- */
typedef struct {
  gsize struct_size;
  /* Required.  `rng` is the cell's own stream; the instance may keep it. */
  gpointer (*create) (const FgParams *params, FgRng *rng, GError **error);
  /* Required.  Train on the cell's split (borrowed for the call; keep copies of what predict
   * needs). */
  gboolean (*fit) (gpointer self, const FgSplit *split, GError **error);
  /* Required.  Predict n = rows(x) labels into labels_out and, when proba_out is not NULL,
   * class probabilities into proba_out (n × n_classes, row-major). */
  gboolean (*predict) (gpointer self, const FgTensor *x, gint32 *labels_out, float *proba_out,
                       GError **error);
  /* Required. */
  void (*destroy) (gpointer self);

  /* ---- Optional (test with FG_VTABLE_HAS): generative views used by figures ---- */
  /* Map n = rows(x) examples into the method's latent space (n × dim floats into z_out), e.g. a
   * flow's z = f(x).  Evaluation mode. */
  gboolean (*embed) (gpointer self, const FgTensor *x, float *z_out, GError **error);
  /* Draw n samples (n × dim floats into out) of class k, or of the whole model when k < 0; in
   * the latent space when `latent`, else mapped to data space (e.g. f⁻¹(z)).  The latent
   * variance is multiplied by `temperature` (1: the model itself; the paper's Fig. 6 uses
   * 0.25²). */
  gboolean (*sample) (gpointer self, gint k, gsize n, gboolean latent, double temperature,
                      FgRng *rng, float *out, GError **error);

  /* ---- Optional, appended (test with FG_VTABLE_HAS) ---- */
  /* log p(x) of each of the n = rows(x) examples (n doubles into out) in the space of x as the
   * method sees it (after the split's preprocessing), e.g. log p_Z(f(x)) + log|det ∂f/∂x| for a
   * flow.  Evaluation mode.  A flow that dequantises inside (realnvp-conv) gives the density of
   * the dequantised u ∈ [0, 1)^D.  The runner turns it into bits/dim (metric bpd). */
  gboolean (*log_density) (gpointer self, const FgTensor *x, double *out, GError **error);
  /* x = f⁻¹(z) for n latents of the embed space (n × dim floats each way; z and x_out may be
   * the same buffer), evaluation mode: decodes any latent point, e.g. interpolations between
   * embedded examples (image figures). */
  gboolean (*decode) (gpointer self, const float *z, gsize n, float *x_out, GError **error);

  /* ---- Optional (FG_VTABLE_HAS), ABI 1 additions after decode: model analysis
   * (doc/analysis.md) ---- */
  /* log p(x, y = k) of the n = rows(x) examples, in the space of log_density, into out
   * (n × n_classes doubles, row-major); logsumexp over k is log_density's log p(x).  Gives the
   * mixture component an out-of-domain point falls in. */
  gboolean (*log_joint) (gpointer self, const FgTensor *x, double *out, GError **error);
  /* The class means of the latent space of `embed` (n_classes × dim floats), for the distance
   * to the decision boundary between the two closest means. */
  gboolean (*latent_means) (gpointer self, float *means_out, GError **error);
  /* Feature visualisation by inversion (paper eq. 8): for each of the n_alphas values α,
   * x(α) = f_{:ℓ}⁻¹(f_{:ℓ}(x) + α·σ_c·δ_c) for the n = rows(x) examples, into out
   * (n_alphas × n × dim floats, α-major).  Group c of layer ℓ's activation is feature c of a
   * flat activation, or channel c (every position) of an image-shaped one; σ_c is its standard
   * deviation over the rows of x_ref (and positions), returned in sigma_out (nullable).
   * α = 0 gives x back up to round-off. */
  gboolean (*feature_inversion) (gpointer self, const FgTensor *x_ref, const FgTensor *x,
                                 guint layer, gsize channel, const double *alphas, gsize n_alphas,
                                 float *out, double *sigma_out, GError **error);
} FgBaselineVTable;

/* True when vtable `vt` of type T was built with member m and m is set. */
#define FG_VTABLE_HAS(vt, T, m) \
  ((vt)->struct_size >= G_STRUCT_OFFSET (T, m) + sizeof ((vt)->m) && (vt)->m != NULL)

/* ---- Descriptor ---------------------------------------------------------------------------- */
typedef struct {
  FgKind             kind;    /* 0 ends the component list */
  const char        *name;    /* unique per kind across all plugins; lower-case letters, digits,
                                 '-' and '_' ([a-z0-9_-]+): the loader rejects other names */
  const char        *summary; /* one line */
  const FgParamSpec *params;  /* ends with a NULL name; may be NULL for none */
  const void        *vtable;  /* FgDatasetVTable, FgFlowVTable, FgLossVTable or FgBaselineVTable */
  gpointer reserved[2];
} FgComponent;

typedef struct {
  guint32            abi_version; /* always first: FG_PLUGIN_ABI_VERSION */
  guint32            struct_size; /* sizeof (FgPluginInfo) in the plugin's build */
  const char        *name;        /* == the file's basename without ".so" */
  const char        *version;
  const char        *license;     /* SPDX identifier */
  const char        *description;
  const FgComponent *components;  /* ends with an entry whose kind is 0 */
  gpointer reserved[4];
} FgPluginInfo;

#define FG_PLUGIN_EXPORT __attribute__ ((visibility ("default")))
#define FG_PLUGIN_ENTRY_SYMBOL "fg_plugin_query"

/* Define the plugin's one exported symbol. */
#define FG_PLUGIN_DEFINE(info)                                   \
  FG_PLUGIN_EXPORT const FgPluginInfo *fg_plugin_query (void);  \
  const FgPluginInfo *fg_plugin_query (void) { return &(info); }

G_END_DECLS
