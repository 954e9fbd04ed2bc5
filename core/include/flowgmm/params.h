/* SPDX-License-Identifier: MIT */
/* flowgmm — declared component parameters and their validated values.
 *
 * Every component (dataset, flow, loss, baseline) declares its parameters as a static array of
 * FgParamSpec ending with a NULL name.  The host validates experiment-file keys against it and
 * hands the component an FgParams holding one typed value per declared parameter.
 */
#pragma once

#include <glib.h>
#include <math.h>
#include <flowgmm/error.h>

G_BEGIN_DECLS

typedef enum {
  FG_PARAM_INT = 1,   /* 64-bit integer in [min, max] */
  FG_PARAM_DOUBLE,    /* finite double in [min, max] */
  FG_PARAM_BOOL,      /* true/false, yes/no, on/off, 1/0 */
  FG_PARAM_STRING,    /* free text */
  FG_PARAM_CHOICE,    /* one of `choices`, written "a|b|c" */
  FG_PARAM_PATH,      /* a file name; relative names are resolved against the experiment file */
  FG_PARAM_COMPONENT, /* the name of a registered component of kind `choices` ("flow", "loss",
                       * "dataset", "baseline"); keys "<param>.<key>" configure that component */
} FgParamType;

typedef enum {
  FG_PARAM_FLAG_NONE = 0,
  FG_PARAM_FLAG_REQUIRED = 1 << 0, /* must be given in the experiment file (no default) */
} FgParamFlags;

typedef struct {
  const char *name;          /* [a-z0-9_-]+ */
  FgParamType type;
  const char *default_value; /* as written in an experiment file; NULL = unset (optional) */
  double min, max;           /* INT and DOUBLE, inclusive; -INFINITY / INFINITY when open */
  const char *choices;       /* see FG_PARAM_CHOICE and FG_PARAM_COMPONENT */
  const char *doc;           /* one line */
  FgParamFlags flags;
  gpointer reserved[2];
} FgParamSpec;

/* Spec helpers for plugin authors. */
#define FG_PARAM_SPEC_FULL(n, type, def, lo, hi, ch, d, flags) \
  { (n), (type), (def), (lo), (hi), (ch), (d), (flags), { 0 } }
#define FG_PARAM_SPEC_INT(n, def, lo, hi, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_INT, def, lo, hi, NULL, d, 0)
#define FG_PARAM_SPEC_DOUBLE(n, def, lo, hi, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_DOUBLE, def, lo, hi, NULL, d, 0)
#define FG_PARAM_SPEC_BOOL(n, def, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_BOOL, def, 0, 0, NULL, d, 0)
#define FG_PARAM_SPEC_STRING(n, def, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_STRING, def, 0, 0, NULL, d, 0)
#define FG_PARAM_SPEC_CHOICE(n, def, ch, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_CHOICE, def, 0, 0, ch, d, 0)
#define FG_PARAM_SPEC_PATH(n, def, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_PATH, def, 0, 0, NULL, d, 0)
#define FG_PARAM_SPEC_COMPONENT(n, def, kind, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_COMPONENT, def, 0, 0, kind, d, 0)
/* Required parameters have no default; the experiment file must give them. */
#define FG_PARAM_SPEC_REQUIRED_PATH(n, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_PATH, NULL, 0, 0, NULL, d, FG_PARAM_FLAG_REQUIRED)
#define FG_PARAM_SPEC_REQUIRED_STRING(n, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_STRING, NULL, 0, 0, NULL, d, FG_PARAM_FLAG_REQUIRED)
#define FG_PARAM_SPEC_REQUIRED_INT(n, lo, hi, d) FG_PARAM_SPEC_FULL (n, FG_PARAM_INT, NULL, lo, hi, NULL, d, FG_PARAM_FLAG_REQUIRED)
#define FG_PARAM_SPEC_END { NULL, 0, NULL, 0, 0, NULL, NULL, 0, { 0 } }

FG_API const char *fg_param_type_to_string (FgParamType type);
FG_API guint       fg_param_spec_count (const FgParamSpec *specs);
FG_API const FgParamSpec *fg_param_spec_lookup (const FgParamSpec *specs, const char *name);
/* Checks a spec array for consistency: names well-formed and unique, known types, defaults
 * that parse and lie in range, choices present where needed. */
FG_API gboolean fg_param_spec_validate (const FgParamSpec *specs, GError **error);
/* "integer in [1, 20]", "one of l2|cosine", ... (newly allocated). */
FG_API char *fg_param_spec_describe_type (const FgParamSpec *spec);

typedef struct _FgParams FgParams;

