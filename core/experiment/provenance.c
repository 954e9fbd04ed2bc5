/* SPDX-License-Identifier: MIT */
/* flowgmm — what produced a stored number: the provenance member of every record.
 *
 *   "provenance": {
 *     "flowgmm":    { "version": "0.1.0", "file": ".../libflowgmm.so", "sha256": "..." },
 *     "blas":       { "library": "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell", "kernel": "Haswell" },
 *     "components": [ { "kind": "dataset", "name": "moons", "plugin": "synthetic",
 *                       "version": "1.0", "file": ".../synthetic.so", "sha256": "..." }, ... ]
 *   }
 *
 * The components are the cell's data set and method and, recursively, every component its
 * parameters name (the flowgmm method's flow and loss).  A built-in component's file is the
 * library's ("builtin": true).  A record is *stale* when a plugin file it names now has other
 * contents: `run` recomputes such cells only when asked (--rerun-stale), `table` marks them.
 * The library itself is recorded but not compared, or every rebuild would make every cell of
 * a built-in method stale.  The BLAS
 * kernel is recorded, not compared: results are bit-identical per BLAS build and kernel.
 */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <dlfcn.h>
#include <string.h>
#include <sys/stat.h>

#include "experiment/experiment-private.h"
#include "numeric/numeric-private.h"

/* ---- file digests, cached by path, size and modification time --------------------------------- */

typedef struct {
  gint64 size, mtime_ns;
  char  *sha256;
} Digest;

static GMutex digest_lock;
static GHashTable *digests; /* path -> Digest */

static void
digest_free (gpointer data)
{
  Digest *d = data;
  g_free (d->sha256);
  g_free (d);
}

/* The SHA-256 of a file's contents (hex), or NULL when it cannot be read. */
static char *
file_sha256 (const char *path)
{
  struct stat st;
  Digest *d;
  char *out = NULL;
  gint64 mtime_ns;

  if (path == NULL || stat (path, &st) != 0 || !S_ISREG (st.st_mode))
    return NULL;
  mtime_ns = (gint64) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  g_mutex_lock (&digest_lock);
  if (digests == NULL)
    digests = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, digest_free);
  d = g_hash_table_lookup (digests, path);
  if (d == NULL || d->size != (gint64) st.st_size || d->mtime_ns != mtime_ns)
    {
      g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, NULL);
      if (map != NULL)
        {
          Digest *nd = g_new0 (Digest, 1);
          nd->size = (gint64) st.st_size;
          nd->mtime_ns = mtime_ns;
          nd->sha256 = g_compute_checksum_for_data (
              G_CHECKSUM_SHA256, (const guchar *) g_mapped_file_get_contents (map),
              g_mapped_file_get_length (map));
          g_hash_table_replace (digests, g_strdup (path), nd);
          d = nd;
        }
      else
        d = NULL;
    }
  if (d != NULL)
    out = g_strdup (d->sha256);
  g_mutex_unlock (&digest_lock);
  return out;
}

/* The file libflowgmm was loaded from. */
static const char *
library_file (void)
{
  static char *file = NULL;
  static gsize once = 0;
  if (g_once_init_enter (&once))
    {
      Dl_info info;
      if (dladdr ((const void *) fg_version, &info) != 0 && info.dli_fname != NULL)
        file = g_strdup (info.dli_fname);
      g_once_init_leave (&once, 1);
    }
  return file;
}

/* ---- recording ------------------------------------------------------------------------------- */

static void
add_string (JsonBuilder *b, const char *name, const char *value)
{
  json_builder_set_member_name (b, name);
  if (value != NULL)
    json_builder_add_string_value (b, value);
  else
    json_builder_add_null_value (b);
}

static void
add_component (JsonBuilder *b, const FgRegistry *reg, const FgComponent *c, GPtrArray *seen)
{
  const FgPluginRecord *rec;
  const char *file;
  gboolean builtin;
  g_autofree char *sha = NULL;

  if (c == NULL || g_ptr_array_find (seen, c, NULL))
    return;
  g_ptr_array_add (seen, (gpointer) c);
  rec = fg_registry_get_provider (reg, c);
  builtin = rec == NULL || rec->path == NULL || rec->path[0] == '(';
  file = builtin ? library_file () : rec->path;
  sha = file_sha256 (file);
  json_builder_begin_object (b);
  if (builtin)
    {
      json_builder_set_member_name (b, "builtin");
      json_builder_add_boolean_value (b, TRUE);
    }
  add_string (b, "kind", fg_kind_to_string (c->kind));
  add_string (b, "name", c->name);
  add_string (b, "plugin", rec && rec->info ? rec->info->name : NULL);
  add_string (b, "version", rec && rec->info ? rec->info->version : NULL);
  add_string (b, "file", file);
  add_string (b, "sha256", sha);
  json_builder_end_object (b);
}

