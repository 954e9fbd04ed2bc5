/* SPDX-License-Identifier: MIT */
/* flowgmm — plugin registry and loader (dlopen, ABI checks, search path). */
#include "config.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <flowgmm/registry.h>

#include "loader/builtins.h"
#include "loader/registry-private.h"

typedef struct {
  const FgComponent *component;
  const FgPluginRecord *provider;
  char *conflict; /* another file that provides it too (no preference given), or NULL */
} Entry;

struct _FgRegistry {
  GPtrArray *records;                  /* FgPluginRecord *, in load order */
  GHashTable *by_kind[FG_KIND_LAST + 1]; /* name -> Entry * */
  GHashTable *plugins;                 /* plugin name -> FgPluginRecord * */
  GPtrArray *preferred;                /* canonical files and directories that win conflicts */
  GHashTable *dirs_loaded;             /* canonical directories already scanned */
};

static void
entry_free (gpointer data)
{
  Entry *e = data;
  g_free (e->conflict);
  g_free (e);
}

/* The path with symbolic links and "..", "." resolved; the path itself when it does not
 * exist. */
static char *
canonical_path (const char *path)
{
  char *real = realpath (path, NULL);
  char *out = g_strdup (real ? real : path);
  free (real);
  return out;
}

/* The smallest descriptor and vtables of ABI version 1: everything up to the last required
 * member.  Later, optional members appended at the end are tested with FG_VTABLE_HAS. */
#define MIN_SIZE(T, last) (G_STRUCT_OFFSET (T, last) + sizeof (((T *) 0)->last))
#define MIN_INFO_SIZE MIN_SIZE (FgPluginInfo, components)

/**
 * fg_kind_to_string:
 * @kind: a component kind
 *
 * Returns: "dataset", "flow", "loss", "baseline" or "unknown".
 */
const char *
fg_kind_to_string (FgKind kind)
{
  switch (kind)
    {
    case FG_KIND_DATASET: return "dataset";
    case FG_KIND_FLOW: return "flow";
    case FG_KIND_LOSS: return "loss";
    case FG_KIND_BASELINE: return "baseline";
    }
  return "unknown";
}

/**
 * fg_kind_from_string:
 * @name: "dataset", "flow", "loss" or "baseline"
 * @kind: (out): the kind
 *
 * Returns: %TRUE if @name is a kind.
 */
gboolean
fg_kind_from_string (const char *name, FgKind *kind)
{
  for (int k = FG_KIND_FIRST; k <= FG_KIND_LAST; k++)
    if (g_strcmp0 (name, fg_kind_to_string ((FgKind) k)) == 0)
      {
        *kind = (FgKind) k;
        return TRUE;
      }
  return FALSE;
}

static void
record_free (gpointer data)
{
  FgPluginRecord *rec = data;
  g_free (rec->path);
  g_clear_error (&rec->error);
  g_free (rec);
}

/**
 * fg_registry_new:
 *
 * Returns: (transfer full): an empty registry.
 */
FgRegistry *
fg_registry_new (void)
{
  FgRegistry *reg = g_new0 (FgRegistry, 1);
  reg->records = g_ptr_array_new_with_free_func (record_free);
  for (int k = FG_KIND_FIRST; k <= FG_KIND_LAST; k++)
    reg->by_kind[k] = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, entry_free);
  reg->plugins = g_hash_table_new (g_str_hash, g_str_equal);
  reg->preferred = g_ptr_array_new_with_free_func (g_free);
  reg->dirs_loaded = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return reg;
}

/**
 * fg_registry_new_with_builtins:
 *
 * Returns: (transfer full): a registry holding the core's own components (such as the
 *   `flowgmm` method).
 */
FgRegistry *
fg_registry_new_with_builtins (void)
{
  FgRegistry *reg = fg_registry_new ();
  for (guint i = 0; _fg_builtin_plugins[i] != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      if (!fg_registry_add_static (reg, _fg_builtin_plugins[i], "(built-in)", &error))
        g_critical ("built-in plugin rejected: %s", error->message);
    }
  return reg;
}

/**
 * fg_registry_free:
 * @reg: (nullable): a registry
 *
 * Frees the registry.  Loaded plugins stay mapped: their descriptors and code may still be
 * referenced (e.g. by OpenBLAS thread pools or cached strings), so they are never unloaded.
 */