/* Values for every declared parameter, starting at their defaults (unset where there is none). */
FG_API FgParams *fg_params_new (const FgParamSpec *specs);
FG_API FgParams *fg_params_copy (const FgParams *params);
FG_API void      fg_params_free (FgParams *params);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgParams, fg_params_free)

FG_API const FgParamSpec *fg_params_get_specs (const FgParams *params);

/* Parse `text` for parameter `key` ("k", or "flow.hidden" for a component's parameter) and
 * check its type and range.  Errors are FG_ERROR_INVALID_PARAM and say what was expected.
 * Setting a COMPONENT parameter needs the component's own specs: see
 * fg_params_set_component (). */
FG_API gboolean fg_params_set (FgParams *params, const char *key, const char *text,
                               GError **error);
FG_API gboolean fg_params_set_component (FgParams *params, const char *key,
                                         const char *component_name,
                                         const FgParamSpec *component_specs, GError **error);
/* Attach parameters to every COMPONENT value that names a component but has none yet (e.g. a
 * default), recursively.  `resolve` maps (kind, name) to the component's specs or fails with an
 * error naming what is available.  fg_registry_resolve_params () is the usual resolver. */
typedef gboolean (*FgComponentResolver) (const char *kind, const char *name,
                                         const FgParamSpec **specs, gpointer user_data,
                                         GError **error);
FG_API gboolean fg_params_resolve_components (FgParams *params, FgComponentResolver resolve,
                                              gpointer user_data, GError **error);
/* Every FG_PARAM_FLAG_REQUIRED parameter has a value (recursively) and every COMPONENT value is
 * resolved; names the first that is not. */
FG_API gboolean fg_params_check_complete (const FgParams *params, GError **error);
/* The first parameter (declared order, recursively) that keeps `params` incomplete: a required
 * one without a value, or a COMPONENT value not resolved.  NULL when complete; otherwise its
 * spec, with *key its dotted name ("flow.hidden", newly allocated) and *owner the component
 * ("flow 'realnvp-mlp'", newly allocated) or NULL at the top level. */
FG_API const FgParamSpec *fg_params_find_incomplete (const FgParams *params, char **key,
                                                     char **owner);

FG_API gboolean fg_params_has (const FgParams *params, const char *name);
FG_API gboolean fg_params_is_default (const FgParams *params, const char *name);
/* Typed getters: asking for an undeclared name or the wrong type is a programmer error. */
FG_API gint64          fg_params_get_int (const FgParams *params, const char *name);
FG_API double          fg_params_get_double (const FgParams *params, const char *name);
FG_API gboolean        fg_params_get_bool (const FgParams *params, const char *name);
/* STRING, CHOICE, PATH and COMPONENT values; NULL for an unset optional value. */
FG_API const char     *fg_params_get_string (const FgParams *params, const char *name);
/* The parameters of the component named by a COMPONENT parameter (NULL when unset). */
FG_API const FgParams *fg_params_get_component (const FgParams *params, const char *name);

/* The textual value as it would be written in an experiment file (newly allocated). */
FG_API char *fg_params_get_text (const FgParams *params, const char *name);
/* Canonical "a=1 b=x flow=realnvp-mlp flow.hidden=64" (declared order; sub-parameters after
 * their component), for cell keys and tables. */
FG_API char *fg_params_to_string (const FgParams *params);
/* Resolve relative PATH values against `base_dir` (recursively). */
FG_API void  fg_params_resolve_paths (FgParams *params, const char *base_dir);

/* ---- ABI 1, appended: components bound when parameters are resolved ----------------------
 * A component that composes others (the flowgmm method runs the flow and loss its parameters
 * name) gets them from its parameters, not from a global lookup at fit time: the resolver keeps
 * the object that implements each COMPONENT value with it.  fg_registry_resolve_params () binds
 * the registry's FgComponent (fg_params_get_resolved_component () in registry.h). */
typedef gboolean (*FgComponentBinder) (const char *kind, const char *name,
                                       const FgParamSpec **specs, gconstpointer *object,
                                       gpointer user_data, GError **error);
/* fg_params_resolve_components () that also binds every COMPONENT value (already attached ones
 * too, recursively) to the object `bind` returns.  A value whose parameters were set for other
 * specs is an error.  Setting a value to another component drops its binding. */
FG_API gboolean      fg_params_bind_components (FgParams *params, FgComponentBinder bind,
                                                gpointer user_data, GError **error);
/* The object bound to COMPONENT parameter `name`, or NULL when not bound since last set. */
FG_API gconstpointer fg_params_get_bound (const FgParams *params, const char *name);

G_END_DECLS
