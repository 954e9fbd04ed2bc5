/* SPDX-License-Identifier: MIT */
/* flowgmm — data sets as loaded by dataset plugins, and the per-cell split handed to methods.
 *
 * A dataset plugin returns an FgDataset: up to three parts (train, validation, test), each a
 * float32 matrix of examples (N×D, or N×C×H×W for images) with int32 labels (-1 = unknown).
 * The host splits it reproducibly per cell into an FgSplit (see split.h).
 */
#pragma once

#include <glib.h>
#include <flowgmm/tensor.h>
#include <flowgmm/group.h>

G_BEGIN_DECLS

typedef enum {
  FG_PART_TRAIN = 0,
  FG_PART_VAL = 1,
  FG_PART_TEST = 2,
  FG_N_PARTS = 3,
} FgPart;

FG_API const char *fg_part_to_string (FgPart part);

/* The shape of one example: [D] (ndim 1) or [C, H, W] (ndim 3). */
typedef struct {
  guint ndim;
  gsize dims[3];
} FgSampleShape;

FG_API gsize fg_sample_shape_numel (const FgSampleShape *shape);

typedef struct {
  FgTensor      x; /* n rows; 2-D (n×D) or 4-D (n×C×H×W) */
  const gint32 *y; /* n labels in [0, n_classes) or -1 (unknown); NULL when none are known */
  gsize         n;
} FgDataPart;

typedef struct _FgDataset FgDataset;

FG_API FgDataset  *fg_dataset_new (const char *name);
FG_API FgDataset  *fg_dataset_ref (FgDataset *ds);
FG_API void        fg_dataset_unref (FgDataset *ds);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgDataset, fg_dataset_unref)

/* Take ownership of x (from fg_tensor_new*) and y (g_malloc'ed, may be NULL).  Checks that x
 * is finite and that labels are -1 or in [0, n_classes) when classes are set; the error names
 * the part, row and column.  On error nothing is taken. */
FG_API gboolean    fg_dataset_set_part (FgDataset *ds, FgPart part, FgTensor *x, gint32 *y,
                                        GError **error);
/* Number of classes and (optionally) their names, n_classes entries. */
FG_API void        fg_dataset_set_classes (FgDataset *ds, guint n_classes,
                                           const char *const *names);
/* Per-example image shape; the parts' x tensors are reshaped to N×C×H×W views. */
FG_API gboolean    fg_dataset_set_image_shape (FgDataset *ds, gsize c, gsize h, gsize w,
                                               GError **error);
/* A labeled subset of the train part chosen by the data's authors (e.g. the toy sets'
 * labeled points); used when the experiment asks for no other labeled set.  Copied. */
FG_API void        fg_dataset_set_labeled_indices (FgDataset *ds, const guint32 *idx, gsize n);
/* Free text shown by `flowgmm describe` and stored with results (e.g. class-name mapping). */
FG_API void        fg_dataset_set_note (FgDataset *ds, const char *note);

FG_API const char *fg_dataset_get_name (const FgDataset *ds);
FG_API guint       fg_dataset_get_n_classes (const FgDataset *ds);
FG_API const char *fg_dataset_get_class_name (const FgDataset *ds, guint k); /* NULL if unset */
FG_API const FgSampleShape *fg_dataset_get_sample_shape (const FgDataset *ds);
FG_API gsize       fg_dataset_get_dim (const FgDataset *ds);
FG_API const FgDataPart *fg_dataset_get_part (const FgDataset *ds, FgPart part); /* NULL if absent */
FG_API const guint32 *fg_dataset_get_labeled_indices (const FgDataset *ds, gsize *n);
FG_API const char *fg_dataset_get_note (const FgDataset *ds);
/* n_classes from the labels when the plugin did not set it (max label + 1, at most the number
 * of labeled rows); checks that at least two classes are present in the train part.  Called by
 * the host on what a dataset plugin's load returns; a plugin may call it itself before
 * returning (a second call changes nothing). */
FG_API gboolean    fg_dataset_finish (FgDataset *ds, GError **error);

/* Hooks a long fit may call; all optional. */
typedef struct {
  /* fraction in [0, 1] of the fit done; `what` a short status such as "epoch 3/50 loss 1.23" */
  void     (*progress) (gpointer user_data, double fraction, const char *what);
  /* TRUE when the run is being interrupted: stop early and return an error */
  gboolean (*cancelled) (gpointer user_data);
  gpointer user_data;
} FgFitHooks;