void
fg_registry_free (FgRegistry *reg)
{
  if (reg == NULL)
    return;
  _fg_registry_forget_default (reg);
  for (int k = FG_KIND_FIRST; k <= FG_KIND_LAST; k++)
    g_hash_table_destroy (reg->by_kind[k]);
  g_hash_table_destroy (reg->plugins);
  g_ptr_array_unref (reg->records);
  g_ptr_array_unref (reg->preferred);
  g_hash_table_destroy (reg->dirs_loaded);
  g_free (reg);
}

static gboolean
component_name_is_valid (const char *name)
{
  if (name == NULL || *name == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!(g_ascii_islower (*p) || g_ascii_isdigit (*p) || *p == '-' || *p == '_'))
      return FALSE;
  return TRUE;
}

static gboolean
missing (const FgComponent *c, const char *method, GError **error)
{
  g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_MISSING_METHOD,
               "%s component '%s' lacks the required method '%s'", fg_kind_to_string (c->kind),
               c->name, method);
  return FALSE;
}

static gboolean
too_small (const FgComponent *c, gsize have, gsize need, GError **error)
{
  g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_STRUCT_SIZE,
               "%s component '%s' has a vtable of %" G_GSIZE_FORMAT " bytes; ABI %u needs at "
               "least %" G_GSIZE_FORMAT,
               fg_kind_to_string (c->kind), c->name, have, FG_PLUGIN_ABI_VERSION, need);
  return FALSE;
}

/* Check a component's vtable size and required methods. */
static gboolean
check_vtable (const FgComponent *c, GError **error)
{
  gsize size;
  if (c->vtable == NULL)
    return missing (c, "vtable", error);
  size = *(const gsize *) c->vtable; /* every vtable starts with its struct_size */
  switch (c->kind)
    {
    case FG_KIND_DATASET:
      {
        const FgDatasetVTable *vt = c->vtable;
        if (size < MIN_SIZE (FgDatasetVTable, load))
          return too_small (c, size, MIN_SIZE (FgDatasetVTable, load), error);
        if (vt->load == NULL)
          return missing (c, "load", error);
        return TRUE;
      }
    case FG_KIND_FLOW:
      {
        const FgFlowVTable *vt = c->vtable;
        if (size < MIN_SIZE (FgFlowVTable, destroy))
          return too_small (c, size, MIN_SIZE (FgFlowVTable, destroy), error);
        if (vt->create == NULL)
          return missing (c, "create", error);
        if (vt->forward == NULL)
          return missing (c, "forward", error);
        if (vt->inverse == NULL)
          return missing (c, "inverse", error);
        if (vt->destroy == NULL)
          return missing (c, "destroy", error);
        return TRUE;
      }
    case FG_KIND_LOSS:
      {
        const FgLossVTable *vt = c->vtable;
        if (size < MIN_SIZE (FgLossVTable, destroy))
          return too_small (c, size, MIN_SIZE (FgLossVTable, destroy), error);
        if (vt->create == NULL)
          return missing (c, "create", error);
        if (vt->compute == NULL)
          return missing (c, "compute", error);
        if (vt->destroy == NULL)
          return missing (c, "destroy", error);
        return TRUE;
      }
    case FG_KIND_BASELINE:
      {
        const FgBaselineVTable *vt = c->vtable;
        if (size < MIN_SIZE (FgBaselineVTable, destroy))
          return too_small (c, size, MIN_SIZE (FgBaselineVTable, destroy), error);
        if (vt->create == NULL)
          return missing (c, "create", error);
        if (vt->fit == NULL)
          return missing (c, "fit", error);
        if (vt->predict == NULL)
          return missing (c, "predict", error);
        if (vt->destroy == NULL)
          return missing (c, "destroy", error);
        return TRUE;
      }
    }
  g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_UNKNOWN_KIND,
               "component '%s' has kind %d, unknown to this host (ABI %u)",
               c->name ? c->name : "(unnamed)", (int) c->kind, FG_PLUGIN_ABI_VERSION);
  return FALSE;
}

