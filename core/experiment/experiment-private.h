/* SPDX-License-Identifier: MIT */
/* flowgmm — what experiment.c, runner.c, results.c, table.c, outputs.c and progress.c share.
 *
 * An FgExperiment exists at two levels.  Its *syntax* (groups, raw values, grids, cells and their
 * keys) needs no plugin and is all that rendering a table needs, so `flowgmm table OUT` works from
 * OUT/experiment.exp alone.  Loaded with a registry it also holds the *validated* parameters: one
 * FgParams per dataset (and its split keys) and one per grid point of each method.
 *
 * Cell keys are computed from the syntax only (group names, normalised raw values, seed), never
 * from plugin defaults, for the same reason.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <flowgmm/flowgmm.h>
#include <flowgmm/group.h>

G_BEGIN_DECLS

typedef enum {
  FG_SELECT_BEST_VALIDATION,
  FG_SELECT_MEAN_STD,
  FG_SELECT_PER_SEED,
} FgSelectRule;

/* Metrics computed on the validation and test parts (bpd also on the training rows).  The
 * *_TEMP ones are computed after temperature scaling fitted on the validation part
 * (doc/analysis.md). */
typedef enum {
  FG_METRIC_ACCURACY = 0,
  FG_METRIC_NLL = 1,
  FG_METRIC_ECE = 2,
  FG_METRIC_BPD = 3, /* bits per dimension of the 8-bit data: (−log p(u) + D log 256)/(D log 2) */
  FG_METRIC_BRIER = 4,
  FG_METRIC_NLL_TEMP = 5,
  FG_METRIC_ECE_TEMP = 6,
  FG_METRIC_BRIER_TEMP = 7,
  FG_N_METRICS = 8,
} FgMetric;

/* Stored metric fields: part (0 = validation, 1 = test, 2 = training rows) * FG_N_METRICS +
 * metric.  Of the training part only bpd is computed. */
#define FG_N_FIELDS (3 * FG_N_METRICS)
#define FG_FIELD(part, metric) ((part) * FG_N_METRICS + (metric))
#define FG_PART_TRAIN_FIELDS 2

/* A method's label in the table: its `row`, else its name. */
#define _fg_method_label(m) \
  (((const FgExpMethod *) (m))->row != NULL ? ((const FgExpMethod *) (m))->row \
                                            : ((const FgExpMethod *) (m))->name)

const char *_fg_metric_name (FgMetric m);             /* "accuracy", "nll", "ece", "bpd", ... */
const char *_fg_field_name (guint field);             /* "val_accuracy", ..., "train_bpd" */
/* Whether records store `field` when `metrics` are asked for. */
gboolean    _fg_field_is_computed (const gboolean *metrics, guint field);
gboolean    _fg_metric_from_name (const char *name, FgMetric *m);
gboolean    _fg_field_from_name (const char *name, guint *field); /* also "accuracy" = test */
/* Whether the metrics asked for need the temperature fit. */
gboolean    _fg_metrics_need_temperature (const gboolean *metrics);

/* What the analysis keys of [experiment] ask for (doc/analysis.md). */
typedef struct {
  gboolean   reliability; /* reliability diagrams (test part, before/after temperature) */
  gboolean   boundary;    /* d(x) of the unlabeled points */
  gboolean   features;    /* feature visualisation by inversion */
  GPtrArray *ood;         /* FgExpDataset * (borrowed) scored as out-of-domain; empty: none */
  GPtrArray *ood_only;    /* owned: ood groups that are not run themselves */
  gboolean   ood_zeros;   /* also score the all-zeros input */
  guint      bins;        /* histogram bins */
  double     boundary_threshold; /* count of d(x) below this (paper: 5) */
  guint      feature_layer;
  guint      feature_channel;
  GArray    *feature_alphas;   /* double */
  guint      feature_examples;
} FgAnalysisOptions;

/* Whether a cell of `exp` has anything to analyse beyond the metrics. */
#define FG_ANALYSIS_WANTED(a) \
  ((a)->reliability || (a)->boundary || (a)->features || (a)->ood->len > 0)

/* One key = value line of a dataset or method group, after comment stripping and grid
 * expansion.  `values` holds one entry for a fixed value, several for a grid axis. */
typedef struct {
  char      *key;
  char      *raw;     /* normalised raw text (comment stripped, trimmed), for hashing */
  GPtrArray *values;  /* char *, unescaped */
  gboolean   is_grid; /* written as a list or a range */
  guint      line;    /* 1-based line in the file, 0 when unknown */
} FgExpEntry;

