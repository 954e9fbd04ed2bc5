/* SPDX-License-Identifier: MIT */
/* flowgmm — experiment files, the runner, the results store and comparison tables.
 *
 * The grammar is documented in doc/flowgmm-experiment.5.  In short: an [experiment] group, one
 * [dataset:NAME] group per data set and one [method:NAME] group per method; every key is checked
 * against the plugin's declared parameters; values with ';' or "lo..hi" are grids.
 * fg_experiment_run () expands datasets × methods × grid points × seeds into cells and appends
 * each finished cell atomically to OUT/results.jsonl; a cell already there is not run again.
 */
#pragma once

#include <glib.h>
#include <flowgmm/registry.h>

G_BEGIN_DECLS

typedef struct _FgExperiment FgExperiment;

/* With reg NULL only the grammar is checked (enough to list cells and render tables, not to
 * run); with a registry every key is validated against the plugins' declared parameters. */
FG_API FgExperiment *fg_experiment_load (const char *path, FgRegistry *reg, GError **error);
FG_API FgExperiment *fg_experiment_load_data (const char *data, gssize length,
                                              const char *display_name, const char *base_dir,
                                              FgRegistry *reg, GError **error);
FG_API void          fg_experiment_free (FgExperiment *exp);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgExperiment, fg_experiment_free)

FG_API const char *fg_experiment_get_title (const FgExperiment *exp);
FG_API guint       fg_experiment_get_n_cells (const FgExperiment *exp);
/* One cell: a dataset × method × grid point × seed.  Strings belong to the experiment. */
typedef struct {
  const char *key;     /* its key in OUT/results.jsonl */
  const char *dataset; /* NAME of [dataset:NAME] */
  const char *method;  /* NAME of [method:NAME] */
  const char *grid;    /* the grid keys' values at this point, "k=3 lr=0.01" ("" if none) */
  guint       point;   /* index of the grid point, in grid order */
  guint64     seed;
  gpointer    reserved[4];
} FgCellInfo;

/* Cells are ordered by dataset, method, grid point, then seed.  FALSE when i is out of range. */
FG_API gboolean    fg_experiment_get_cell (const FgExperiment *exp, guint i, FgCellInfo *info);
/* "<dir of file>/<basename without .exp>.out" */
FG_API char       *fg_experiment_default_out_dir (const FgExperiment *exp);

typedef struct {
  const char *out_dir;    /* NULL: fg_experiment_default_out_dir () */
  guint       jobs;       /* cells run at once (worker processes); 0 or 1: one at a time */
  gboolean    quiet;      /* no progress on stderr; failed cells are still reported */
  gboolean    retry_failed; /* run cells again whose stored result is an error */
  volatile gint *cancel;  /* set non-zero (e.g. from SIGINT) to stop after the cells in flight */
  gpointer    reserved[4];
  /* Cells run in `jobs` worker processes (at least one), so that a cell that crashes (a signal,
   * exit ()) is stored as that cell's error and the run goes on.  no_isolate: run them in this
   * process instead (threads), e.g. under a debugger; a crash then ends the run. */
  gboolean    no_isolate;
  /* Run again the cells stored before a plugin file they used changed (stale cells); without
   * it they are counted (FgRunSummary.n_stale) and kept. */
  gboolean    rerun_stale;
} FgRunOptions;

typedef struct {
  guint n_cells;     /* in the experiment */
  guint n_skipped;   /* already in the results store */
  guint n_ok;        /* run now and succeeded */
  guint n_failed;    /* run now and recorded as errors (NaN, divergence, bad split, ...) */
  guint n_cancelled; /* not run because of cancellation */
  guint n_stale;     /* stored, but a plugin file they used has changed since (counted in
                        n_skipped unless FgRunOptions.rerun_stale) */
} FgRunSummary;

/* Run every cell not yet stored, then render the table.  Returns FALSE only when the run as a
 * whole cannot go on (unwritable output, results store of a different experiment); a failing
 * cell is recorded and counted, and the others still run. */
FG_API gboolean fg_experiment_run (FgExperiment *exp, const FgRunOptions *options,
                                   FgRunSummary *summary, GError **error);

/* Read OUT/results.jsonl and OUT/experiment.exp, select per (dataset, method) by the
 * experiment's rule and write OUT/table.{md,csv,tex}.  Returns the Markdown table (newly
 * allocated). */
FG_API char *fg_table_render_dir (const char *out_dir, GError **error);

G_END_DECLS