/* Validate a descriptor against the ABI and the registry; registers nothing. */
static gboolean
check_descriptor (FgRegistry *reg, const FgPluginInfo *info, const char *expected_name,
                  GError **error)
{
  if (info == NULL)
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_BAD_DESCRIPTOR,
                   "fg_plugin_query () returned no descriptor");
      return FALSE;
    }
  if (info->abi_version != FG_PLUGIN_ABI_VERSION)
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_ABI_VERSION,
                   "built for plugin ABI %u, but this host speaks ABI %u: rebuild it against "
                   "flowgmm %s",
                   info->abi_version, FG_PLUGIN_ABI_VERSION, PACKAGE_VERSION);
      return FALSE;
    }
  if (info->struct_size < MIN_INFO_SIZE)
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_STRUCT_SIZE,
                   "descriptor is %u bytes; ABI %u needs at least %" G_GSIZE_FORMAT,
                   info->struct_size, FG_PLUGIN_ABI_VERSION, (gsize) MIN_INFO_SIZE);
      return FALSE;
    }
  if (info->name == NULL || info->version == NULL || info->license == NULL
      || info->description == NULL)
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_BAD_DESCRIPTOR,
                   "descriptor lacks its %s", info->name == NULL      ? "name"
                                              : info->version == NULL ? "version"
                                              : info->license == NULL ? "license"
                                                                      : "description");
      return FALSE;
    }
  if (expected_name != NULL && strcmp (info->name, expected_name) != 0)
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_BAD_DESCRIPTOR,
                   "descriptor name '%s' does not match the file name '%s'", info->name,
                   expected_name);
      return FALSE;
    }
  if (info->components == NULL || info->components[0].kind == 0)
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_BAD_DESCRIPTOR,
                   "plugin '%s' declares no components", info->name);
      return FALSE;
    }
  for (guint i = 0; info->components[i].kind != 0; i++)
    {
      const FgComponent *c = &info->components[i];
      g_autoptr (GError) local = NULL;
      if (c->kind < FG_KIND_FIRST || c->kind > FG_KIND_LAST)
        {
          g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_UNKNOWN_KIND,
                       "component '%s' has kind %d, unknown to this host (ABI %u)",
                       c->name ? c->name : "(unnamed)", (int) c->kind, FG_PLUGIN_ABI_VERSION);
          return FALSE;
        }
      if (!component_name_is_valid (c->name) || c->summary == NULL)
        {
          g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_BAD_DESCRIPTOR,
                       "component %u: %s", i,
                       c->summary == NULL && component_name_is_valid (c->name)
                           ? "no summary"
                           : "name missing or not made of a-z, 0-9, '-' and '_'");
          return FALSE;
        }
      if (!check_vtable (c, error))
        return FALSE;
      if (!fg_param_spec_validate (c->params, &local))
        {
          g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_BAD_PARAMS,
                       "%s component '%s': %s", fg_kind_to_string (c->kind), c->name,
                       local->message);
          return FALSE;
        }
      for (guint j = 0; j < i; j++)
        if (info->components[j].kind == c->kind
            && strcmp (info->components[j].name, c->name) == 0)
          {
            g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_DUPLICATE,
                         "%s component '%s' is declared twice", fg_kind_to_string (c->kind),
                         c->name);
            return FALSE;
          }
    }
  return TRUE;
}

static gboolean
is_preferred (const FgRegistry *reg, const char *path)
{
  g_autofree char *file = NULL;
  g_autofree char *dir = NULL;
  if (reg->preferred->len == 0 || path == NULL || *path == '(') /* "(built-in)" */
    return FALSE;
  file = canonical_path (path);
  dir = g_path_get_dirname (file);
  for (guint i = 0; i < reg->preferred->len; i++)
    {
      const char *p = reg->preferred->pdata[i];
      if (strcmp (p, file) == 0 || strcmp (p, dir) == 0)
        return TRUE;
    }
  return FALSE;
}

/* Registered plugins that clash with `info`: the same plugin name, or a component of the same
 * kind and name. */
static GPtrArray *
find_clashes (FgRegistry *reg, const FgPluginInfo *info)
{
  GPtrArray *clashes = g_ptr_array_new ();
  FgPluginRecord *same = g_hash_table_lookup (reg->plugins, info->name);
  if (same != NULL)
    g_ptr_array_add (clashes, same);
  for (guint i = 0; info->components[i].kind != 0; i++)
    {
      const FgComponent *c = &info->components[i];
      const Entry *e = g_hash_table_lookup (reg->by_kind[c->kind], c->name);
      if (e != NULL && !g_ptr_array_find (clashes, e->provider, NULL))
        g_ptr_array_add (clashes, (gpointer) e->provider);
    }
  return clashes;
}