typedef struct {
  char              *name;   /* NAME of [dataset:NAME] */
  char              *group;  /* "dataset:NAME" */
  char              *plugin;
  GPtrArray         *entries;     /* FgExpEntry, file order, `plugin` excluded */
  char              *config_text; /* canonical text of the group, hashed into cell keys */
  /* Validated (registry mode only). */
  const FgComponent *component;
  FgParams          *params;
  FgParams          *split_params;
} FgExpDataset;

typedef struct {
  char              *name;   /* NAME of [method:NAME] */
  char              *group;  /* "method:NAME" */
  char              *plugin;
  GPtrArray         *entries;  /* FgExpEntry, file order, `plugin` and `datasets` excluded */
  char             **datasets; /* restriction, or NULL for all */
  char              *row;      /* `row`: the table label, shared by methods on disjoint data
                                * sets (a grid per dataset group); NULL: the name */
  guint              n_points; /* product of the axes' sizes */
  /* Validated (registry mode only). */
  const FgComponent *component;
  GPtrArray         *points;   /* FgParams *, one per grid point */
} FgExpMethod;

/* [reference:NAME]: published numbers shown beside the measured ones in the table. */
typedef struct {
  char       *name;   /* NAME of [reference:NAME] */
  char       *group;  /* "reference:NAME" */
  char       *title;  /* `title`, or NAME: the column (row) label suffix */
  GHashTable *values; /* "METHOD/DATASET" (method label, dataset name) -> text, verbatim */
} FgExpReference;

typedef struct {
  guint         index;
  FgExpDataset *dataset;
  FgExpMethod  *method;
  guint         point;      /* grid point in grid order */
  guint         seed_index;
  guint64       seed;
  char         *key;        /* "<dataset>/<method>/<seed>/<digest>" */
  char         *config;     /* digest of the dataset group + split keys + method plugin */
  char         *grid;       /* "k=3 lr=0.01": the axes' values at this point ("" when none) */
  char         *label;      /* "moons/knn k=3 seed 1", for progress lines */
  guint64       stream;     /* the method's RNG stream: a hash of dataset, method and point */
} FgCell;

typedef struct _FgDatasetCache FgDatasetCache;

struct _FgExperiment {
  char         *path;      /* as given (display name) */
  char         *base_dir;  /* absolute directory of the file */
  char         *contents;  /* the file's text */
  gsize         length;
  FgRegistry   *reg;       /* borrowed; NULL when loaded for its syntax only */

  char         *title;
  gboolean      title_given;
  GArray       *seeds;     /* guint64 */
  FgSelectRule  select;
  gboolean      rows_are_methods;
  guint         table_field;      /* FG_FIELD () shown in the table (the first of table_fields) */
  GArray       *table_fields;     /* guint: the fields shown, metric:a+b+c (one column each) */
  gboolean      metrics[FG_N_METRICS];
  guint         ranks_per_cell;   /* MPI ranks training one cell together (1: none) */

  GPtrArray    *datasets;  /* FgExpDataset, in run/table order */
  GPtrArray    *methods;   /* FgExpMethod, in run/table order */
  GPtrArray    *references; /* FgExpReference, in file order */
  GPtrArray    *cells;     /* FgCell, dataset-major, then method, grid point, seed */
  FgFigureOptions *figures; /* the figure keys of [experiment] (doc/figures.md) */
  guint64       checkpoint_every;   /* FgResume of every cell: save every N steps (0: no) */
  double        checkpoint_minutes; /* ... or after M minutes (0: no) */
  guint64       run_steps;          /* ... and stop each cell after N steps of a run (0: no) */
  char        **image_figures;      /* `image_figures`: "fig6", "fig3"; NULL: none */
  FgAnalysisOptions analysis; /* the analysis keys of [experiment] (doc/analysis.md) */

  FgDatasetCache *cache;   /* datasets loaded by the runner */
};

/* experiment.c */
FgExperiment *_fg_experiment_parse (const char *data, gsize length, const char *display_name,
                                    const char *base_dir, FgRegistry *reg, GError **error);
/* OUT/experiment.exp starts with this line and the path of the file it copies, whose name is
 * the default title. */
#define FG_EXPERIMENT_COPY_HEADER "# flowgmm: copy of "
FgExperiment *_fg_experiment_load_copy (const char *data, gsize length, const char *copy_path,
                                        const char *out_dir, GError **error);
/* Values of the grid axes of method `m` at `point`: fills `values` (one per entry of
 * m->entries, borrowed). */
void          _fg_exp_method_point_values (const FgExpMethod *m, guint point,
                                           const char **values);
char         *_fg_digest (const char *text, guint n_hex);

/* runner.c */
void          _fg_dataset_cache_free (FgDatasetCache *cache);

/* One cell, run by whoever schedules it (this process's threads, a worker process, an MPI
 * rank): the phases it goes through, named in crash reports. */
