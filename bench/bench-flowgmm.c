/* SPDX-License-Identifier: MIT */
/* flowgmm — benchmark: training throughput of the `flowgmm` method (realnvp-mlp flow +
 * flowgmm-nll loss + AdamW + gradient clipping) against the machine's sgemm rate, for the
 * PyTorch side-by-side run of bench/bench-flowgmm.sh.
 *
 * The steps timed are the trainer's own (core/method/flowgmm-method.c, reached through the registry as the
 * runner reaches it): nothing of the model is re-implemented here.  The data are random
 * (N(0, 1) rows, uniform labels); each step sees `--labeled` labeled rows and the rest of the
 * batch unlabeled, and the unlabeled pool is exactly one batch, so every step is one "epoch"
 * and the trainer's progress hook gives one timestamp per step.
 *
 * FLOPs per sample are those of the linear layers, forward and backward, counted as three
 * products per linear per step (forward, dX, dW: 3 · 2·in·out per sample).  Two counts:
 *  - effective: what the C flow multiplies.  The first layer of each coupling reads only the
 *    ⌊D/2⌋ or ⌈D/2⌉ identity coordinates (x ⊙ b · W = x_id · W[id rows]) and the last computes
 *    only the 2·n_ch outputs that are not masked away; the function is the same;
 *  - dense: the authors' formulation (Linear(D→k), Linear(k→2D)), which the PyTorch reference
 *    executes.
 * Percentages of the sgemm rate use the effective count for both sides (the useful work).
 *
 * The sgemm reference (--sgemm) times the very products of one step (same shapes, layouts and
 * beta, each layer on its own operands) as plain cblas_sgemm calls: at 1 thread (and, for
 * comparison, with all layers sharing one set of operands, hot in cache), and at 2 threads with
 * OpenBLAS's own threads and with each product's rows split over the core's pool.
 *
 *   make bench
 *   FLOWGMM_PLUGIN_PATH=... ./bench/bench-flowgmm --config d21 --threads 1 --sgemm
 *   (bench/bench-flowgmm.sh sets the plugin path and runs the PyTorch side too)
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include <cblas.h>
#include <glib/gstdio.h>
#include <flowgmm/flowgmm.h>

typedef struct {
  const char *name;
  gsize D;
  guint K, L, k;
  const char *means; /* the authors' rule for K = 2 (UCI) and K > 2 (text) is "tabular" */
} Config;

static const Config configs[] = {
  { "d21", 21, 2, 7, 256, "tabular" },
  { "d768", 768, 4, 7, 512, "tabular" },
};

static gchar **opt_configs = NULL;
static gint opt_threads = 1;
static gint opt_batch = 256;
static gint opt_labeled = 16;
static gint opt_steps = 0;
static gint opt_warmup = 5;
static gdouble opt_seconds = 5.0;
static gboolean opt_sgemm = FALSE;
static gboolean opt_interleave = FALSE;
static gdouble opt_dropout = 0.5;
static gchar *opt_verify = NULL;
static gint opt_verify_steps = 20;
static gint opt_seed = 1;
static gboolean opt_quiet = FALSE;