static void
unregister (FgRegistry *reg, FgPluginRecord *rec, const char *winner)
{
  for (guint i = 0; rec->info->components[i].kind != 0; i++)
    {
      const FgComponent *c = &rec->info->components[i];
      const Entry *e = g_hash_table_lookup (reg->by_kind[c->kind], c->name);
      if (e != NULL && e->provider == rec)
        g_hash_table_remove (reg->by_kind[c->kind], c->name);
    }
  if (g_hash_table_lookup (reg->plugins, rec->info->name) == rec)
    g_hash_table_remove (reg->plugins, rec->info->name);
  rec->info = NULL;
  rec->error = g_error_new (FG_LOADER_ERROR, FG_LOADER_ERROR_DUPLICATE,
                            "%s: not used: %s is preferred (--prefer)", rec->path, winner);
}

/* A plugin clashing with one already registered: the preferred one wins.  Without a preference
 * the first stays registered, the second is rejected, and each component both provide is
 * ambiguous: using it is an error naming both files (fg_registry_find ()), so a stray copy in
 * a plugin directory can never silently stand in for the real one.  FALSE: `info` is
 * rejected. */
static gboolean
settle_clashes (FgRegistry *reg, const FgPluginInfo *info, const char *path, GError **error)
{
  g_autoptr (GPtrArray) clashes = find_clashes (reg, info);
  gboolean new_wins = is_preferred (reg, path);
  FgPluginRecord *first;

  if (clashes->len == 0)
    return TRUE;
  first = clashes->pdata[0];
  for (guint i = 0; new_wins && i < clashes->len; i++)
    if (is_preferred (reg, ((FgPluginRecord *) clashes->pdata[i])->path))
      new_wins = FALSE;
  if (new_wins)
    {
      for (guint i = 0; i < clashes->len; i++)
        unregister (reg, clashes->pdata[i], path);
      return TRUE;
    }
  if (!is_preferred (reg, first->path))
    for (guint i = 0; info->components[i].kind != 0; i++)
      {
        const FgComponent *c = &info->components[i];
        Entry *e = g_hash_table_lookup (reg->by_kind[c->kind], c->name);
        if (e != NULL && e->conflict == NULL)
          e->conflict = g_strdup (path);
      }
  if (strcmp (first->info->name, info->name) == 0)
    g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_DUPLICATE,
                 "a plugin named '%s' is already registered from %s", info->name, first->path);
  else
    {
      const FgComponent *c = info->components;
      const Entry *e = NULL;
      for (; c->kind != 0; c++)
        if ((e = g_hash_table_lookup (reg->by_kind[c->kind], c->name)) != NULL)
          break;
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_DUPLICATE,
                   "%s component '%s' is already provided by plugin '%s' (%s)",
                   fg_kind_to_string (c->kind), c->name, first->info->name, first->path);
    }
  return FALSE;
}

/**
 * fg_registry_prefer:
 * @reg: a registry
 * @path: a plugin file, or a directory of plugins
 *
 * Makes the plugins of @path win over others that provide a component of the same name (or
 * have the same plugin name), instead of making that component ambiguous.  Call it before
 * loading.
 */
void
fg_registry_prefer (FgRegistry *reg, const char *path)
{
  g_return_if_fail (reg != NULL && path != NULL);
  g_ptr_array_add (reg->preferred, canonical_path (path));
}

static FgPluginRecord *
add_record (FgRegistry *reg, const char *path, const FgPluginInfo *info, GError *error)
{
  FgPluginRecord *rec = g_new0 (FgPluginRecord, 1);
  rec->path = g_strdup (path);
  rec->info = info;
  rec->error = error;
  g_ptr_array_add (reg->records, rec);
  return rec;
}

static void
register_components (FgRegistry *reg, FgPluginRecord *rec)
{
  g_hash_table_insert (reg->plugins, (gpointer) rec->info->name, rec);
  for (guint i = 0; rec->info->components[i].kind != 0; i++)
    {
      const FgComponent *c = &rec->info->components[i];
      Entry *e = g_new0 (Entry, 1);
      e->component = c;
      e->provider = rec;
      g_hash_table_insert (reg->by_kind[c->kind], (gpointer) c->name, e);
    }
}

