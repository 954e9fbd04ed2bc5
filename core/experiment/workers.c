/* SPDX-License-Identifier: MIT */
/* flowgmm — cells in worker processes (see experiment-private.h).
 *
 * Each worker is forked from the coordinating process once the experiment, its plugins and the
 * results store are open, so it shares them copy-on-write; it loads its data sets itself, once,
 * through the experiment's cache.  One socket pair per worker carries the cell indices to it and
 * the messages back: the phase a cell enters, its progress, and its result (the record as one
 * JSON text, parsed and stored by the coordinator, so a record round-trips exactly as the
 * in-process runner would store it and only one process appends to results.jsonl).
 *
 * A worker ends when its socket closes (no more cells), when the coordinator dies
 * (PR_SET_PDEATHSIG), or by crashing; the coordinator then reaps it, stores the crash as the
 * error of the cell it was running and starts another worker for the cells left.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "experiment/experiment-private.h"

#define POLL_MS 100
#define PROGRESS_EVERY_US (G_USEC_PER_SEC / 10)

enum {
  MSG_PHASE = 1,    /* guint32 phase */
  MSG_PROGRESS = 2, /* double fraction, then the text */
  MSG_DONE = 3,     /* guint32 end, double seconds, guint32 message length, message, record */
};

typedef struct {
  guint32 type;
  guint32 len;
} MsgHeader;

typedef struct {
  pid_t         pid;         /* 0: no process */
  int           fd;          /* the coordinator's end of the socket pair */
  const FgCell *cell;        /* running, or NULL */
  gboolean      have_phase;
  FgCellPhase   phase;
  gint64        t0;
  gint64        last_report; /* for the progress display */
} Worker;

/* ---- both sides ------------------------------------------------------------------------------ */

