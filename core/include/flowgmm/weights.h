/* SPDX-License-Identifier: MIT */
/* flowgmm — learnable weights (model parameters) and their checkpoints.
 *
 * Weights live outside the autodiff tape: each has a value and a gradient buffer of the same
 * shape.  A tape leaf made with fg_tape_weight () reads the value and accumulates into the
 * gradient; the optimizer reads the gradient and updates the value.
 */
#pragma once

#include <glib.h>
#include <flowgmm/tensor.h>
#include <flowgmm/rng.h>

G_BEGIN_DECLS

typedef struct {
  char    *name;          /* unique within its set, e.g. "coupling3.net.0.weight" */
  FgTensor value;         /* owned, contiguous */
  FgTensor grad;          /* owned, same shape, accumulated by backward passes */
  gboolean decay;         /* apply weight decay (AdamW / L2) to this weight */
  gboolean trainable;     /* FALSE: constant (e.g. fixed GMM means); no gradient kept */
} FgWeight;

typedef struct _FgWeightSet FgWeightSet;

FG_API FgWeightSet *fg_weight_set_new (void);
FG_API void         fg_weight_set_free (FgWeightSet *set);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgWeightSet, fg_weight_set_free)

/* A new zero-filled weight; the set owns it.  Names must be unique (programmer error otherwise).
 * Each weight is allocated on its own: the FgWeight pointers that add, lookup and get return,
 * and their value and grad data, stay valid as more weights are added, until the set is
 * freed. */
FG_API FgWeight *fg_weight_set_add (FgWeightSet *set, const char *name, guint ndim,
                                    const gsize *shape, gboolean decay);
FG_API FgWeight *fg_weight_set_add_2d (FgWeightSet *set, const char *name, gsize rows,
                                       gsize cols, gboolean decay);
FG_API FgWeight *fg_weight_set_lookup (FgWeightSet *set, const char *name);
FG_API guint     fg_weight_set_len (const FgWeightSet *set);
FG_API FgWeight *fg_weight_set_get (const FgWeightSet *set, guint i);
FG_API gsize     fg_weight_set_numel (const FgWeightSet *set);   /* total trainable scalars */

FG_API void   fg_weight_set_zero_grad (FgWeightSet *set);
/* L2 norm of all trainable gradients, accumulated in double. */
FG_API double fg_weight_set_grad_norm (const FgWeightSet *set);
/* Scale gradients so their global L2 norm is at most max_norm; returns the norm before clipping.
 * A non-finite norm is returned as is and nothing is scaled (the caller reports it). */
FG_API double fg_weight_set_clip_grad_norm (FgWeightSet *set, double max_norm);

/* Initialisers. */
FG_API void fg_weight_init_uniform (FgWeight *w, FgRng *rng, float bound);  /* U(-bound, bound) */
FG_API void fg_weight_init_normal (FgWeight *w, FgRng *rng, float std);
FG_API void fg_weight_init_const (FgWeight *w, float value);

/* Versioned binary checkpoint with a SHA-256 checksum (format in doc/checkpoint.md).
 * Load checks every name and shape against the set and never touches the set on error. */
FG_API gboolean fg_weight_set_save (const FgWeightSet *set, const char *path, GError **error);
FG_API gboolean fg_weight_set_load (FgWeightSet *set, const char *path, GError **error);
/* The same, skipping the file's entries that name no weight of the set (e.g. the optimizer
 * moments of a training state); every weight of the set must still be there. */
FG_API gboolean fg_weight_set_load_subset (FgWeightSet *set, const char *path, GError **error);

/* Raw bytes kept as a weight, for training-state checkpoints (counters, generator states,
 * permutations): a non-trainable [⌈n/4⌉] weight holding the n bytes bit for bit, zero-padded.
 * fg_weight_get_bytes copies the first n bytes back (n at most 4·numel). */
FG_API FgWeight *fg_weight_set_add_bytes (FgWeightSet *set, const char *name, const void *data,
                                          gsize n);
FG_API void      fg_weight_get_bytes (const FgWeight *w, void *out, gsize n);

G_END_DECLS
