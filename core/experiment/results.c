/* SPDX-License-Identifier: MIT */
/* flowgmm — the results store, OUT/results.jsonl: one JSON object per finished cell.
 *
 * Crash safety.  Each record is appended with a single write () of one complete line under the
 * store's mutex and flushed with fdatasync () before the cell counts as done.  A crash can
 * therefore leave at most one torn line, at the end of the file.  On load, a line that is not a
 * JSON object with a "key" is skipped with a warning (never fatal), and before anything is
 * appended the file is rewritten without the damaged lines (temp file + fsync + rename, via
 * g_file_set_contents ()), so a new record never lands on the tail of a torn one.  A failed
 * write is truncated away again.  This is as safe as rewriting the whole file per cell, without
 * that scheme's cost, quadratic in the number of cells.
 *
 * The last record stored for a key wins (a cell rerun with --retry-failed appends a new one).
 * A lock on OUT/.lock (flock) keeps two runs from writing the same directory at once.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "experiment/experiment-private.h"

struct _FgResultsStore {
  char       *dir;
  char       *path;
  GHashTable *records;       /* key -> JsonObject */
  GPtrArray  *good_lines;    /* the valid lines, in file order (for a repair) */
  guint       n_bad;
  gboolean    needs_repair;  /* damaged lines, or no newline at the end */
  int         lock_fd;
  int         fd;            /* for appending, -1 until prepared */
  GMutex      mutex;
};

static gboolean
io_error (GError **error, int errsv, const char *what, const char *path)
{
  g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s %s: %s", what, path, g_strerror (errsv));
  return FALSE;
}

/* Parse one line; NULL (and *why) when it is not a usable record. */
static JsonObject *
parse_record (const char *line, char **why)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  JsonNode *root;
  JsonObject *obj;

  if (!json_parser_load_from_data (parser, line, -1, &local))
    {
      *why = g_strdup (local->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      *why = g_strdup ("not a JSON object");
      return NULL;
    }
  obj = json_node_get_object (root);
  if (_fg_json_get_string (obj, "key") == NULL)
    {
      *why = g_strdup ("no \"key\"");
      return NULL;
    }
  return json_object_ref (obj);
}

/* Opens the store: reads `out_dir`/results.jsonl (missing: empty).  `for_writing` creates the
 * directory and takes its lock. */
FgResultsStore *
_fg_results_open (const char *out_dir, gboolean for_writing, GError **error)
{
  FgResultsStore *store = g_new0 (FgResultsStore, 1);
  g_autofree char *contents = NULL;
  g_autoptr (GError) local = NULL;
  gsize length = 0;

  g_mutex_init (&store->mutex);
  store->dir = g_strdup (out_dir);
  store->path = g_build_filename (out_dir, "results.jsonl", NULL);
  store->records = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify) json_object_unref);
  store->good_lines = g_ptr_array_new_with_free_func (g_free);
  store->lock_fd = -1;
  store->fd = -1;

  if (for_writing)
    {
      g_autofree char *lock_path = g_build_filename (out_dir, ".lock", NULL);
      if (g_mkdir_with_parents (out_dir, 0755) != 0)
        {
          io_error (error, errno, "cannot create the output directory", out_dir);
          goto fail;
        }
      store->lock_fd = g_open (lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (store->lock_fd < 0)
        {
          io_error (error, errno, "cannot write in", out_dir);
          goto fail;
        }
      if (flock (store->lock_fd, LOCK_EX | LOCK_NB) != 0)
        {
          if (errno == EWOULDBLOCK)
            g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_RESULTS,
                         "%s: another flowgmm run is writing to this directory", out_dir);
          else
            io_error (error, errno, "cannot lock", lock_path);
          goto fail;
        }
    }

  if (!g_file_get_contents (store->path, &contents, &length, &local))
    {
      if (!g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_RESULTS,
                       "cannot read the results: %s", local->message);
          goto fail;
        }
      return store;
    }

  {
    char *line = contents;
    guint lineno = 0;
    while (line < contents + length)
      {
        char *nl = memchr (line, '\n', (gsize) (contents + length - line));
        g_autofree char *why = NULL;
        JsonObject *obj;
        lineno++;
        if (nl != NULL)
          *nl = '\0';
        else
          store->needs_repair = TRUE; /* no newline at the end: a torn or hand-made tail */
        if (*g_strstrip (line) != '\0')
          {
            obj = parse_record (line, &why);
            if (obj != NULL)
              {
                g_hash_table_replace (store->records,
                                      g_strdup (_fg_json_get_string (obj, "key")), obj);
                g_ptr_array_add (store->good_lines, g_strdup (line));
              }
            else
              {
                store->n_bad++;
                store->needs_repair = TRUE;
                g_warning ("%s:%u: skipping a damaged record (a torn write from a crash?): %s",
                           store->path, lineno, why ? why : "unreadable");
              }
          }
        if (nl == NULL)
          break;
        line = nl + 1;
      }
  }
  return store;

fail:
  _fg_results_close (store);
  return NULL;
}

