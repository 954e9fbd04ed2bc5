/* SPDX-License-Identifier: MIT */
/* flowgmm — an experiment over MPI ranks (built with --with-mpi).
 *
 * Rank 0 keeps the results store and schedules: it hands the cells still to run to the leaders
 * of the groups of ranks, largest first, one at a time (MPI_Send of a cell index), and stores
 * each result as it comes back (the same record a one-process run makes: _fg_run_deliver).  A
 * leader broadcasts its cell to the other ranks of its group, which train it together
 * (flowgmm/group.h) and give their results to nobody: the leader reports.  Rank 0 also computes,
 * in a thread of its own, when the MPI library allows it (MPI_THREAD_MULTIPLE; with groups of
 * one rank its cells make no MPI call, so any thread level will do).
 *
 * A rank that dies takes the job down (MPI's default); every cell finished before is already in
 * results.jsonl, and a rerun — with any number of ranks — computes only the others.
 *
 * Messages on MPI_COMM_WORLD: READY (leader → 0, once), RESULT (leader → 0: the cell's result as
 * JSON), ASSIGN (0 → leader: a cell index), STOP (0 → leader). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>

#include <flowgmm/mpi.h>

#include "experiment/experiment-private.h"
#include "numeric/group-mpi.h"

enum { TAG_READY = 101, TAG_RESULT = 102, TAG_ASSIGN = 103, TAG_STOP = 104 };

static gboolean mpi_started;
static int thread_level = MPI_THREAD_SINGLE;

gboolean
fg_mpi_launched (void)
{
  static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK",
                                      "PMIX_RANK", "MPI_LOCALNRANKS", NULL };
  const char *force = g_getenv ("FLOWGMM_MPI");
  if (force != NULL && *force != '\0')
    return strcmp (force, "0") != 0;
  for (guint i = 0; vars[i]; i++)
    if (g_getenv (vars[i]) != NULL)
      return TRUE;
  return FALSE;
}

gboolean
fg_mpi_init (int *argc, char ***argv)
{
  int done = 0;
  if (!fg_mpi_launched ())
    return FALSE;
  MPI_Initialized (&done);
  if (!done)
    {
      MPI_Init_thread (argc, argv, MPI_THREAD_MULTIPLE, &thread_level);
      mpi_started = TRUE;
    }
  else
    MPI_Query_thread (&thread_level);
  return TRUE;
}

void
fg_mpi_finalize (void)
{
  int done = 0;
  if (!mpi_started)
    return;
  MPI_Finalized (&done);
  if (!done)
    MPI_Finalize ();
  mpi_started = FALSE;
}

static gboolean
mpi_on (void)
{
  int init = 0, fin = 0;
  MPI_Initialized (&init);
  MPI_Finalized (&fin);
  return init && !fin;
}

guint
fg_mpi_get_rank (void)
{
  int r = 0;
  if (mpi_on ())
    MPI_Comm_rank (MPI_COMM_WORLD, &r);
  return (guint) r;
}

guint
fg_mpi_get_size (void)
{
  int n = 1;
  if (mpi_on ())
    MPI_Comm_size (MPI_COMM_WORLD, &n);
  return (guint) n;
}

/* ---- results as messages --------------------------------------------------------------------- */

static char *
result_to_json (guint cell, const FgCellResult *res)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "cell");
  json_builder_add_int_value (b, cell);
  json_builder_set_member_name (b, "end");
  json_builder_add_int_value (b, res->end);
  json_builder_set_member_name (b, "message");
  if (res->message != NULL)
    json_builder_add_string_value (b, res->message);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "seconds");
  json_builder_add_double_value (b, isfinite (res->seconds) ? res->seconds : 0.0);
  if (res->record != NULL)
    {
      JsonNode *node = json_node_new (JSON_NODE_OBJECT);
      json_node_set_object (node, res->record);
      json_builder_set_member_name (b, "record");
      json_builder_add_value (b, node);
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static gboolean
result_from_json (const char *text, gsize len, guint *cell, FgCellResult *res, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *obj;
  JsonNode *rec;

  memset (res, 0, sizeof *res);
  if (!json_parser_load_from_data (parser, text, (gssize) len, error))
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "not a JSON object");
      return FALSE;
    }
  obj = json_node_get_object (json_parser_get_root (parser));
  *cell = (guint) json_object_get_int_member (obj, "cell");
  res->end = (FgCellEnd) json_object_get_int_member (obj, "end");
  res->message = g_strdup (_fg_json_get_string (obj, "message"));
  res->seconds = _fg_json_get_double (obj, "seconds");
  rec = json_object_get_member (obj, "record");
  if (rec != NULL && JSON_NODE_HOLDS_OBJECT (rec))
    res->record = json_object_ref (json_node_get_object (rec));
  if (res->end == FG_CELL_STORE && res->record == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "a result without its record");
      _fg_cell_result_clear (res);
      return FALSE;
    }
  return TRUE;
}