typedef enum {
  FG_CELL_PHASE_LOAD,    /* loading the data set (once per process) */
  FG_CELL_PHASE_SPLIT,
  FG_CELL_PHASE_CREATE,
  FG_CELL_PHASE_FIT,
  FG_CELL_PHASE_PREDICT, /* validation and test metrics */
  FG_CELL_PHASE_FIGURE,  /* figure data of a finished cell */
} FgCellPhase;
const char *_fg_cell_phase_name (FgCellPhase phase); /* "load", "fit", ... */

typedef enum {
  FG_CELL_STORE,      /* `record` holds the outcome, ok or error, to store */
  FG_CELL_NOT_STORED, /* its data set failed to load: reported, not stored (tried again) */
  FG_CELL_CANCELLED,  /* interrupted: nothing stored */
} FgCellEnd;

typedef struct {
  FgCellEnd   end;
  JsonObject *record;  /* FG_CELL_STORE only */
  char       *message; /* why it failed, NULL when it did not */
  double      seconds;
} FgCellResult;
void _fg_cell_result_clear (FgCellResult *r);

/* Every member may be NULL. */
typedef struct {
  void     (*phase) (gpointer user_data, const FgCell *cell, FgCellPhase phase);
  void     (*progress) (gpointer user_data, const FgCell *cell, double fraction,
                        const char *what);
  gboolean (*cancelled) (gpointer user_data);
  gpointer   user_data;
  /* Not a hook: the group of processes that fit the cell together (data parallelism over MPI,
   * flowgmm/group.h), handed to the method with the split; NULL: this process alone.  Only its
   * first member writes figure data. */
  const FgGroup *group;
} FgCellHooks;

/* Runs `cell` from its data set to its record; stores nothing (the record is the caller's). */
void        _fg_cell_run (FgExperiment *exp, const char *out_dir, const FgCell *cell,
                          const FgCellHooks *hooks, FgCellResult *result);
/* The record of a cell that failed outside _fg_cell_run () (its worker process crashed). */
JsonObject *_fg_cell_error_record (const FgExperiment *exp, const FgCell *cell,
                                   const char *message, double seconds);

/* provenance.c: the member "provenance" of a record (components, their plugin files and
 * digests, the library, the BLAS library and kernel), and whether a stored record is stale (a
 * plugin file it names has changed since). */
void     _fg_provenance_add (JsonBuilder *b, const FgExperiment *exp, const FgCell *cell);
gboolean _fg_provenance_is_stale (JsonObject *rec);

/* workers.c: cells in worker processes, so that a crash fails its cell, not the run.
 *
 * The coordinating process (the caller) keeps the results store and the progress display;
 * `jobs` worker processes forked from it run cells with _fg_cell_run () and send back phases,
 * progress and results over pipes.  A worker that dies (a signal, exit ()) fails the cell it was
 * running with "crashed: SIGSEGV in baseline 'x' during fit", and a new worker takes the next
 * cell.  The sink's callbacks run in the caller's process, one at a time. */
typedef struct {
  gboolean (*should_stop) (gpointer user_data); /* start no more cells */
  gboolean (*cancelled) (gpointer user_data);   /* and stop those in flight */
  void     (*started) (gpointer user_data, const FgCell *cell);
  void     (*progress) (gpointer user_data, const FgCell *cell, gint64 *last_report,
                        double fraction, const char *what);
  void     (*finished) (gpointer user_data, const FgCell *cell, const FgCellResult *r);
  void     (*not_run) (gpointer user_data, const FgCell *cell); /* stopped before it started */
  gpointer   user_data;
} FgWorkerSink;

gboolean _fg_workers_run (FgExperiment *exp, const char *out_dir, GPtrArray *todo, guint jobs,
                          const FgWorkerSink *sink, GError **error);
/* A new reference to the data set of group `d`, loaded once per process (thread-safe). */
FgDataset    *_fg_dataset_cache_get (FgExperiment *exp, const FgExpDataset *d, guint64 seed,
                                     GError **error);

/* runner.c: a run in pieces, for schedulers that spread cells over processes of their own
 * (mpi-runner.c).  _fg_run_begin opens the store when `store` (claims the output directory and
 * lists the cells to run in *todo), else makes a run that only computes cells (an MPI rank
 * other than 0: no store, no progress); the sink stores, counts and reports results;
 * _fg_run_end writes the table and figures (`outputs`) and frees the run. */
typedef struct _FgRun FgRun;
FgRun              *_fg_run_begin (FgExperiment *exp, const FgRunOptions *options,
                                   FgRunSummary *summary, gboolean store, GPtrArray **todo,
                                   GError **error);
const FgWorkerSink *_fg_run_get_sink (FgRun *run);
const char         *_fg_run_get_out_dir (FgRun *run);
gboolean            _fg_run_end (FgRun *run, gboolean outputs, GError **error);