/**
 * fg_registry_add_static:
 * @reg: a registry
 * @info: a descriptor linked into the program
 * @origin: where it comes from, shown by `flowgmm list`
 * @error: return location for a #GError
 *
 * Checks and registers a descriptor that is not loaded from a file.
 *
 * Returns: %TRUE if registered.
 */
gboolean
fg_registry_add_static (FgRegistry *reg, const FgPluginInfo *info, const char *origin,
                        GError **error)
{
  GError *local = NULL;
  g_return_val_if_fail (reg != NULL, FALSE);
  if (!check_descriptor (reg, info, NULL, &local)
      || !settle_clashes (reg, info, origin, &local))
    {
      add_record (reg, origin, NULL, g_error_copy (local));
      g_propagate_error (error, local);
      return FALSE;
    }
  register_components (reg, add_record (reg, origin, info, NULL));
  return TRUE;
}

static char *
plugin_basename (const char *path)
{
  char *base = g_path_get_basename (path);
  if (g_str_has_suffix (base, ".so"))
    base[strlen (base) - 3] = '\0';
  return base;
}

/* The end of the furthest byte the ELF headers of the file refer to: the program and section
 * header tables and every segment's file contents.  0 when the headers themselves are short. */
#define ELF_EXTENT(Ehdr, Phdr, data, len, out)                                                \
  do                                                                                          \
    {                                                                                         \
      const Ehdr *eh = (const Ehdr *) (data);                                                 \
      guint64 end;                                                                            \
      (out) = 0;                                                                              \
      if ((len) < sizeof (Ehdr))                                                              \
        break;                                                                                \
      end = sizeof (Ehdr);                                                                    \
      end = MAX (end, (guint64) eh->e_phoff + (guint64) eh->e_phnum * eh->e_phentsize);       \
      end = MAX (end, (guint64) eh->e_shoff + (guint64) eh->e_shnum * eh->e_shentsize);       \
      for (guint i_ = 0; i_ < eh->e_phnum && eh->e_phentsize >= sizeof (Phdr); i_++)          \
        {                                                                                     \
          guint64 at = (guint64) eh->e_phoff + (guint64) i_ * eh->e_phentsize;                \
          Phdr ph;                                                                            \
          if (at + sizeof ph > (len))                                                         \
            break;                                                                            \
          memcpy (&ph, (const char *) (data) + at, sizeof ph);                                \
          end = MAX (end, (guint64) ph.p_offset + ph.p_filesz);                               \
        }                                                                                     \
      (out) = end;                                                                            \
    }                                                                                         \
  while (0)

/* A file cut short (an interrupted copy or build) makes the dynamic loader fault on pages
 * past its end (SIGBUS): check, before dlopen, that the file holds everything its ELF headers
 * refer to.  Files that are not ELF are left to dlopen, which refuses them cleanly. */
static gboolean
check_elf_size (const char *path, GError **error)
{
  unsigned char head[4096];
  struct stat st;
  ssize_t got;
  guint64 need = 0;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    return TRUE; /* dlopen says why */
  if (fstat (fd, &st) != 0)
    {
      close (fd);
      return TRUE;
    }
  got = pread (fd, head, sizeof head, 0);
  close (fd);
  if (got < SELFMAG || memcmp (head, ELFMAG, SELFMAG) != 0)
    return TRUE;
  if (got < EI_NIDENT)
    need = EI_NIDENT;
  else if (head[EI_CLASS] == ELFCLASS64)
    ELF_EXTENT (Elf64_Ehdr, Elf64_Phdr, head, (gsize) got, need);
  else if (head[EI_CLASS] == ELFCLASS32)
    ELF_EXTENT (Elf32_Ehdr, Elf32_Phdr, head, (gsize) got, need);
  else
    return TRUE;
  if (need == 0 && got < (ssize_t) sizeof head)
    need = (guint64) got + 1; /* not even a whole ELF header */
  if (need > (guint64) st.st_size)
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_OPEN,
                   "truncated: the file has %" G_GUINT64_FORMAT " bytes, but its ELF headers "
                   "refer to %" G_GUINT64_FORMAT " (an interrupted copy or build? rebuild or "
                   "reinstall it)", (guint64) st.st_size, need);
      return FALSE;
    }
  return TRUE;
}

