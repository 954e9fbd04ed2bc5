/* SPDX-License-Identifier: MIT */
/* flowgmm tests — shared fixtures of the baseline tests: load a baseline through the registry
 * (as a user would), hand it a split built by hand, score it. */
#pragma once

#include <flowgmm/flowgmm.h>

#include "registry-helpers.h"

G_BEGIN_DECLS

typedef struct {
  const FgComponent      *component;
  const FgBaselineVTable *vt;
  FgParams               *params;
  FgRng                   rng;  /* the instance may keep a pointer to it */
  gpointer                self;
} BtModel;

/* Look `name` up (asserting it is registered), set `settings` ("key=value", NULL-terminated;
 * may be NULL) and create the instance with a generator seeded by `seed`.  Returns FALSE with
 * the error of fg_params_set or create. */
gboolean bt_model_init (BtModel *m, const char *name, const char *const *settings, guint64 seed,
                        GError **error);
void     bt_model_clear (BtModel *m);

/* A split over borrowed data: labeled (x, y, n rows of x), unlabeled x (may be NULL),
 * validation (may be NULL). */
void bt_split_init (FgSplit *split, guint n_classes, const FgTensor *lx, const gint32 *ly,
                    const FgTensor *ux, const FgTensor *vx, const gint32 *vy);

/* Fit (asserting success) and return the accuracy on (x, y); labels and probabilities are
 * checked for range and normalisation on the way. */
void   bt_fit (BtModel *m, const FgSplit *split);
double bt_accuracy (BtModel *m, const FgTensor *x, const gint32 *y, guint n_classes);

/* Gaussian blobs: n rows of `dim` features, class i % K around a random centre at distance
 * `sep` from 0, unit noise. */
void bt_blobs (guint64 seed, gsize n, gsize dim, guint K, double sep, FgTensor **x, gint32 **y);

G_END_DECLS