/* ---- the order of the cells: largest first --------------------------------------------------- */

/* Training length from the method's parameters: `iterations` when set, else `epochs`, else 1. */
static double
static_cost (const FgCell *cell)
{
  const FgParams *params = g_ptr_array_index (cell->method->points, cell->point);
  double iters = 0, epochs = 0;
  for (const FgParamSpec *sp = fg_params_get_specs (params); sp && sp->name; sp++)
    if (sp->type == FG_PARAM_INT
        && (strcmp (sp->name, "iterations") == 0 || strcmp (sp->name, "epochs") == 0)
        && fg_params_has (params, sp->name))
      {
        double v = (double) fg_params_get_int (params, sp->name);
        if (strcmp (sp->name, "iterations") == 0)
          iters = v;
        else
          epochs = v;
      }
  return iters > 0 ? iters : epochs > 0 ? epochs : 1.0;
}

typedef struct {
  const FgCell *cell;
  double cost;
} Ranked;

static gint
by_cost (gconstpointer a, gconstpointer b)
{
  const Ranked *x = a, *y = b;
  if (x->cost != y->cost)
    return x->cost > y->cost ? -1 : 1;
  return x->cell->index < y->cell->index ? -1 : x->cell->index > y->cell->index;
}

static gint
compare_doubles (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* The cells to run, largest first.  A cell's size is the mean seconds stored for cells of the
 * same data set, method and grid point (other seeds; else other points), when a previous run
 * measured any; otherwise its training length (static_cost) times the median seconds per unit
 * of training length over the measured cells (1 when none). */
static void
order_largest_first (FgExperiment *exp, FgResultsStore *store, GPtrArray *todo)
{
  g_autofree Ranked *r = g_new0 (Ranked, MAX (todo->len, 1));
  g_autoptr (GArray) ratios = g_array_new (FALSE, FALSE, sizeof (double));
  double scale = 1.0;

  for (guint i = 0; i < exp->cells->len; i++)
    {
      const FgCell *c = g_ptr_array_index (exp->cells, i);
      double s = _fg_json_get_double (_fg_results_lookup (store, c->key), "seconds");
      if (isfinite (s))
        {
          double ratio = s / static_cost (c);
          g_array_append_val (ratios, ratio);
        }
    }
  if (ratios->len > 0)
    {
      g_array_sort (ratios, compare_doubles);
      scale = g_array_index (ratios, double, ratios->len / 2);
    }
  for (guint i = 0; i < todo->len; i++)
    {
      const FgCell *cell = g_ptr_array_index (todo, i);
      double same_point = 0, same_method = 0;
      guint n_point = 0, n_method = 0;
      for (guint j = 0; j < exp->cells->len; j++)
        {
          const FgCell *c = g_ptr_array_index (exp->cells, j);
          double s;
          if (c->dataset != cell->dataset || c->method != cell->method)
            continue;
          s = _fg_json_get_double (_fg_results_lookup (store, c->key), "seconds");
          if (!isfinite (s))
            continue;
          same_method += s, n_method++;
          if (c->point == cell->point)
            same_point += s, n_point++;
        }
      r[i].cell = cell;
      r[i].cost = n_point > 0    ? same_point / n_point
                  : n_method > 0 ? same_method / n_method
                                 : static_cost (cell) * scale;
    }
  qsort (r, todo->len, sizeof *r, (int (*) (const void *, const void *)) by_cost);
  for (guint i = 0; i < todo->len; i++)
    g_ptr_array_index (todo, i) = (gpointer) r[i].cell;
}

/* ---- the groups ------------------------------------------------------------------------------ */

typedef struct {
  FgExperiment *exp;
  FgRun *run;
  const FgRunOptions *options;
  int world_rank, world_size;
  MPI_Comm gcomm;      /* this rank's group, or MPI_COMM_NULL (idle rank) */
  int grank, gsize;
  FgGroup *group;      /* over gcomm when gsize > 1 */
  GAsyncQueue *assign; /* rank 0's own group: cell indices + 2 (1 = stop) */
  GAsyncQueue *results;/* rank 0's own group: finished LocalResult */
} Ctx;

typedef struct {
  guint cell;
  FgCellResult res;
} LocalResult;

static gboolean
cancelled (gpointer user_data)
{
  const Ctx *ctx = user_data;
  return ctx->options->cancel != NULL && g_atomic_int_get (ctx->options->cancel) != 0;
}

/* Runs cell `index` in this rank's group (every member calls it), in this process: a rank does
 * not fork (MPI and fork () do not mix), so a crash takes the rank down with its one cell. */
static void
compute (Ctx *ctx, guint index, FgCellResult *res)
{
  const FgCell *cell = g_ptr_array_index (ctx->exp->cells, index);
  FgCellHooks hooks = { NULL, NULL, cancelled, ctx, ctx->group };
  _fg_cell_run (ctx->exp, _fg_run_get_out_dir (ctx->run), cell, &hooks, res);
}

/* The loop of a group leader other than rank 0, and of the other members of every group:
 * the leader gets cells from rank 0 and tells its group; all compute; the leader reports. */
static gboolean
member_loop (Ctx *ctx, GError **error)
{
  const gboolean leader = ctx->grank == 0;
  int dummy = 0;
  if (leader
      && _fg_mpi_failed (MPI_Send (&dummy, 1, MPI_INT, 0, TAG_READY, MPI_COMM_WORLD), "send",
                         error))
    return FALSE;
  for (;;)
    {
      int index = -1;
      FgCellResult res;
      g_autofree char *text = NULL;
      if (leader)
        {
          MPI_Status st;
          if (_fg_mpi_failed (MPI_Recv (&index, 1, MPI_INT, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st),
                         "receive", error))
            return FALSE;
          if (st.MPI_TAG == TAG_STOP)
            index = -1;
        }
      if (ctx->gsize > 1
          && _fg_mpi_failed (MPI_Bcast (&index, 1, MPI_INT, 0, ctx->gcomm), "broadcast", error))
        return FALSE;
      if (index < 0)
        return TRUE;
      compute (ctx, (guint) index, &res);
      if (leader)
        {
          text = result_to_json ((guint) index, &res);
          if (_fg_mpi_failed (MPI_Send (text, (int) strlen (text), MPI_CHAR, 0, TAG_RESULT,
                                   MPI_COMM_WORLD),
                         "send", error))
            {
              _fg_cell_result_clear (&res);
              return FALSE;
            }
        }
      _fg_cell_result_clear (&res);
    }
}

/* Rank 0's own group, in a thread: cells from the scheduler through a queue. */
static gpointer
local_leader_thread (gpointer data)
{
  Ctx *ctx = data;
  for (;;)
    {
      int index = GPOINTER_TO_INT (g_async_queue_pop (ctx->assign)) - 2;
      LocalResult *lr;
      if (ctx->gsize > 1)
        MPI_Bcast (&index, 1, MPI_INT, 0, ctx->gcomm);
      if (index < 0)
        return NULL;
      lr = g_new0 (LocalResult, 1);
      lr->cell = (guint) index;
      compute (ctx, (guint) index, &lr->res);
      g_async_queue_push (ctx->results, lr);
    }
}

/* Rank 0: hand out `todo` (largest first) to the leaders as they ask, store what comes back. */
static gboolean
schedule (Ctx *ctx, GPtrArray *todo, const int *leaders, guint n_leaders, gboolean local,
          const FgRunOptions *options, GError **error)
{
  const FgWorkerSink *sink = _fg_run_get_sink (ctx->run);
  guint next = 0, active_remote = n_leaders;
  gboolean local_busy = FALSE;
  GThread *thread = NULL;
  gboolean ok = TRUE;

  /* The next cell to hand out, or -1: none left, interrupted, or the results cannot be stored. */
#define NEXT_CELL()                                                                            \
  ((next < todo->len && !sink->should_stop (sink->user_data))                                 \
       ? (int) ((FgCell *) g_ptr_array_index (todo, next++))->index                          \
       : -1)

  if (local)
    {
      thread = g_thread_new ("flowgmm-rank0", local_leader_thread, ctx);
      int index = NEXT_CELL ();
      if (index >= 0)
        {
          sink->started (sink->user_data, g_ptr_array_index (ctx->exp->cells, index));
          local_busy = TRUE;
        }
      g_async_queue_push (ctx->assign, GINT_TO_POINTER (index + 2));
    }
  while (ok && (active_remote > 0 || local_busy))
    {
      int flag = 0;
      MPI_Status st;
      LocalResult *lr;

      if (_fg_mpi_failed (MPI_Iprobe (MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st),
                     "probe", error))
        {
          ok = FALSE;
          break;
        }
      if (flag)
        {
          const int src = st.MPI_SOURCE;
          int index;
          if (st.MPI_TAG == TAG_RESULT)
            {
              int len = 0;
              g_autofree char *text = NULL;
              FgCellResult res;
              guint cell;
              g_autoptr (GError) local_error = NULL;
              MPI_Get_count (&st, MPI_CHAR, &len);
              text = g_malloc ((gsize) len + 1);
              if (_fg_mpi_failed (MPI_Recv (text, len, MPI_CHAR, src, TAG_RESULT, MPI_COMM_WORLD,
                                       MPI_STATUS_IGNORE),
                             "receive", error))
                {
                  ok = FALSE;
                  break;
                }
              text[len] = '\0';
              if (!result_from_json (text, (gsize) len, &cell, &res, &local_error)
                  || cell >= ctx->exp->cells->len)
                g_warning ("rank %d sent an unreadable result: %s", src,
                           local_error ? local_error->message : "no such cell");
              else
                sink->finished (sink->user_data, g_ptr_array_index (ctx->exp->cells, cell), &res);
              _fg_cell_result_clear (&res);
            }
          else
            {
              int dummy;
              MPI_Recv (&dummy, 1, MPI_INT, src, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            }
          index = NEXT_CELL ();
          if (index >= 0)
            {
              sink->started (sink->user_data, g_ptr_array_index (ctx->exp->cells, index));
              MPI_Send (&index, 1, MPI_INT, src, TAG_ASSIGN, MPI_COMM_WORLD);
            }
          else
            {
              MPI_Send (&index, 1, MPI_INT, src, TAG_STOP, MPI_COMM_WORLD);
              active_remote--;
            }
          continue;
        }
      /* Nothing from the other ranks: wait a little for rank 0's own cell. */
      lr = local_busy ? g_async_queue_timeout_pop (ctx->results, 2000) : NULL;
      if (lr == NULL)
        {
          if (!local_busy)
            g_usleep (2000);
          continue;
        }
      sink->finished (sink->user_data, g_ptr_array_index (ctx->exp->cells, lr->cell), &lr->res);
      _fg_cell_result_clear (&lr->res);
      g_free (lr);
      {
        int index = NEXT_CELL ();
        if (index >= 0)
          sink->started (sink->user_data, g_ptr_array_index (ctx->exp->cells, index));
        else
          local_busy = FALSE;
        g_async_queue_push (ctx->assign, GINT_TO_POINTER (index + 2));
      }
    }
#undef NEXT_CELL
  if (thread != NULL)
    g_thread_join (thread);
  return ok;
}

/**
 * fg_experiment_run_mpi:
 * @exp: an experiment loaded with a registry (the same on every rank)
 * @options: (nullable): how to run (jobs is ignored: one cell per group at a time)
 * @summary: (out) (optional): what was done (rank 0)
 * @error: return location for a #GError
 *
 * fg_experiment_run () over the ranks of MPI_COMM_WORLD; see flowgmm/mpi.h and doc/mpi.md.
 *
 * Returns: %FALSE when the run as a whole cannot go on (rank 0's store, MPI errors).
 */
gboolean
fg_experiment_run_mpi (FgExperiment *exp, const FgRunOptions *options, FgRunSummary *summary,
                       GError **error)
{
  FgRunOptions defaults = { 0 };
  FgRunSummary local_summary = { 0 };
  g_autoptr (GPtrArray) todo = NULL;
  g_autofree int *computing = NULL;
  g_autofree int *leaders = NULL;
  Ctx ctx = { 0 };
  guint n_computing = 0, n_leaders = 0, G;
  int began = 0, color;
  gboolean rank0_computes, ok = TRUE;

  g_return_val_if_fail (exp != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!mpi_on ())
    return fg_experiment_run (exp, options, summary, error);
  if (options == NULL)
    options = &defaults;
  if (summary == NULL)
    summary = &local_summary;
  memset (summary, 0, sizeof *summary);
  ctx.exp = exp;
  ctx.options = options;
  MPI_Comm_rank (MPI_COMM_WORLD, &ctx.world_rank);
  MPI_Comm_size (MPI_COMM_WORLD, &ctx.world_size);

  /* Rank 0 opens the store first: when it cannot, nobody starts. */
  if (ctx.world_rank == 0)
    {
      ctx.run = _fg_run_begin (exp, options, summary, TRUE, &todo, error);
      began = ctx.run != NULL;
    }
  MPI_Bcast (&began, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!began)
    {
      if (ctx.world_rank != 0)
        g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_RESULTS,
                     "rank 0 could not start the run");
      return FALSE;
    }
  if (ctx.world_rank != 0)
    {
      FgRunOptions quiet = *options;
      quiet.quiet = TRUE;
      ctx.run = _fg_run_begin (exp, &quiet, NULL, FALSE, NULL, error);
      g_assert (ctx.run != NULL); /* rank 0 began with the same experiment */
    }

  /* The ranks of one node share its processors (unless the environment sets a budget). */
  if (g_getenv ("OPENBLAS_NUM_THREADS") == NULL && g_getenv ("OMP_NUM_THREADS") == NULL)
    {
      MPI_Comm node;
      int local = 1;
      MPI_Comm_split_type (MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, ctx.world_rank, MPI_INFO_NULL,
                           &node);
      MPI_Comm_size (node, &local);
      MPI_Comm_free (&node);
      fg_set_num_threads (MAX (1u, g_get_num_processors () / (guint) MAX (local, 1)));
    }

  /* Which ranks compute, in groups of G consecutive ones.  Rank 0 computes too when its
   * computing thread may call MPI while it schedules (or makes no MPI call: groups of one). */
  G = MAX (exp->ranks_per_cell, 1u);
  rank0_computes = ctx.world_size == 1 || thread_level >= MPI_THREAD_MULTIPLE
                   || (G == 1 && thread_level >= MPI_THREAD_FUNNELED);
  computing = g_new0 (int, ctx.world_size);
  for (int r = rank0_computes ? 0 : 1; r < ctx.world_size; r++)
    computing[n_computing++] = r;
  if (G > n_computing)
    {
      if (ctx.world_rank == 0)
        g_message ("ranks_per_cell = %u but %u rank(s) compute: groups of %u", G, n_computing,
                   n_computing);
      G = n_computing;
    }
  if (ctx.world_rank == 0 && n_computing % G != 0)
    g_message ("%u rank(s) compute in groups of %u: %u rank(s) stay idle", n_computing, G,
               n_computing % G);
  color = MPI_UNDEFINED;
  leaders = g_new0 (int, ctx.world_size);
  for (guint i = 0; i < n_computing / G * G; i++)
    {
      if (computing[i] == ctx.world_rank)
        color = (int) (i / G);
      if (i % G == 0 && computing[i] != 0)
        leaders[n_leaders++] = computing[i];
    }
  MPI_Comm_split (MPI_COMM_WORLD, color, ctx.world_rank, &ctx.gcomm);
  if (ctx.gcomm != MPI_COMM_NULL)
    {
      MPI_Comm_rank (ctx.gcomm, &ctx.grank);
      MPI_Comm_size (ctx.gcomm, &ctx.gsize);
      if (ctx.gsize > 1)
        ctx.group = _fg_group_new_mpi (ctx.gcomm, FG_GROUP_REDUCE_ORDERED);
    }

  if (ctx.world_rank == 0)
    {
      order_largest_first (exp, _fg_run_get_store (ctx.run), todo);
      ctx.assign = g_async_queue_new ();
      ctx.results = g_async_queue_new ();
      ok = schedule (&ctx, todo, leaders, n_leaders, rank0_computes, options, error);
      g_async_queue_unref (ctx.assign);
      g_async_queue_unref (ctx.results);
      ok = _fg_run_end (ctx.run, ok, ok ? error : NULL) && ok;
    }
  else
    {
      if (ctx.gcomm != MPI_COMM_NULL)
        ok = member_loop (&ctx, error);
      _fg_run_end (ctx.run, FALSE, NULL);
    }
  g_clear_pointer (&ctx.group, _fg_group_free);
  if (ctx.gcomm != MPI_COMM_NULL)
    MPI_Comm_free (&ctx.gcomm);
  return ok;
}