/* Sends or receives exactly `len` bytes; FALSE when the other side is gone. */
static gboolean
transfer_all (int fd, void *data, gsize len, gboolean sending)
{
  char *p = data;
  while (len > 0)
    {
      ssize_t n = sending ? send (fd, p, len, MSG_NOSIGNAL) : recv (fd, p, len, 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      p += n;
      len -= (gsize) n;
    }
  return TRUE;
}

#define send_all(fd, data, len) transfer_all ((fd), (void *) (data), (len), TRUE)
#define recv_all(fd, data, len) transfer_all ((fd), (data), (len), FALSE)

/* ---- the worker ------------------------------------------------------------------------------ */

typedef struct {
  int            fd;
  volatile gint *cancel; /* shared with the coordinator */
  gint64         last_progress;
} WorkerCtx;

static void
send_msg (WorkerCtx *wc, guint32 type, const void *a, gsize a_len, const void *b, gsize b_len)
{
  MsgHeader h = { type, (guint32) (a_len + b_len) };
  /* The coordinator gone: nothing left to do. */
  if (!send_all (wc->fd, &h, sizeof h) || !send_all (wc->fd, a, a_len)
      || (b_len > 0 && !send_all (wc->fd, b, b_len)))
    _exit (0);
}

static void
worker_phase (gpointer user_data, const FgCell *cell, FgCellPhase phase)
{
  guint32 p = phase;
  send_msg (user_data, MSG_PHASE, &p, sizeof p, NULL, 0);
}

static void
worker_progress (gpointer user_data, const FgCell *cell, double fraction, const char *what)
{
  WorkerCtx *wc = user_data;
  gint64 now = g_get_monotonic_time ();
  if (now - wc->last_progress < PROGRESS_EVERY_US)
    return;
  wc->last_progress = now;
  send_msg (wc, MSG_PROGRESS, &fraction, sizeof fraction, what ? what : "",
            what ? strlen (what) : 0);
}

static gboolean
worker_cancelled (gpointer user_data)
{
  WorkerCtx *wc = user_data;
  return g_atomic_int_get (wc->cancel) != 0;
}

static void
send_done (WorkerCtx *wc, const FgCellResult *r)
{
  g_autoptr (GString) payload = g_string_new (NULL);
  guint32 end = r->end, msg_len = r->message ? (guint32) strlen (r->message) : 0;
  g_autofree char *json = NULL;

  g_string_append_len (payload, (const char *) &end, sizeof end);
  g_string_append_len (payload, (const char *) &r->seconds, sizeof r->seconds);
  g_string_append_len (payload, (const char *) &msg_len, sizeof msg_len);
  if (msg_len > 0)
    g_string_append_len (payload, r->message, msg_len);
  if (r->record != NULL)
    {
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      g_autoptr (JsonNode) root = json_node_new (JSON_NODE_OBJECT);
      json_node_set_object (root, r->record);
      json_generator_set_root (gen, root);
      json = json_generator_to_data (gen, NULL);
      g_string_append (payload, json);
    }
  send_msg (wc, MSG_DONE, payload->str, payload->len, NULL, 0);
}

G_GNUC_NORETURN static void
worker_main (FgExperiment *exp, const char *out_dir, int fd, volatile gint *cancel, guint jobs,
             pid_t coordinator)
{
  WorkerCtx wc = { fd, cancel, 0 };
  FgCellHooks hooks = { worker_phase, worker_progress, worker_cancelled, &wc };

#ifdef __linux__
  prctl (PR_SET_PDEATHSIG, SIGKILL);
#endif
  if (getppid () != coordinator)
    _exit (0);
  /* Ctrl-C reaches the whole process group: the coordinator decides, and tells us. */
  signal (SIGINT, SIG_IGN);
  /* N workers at once, each single-threaded, as N threads of the in-process runner are. */
  if (jobs > 1)
    fg_set_num_threads (1);
  for (;;)
    {
      guint32 index;
      FgCellResult r;
      if (!recv_all (fd, &index, sizeof index) || index >= exp->cells->len)
        _exit (0);
      wc.last_progress = 0;
      _fg_cell_run (exp, out_dir, g_ptr_array_index (exp->cells, index), &hooks, &r);
      send_done (&wc, &r);
      _fg_cell_result_clear (&r);
    }
}

/* ---- the coordinator ------------------------------------------------------------------------- */

typedef struct {
  FgExperiment       *exp;
  const char         *out_dir;
  const FgWorkerSink *sink;
  Worker             *workers;
  guint               jobs;
  volatile gint      *cancel; /* a shared page */
} Pool;

static gboolean
spawn (Pool *pool, Worker *w, GError **error)
{
  int sv[2];
  pid_t pid, me = getpid ();

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    {
      int errsv = errno;
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot make a socket for a worker process: %s",
                   g_strerror (errsv));
      return FALSE;
    }
  fflush (stdout);
  fflush (stderr);
  pid = fork ();
  if (pid < 0)
    {
      int errsv = errno;
      close (sv[0]);
      close (sv[1]);
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot start a worker process: %s",
                   g_strerror (errsv));
      return FALSE;
    }
  if (pid == 0)
    {
      /* Only our own socket: a sibling's must close when the coordinator closes it. */
      for (guint i = 0; i < pool->jobs; i++)
        if (pool->workers[i].pid != 0)
          close (pool->workers[i].fd);
      close (sv[0]);
      worker_main (pool->exp, pool->out_dir, sv[1], pool->cancel, pool->jobs, me);
    }
  close (sv[1]);
  w->pid = pid;
  w->fd = sv[0];
  w->cell = NULL;
  return TRUE;
}

