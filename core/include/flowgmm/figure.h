/* SPDX-License-Identifier: MIT */
/* flowgmm — figures of 2-D experiments: the paper's Figures 1, 2 and 4.
 *
 * Two steps, so that figures can be redrawn and composed across cells without refitting:
 *
 *  1. capture: right after a cell is fitted on 2-D data, fg_figure_capture_cell () evaluates
 *     what the panels need through the method's vtable — class probabilities on a grid over the
 *     data (`predict`, so any method works), the training points mapped to the latent space
 *     (`embed`, optional) and samples of each class in the latent and data spaces (`sample`,
 *     optional) — and stores them in OUT/figures/data/<dataset>__<method>__s<seed>__p<point>.json.
 *  2. render: fg_figure_render () draws the requested figures from those files as PNG (150 dpi)
 *     and SVG into OUT/figures/ with cairo.  Built without cairo it draws nothing and says so;
 *     the captured data stay and can be drawn later.
 *
 * The experiment keys that configure both steps (grammar in doc/figures.md) are parsed by
 * fg_figure_options_set (); the [experiment] parser hands it every key that
 * fg_figure_is_option_key () accepts.
 */
#pragma once

#include <glib.h>
#include <flowgmm/plugin.h>
#include <flowgmm/split.h>

G_BEGIN_DECLS

typedef struct _FgFigureOptions FgFigureOptions;

FG_API FgFigureOptions *fg_figure_options_new (void);
FG_API FgFigureOptions *fg_figure_options_copy (const FgFigureOptions *opts);
FG_API void             fg_figure_options_free (FgFigureOptions *opts);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgFigureOptions, fg_figure_options_free)

/* The [experiment] keys read by this module, NULL-terminated: "figures", "figure_methods",
 * "figure_datasets", "figure_seed", "figure_grid", "figure_samples", "figure_temperature". */
FG_API const char *const *fg_figure_option_keys (void);
FG_API gboolean           fg_figure_is_option_key (const char *key);
/* Parse one key's value (as written in the file, ';'-separated lists).  Errors are
 * FG_ERROR_INVALID_PARAM and say what was expected; the caller adds file, group and key. */
FG_API gboolean fg_figure_options_set (FgFigureOptions *opts, const char *key, const char *value,
                                       GError **error);
/* The experiment's own order of datasets and methods (NULL-terminated) and its first seed, used
 * where figure_datasets, figure_methods or figure_seed are not given. */
FG_API void     fg_figure_options_set_defaults (FgFigureOptions *opts,
                                                const char *const *datasets,
                                                const char *const *methods, guint64 first_seed);
/* TRUE when the experiment asks for at least one figure. */
FG_API gboolean fg_figure_options_enabled (const FgFigureOptions *opts);
/* Whether a cell must be captured: figures enabled, and the dataset, method and seed are among
 * those the figures draw (every one when not restricted). */
FG_API gboolean fg_figure_options_wants_cell (const FgFigureOptions *opts, const char *dataset,
                                              const char *method, guint64 seed);

/* What identifies a captured cell (borrowed for the call). */
typedef struct {
  const char *dataset; /* NAME of [dataset:NAME] */
  const char *method;  /* NAME of [method:NAME] */
  guint64     seed;
  guint       point;   /* grid point index (0 when the method has no grid) */
  const char *key;     /* the cell's key in results.jsonl, or NULL */
  const char *grid;    /* "k=3 lr=0.01", or NULL */
  gpointer    reserved[4];
} FgFigureCell;

/* Evaluate a fitted method for the figures and store the result under
 * `out_dir`/figures/data/.  `split` and `test` (nullable) are the cell's data; the plot box
 * covers all of them.  Data that are not 2-D are skipped (TRUE, nothing written).  The optional
 * `embed`/`sample` methods are used when the vtable has them; their panels are left empty
 * otherwise.  Random draws come from a stream of the cell's seed of their own.  Thread-safe for
 * distinct cells. */
FG_API gboolean fg_figure_capture_cell (const char *out_dir, const FgFigureOptions *opts,
                                        const FgFigureCell *cell, const FgBaselineVTable *vt,
                                        gpointer self, const FgSplit *split,
                                        const FgDataPart *test, GError **error);

/* Whether `cell` has been captured under `out_dir` (so a resumed run can refit a stored cell
 * whose figure data are missing, e.g. when `figures` was added to the file later). */
FG_API gboolean fg_figure_has_capture (const char *out_dir, const FgFigureCell *cell);

/* Draw the figures `opts` asks for from `out_dir`/figures/data/ into `out_dir`/figures/.  The
 * paths written (PNG and SVG) are appended to `written` when it is not NULL.  A figure whose
 * cells were not captured is skipped with a g_message naming them.  Without cairo:
 * FG_ERROR_UNSUPPORTED (nothing drawn; the data stay). */
FG_API gboolean fg_figure_render (const char *out_dir, const FgFigureOptions *opts,
                                  GPtrArray *written, GError **error);

/* TRUE when this build can draw (cairo was found by configure). */
FG_API gboolean fg_figure_can_render (void);

G_END_DECLS