/**
 * fg_registry_load_file:
 * @reg: a registry
 * @path: a shared object
 * @error: return location for a #GError (%FG_LOADER_ERROR)
 *
 * Checks that @path holds all that its ELF headers refer to (a truncated file would crash the
 * dynamic loader), opens it with dlopen (RTLD_NOW | RTLD_LOCAL), so that a missing symbol fails
 * here rather than mid-experiment and plugins cannot interpose on each other, then checks its
 * descriptor.
 * The attempt is recorded either way.
 *
 * Returns: %TRUE if the plugin was registered.
 */
gboolean
fg_registry_load_file (FgRegistry *reg, const char *path, GError **error)
{
  void *handle;
  const FgPluginInfo *(*query) (void);
  const FgPluginInfo *info;
  g_autofree char *expected = NULL;
  GError *local = NULL;

  g_return_val_if_fail (reg != NULL && path != NULL, FALSE);

  if (!check_elf_size (path, &local))
    goto reject;
  dlerror ();
  handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL)
    {
      const char *msg = dlerror ();
      local = g_error_new (FG_LOADER_ERROR, FG_LOADER_ERROR_OPEN,
                           "cannot load: %s (is it a shared object? check its dependencies "
                           "with ldd)",
                           msg ? msg : "unknown dlopen error");
      goto reject;
    }
  dlerror ();
  *(void **) (&query) = dlsym (handle, FG_PLUGIN_ENTRY_SYMBOL);
  if (query == NULL)
    {
      local = g_error_new (FG_LOADER_ERROR, FG_LOADER_ERROR_NO_ENTRY,
                           "no entry symbol %s (not a flowgmm plugin, or built without "
                           "FG_PLUGIN_DEFINE)",
                           FG_PLUGIN_ENTRY_SYMBOL);
      dlclose (handle);
      goto reject;
    }
  info = query ();
  expected = plugin_basename (path);
  if (!check_descriptor (reg, info, expected, &local)
      || !settle_clashes (reg, info, path, &local))
    {
      /* Rejected plugins registered nothing, so unmapping them is safe. */
      dlclose (handle);
      goto reject;
    }
  /* Registered: stay resident for the life of the process (never dlclose). */
  register_components (reg, add_record (reg, path, info, NULL));
  g_debug ("loaded plugin '%s' %s from %s", info->name, info->version, path);
  return TRUE;

reject:
  g_prefix_error (&local, "%s: ", path);
  add_record (reg, path, NULL, g_error_copy (local));
  g_debug ("rejected %s", local->message);
  g_propagate_error (error, local);
  return FALSE;
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static gint
compare_component_names (gconstpointer a, gconstpointer b)
{
  return strcmp ((*(const FgComponent *const *) a)->name, (*(const FgComponent *const *) b)->name);
}

/**
 * fg_registry_load_dir:
 * @reg: a registry
 * @dir: a directory
 *
 * Tries every regular "*.so" file in @dir, in name order (".la", ".a" and hidden files are
 * skipped).  Rejections are recorded; a missing directory is not an error.  A directory already
 * scanned by this registry (under any name) is not scanned again.
 *
 * Returns: the number of plugins registered.
 */
guint
fg_registry_load_dir (FgRegistry *reg, const char *dir)
{
  g_autoptr (GDir) d = NULL;
  g_autoptr (GPtrArray) names = NULL;
  const char *name;
  guint n = 0;

  g_return_val_if_fail (reg != NULL && dir != NULL, 0);
  /* The same directory twice (an option and the environment, a symbolic link): once. */
  {
    char *canonical = canonical_path (dir);
    if (!g_hash_table_add (reg->dirs_loaded, canonical))
      return 0;
  }
  d = g_dir_open (dir, 0, NULL);
  if (d == NULL)
    return 0;
  names = g_ptr_array_new_with_free_func (g_free);
  while ((name = g_dir_read_name (d)) != NULL)
    if (name[0] != '.' && g_str_has_suffix (name, ".so"))
      g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_strings);
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *path = g_build_filename (dir, names->pdata[i], NULL);
      if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
        continue;
      if (fg_registry_load_file (reg, path, NULL))
        n++;
    }
  return n;
}