static GOptionEntry entries[] = {
  { "config", 'c', 0, G_OPTION_ARG_STRING_ARRAY, &opt_configs,
    "d21 (D=21 K=2 L=7 k=256) or d768 (D=768 K=4 L=7 k=512); repeatable (default both)", "NAME" },
  { "threads", 't', 0, G_OPTION_ARG_INT, &opt_threads, "fg_set_num_threads (default 1)", "N" },
  { "batch", 'b', 0, G_OPTION_ARG_INT, &opt_batch, "rows per step (default 256)", "N" },
  { "labeled", 'l', 0, G_OPTION_ARG_INT, &opt_labeled,
    "labeled rows among them (default 16)", "N" },
  { "steps", 's', 0, G_OPTION_ARG_INT, &opt_steps,
    "timed steps (default: as many as fit in --seconds)", "N" },
  { "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &opt_seconds, "time budget of the timed steps", "S" },
  { "warmup", 'w', 0, G_OPTION_ARG_INT, &opt_warmup, "untimed steps first (default 5)", "N" },
  { "sgemm", 0, 0, G_OPTION_ARG_NONE, &opt_sgemm,
    "also time the step's products as plain cblas_sgemm at 1 and 2 threads", NULL },
  { "interleave", 0, 0, G_OPTION_ARG_NONE, &opt_interleave,
    "after every training step, time one step's products as plain cblas_sgemm at --threads "
    "(OpenBLAS's threads and rows split over the pool, in turn): the reference measured in the "
    "same seconds as the steps", NULL },
  { "dropout", 0, 0, G_OPTION_ARG_DOUBLE, &opt_dropout, "flow.dropout (default 0.5)", "P" },
  { "seed", 0, 0, G_OPTION_ARG_INT, &opt_seed, "seed of data and model (default 1)", "N" },
  { "verify", 0, 0, G_OPTION_ARG_FILENAME, &opt_verify,
    "write DIR/<config>.{data,init.fgw,losses} for bench_flowgmm_torch.py --verify: the data, "
    "the initial weights and the losses of --verify-steps steps without dropout", "DIR" },
  { "verify-steps", 0, 0, G_OPTION_ARG_INT, &opt_verify_steps, "steps of --verify (20)", "N" },
  { "quiet", 'q', 0, G_OPTION_ARG_NONE, &opt_quiet, "only the RESULT lines", NULL },
  { NULL }
};

/* ------------------------------------------------------------------ FLOPs */

/* The linear layers of one step: (in, out) of every product, effective or dense. */
typedef struct {
  gsize in, out;
} Linear;

static guint
step_linears (const Config *c, gboolean dense, Linear *out)
{
  guint n = 0;
  for (guint l = 0; l < c->L; l++)
    {
      const gsize n_id = l % 2 == 0 ? c->D / 2 : c->D - c->D / 2, n_ch = c->D - n_id;
      out[n++] = (Linear){ dense ? c->D : n_id, c->k };
      out[n++] = (Linear){ c->k, c->k }; /* one inner layer, as the authors */
      out[n++] = (Linear){ c->k, dense ? 2 * c->D : 2 * n_ch };
    }
  return n;
}

static double
flops_per_sample (const Config *c, gboolean dense)
{
  Linear lin[3 * 64];
  const guint n = step_linears (c, dense, lin);
  double f = 0.0;
  for (guint i = 0; i < n; i++)
    f += 3.0 * 2.0 * (double) lin[i].in * (double) lin[i].out;
  return f;
}

/* CPU time of the whole process (all threads): on a shared machine, what the run itself used. */
static double
cpu_seconds (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

/* ------------------------------------------------------------------ the sgemm reference */

#define MAX_LINEARS (3 * 64)

typedef struct {
  Linear lin[MAX_LINEARS];
  guint n;
  gsize N;
  /* each product on its own operands, as in a step (no layer shares weights or activations) */
  float *x[MAX_LINEARS], *w[MAX_LINEARS], *y[MAX_LINEARS], *dx[MAX_LINEARS], *dw[MAX_LINEARS];
  guint split;                /* > 1: rows (or columns) split over this many pool threads */
  gboolean shared;            /* all layers on the operands of the first */
} GemmStep;

typedef struct {
  CBLAS_TRANSPOSE ta, tb;
  int m, n, k, lda, ldb, ldc;
  float beta;
  const float *a, *b;
  float *c;
} GemmCall;

/* One block of rows of C (columns when C is wider than tall), aligned to 16. */
static void
gemm_part (gpointer data, guint t, guint n_tasks)
{
  const GemmCall *g = data;
  const gboolean rows = g->m >= g->n;
  const int len = rows ? g->m : g->n, units = (len + 15) / 16;
  const int r0 = MIN (len, units * (int) t / (int) n_tasks * 16);
  const int r1 = MIN (len, units * ((int) t + 1) / (int) n_tasks * 16);
  if (r1 <= r0)
    return;
  if (rows)
    cblas_sgemm (CblasRowMajor, g->ta, g->tb, r1 - r0, g->n, g->k, 1.0f,
                 g->ta == CblasTrans ? g->a + r0 : g->a + (gsize) r0 * g->lda, g->lda, g->b, g->ldb,
                 g->beta, g->c + (gsize) r0 * g->ldc, g->ldc);
  else
    cblas_sgemm (CblasRowMajor, g->ta, g->tb, g->m, r1 - r0, g->k, 1.0f, g->a, g->lda,
                 g->tb == CblasTrans ? g->b + (gsize) r0 * g->ldb : g->b + r0, g->ldb, g->beta,
                 g->c + r0, g->ldc);
}

static void
ref_sgemm (const GemmStep *s, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
           const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
  GemmCall g = { ta, tb, m, n, k, lda, ldb, ldc, beta, a, b, c };
  if (s->split > 1)
    fg_tape_parallel_run (s->split, gemm_part, &g);
  else
    cblas_sgemm (CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* One step's products as the tape issues them: y = x·W (beta 1 onto the bias), dX = dZ·Wᵀ,
 * dW += xᵀ·dZ. */
static void
gemm_step (GemmStep *g)
{
  const int N = (int) g->N;
  for (guint i = 0; i < g->n; i++)
    {
      const int in = (int) g->lin[i].in, out = (int) g->lin[i].out;
      ref_sgemm (g, CblasNoTrans, CblasNoTrans, N, out, in, g->x[i], in, g->w[i], out, 1.0f,
                 g->y[i], out);
      ref_sgemm (g, CblasNoTrans, CblasTrans, N, in, out, g->y[i], out, g->w[i], out, 0.0f,
                 g->dx[i], in);
      ref_sgemm (g, CblasTrans, CblasNoTrans, in, out, N, g->x[i], in, g->y[i], out, 1.0f,
                 g->dw[i], out);
    }
}

static int
cmp_double (const void *a, const void *b)
{
  const double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double
median (double *v, guint n)
{
  qsort (v, n, sizeof (double), cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One step's products, each layer on its own operands as in a step; with `shared`, all layers
 * reuse one set (every operand hot in cache: an upper bound). */
static GemmStep *
gemm_step_new (const Config *c, gboolean shared)
{
  GemmStep *g = g_new0 (GemmStep, 1);
  gsize max_in = 1, max_out = 1;
  g->n = step_linears (c, FALSE, g->lin);
  g->N = (gsize) opt_batch;
  for (guint i = 0; i < g->n; i++)
    {
      max_in = MAX (max_in, g->lin[i].in);
      max_out = MAX (max_out, g->lin[i].out);
    }
  for (guint i = 0; i < g->n; i++)
    {
      const gsize in = shared ? max_in : g->lin[i].in, out = shared ? max_out : g->lin[i].out;
      if (shared && i > 0)
        {
          g->x[i] = g->x[0];
          g->dx[i] = g->dx[0];
          g->y[i] = g->y[0];
          g->w[i] = g->w[0];
          g->dw[i] = g->dw[0];
          continue;
        }
      g->x[i] = fg_alloc_floats (g->N * in);
      g->dx[i] = fg_alloc_floats (g->N * in);
      g->y[i] = fg_alloc_floats (g->N * out);
      g->w[i] = fg_alloc_floats (in * out);
      g->dw[i] = fg_alloc_floats (in * out);
      for (gsize k = 0; k < g->N * in; k++)
        g->x[i][k] = (float) ((k * 2654435761u) % 1000) * 1e-3f - 0.5f;
      memset (g->y[i], 0, g->N * out * sizeof (float));
      for (gsize k = 0; k < in * out; k++)
        {
          g->w[i][k] = (float) ((k * 40503u) % 1000) * 1e-5f;
          g->dw[i][k] = 0.0f;
        }
    }
  g->shared = shared;
  return g;
}

static void
gemm_step_free (GemmStep *g)
{
  for (guint i = 0; i < (g->shared ? 1 : g->n); i++)
    {
      fg_free_aligned (g->x[i]);
      fg_free_aligned (g->dx[i]);
      fg_free_aligned (g->y[i]);
      fg_free_aligned (g->w[i]);
      fg_free_aligned (g->dw[i]);
    }
  g_free (g);
}

/* Median seconds of one step's products at `threads` threads (and the process CPU seconds
 * per step in *cpu): OpenBLAS's own threads, or (split) each product cut into row blocks that
 * run as single-threaded sgemm calls on the core's pool. */
static double
time_gemm_step (const Config *c, guint threads, gboolean split, gboolean shared, double *cpu)
{
  GemmStep *g = gemm_step_new (c, shared);
  double t[15], tc[15];
  if (split)
    {
      fg_set_num_threads (threads); /* OpenBLAS at one thread, the pool at `threads` */
      g->split = threads;
    }
  else
    openblas_set_num_threads ((int) threads);
  for (int i = 0; i < 3; i++)
    gemm_step (g);
  for (guint r = 0; r < G_N_ELEMENTS (t); r++)
    {
      const gint64 t0 = g_get_monotonic_time ();
      const double c0 = cpu_seconds ();
      int reps = 0;
      do
        {
          gemm_step (g);
          reps++;
        }
      while (g_get_monotonic_time () - t0 < 100000);
      t[r] = (double) (g_get_monotonic_time () - t0) * 1e-6 / reps;
      tc[r] = (cpu_seconds () - c0) / reps;
    }
  gemm_step_free (g);
  *cpu = median (tc, G_N_ELEMENTS (tc));
  return median (t, G_N_ELEMENTS (t));
}

/* ------------------------------------------------------------------ the trainer */

typedef struct {
  gint64 *stamps;  /* the end of each step */
  gint64 *resume;  /* when the next step starts: the stamp, or after the interleaved reference */
  double *cpu;     /* process CPU seconds at each stamp */
  double *cpu_resume; /* ... and at each resume */
  double *losses;
  gboolean *after_ref; /* the reference ran after this step (the next one starts cold) */
  guint n, cap;
  GemmStep *gemm;  /* --interleave: the products timed between blocks of steps, or NULL */
  guint threads, warmup;
  double *ref[2];  /* timed reference passes: OpenBLAS's threads, rows split (seconds) */
  guint n_ref[2];
} StepLog;

/* --interleave: after every INTERLEAVE_BLOCK training steps, INTERLEAVE_BLOCK passes over one
 * step's products at log->threads threads, alternately with OpenBLAS's own threads and with
 * rows split over the core's pool (at one thread: plain single-threaded sgemm).  The first
 * pass of a block and the first training step after it find the caches full of the other's
 * data and are not timed: both sides are measured in their steady state, in the same seconds. */
#define INTERLEAVE_BLOCK 4

/* The timed passes of the block after step n go to ref[n·(B−1) ...] (kind n / B mod 2). */
static void
interleaved_reference (StepLog *log)
{
  const guint block = log->n / INTERLEAVE_BLOCK;
  const gboolean openblas = log->threads > 1 && block % 2 == 0;
  log->gemm->split = log->threads > 1 && !openblas ? log->threads : 1;
  if (openblas)
    openblas_set_num_threads ((int) log->threads);
  for (guint p = 0; p < INTERLEAVE_BLOCK; p++)
    {
      const gint64 t0 = g_get_monotonic_time ();
      gemm_step (log->gemm);
      if (p > 0)
        log->ref[block % 2][log->n_ref[block % 2]++] =
          (double) (g_get_monotonic_time () - t0) * 1e-6;
    }
  if (openblas)
    openblas_set_num_threads (1); /* the pool owns the threads again (core/numeric/numeric-private.h) */
}

static void
on_progress (gpointer user_data, double fraction, const char *what)
{
  StepLog *log = user_data;
  const char *l = strstr (what, "loss ");
  if (log->n >= log->cap)
    return;
  log->stamps[log->n] = g_get_monotonic_time ();
  log->cpu[log->n] = cpu_seconds ();
  log->losses[log->n] = l != NULL ? g_ascii_strtod (l + 5, NULL) : NAN;
  log->after_ref[log->n] = FALSE;
  if (log->gemm != NULL && log->n >= log->warmup && (log->n + 1) % INTERLEAVE_BLOCK == 0)
    {
      interleaved_reference (log);
      log->after_ref[log->n] = TRUE;
    }
  log->resume[log->n] = g_get_monotonic_time ();
  log->cpu_resume[log->n] = cpu_seconds ();
  log->n++;
}

typedef struct {
  FgTensor *lab_x, *unlab_x;
  gint32 *lab_y;
  FgSplit split;
} Data;

static void
data_init (Data *d, const Config *c, guint64 seed)
{
  const gsize nl = (gsize) opt_labeled, nu = (gsize) (opt_batch - opt_labeled);
  FgRng rng;
  memset (d, 0, sizeof *d);
  fg_rng_init (&rng, seed, fg_rng_stream_id ("bench-data"));
  d->lab_x = fg_tensor_new_2d (MAX (nl, 1), c->D);
  d->unlab_x = fg_tensor_new_2d (nu, c->D);
  d->lab_y = g_new (gint32, MAX (nl, 1));
  fg_rng_fill_normal (&rng, d->lab_x->data, nl * c->D, 0.0f, 1.0f);
  fg_rng_fill_normal (&rng, d->unlab_x->data, nu * c->D, 0.0f, 1.0f);
  for (gsize i = 0; i < nl; i++)
    d->lab_y[i] = (gint32) (i % c->K); /* every class present */
  d->split.n_classes = c->K;
  d->split.shape.ndim = 1;
  d->split.shape.dims[0] = c->D;
  d->split.dim = c->D;
  d->split.labeled.x = *d->lab_x;
  d->split.labeled.x.shape[0] = nl;
  d->split.labeled.y = d->lab_y;
  d->split.labeled.n = nl;
  d->split.unlabeled.x = *d->unlab_x;
  d->split.unlabeled.n = nu;
  d->split.fingerprint = "bench-flowgmm";
  d->split.seed = seed;
}

static void
data_clear (Data *d)
{
  fg_tensor_free (d->lab_x);
  fg_tensor_free (d->unlab_x);
  g_free (d->lab_y);
}

static FgRegistry *
registry (void)
{
  static FgRegistry *reg;
  if (reg == NULL)
    {
      reg = fg_registry_new_with_builtins ();
      fg_registry_load_default (reg, NULL);
    }
  return reg;
}

/* Fit the flowgmm method for `steps` steps (0: save only the initial weights to `ckpt`). */
static gboolean
run_fit (const Config *c, Data *d, gsize steps, double dropout, const char *ckpt, StepLog *log,
         GError **error)
{
  const FgComponent *comp = fg_registry_find (registry (), FG_KIND_BASELINE, "flowgmm", error);
  g_autoptr (FgParams) params = NULL;
  g_autofree char *s_layers = g_strdup_printf ("%u", c->L);
  g_autofree char *s_hidden = g_strdup_printf ("%u", c->k);
  g_autofree char *s_drop = g_strdup_printf ("%g", dropout);
  g_autofree char *s_iter = g_strdup_printf ("%" G_GSIZE_FORMAT, steps);
  g_autofree char *s_ub = g_strdup_printf ("%d", opt_batch - opt_labeled);
  g_autofree char *s_ckpt = ckpt ? g_strdup (ckpt) : NULL;
  /* The authors' tabular settings (REFERENCE §1.3, doc/flowgmm-method.md). */
  const char *settings[][2] = {
    { "flow.layers", s_layers },
    { "flow.hidden", s_hidden },
    { "flow.inner_layers", "1" },
    { "flow.activation", "relu" },
    { "flow.dropout", s_drop },
    { "loss.unlabeled_weight", "1" },
    { "means", c->means },
    { "sigma", "1.3132616875182228" },
    { "optimizer", "adamw" },
    { "lr", "3e-4" },
    { "weight_decay", "1e-5" },
    { "clip", "100" },
    { "schedule", "cosine" },
    { "labeled_batch", "0" },
    { "unlabeled_batch", s_ub },
    { "unlabeled_order", "fixed" },
    { steps > 0 ? "iterations" : "epochs", steps > 0 ? s_iter : "0" },
    { ckpt ? "checkpoint" : NULL, s_ckpt },
  };
  FgFitHooks hooks = { on_progress, NULL, log };
  FgRng rng;
  gpointer self;
  gboolean ok;

  if (comp == NULL)
    return FALSE;
  params = fg_params_new (comp->params);
  if (!fg_registry_resolve_params (registry (), params, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (settings); i++)
    if (settings[i][0] != NULL && !fg_params_set (params, settings[i][0], settings[i][1], error))
      return FALSE;
  fg_rng_init (&rng, (guint64) opt_seed, 42);
  self = ((const FgBaselineVTable *) comp->vtable)->create (params, &rng, error);
  if (self == NULL)
    return FALSE;
  d->split.hooks = &hooks;
  ok = ((const FgBaselineVTable *) comp->vtable)->fit (self, &d->split, error);
  d->split.hooks = NULL;
  ((const FgBaselineVTable *) comp->vtable)->destroy (self);
  return ok;
}

static void
steplog_init (StepLog *log, guint cap)
{
  memset (log, 0, sizeof *log);
  log->cap = cap;
  log->stamps = g_new (gint64, cap);
  log->resume = g_new (gint64, cap);
  log->cpu = g_new (double, cap);
  log->cpu_resume = g_new (double, cap);
  log->losses = g_new (double, cap);
  log->after_ref = g_new (gboolean, cap);
  log->ref[0] = g_new (double, cap * INTERLEAVE_BLOCK + 1);
  log->ref[1] = g_new (double, cap * INTERLEAVE_BLOCK + 1);
}

static void
steplog_clear (StepLog *log)
{
  g_free (log->stamps);
  g_free (log->resume);
  g_free (log->cpu);
  g_free (log->cpu_resume);
  g_free (log->losses);
  g_free (log->after_ref);
  g_free (log->ref[0]);
  g_free (log->ref[1]);
  if (log->gemm != NULL)
    gemm_step_free (log->gemm);
}

/* --verify: data, initial weights and dropout-free losses for the PyTorch side to compare. */
static gboolean
write_verify (const Config *c, Data *d, GError **error)
{
  g_autofree char *base = g_build_filename (opt_verify, c->name, NULL);
  g_autofree char *ckpt = g_strconcat (base, ".init.fgw", NULL);
  g_autofree char *data = g_strconcat (base, ".data", NULL);
  g_autofree char *losses = g_strconcat (base, ".losses", NULL);
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GByteArray) bytes = g_byte_array_new ();
  StepLog log;
  guint32 hdr[4] = { (guint32) c->D, c->K, (guint32) opt_labeled,
                     (guint32) (opt_batch - opt_labeled) };

  if (g_mkdir_with_parents (opt_verify, 0755) != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot create %s", opt_verify);
      return FALSE;
    }
  steplog_init (&log, 1);
  if (!run_fit (c, d, 0, 0.0, ckpt, &log, error))
    return FALSE;
  steplog_clear (&log);
  steplog_init (&log, (guint) opt_verify_steps);
  if (!run_fit (c, d, (gsize) opt_verify_steps, 0.0, NULL, &log, error))
    return FALSE;

  /* data: u32 D, K, n_labeled, n_unlabeled; float32 rows (labeled first); int32 labels */
  g_byte_array_append (bytes, (const guint8 *) hdr, sizeof hdr);
  g_byte_array_append (bytes, (const guint8 *) d->lab_x->data,
                       (guint) (opt_labeled * c->D * sizeof (float)));
  g_byte_array_append (bytes, (const guint8 *) d->unlab_x->data,
                       (guint) ((opt_batch - opt_labeled) * c->D * sizeof (float)));
  g_byte_array_append (bytes, (const guint8 *) d->lab_y, (guint) (opt_labeled * sizeof (gint32)));
  if (!g_file_set_contents (data, (const char *) bytes->data, bytes->len, error))
    return FALSE;
  for (guint i = 0; i < log.n; i++)
    g_string_append_printf (text, "%.9g\n", log.losses[i]);
  steplog_clear (&log);
  if (!g_file_set_contents (losses, text->str, (gssize) text->len, error))
    return FALSE;
  if (!opt_quiet)
    printf ("# verify: wrote %s.{data,init.fgw,losses} (%d steps, dropout 0)\n", base,
            opt_verify_steps);
  return TRUE;
}

static gboolean
bench_config (const Config *c, GError **error)
{
  const double f_eff = flops_per_sample (c, FALSE), f_dense = flops_per_sample (c, TRUE);
  Data d;
  StepLog log;
  guint steps = (guint) opt_steps;
  double *dt;
  guint n_dt = 0;

  data_init (&d, c, (guint64) opt_seed);
  if (opt_verify != NULL && !write_verify (c, &d, error))
    {
      data_clear (&d);
      return FALSE;
    }

  fg_set_num_threads ((guint) opt_threads);
  if (steps == 0)
    {
      /* Size the run from a short one. */
      StepLog probe;
      steplog_init (&probe, 8);
      if (!run_fit (c, &d, 4, opt_dropout, NULL, &probe, error))
        return FALSE;
      const double per_step = probe.n >= 2 ? (double) (probe.stamps[probe.n - 1] - probe.stamps[1])
                                                 * 1e-6 / (probe.n - 2 > 0 ? probe.n - 2 : 1)
                                           : 0.1;
      steplog_clear (&probe);
      steps = (guint) CLAMP (opt_seconds / MAX (per_step, 1e-6), 10, 100000);
    }
  steplog_init (&log, steps + (guint) opt_warmup);
  if (opt_interleave)
    {
      log.gemm = gemm_step_new (c, FALSE);
      log.threads = (guint) opt_threads;
      log.warmup = (guint) opt_warmup;
    }
  const gint64 t0 = g_get_monotonic_time ();
  if (!run_fit (c, &d, steps + (gsize) opt_warmup, opt_dropout, NULL, &log, error))
    {
      steplog_clear (&log);
      data_clear (&d);
      return FALSE;
    }
  const double wall = (double) (g_get_monotonic_time () - t0) * 1e-6;
  dt = g_new (double, MAX (log.n, 1));
  double *dc = g_new (double, MAX (log.n, 1));
  /* the interleaved reference: the better of its two kinds (medians), as for --sgemm */
  for (guint i = (guint) MAX (opt_warmup, 1); i < log.n; i++)
    if (!log.after_ref[i - 1]) /* the first step after an interleaved block starts cold */
      {
        dc[n_dt] = log.cpu[i] - log.cpu_resume[i - 1];
        dt[n_dt++] = (double) (log.stamps[i] - log.resume[i - 1]) * 1e-6;
      }
  /* the interleaved reference: the better of its two kinds (medians), as for --sgemm */
  double ref_rate[2] = { NAN, NAN }; /* GFLOP/s: OpenBLAS's threads, rows split */
  double iref = NAN;
  for (guint k = 0; k < 2; k++)
    if (log.n_ref[k] > 0)
      {
        ref_rate[k] = f_eff * opt_batch / median (log.ref[k], log.n_ref[k]) * 1e-9;
        iref = iref == iref ? MAX (iref, ref_rate[k]) : ref_rate[k];
      }
  const double cpu_step = median (dc, MAX (n_dt, 1));
  g_free (dc);
  double mean = 0.0;
  for (guint i = 0; i < n_dt; i++)
    mean += dt[i];
  mean /= MAX (n_dt, 1);
  const double step_s = median (dt, MAX (n_dt, 1));
  const double sps = opt_batch / step_s;
  const double gflops = sps * f_eff * 1e-9;
  const double first_loss = log.n > 0 ? log.losses[0] : NAN;
  const double last_loss = log.n > 0 ? log.losses[log.n - 1] : NAN;

  double g1 = NAN, g2 = NAN, g2s = NAN, g1h = NAN, c1 = NAN, c2 = NAN, c2s = NAN, c1h = NAN;
  if (opt_sgemm)
    {
      const double per_step = f_eff * opt_batch;
      g1 = per_step / time_gemm_step (c, 1, FALSE, FALSE, &c1) * 1e-9;
      g1h = per_step / time_gemm_step (c, 1, FALSE, TRUE, &c1h) * 1e-9;
      g2 = per_step / time_gemm_step (c, 2, FALSE, FALSE, &c2) * 1e-9;
      g2s = per_step / time_gemm_step (c, 2, TRUE, FALSE, &c2s) * 1e-9;
      fg_set_num_threads ((guint) opt_threads); /* restore the budget (and OpenBLAS at 1) */
    }

  if (!opt_quiet)
    {
      printf ("# %s: D=%" G_GSIZE_FORMAT " K=%u couplings=%u hidden=%u inner=1 dropout=%g "
              "batch=%d (%d labeled), AdamW wd 1e-5, clip 100, cosine lr 3e-4\n",
              c->name, c->D, c->K, c->L, c->k, opt_dropout, opt_batch, opt_labeled);
      printf ("# FLOPs/sample (fwd+bwd, 3 GEMMs per linear): effective %.3f M, dense %.3f M\n",
              f_eff * 1e-6, f_dense * 1e-6);
      printf ("# threads %d: %u timed steps after %d warm-up (%.1f s in all): median %.3f ms, "
              "mean %.3f ms per step; process CPU %.3f ms per step\n",
              opt_threads, n_dt, opt_warmup, wall, step_s * 1e3, mean * 1e3, cpu_step * 1e3);
      printf ("# loss: step 1 %.6g, step %u %.6g\n", first_loss, log.n, last_loss);
      if (opt_sgemm)
        printf ("# sgemm on the step's products: %.1f GFLOP/s at 1 thread (%.1f with every "
                "operand hot in cache); at 2, %.1f (OpenBLAS's threads) and %.1f (rows split "
                "over the core's pool); per CPU second %.1f, %.1f, %.1f\n",
                g1, g1h, g2, g2s, f_eff * opt_batch / c1 * 1e-9, f_eff * opt_batch / c2 * 1e-9,
                f_eff * opt_batch / c2s * 1e-9);
    }
  if (!opt_quiet && opt_interleave)
    printf ("# interleaved: between blocks of steps, one step's products at %d thread(s): %.1f GFLOP/s "
            "(OpenBLAS's threads, median of %u) and %.1f (rows split, median of %u); C reaches "
            "%.1f %% of the better\n",
            opt_threads, ref_rate[0], log.n_ref[0], ref_rate[1], log.n_ref[1],
            100 * gflops / iref);
  printf ("RESULT impl=c config=%s threads=%d batch=%d samples_per_s=%.1f step_ms=%.4f "
          "flops_per_sample=%.6g dense_flops_per_sample=%.6g gflops=%.2f loss_first=%.6g "
          "loss_last=%.6g sgemm1=%.2f sgemm1hot=%.2f sgemm2=%.2f sgemm2split=%.2f cpu_ms=%.4f "
          "isgemm=%.2f\n",
          c->name, opt_threads, opt_batch, sps, step_s * 1e3, f_eff, f_dense, gflops, first_loss,
          last_loss, g1, g1h, g2, g2s, cpu_step * 1e3, iref);
  fflush (stdout);
  g_free (dt);
  steplog_clear (&log);
  data_clear (&d);
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— flowgmm training throughput");
  g_autoptr (GError) error = NULL;
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("bench-flowgmm: %s\n", error->message);
      return 2;
    }
  if (opt_batch < 2 || opt_labeled < 0 || opt_labeled >= opt_batch || opt_threads < 1
      || opt_warmup < 1)
    {
      g_printerr ("bench-flowgmm: need batch >= 2, 0 <= labeled < batch, threads >= 1, "
                  "warmup >= 1\n");
      return 2;
    }
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    {
      gboolean want = opt_configs == NULL;
      for (char **p = opt_configs; p && *p; p++)
        want |= g_strcmp0 (*p, configs[i].name) == 0;
      if (want && !bench_config (&configs[i], &error))
        {
          g_printerr ("bench-flowgmm: %s: %s\n", configs[i].name, error->message);
          return 1;
        }
    }
  for (char **p = opt_configs; p && *p; p++)
    {
      gboolean known = FALSE;
      for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
        known |= g_strcmp0 (*p, configs[i].name) == 0;
      if (!known)
        {
          g_printerr ("bench-flowgmm: unknown config '%s' (d21, d768)\n", *p);
          return 2;
        }
    }
  g_strfreev (opt_configs);
  g_free (opt_verify);
  return 0;
}