/* The preprocessing a split applied to all of its parts (split keys dequantize_logit,
 * standardize, pca, l2_normalize; see split.h), fitted on the split's training rows (labeled +
 * unlabeled) only.  Reached through FgSplit.preprocessing.  Part of ABI 1. */
typedef struct {
  const char   *description; /* the steps in order, e.g. "dequantize_logit(0.9) standardize";
                              * "none" */
  gboolean      invertible;  /* every step is a bijection of the example space: logdets set */
  /* Per-example log|det ∂t(u)/∂u| of the whole map t from the input u to what the part holds,
   * one double per row of the part (NULL when not invertible: pca below the dimension,
   * l2_normalize).  u is the example as loaded (pixels scaled to [0, 1]); with
   * dequantize_logit it is the dequantised u = (255x + U)/256 in [0, 1).  A density method
   * reports the NLL in that space as NLL(t(u)) - logdet; 8-bit bits/dim add D·log 256. */
  const double *labeled_logdet;
  const double *unlabeled_logdet;
  const double *validation_logdet;
  const double *test_logdet;
  gpointer      reserved[4];
} FgPreprocessing;

/* Data augmentation drawn afresh at every training step (split keys augment_crop_pad and
 * augment_flip, for image-shaped examples C×H×W).  Part of ABI 1. */
typedef struct _FgAugment {
  guint    crop_pad; /* random H×W crop of the image zero-padded by this many pixels per side
                      * (torchvision RandomCrop(size, padding)); 0: off */
  gboolean flip;     /* mirror left-right with probability 1/2 (RandomHorizontalFlip) */
  gpointer reserved[2];
} FgAugment;

/* Where and how often a fit that trains in steps keeps its training state, so that a run
 * killed or stopped resumes where it was and ends with the same weights as an uninterrupted
 * one (experiment keys checkpoint_every, checkpoint_minutes and run_steps).  Part of ABI 1. */
typedef struct _FgResume {
  const char *dir;           /* private to the cell; the runner deletes it once the cell's
                              * result is stored */
  guint64     every_steps;   /* save every this many steps; 0: not by steps */
  double      every_minutes; /* save when this many minutes have passed since the last save;
                              * 0: not by time */
  guint64     run_steps;     /* stop after this many steps of this invocation with the state
                              * saved and fail with FG_ERROR_INTERRUPTED (the next run goes on);
                              * 0: no limit */
  gpointer    reserved[2];
} FgResume;

/* What a method sees of one cell's data.  All tensors are borrowed for the duration of fit. */
typedef struct {
  guint         n_classes;
  FgSampleShape shape;       /* of one example */
  gsize         dim;         /* numel of one example */
  FgDataPart    labeled;     /* y set, every label known */
  FgDataPart    unlabeled;   /* y NULL (methods never see these labels) */
  FgDataPart    validation;  /* y set; for early stopping or internal checks only */
  const char   *fingerprint; /* hex digest of the split's indices */
  guint64       seed;        /* the cell's seed */
  const FgFitHooks *hooks;   /* may be NULL */
  /* ABI 1 (took one reserved slot): the preprocessing applied to the parts;
   * set by fg_split_data_new, NULL in a split built by hand (treat NULL as "none"). */
  const FgPreprocessing *preprocessing;
  /* ABI 1 (took two reserved slots).  augment: the per-step augmentation
   * the split keys ask for (split.h: fg_augment_apply), NULL when none; a method that trains in
   * steps applies it to the rows of every step.  resume: where and how often a long fit keeps
   * its training state so that an interrupted run resumes (FgResume); NULL when the caller
   * offers nothing. */
  const struct _FgAugment *augment;
  const struct _FgResume  *resume;
  /* ABI 1, added for data-parallel training (took the last reserved slot): the group of
   * processes that fit this split together, each on its share of every batch
   * (flowgmm/group.h); NULL when the fit runs in one process.  Read it with
   * fg_split_get_group (). */
  const FgGroup *group;
} FgSplit;

/* Call the hooks if present. */
FG_API void     fg_split_report_progress (const FgSplit *split, double fraction, const char *what);
FG_API gboolean fg_split_cancelled (const FgSplit *split);
/* The group fitting the split together (NULL: this process alone). */
FG_API const FgGroup *fg_split_get_group (const FgSplit *split);

G_END_DECLS