/**
 * fg_registry_load_default:
 * @reg: a registry
 * @extra_dirs: (nullable) (array zero-terminated=1): directories searched first
 *
 * Loads plugins from @extra_dirs, then $FLOWGMM_PLUGIN_PATH (colon-separated), then the
 * installed plugin directory ($FLOWGMM_PLUGIN_SYSTEM_PATH when set, even empty, else the
 * configured one).  A directory is scanned once however often it is named.  Of two plugins
 * that provide the same component (or have the same name), the one fg_registry_prefer () named
 * wins; without a preference the component is ambiguous (see fg_registry_find ()).
 *
 * Returns: the number of plugins registered.
 */
guint
fg_registry_load_default (FgRegistry *reg, const char *const *extra_dirs)
{
  const char *env;
  guint n = 0;

  g_return_val_if_fail (reg != NULL, 0);
  for (guint i = 0; extra_dirs && extra_dirs[i]; i++)
    n += fg_registry_load_dir (reg, extra_dirs[i]);
  env = g_getenv ("FLOWGMM_PLUGIN_PATH");
  if (env != NULL)
    {
      g_auto (GStrv) dirs = g_strsplit (env, G_SEARCHPATH_SEPARATOR_S, -1);
      for (guint i = 0; dirs[i]; i++)
        if (*dirs[i] != '\0')
          n += fg_registry_load_dir (reg, dirs[i]);
    }
  env = g_getenv ("FLOWGMM_PLUGIN_SYSTEM_PATH");
  if (env == NULL)
    n += fg_registry_load_dir (reg, FG_PLUGINDIR);
  else if (*env != '\0')
    n += fg_registry_load_dir (reg, env);
  return n;
}

/**
 * fg_registry_lookup:
 * @reg: a registry
 * @kind: the component kind
 * @name: the component name
 *
 * Returns: (nullable): the component; %NULL also when two plugin files provide it (see
 *   fg_registry_find ()).
 */
const FgComponent *
fg_registry_lookup (const FgRegistry *reg, FgKind kind, const char *name)
{
  const Entry *e;
  g_return_val_if_fail (reg != NULL, NULL);
  if (kind < FG_KIND_FIRST || kind > FG_KIND_LAST || name == NULL)
    return NULL;
  e = g_hash_table_lookup (reg->by_kind[kind], name);
  return e && e->conflict == NULL ? e->component : NULL;
}

/**
 * fg_registry_list:
 * @reg: a registry
 * @kind: a component kind
 *
 * Returns: (transfer container): the registered components of @kind sorted by name.
 */
GPtrArray *
fg_registry_list (const FgRegistry *reg, FgKind kind)
{
  GPtrArray *out = g_ptr_array_new ();
  GHashTableIter it;
  gpointer value;
  g_return_val_if_fail (reg != NULL, out);
  if (kind < FG_KIND_FIRST || kind > FG_KIND_LAST)
    return out;
  g_hash_table_iter_init (&it, reg->by_kind[kind]);
  while (g_hash_table_iter_next (&it, NULL, &value))
    g_ptr_array_add (out, (gpointer) ((const Entry *) value)->component);
  g_ptr_array_sort (out, compare_component_names);
  return out;
}

/**
 * fg_registry_find:
 * @reg: a registry
 * @kind: the component kind
 * @name: the component name
 * @error: return location for a #GError (%FG_LOADER_ERROR_NOT_FOUND)
 *
 * Returns: (nullable): the component, or %NULL with an error listing the available ones
 *   (%FG_LOADER_ERROR_NOT_FOUND), or naming both files when two plugins provide it and no
 *   preference says which wins (%FG_LOADER_ERROR_DUPLICATE).
 */
const FgComponent *
fg_registry_find (const FgRegistry *reg, FgKind kind, const char *name, GError **error)
{
  const FgComponent *c = fg_registry_lookup (reg, kind, name);
  g_autoptr (GPtrArray) all = NULL;
  g_autoptr (GString) names = NULL;
  const FgComponent *other;
  if (c != NULL)
    return c;
  if (kind >= FG_KIND_FIRST && kind <= FG_KIND_LAST && name != NULL)
    {
      const Entry *e = g_hash_table_lookup (reg->by_kind[kind], name);
      if (e != NULL && e->conflict != NULL)
        {
          g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_DUPLICATE,
                       "%s component '%s' is provided by two plugin files, %s and %s: remove "
                       "one, or say which wins (flowgmm --prefer FILE)",
                       fg_kind_to_string (kind), name, e->provider->path, e->conflict);
          return NULL;
        }
    }
  all = fg_registry_list (reg, kind);
  names = g_string_new (NULL);
  for (guint i = 0; i < all->len; i++)
    g_string_append_printf (names, "%s%s", i ? ", " : "",
                            ((const FgComponent *) all->pdata[i])->name);
  other = fg_registry_lookup_any (reg, name);
  g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_NOT_FOUND,
               "no %s component named '%s'%s%s%s (available: %s; see `flowgmm list`)",
               fg_kind_to_string (kind), name ? name : "(null)", other ? " (there is a " : "",
               other ? fg_kind_to_string (other->kind) : "", other ? " of that name)" : "",
               names->len ? names->str : "none");
  return NULL;
}