/* Repairs a damaged file and opens it for appending. */
static gboolean
prepare_append (FgResultsStore *store, GError **error)
{
  if (store->fd >= 0)
    return TRUE;
  if (store->needs_repair)
    {
      g_autoptr (GString) text = g_string_new (NULL);
      for (guint i = 0; i < store->good_lines->len; i++)
        g_string_append_printf (text, "%s\n", (char *) g_ptr_array_index (store->good_lines, i));
      if (!g_file_set_contents (store->path, text->str, (gssize) text->len, error))
        return FALSE;
      store->needs_repair = FALSE;
    }
  store->fd = g_open (store->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (store->fd < 0)
    return io_error (error, errno, "cannot open", store->path);
  return TRUE;
}

void
_fg_results_close (FgResultsStore *store)
{
  if (store == NULL)
    return;
  if (store->fd >= 0)
    close (store->fd);
  if (store->lock_fd >= 0)
    close (store->lock_fd); /* releases the flock */
  g_hash_table_unref (store->records);
  g_ptr_array_unref (store->good_lines);
  g_mutex_clear (&store->mutex);
  g_free (store->dir);
  g_free (store->path);
  g_free (store);
}

JsonObject *
_fg_results_lookup (FgResultsStore *store, const char *key)
{
  JsonObject *obj;
  g_mutex_lock (&store->mutex);
  obj = g_hash_table_lookup (store->records, key);
  g_mutex_unlock (&store->mutex);
  return obj;
}

gboolean
_fg_results_append (FgResultsStore *store, JsonObject *record, GError **error)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_node_new (JSON_NODE_OBJECT);
  g_autofree char *text = NULL;
  g_autofree char *line = NULL;
  const char *key = _fg_json_get_string (record, "key");
  gsize len, done = 0;
  off_t start;
  gboolean ok = TRUE;

  g_return_val_if_fail (key != NULL, FALSE);
  json_node_set_object (root, record);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, FALSE);
  text = json_generator_to_data (gen, NULL);
  line = g_strconcat (text, "\n", NULL);
  len = strlen (line);

  g_mutex_lock (&store->mutex);
  if (!prepare_append (store, error))
    {
      g_mutex_unlock (&store->mutex);
      return FALSE;
    }
  start = lseek (store->fd, 0, SEEK_END);
  while (done < len)
    {
      ssize_t n = write (store->fd, line + done, len - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int errsv = n < 0 ? errno : EIO;
          /* Leave no partial line behind. */
          if (start >= 0 && ftruncate (store->fd, start) != 0)
            store->needs_repair = TRUE;
          ok = io_error (error, errsv, "cannot write", store->path);
          break;
        }
      done += (gsize) n;
    }
  if (ok && fdatasync (store->fd) != 0 && errno != EINVAL)
    ok = io_error (error, errno, "cannot flush", store->path);
  if (ok)
    {
      g_hash_table_replace (store->records, g_strdup (key), json_object_ref (record));
      g_ptr_array_add (store->good_lines, g_strdup (text));
    }
  g_mutex_unlock (&store->mutex);
  return ok;
}

double
_fg_json_get_double (JsonObject *obj, const char *name)
{
  JsonNode *node = obj ? json_object_get_member (obj, name) : NULL;
  if (node == NULL || JSON_NODE_TYPE (node) != JSON_NODE_VALUE)
    return NAN;
  switch (json_node_get_value_type (node))
    {
    case G_TYPE_DOUBLE:
    case G_TYPE_INT64:
    case G_TYPE_INT:
    case G_TYPE_FLOAT:
      return json_node_get_double (node);
    default:
      return NAN;
    }
}

const char *
_fg_json_get_string (JsonObject *obj, const char *name)
{
  JsonNode *node = obj ? json_object_get_member (obj, name) : NULL;
  if (node == NULL || JSON_NODE_TYPE (node) != JSON_NODE_VALUE
      || json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

/* Makes `out_dir` the output of `exp`: refuses one that holds another experiment (by title),
 * then writes OUT/experiment.exp, a copy of the file with a first line naming its source, for
 * `flowgmm table OUT`. */
gboolean
_fg_results_claim_dir (const FgExperiment *exp, const char *out_dir, GError **error)
{
  g_autofree char *copy_path = g_build_filename (out_dir, "experiment.exp", NULL);
  g_autofree char *old = NULL;
  g_autoptr (GString) text = NULL;
  gsize old_len = 0;

  if (g_file_get_contents (copy_path, &old, &old_len, NULL))
    {
      g_autoptr (GError) local = NULL;
      g_autoptr (FgExperiment) prev = _fg_experiment_load_copy (old, old_len, copy_path,
                                                                out_dir, &local);
      if (prev == NULL)
        {
          g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_RESULTS,
                       "%s holds results of an experiment file that cannot be read any more "
                       "(%s); choose another output directory (--out)", out_dir, local->message);
          return FALSE;
        }
      if (g_strcmp0 (prev->title, exp->title) != 0)
        {
          g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_RESULTS,
                       "%s holds results of the experiment '%s', not '%s'; choose another "
                       "output directory (--out) rather than mixing them", out_dir, prev->title,
                       exp->title);
          return FALSE;
        }
    }
  text = g_string_new (NULL);
  g_string_append_printf (text, "%s%s\n", FG_EXPERIMENT_COPY_HEADER, exp->path);
  g_string_append_len (text, exp->contents, (gssize) exp->length);
  if (old != NULL && strcmp (old, text->str) == 0)
    return TRUE;
  return g_file_set_contents (copy_path, text->str, (gssize) text->len, error);
}