/* results.c: the results store OUT/results.jsonl.
 *
 * One JSON object per line, appended with one write () each and flushed to disk; a torn last
 * line (a crash during that write) is skipped with a warning when the file is read, and the file
 * is rewritten without it (temp file + rename) before anything is appended. */
typedef struct _FgResultsStore FgResultsStore;

/* Read `out_dir`/results.jsonl (a missing file is an empty store).  `for_writing`: take the
 * directory's lock, repair a torn file and open it for appending. */
FgResultsStore *_fg_results_open (const char *out_dir, gboolean for_writing, GError **error);
void            _fg_results_close (FgResultsStore *store);
/* The last stored record for `key` (borrowed), or NULL. */
JsonObject     *_fg_results_lookup (FgResultsStore *store, const char *key);
/* Append one record (thread-safe). */
gboolean        _fg_results_append (FgResultsStore *store, JsonObject *record, GError **error);
/* The store of a run begun with store = TRUE (runner.c). */
FgResultsStore *_fg_run_get_store (FgRun *run);
/* Double member, NAN when absent or null. */
double          _fg_json_get_double (JsonObject *obj, const char *name);
const char     *_fg_json_get_string (JsonObject *obj, const char *name);
/* Refuses an out_dir holding results of another experiment; then writes the copy
 * OUT/experiment.exp. */
gboolean        _fg_results_claim_dir (const FgExperiment *exp, const char *out_dir,
                                       GError **error);

/* figure-images.c: the paper's Fig. 6 and Fig. 3a/b as image grids of a fitted cell. */
gboolean _fg_image_figures_write (const char *out_dir, const FgCell *cell,
                                  const FgBaselineVTable *vt, gpointer self, const FgSplit *split,
                                  const FgDataPart *test, const char *const *which,
                                  GPtrArray *written, GError **error);

/* analysis-run.c: the per-cell analysis (calibration data, OOD, d(x), feature inversion) and
 * OUT/analysis.md with its SVG figures. */
void          _fg_analysis_options_init (FgAnalysisOptions *a);
void          _fg_analysis_options_clear (FgAnalysisOptions *a);
/* The out-of-domain rows of a cell, raw (before any preprocessing): every ood group's test part
 * (other than the cell's own data set), then the all-zeros input when asked for.  `ranges`
 * gets, per ood group used, its name and first row.  NULL with no ood rows. */
FgTensor     *_fg_analysis_ood_rows (FgExperiment *exp, const FgCell *cell, GArray *starts,
                                     GPtrArray *names, GError **error);
/* Runs the analyses asked for on a fitted cell, writes OUT/analysis/<cell>.json and adds the
 * summaries to the record being built (members "ood", "boundary", "features"). */
gboolean      _fg_analysis_run_cell (FgExperiment *exp, const char *out_dir, const FgCell *cell,
                                     const FgBaselineVTable *vt, gpointer self,
                                     const FgSplitData *sd, const GArray *ood_starts,
                                     GPtrArray *ood_names, const double *test_logp,
                                     double temperature, JsonObject *summary, GError **error);
/* Whether the stored record `rec` holds every analysis asked for. */
gboolean      _fg_analysis_is_done (const FgExperiment *exp, JsonObject *rec);
/* OUT/analysis.md and OUT/figures/analysis-*.svg from the stored records and analysis files. */
gboolean      _fg_analysis_render (const FgExperiment *exp, FgResultsStore *store,
                                   const char *out_dir, GError **error);

/* table.c: selection and the tables OUT/table.{md,tex,csv,json}. */
gboolean      _fg_table_render (const FgExperiment *exp, FgResultsStore *store,
                                const char *out_dir, char **markdown, GError **error);

/* outputs.c: the tables, then the figures; called at the end of a run and by
 * fg_table_render_dir (). */
gboolean      _fg_outputs_write (const FgExperiment *exp, FgResultsStore *store,
                                 const char *out_dir, char **markdown, GError **error);

/* progress.c: progress on stderr, thread-safe.  A bar on a terminal, plain lines otherwise. */
typedef struct _FgProgress FgProgress;

FgProgress *_fg_progress_new (guint n_total, gboolean quiet);
void        _fg_progress_free (FgProgress *p);
void        _fg_progress_cell_started (FgProgress *p, const FgCell *cell);
/* From FgFitHooks.progress; `last_us` (per cell) rate-limits plain lines. */
void        _fg_progress_cell_update (FgProgress *p, const FgCell *cell, gint64 *last_us,
                                      double fraction, const char *what);
void        _fg_progress_cell_finished (FgProgress *p, const FgCell *cell, const char *status,
                                        double val_accuracy, double test_accuracy,
                                        double seconds, const char *message);
void        _fg_progress_done (FgProgress *p);

G_END_DECLS