/**
 * fg_registry_lookup_any:
 * @reg: a registry
 * @name: a component name
 *
 * Returns: (nullable): the first component of that name in kind order.
 */
const FgComponent *
fg_registry_lookup_any (const FgRegistry *reg, const char *name)
{
  for (int k = FG_KIND_FIRST; k <= FG_KIND_LAST; k++)
    {
      const FgComponent *c = fg_registry_lookup (reg, (FgKind) k, name);
      if (c != NULL)
        return c;
    }
  return NULL;
}

static gboolean
bind_component (const char *kind_name, const char *name, const FgParamSpec **specs,
                gconstpointer *object, gpointer user_data, GError **error)
{
  const FgRegistry *reg = user_data;
  const FgComponent *c;
  FgKind kind;
  if (!fg_kind_from_string (kind_name, &kind))
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_UNKNOWN_KIND,
                   "unknown component kind '%s'", kind_name);
      return FALSE;
    }
  c = fg_registry_find (reg, kind, name, error);
  if (c == NULL)
    return FALSE;
  *specs = c->params;
  *object = c;
  return TRUE;
}

/**
 * fg_registry_resolve_params:
 * @reg: a registry
 * @params: parameters that may hold COMPONENT values
 * @error: return location for a #GError
 *
 * Looks up every COMPONENT value in @reg (recursively), attaches default parameters to those
 * that have none, and binds each value to its #FgComponent (fg_params_get_resolved_component ()).
 *
 * Returns: %TRUE when every COMPONENT value names a registered component (recursively) and
 *   its parameters, when already set, are that component's.
 */
gboolean
fg_registry_resolve_params (const FgRegistry *reg, FgParams *params, GError **error)
{
  g_return_val_if_fail (reg != NULL && params != NULL, FALSE);
  return fg_params_bind_components (params, bind_component, (gpointer) reg, error);
}

/**
 * fg_params_get_resolved_component:
 * @params: parameters resolved with fg_registry_resolve_params ()
 * @name: a COMPONENT parameter
 *
 * Returns: (nullable): the component bound to @name by the last fg_registry_resolve_params (),
 *   or %NULL when @name was set after it (or never resolved).  Components stay valid for the
 *   life of the process (plugins are never unloaded).
 */
const FgComponent *
fg_params_get_resolved_component (const FgParams *params, const char *name)
{
  return fg_params_get_bound (params, name);
}

/**
 * fg_registry_get_provider:
 * @reg: a registry
 * @component: a registered component
 *
 * Returns: (nullable): the record of the plugin that provides it.
 */
const FgPluginRecord *
fg_registry_get_provider (const FgRegistry *reg, const FgComponent *component)
{
  const Entry *e;
  g_return_val_if_fail (reg != NULL && component != NULL, NULL);
  if (component->kind < FG_KIND_FIRST || component->kind > FG_KIND_LAST)
    return NULL;
  e = g_hash_table_lookup (reg->by_kind[component->kind], component->name);
  return e && e->component == component ? e->provider : NULL;
}

/**
 * fg_registry_get_n_records:
 * @reg: a registry
 *
 * Returns: the number of load attempts recorded.
 */
guint
fg_registry_get_n_records (const FgRegistry *reg)
{
  g_return_val_if_fail (reg != NULL, 0);
  return reg->records->len;
}

/**
 * fg_registry_get_record:
 * @reg: a registry
 * @i: index below fg_registry_get_n_records ()
 *
 * Returns: the @i-th load attempt.
 */
const FgPluginRecord *
fg_registry_get_record (const FgRegistry *reg, guint i)
{
  g_return_val_if_fail (reg != NULL && i < reg->records->len, NULL);
  return reg->records->pdata[i];
}
