/* SPDX-License-Identifier: MIT */
/* flowgmm — plugin registry and loader.
 *
 * Search order: directories given explicitly (--plugin-dir), then $FLOWGMM_PLUGIN_PATH (a
 * colon-separated list), then the installed plugin directory (FG_PLUGINDIR, overridable with
 * $FLOWGMM_PLUGIN_SYSTEM_PATH; set it empty to skip).  Only regular "*.so" files are tried, each
 * with dlopen (RTLD_NOW | RTLD_LOCAL).  A rejected file is recorded with its error and loading
 * goes on.  A registered plugin is never unloaded.
 */
#pragma once

#include <glib.h>
#include <flowgmm/plugin.h>

G_BEGIN_DECLS

typedef struct _FgRegistry FgRegistry;

typedef struct {
  char               *path;   /* file it came from, or "(built-in)" */
  const FgPluginInfo *info;   /* NULL when rejected */
  GError             *error;  /* why it was rejected, or NULL */
} FgPluginRecord;

FG_API FgRegistry *fg_registry_new (void);
/* Registers the core's built-in components (e.g. the `flowgmm` method). */
FG_API FgRegistry *fg_registry_new_with_builtins (void);
FG_API void        fg_registry_free (FgRegistry *reg); /* plugins stay loaded */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgRegistry, fg_registry_free)

/* Load one file.  On rejection the record is kept (see fg_registry_get_records) and the error
 * returned. */
FG_API gboolean fg_registry_load_file (FgRegistry *reg, const char *path, GError **error);
/* Load every *.so in `dir` (sorted by name); returns the number registered.  A missing
 * directory is not an error; one already scanned is skipped. */
FG_API guint    fg_registry_load_dir (FgRegistry *reg, const char *dir);
/* The standard search path: extra_dirs (NULL-terminated, may be NULL), $FLOWGMM_PLUGIN_PATH,
 * then the installed directory; a directory named twice is scanned once.  A plugin whose name or
 * component clashes with one loaded before is rejected (recorded as a duplicate) and the
 * component becomes ambiguous, unless fg_registry_prefer () says which wins. */
FG_API guint    fg_registry_load_default (FgRegistry *reg, const char *const *extra_dirs);
/* Make the plugins of `path` (a file, or a directory of plugins) win over others that provide a
 * component of the same name; call it before loading.  Without a preference such a component
 * is ambiguous: fg_registry_lookup () returns NULL for it and fg_registry_find () an error
 * (FG_LOADER_ERROR_DUPLICATE) naming both files.  Appended after ABI 1's first release. */
FG_API void     fg_registry_prefer (FgRegistry *reg, const char *path);
/* Register a descriptor that is linked in (the core's own components, tests). */
FG_API gboolean fg_registry_add_static (FgRegistry *reg, const FgPluginInfo *info,
                                        const char *origin, GError **error);

FG_API const FgComponent *fg_registry_lookup (const FgRegistry *reg, FgKind kind,
                                              const char *name);
/* Lookup with FG_LOADER_ERROR_NOT_FOUND naming what is available. */
FG_API const FgComponent *fg_registry_find (const FgRegistry *reg, FgKind kind,
                                            const char *name, GError **error);
/* Look a name up in every kind; NULL if absent. */
FG_API const FgComponent *fg_registry_lookup_any (const FgRegistry *reg, const char *name);
/* Resolve every COMPONENT parameter of `params` (e.g. a flowgmm method's default `flow`)
 * against the registry, recursively, and bind each to its component (see below);
 * FG_LOADER_ERROR_NOT_FOUND names what is available. */
FG_API gboolean fg_registry_resolve_params (const FgRegistry *reg, FgParams *params,
                                            GError **error);
/* The plugin that provides a component. */
FG_API const FgPluginRecord *fg_registry_get_provider (const FgRegistry *reg,
                                                       const FgComponent *component);

/* All load attempts in order (registered and rejected). */
FG_API guint                 fg_registry_get_n_records (const FgRegistry *reg);
FG_API const FgPluginRecord *fg_registry_get_record (const FgRegistry *reg, guint i);
/* Registered components of `kind`, sorted by name (container owned by the caller, elements not). */
FG_API GPtrArray *fg_registry_list (const FgRegistry *reg, FgKind kind);

/* ---- ABI 1, appended: the component a parameter names ----------------------------------
 * The component bound to COMPONENT parameter `name` by the last fg_registry_resolve_params ()
 * on `params`, or NULL when it was set after that (or never resolved).  A component that runs
 * others (the flowgmm method) takes them from here. */
FG_API const FgComponent *fg_params_get_resolved_component (const FgParams *params,
                                                            const char *name);

/* ---- Deprecated (kept for ABI 1): the process's default registry -------------------------
 * The core no longer consults a default registry: components are bound to parameters when they
 * are resolved (above).  These still work as before for programs that call them: set a
 * registry (NULL clears it) and look components up in it; with none set, a process-wide one is
 * made on first use from the built-ins and the standard search path, never freed. */
G_DEPRECATED_FOR (fg_params_get_resolved_component)
FG_API void        fg_registry_set_default (FgRegistry *reg);
G_DEPRECATED_FOR (fg_params_get_resolved_component)
FG_API FgRegistry *fg_registry_get_default (void);
G_DEPRECATED_FOR (fg_params_get_resolved_component)
FG_API const FgComponent *fg_registry_default_find (FgKind kind, const char *name,
                                                    GError **error);

G_END_DECLS