/* The components that `params` name, recursively. */
static void
add_param_components (JsonBuilder *b, const FgRegistry *reg, const FgParams *params,
                      GPtrArray *seen)
{
  for (const FgParamSpec *sp = fg_params_get_specs (params); sp && sp->name; sp++)
    {
      const FgParams *sub;
      if (sp->type != FG_PARAM_COMPONENT)
        continue;
      add_component (b, reg, fg_params_get_resolved_component (params, sp->name), seen);
      if ((sub = fg_params_get_component (params, sp->name)) != NULL)
        add_param_components (b, reg, sub, seen);
    }
}

/**
 * _fg_provenance_add:
 * @b: a builder inside the record object
 * @exp: an experiment loaded with a registry
 * @cell: one of its cells
 *
 * Adds the member "provenance": the library, the BLAS library and kernel, and every component
 * the cell uses with its plugin, version, file and the SHA-256 of the file.
 */
void
_fg_provenance_add (JsonBuilder *b, const FgExperiment *exp, const FgCell *cell)
{
  g_autoptr (GPtrArray) seen = g_ptr_array_new ();
  g_autofree char *lib_sha = file_sha256 (library_file ());
  const FgParams *params = g_ptr_array_index (cell->method->points, cell->point);

  json_builder_set_member_name (b, "provenance");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "flowgmm");
  json_builder_begin_object (b);
  add_string (b, "version", fg_version ());
  add_string (b, "file", library_file ());
  add_string (b, "sha256", lib_sha);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "blas");
  json_builder_begin_object (b);
  add_string (b, "library", _fg_blas_library ());
  add_string (b, "kernel", _fg_blas_kernel ());
  json_builder_end_object (b);
  json_builder_set_member_name (b, "components");
  json_builder_begin_array (b);
  add_component (b, exp->reg, cell->dataset->component, seen);
  add_param_components (b, exp->reg, cell->dataset->params, seen);
  add_component (b, exp->reg, cell->method->component, seen);
  add_param_components (b, exp->reg, params, seen);
  json_builder_end_array (b);
  json_builder_end_object (b);
}

/* ---- staleness ------------------------------------------------------------------------------- */

static JsonArray *
record_components (JsonObject *rec)
{
  JsonNode *prov = json_object_get_member (rec, "provenance");
  JsonNode *comps;
  if (prov == NULL || !JSON_NODE_HOLDS_OBJECT (prov))
    return NULL;
  comps = json_object_get_member (json_node_get_object (prov), "components");
  if (comps == NULL || !JSON_NODE_HOLDS_ARRAY (comps))
    return NULL;
  return json_node_get_array (comps);
}

/**
 * _fg_provenance_is_stale:
 * @rec: a stored record
 *
 * Returns: %TRUE when a plugin file the record names now has contents other than those it
 *   was computed with.  A record without provenance, or whose file is gone, is not called stale
 *   (there is nothing to compare).
 */
gboolean
_fg_provenance_is_stale (JsonObject *rec)
{
  JsonArray *comps = record_components (rec);
  if (comps == NULL)
    return FALSE;
  for (guint i = 0; i < json_array_get_length (comps); i++)
    {
      JsonNode *n = json_array_get_element (comps, i);
      JsonObject *c;
      const char *file, *sha;
      g_autofree char *now = NULL;
      if (!JSON_NODE_HOLDS_OBJECT (n))
        continue;
      c = json_node_get_object (n);
      if (json_object_get_boolean_member_with_default (c, "builtin", FALSE))
        continue;
      file = _fg_json_get_string (c, "file");
      sha = _fg_json_get_string (c, "sha256");
      if (file == NULL || sha == NULL)
        continue;
      now = file_sha256 (file);
      if (now != NULL && strcmp (now, sha) != 0)
        return TRUE;
    }
  return FALSE;
}