static const char *
signal_name (int sig)
{
  static const struct { int sig; const char *name; } names[] = {
    { SIGSEGV, "SIGSEGV" }, { SIGBUS, "SIGBUS" },   { SIGABRT, "SIGABRT" }, { SIGFPE, "SIGFPE" },
    { SIGILL, "SIGILL" },   { SIGKILL, "SIGKILL" }, { SIGTERM, "SIGTERM" }, { SIGTRAP, "SIGTRAP" },
    { SIGSYS, "SIGSYS" },   { SIGPIPE, "SIGPIPE" }, { SIGXCPU, "SIGXCPU" }, { SIGHUP, "SIGHUP" },
    { SIGINT, "SIGINT" },   { SIGQUIT, "SIGQUIT" }, { SIGALRM, "SIGALRM" }, { SIGUSR1, "SIGUSR1" },
    { SIGUSR2, "SIGUSR2" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (names[i].sig == sig)
      return names[i].name;
  return NULL;
}

/* "crashed: SIGSEGV in baseline 'knn' during fit" */
static char *
crash_message (const Worker *w, int status)
{
  const FgCell *cell = w->cell;
  g_autofree char *how = NULL;
  g_autofree char *where = NULL;

  if (WIFSIGNALED (status))
    {
      int sig = WTERMSIG (status);
      const char *name = signal_name (sig);
      how = name ? g_strdup (name) : g_strdup_printf ("signal %d", sig);
      if (sig == SIGKILL)
        {
          g_free (how);
          how = g_strdup ("SIGKILL (killed; out of memory?)");
        }
    }
  else if (WIFEXITED (status))
    how = g_strdup_printf ("exit status %d", WEXITSTATUS (status));
  else
    how = g_strdup ("an unknown cause");

  if (w->have_phase && (w->phase == FG_CELL_PHASE_LOAD || w->phase == FG_CELL_PHASE_SPLIT))
    where = g_strdup_printf ("dataset '%s'", cell->dataset->plugin);
  else
    where = g_strdup_printf ("%s '%s'",
                             cell->method->component
                                 ? fg_kind_to_string (cell->method->component->kind)
                                 : "method",
                             cell->method->plugin);
  return g_strdup_printf ("crashed: %s in %s during %s", how, where,
                          w->have_phase ? _fg_cell_phase_name (w->phase) : "start-up");
}

/* The worker is gone (its socket closed): reap it, and fail its cell if it had one. */
static void
reap (Pool *pool, Worker *w)
{
  int status = 0;
  close (w->fd);
  w->fd = -1;
  while (waitpid (w->pid, &status, 0) < 0 && errno == EINTR)
    ;
  w->pid = 0;
  if (w->cell != NULL)
    {
      FgCellResult r = { FG_CELL_STORE, NULL, NULL, 0 };
      r.message = crash_message (w, status);
      r.seconds = (double) (g_get_monotonic_time () - w->t0) / 1e6;
      r.record = _fg_cell_error_record (pool->exp, w->cell, r.message, r.seconds);
      pool->sink->finished (pool->sink->user_data, w->cell, &r);
      _fg_cell_result_clear (&r);
      w->cell = NULL;
    }
}

static void
handle_done (Pool *pool, Worker *w, const char *p, gsize len)
{
  FgCellResult r = { 0 };
  guint32 end, msg_len;
  gsize off = 0;

  if (len < sizeof end + sizeof r.seconds + sizeof msg_len)
    goto bad;
  memcpy (&end, p, sizeof end);
  off += sizeof end;
  memcpy (&r.seconds, p + off, sizeof r.seconds);
  off += sizeof r.seconds;
  memcpy (&msg_len, p + off, sizeof msg_len);
  off += sizeof msg_len;
  if (msg_len > len - off)
    goto bad;
  r.end = (FgCellEnd) end;
  if (msg_len > 0)
    r.message = g_strndup (p + off, msg_len);
  off += msg_len;
  if (r.end == FG_CELL_STORE)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      JsonNode *root;
      if (!json_parser_load_from_data (parser, p + off, (gssize) (len - off), NULL)
          || (root = json_parser_get_root (parser)) == NULL || !JSON_NODE_HOLDS_OBJECT (root))
        goto bad;
      r.record = json_object_ref (json_node_get_object (root));
    }
  pool->sink->finished (pool->sink->user_data, w->cell, &r);
  _fg_cell_result_clear (&r);
  w->cell = NULL;
  return;

bad:
  _fg_cell_result_clear (&r);
  g_warning ("%s: a worker process sent a damaged result; the cell is failed",
             w->cell->label);
  r.end = FG_CELL_STORE;
  r.message = g_strdup ("the worker process sent a damaged result");
  r.record = _fg_cell_error_record (pool->exp, w->cell, r.message, r.seconds);
  pool->sink->finished (pool->sink->user_data, w->cell, &r);
  _fg_cell_result_clear (&r);
  w->cell = NULL;
}

/* Reads one message; FALSE when the worker is gone. */
static gboolean
handle_message (Pool *pool, Worker *w)
{
  MsgHeader h;
  g_autofree char *p = NULL;

  if (!recv_all (w->fd, &h, sizeof h))
    return FALSE;
  p = g_malloc (h.len + 1);
  if (!recv_all (w->fd, p, h.len))
    return FALSE;
  p[h.len] = '\0';
  if (w->cell == NULL)
    return TRUE; /* nothing was asked of it */
  switch (h.type)
    {
    case MSG_PHASE:
      if (h.len >= sizeof (guint32))
        {
          guint32 phase;
          memcpy (&phase, p, sizeof phase);
          w->phase = (FgCellPhase) phase;
          w->have_phase = TRUE;
        }
      break;
    case MSG_PROGRESS:
      if (h.len >= sizeof (double) && pool->sink->progress != NULL)
        {
          double fraction;
          memcpy (&fraction, p, sizeof fraction);
          pool->sink->progress (pool->sink->user_data, w->cell, &w->last_report, fraction,
                                p + sizeof fraction);
        }
      break;
    case MSG_DONE:
      handle_done (pool, w, p, h.len);
      break;
    default:
      break;
    }
  return TRUE;
}

static gboolean
dispatch (Pool *pool, Worker *w, const FgCell *cell)
{
  guint32 index = cell->index;
  if (!send_all (w->fd, &index, sizeof index))
    return FALSE;
  w->cell = cell;
  w->have_phase = FALSE;
  w->t0 = w->last_report = g_get_monotonic_time ();
  pool->sink->started (pool->sink->user_data, cell);
  return TRUE;
}

static gboolean
sink_cancelled (const FgWorkerSink *sink)
{
  return sink->cancelled != NULL && sink->cancelled (sink->user_data);
}

/**
 * _fg_workers_run:
 * @exp: an experiment loaded with a registry
 * @out_dir: its output directory
 * @todo: (element-type FgCell): the cells to run, in order
 * @jobs: how many worker processes at once
 * @sink: where results go (in this process)
 * @error: return location for a #GError
 *
 * Runs @todo in @jobs worker processes.  Every cell ends in exactly one call of @sink's
 * finished or not_run.
 *
 * Returns: %FALSE when no worker process can be started.
 */
gboolean
_fg_workers_run (FgExperiment *exp, const char *out_dir, GPtrArray *todo, guint jobs,
                 const FgWorkerSink *sink, GError **error)
{
  Pool pool = { exp, out_dir, sink, NULL, MAX (jobs, 1u), NULL };
  g_autofree struct pollfd *fds = NULL;
  g_autofree Worker **polled = NULL;
  guint next = 0;
  gboolean ok = TRUE;
  void *page;

  page = mmap (NULL, sizeof (gint), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED)
    {
      int errsv = errno;
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot share memory with worker processes: %s",
                   g_strerror (errsv));
      return FALSE;
    }
  pool.cancel = page;
  *pool.cancel = 0;
  pool.workers = g_new0 (Worker, pool.jobs);
  fds = g_new0 (struct pollfd, pool.jobs);
  polled = g_new0 (Worker *, pool.jobs);
  for (guint i = 0; i < pool.jobs; i++)
    pool.workers[i].fd = -1;

  for (;;)
    {
      guint n_polled = 0;

      /* Give every idle worker a cell; start workers as needed. */
      for (guint i = 0; i < pool.jobs; i++)
        {
          Worker *w = &pool.workers[i];
          guint tries = 0;
          while (ok && w->cell == NULL && next < todo->len && !sink->should_stop (sink->user_data))
            {
              if (w->pid == 0 && !spawn (&pool, w, error))
                {
                  ok = FALSE;
                  break;
                }
              if (dispatch (&pool, w, g_ptr_array_index (todo, next)))
                next++;
              else if (++tries < 2)
                reap (&pool, w); /* it died idle: start another */
              else
                {
                  g_set_error (error, FG_ERROR, FG_ERROR_IO,
                               "worker processes die before they are given a cell");
                  reap (&pool, w);
                  ok = FALSE;
                }
            }
          if (w->cell != NULL)
            {
              fds[n_polled].fd = w->fd;
              fds[n_polled].events = POLLIN;
              fds[n_polled].revents = 0;
              polled[n_polled++] = w;
            }
        }
      if (n_polled == 0)
        break;

      if (poll (fds, n_polled, POLL_MS) < 0 && errno != EINTR)
        {
          int errsv = errno;
          g_set_error (error, FG_ERROR, FG_ERROR_IO, "poll: %s", g_strerror (errsv));
          ok = FALSE;
          break;
        }
      if (sink_cancelled (sink))
        g_atomic_int_set (pool.cancel, 1);
      for (guint k = 0; k < n_polled; k++)
        if (fds[k].revents != 0 && !handle_message (&pool, polled[k]))
          reap (&pool, polled[k]);
    }

  /* Whatever was not started: cancelled, a failed store, or no worker. */
  for (; next < todo->len; next++)
    sink->not_run (sink->user_data, g_ptr_array_index (todo, next));
  for (guint i = 0; i < pool.jobs; i++)
    {
      Worker *w = &pool.workers[i];
      if (w->pid == 0)
        continue;
      if (w->cell != NULL)
        {
          /* Only after an error above: let it go, its cell is not stored. */
          sink->not_run (sink->user_data, w->cell);
          w->cell = NULL;
          kill (w->pid, SIGKILL);
        }
      reap (&pool, w); /* closing its socket ends it */
    }
  g_free (pool.workers);
  munmap (page, sizeof (gint));
  return ok;
}
