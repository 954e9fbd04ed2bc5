/* flowgmm — declared component parameters and their validated values. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <flowgmm/params.h>

typedef struct {
  const FgParamSpec *spec;
  gboolean has_value; /* a default or an explicit value */
  gboolean is_default;
  union {
    gint64 i;
    double d;
    gboolean b;
  } v;
  char *text;          /* STRING, CHOICE, PATH, COMPONENT */
  FgParams *component; /* COMPONENT: the named component's own parameters */
  gconstpointer bound; /* COMPONENT: what implements it, from fg_params_bind_components () */
} FgParamValue;

struct _FgParams {
  const FgParamSpec *specs;
  guint n;
  FgParamValue *values;
};

/**
 * fg_param_type_to_string:
 * @type: a parameter type
 *
 * Returns: "int", "double", "bool", "string", "choice", "path" or "component".
 */
const char *
fg_param_type_to_string (FgParamType type)
{
  switch (type)
    {
    case FG_PARAM_INT: return "int";
    case FG_PARAM_DOUBLE: return "double";
    case FG_PARAM_BOOL: return "bool";
    case FG_PARAM_STRING: return "string";
    case FG_PARAM_CHOICE: return "choice";
    case FG_PARAM_PATH: return "path";
    case FG_PARAM_COMPONENT: return "component";
    }
  return "unknown";
}

/**
 * fg_param_spec_count:
 * @specs: (nullable): a spec array ending with a NULL name
 *
 * Returns: the number of declared parameters.
 */
guint
fg_param_spec_count (const FgParamSpec *specs)
{
  guint n = 0;
  if (specs == NULL)
    return 0;
  while (specs[n].name != NULL)
    n++;
  return n;
}

/**
 * fg_param_spec_lookup:
 * @specs: (nullable): a spec array
 * @name: a parameter name
 *
 * Returns: (nullable): the spec named @name.
 */
const FgParamSpec *
fg_param_spec_lookup (const FgParamSpec *specs, const char *name)
{
  if (specs == NULL || name == NULL)
    return NULL;
  for (guint i = 0; specs[i].name != NULL; i++)
    if (strcmp (specs[i].name, name) == 0)
      return &specs[i];
  return NULL;
}

static gboolean
choice_contains (const char *choices, const char *value)
{
  gsize len = strlen (value);
  const char *p = choices;
  if (choices == NULL || len == 0)
    return FALSE;
  while (*p != '\0')
    {
      const char *end = strchr (p, '|');
      gsize n = end ? (gsize) (end - p) : strlen (p);
      if (n == len && strncmp (p, value, n) == 0)
        return TRUE;
      if (end == NULL)
        break;
      p = end + 1;
    }
  return FALSE;
}

static char *
format_double (double d)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  /* The shortest of %.15g and %.17g that reads back exactly. */
  g_ascii_formatd (buf, sizeof buf, "%.15g", d);
  if (g_ascii_strtod (buf, NULL) != d)
    g_ascii_formatd (buf, sizeof buf, "%.17g", d);
  return g_strdup (buf);
}

static char *
format_bound (double d)
{
  if (isinf (d))
    return g_strdup (d < 0 ? "-inf" : "inf");
  return format_double (d);
}

/**
 * fg_param_spec_describe_type:
 * @spec: a parameter spec
 *
 * Returns: (transfer full): what a value must look like, e.g. "an integer in [1, 20]".
 */
char *
fg_param_spec_describe_type (const FgParamSpec *spec)
{
  g_return_val_if_fail (spec != NULL, NULL);
  switch (spec->type)
    {
    case FG_PARAM_INT:
    case FG_PARAM_DOUBLE:
      {
        const char *what = spec->type == FG_PARAM_INT ? "an integer" : "a number";
        g_autofree char *lo = format_bound (spec->min);
        g_autofree char *hi = format_bound (spec->max);
        if (isinf (spec->min) && isinf (spec->max))
          return g_strdup (what);
        if (isinf (spec->max))
          return g_strdup_printf ("%s >= %s", what, lo);
        if (isinf (spec->min))
          return g_strdup_printf ("%s <= %s", what, hi);
        return g_strdup_printf ("%s in [%s, %s]", what, lo, hi);
      }
    case FG_PARAM_BOOL:
      return g_strdup ("a boolean (true/false)");
    case FG_PARAM_STRING:
      return g_strdup ("a string");
    case FG_PARAM_CHOICE:
      return g_strdup_printf ("one of %s", spec->choices ? spec->choices : "(none)");
    case FG_PARAM_PATH:
      return g_strdup ("a file name");
    case FG_PARAM_COMPONENT:
      return g_strdup_printf ("the name of a %s component", spec->choices ? spec->choices : "?");
    }
  return g_strdup ("an unknown type");
}

static gboolean
name_is_valid (const char *name)
{
  if (name == NULL || *name == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!(g_ascii_islower (*p) || g_ascii_isdigit (*p) || *p == '_' || *p == '-'))
      return FALSE;
  return TRUE;
}

static gboolean parse_value (const FgParamSpec *spec, const char *text, FgParamValue *out,
                             GError **error);

/**
 * fg_param_spec_validate:
 * @specs: (nullable): a spec array
 * @error: return location for a #GError
 *
 * Checks that names are well formed and unique, types known, defaults parse and lie in range,
 * ranges are ordered, and choices are given where the type needs them.
 *
 * Returns: %TRUE if the specs are consistent.
 */
gboolean
fg_param_spec_validate (const FgParamSpec *specs, GError **error)
{
  if (specs == NULL)
    return TRUE;
  for (guint i = 0; specs[i].name != NULL; i++)
    {
      const FgParamSpec *s = &specs[i];
      if (!name_is_valid (s->name))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "parameter '%s': names may only use a-z, 0-9, '_' and '-'", s->name);
          return FALSE;
        }
      for (guint j = 0; j < i; j++)
        if (strcmp (specs[j].name, s->name) == 0)
          {
            g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                         "parameter '%s' is declared twice", s->name);
            return FALSE;
          }
      if (s->type < FG_PARAM_INT || s->type > FG_PARAM_COMPONENT)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "parameter '%s' has unknown type %d", s->name, (int) s->type);
          return FALSE;
        }
      if ((s->type == FG_PARAM_INT || s->type == FG_PARAM_DOUBLE)
          && (isnan (s->min) || isnan (s->max) || s->min > s->max))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "parameter '%s' has an empty or invalid range", s->name);
          return FALSE;
        }
      if ((s->type == FG_PARAM_CHOICE || s->type == FG_PARAM_COMPONENT)
          && (s->choices == NULL || *s->choices == '\0'))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "parameter '%s' of type %s declares no %s", s->name,
                       fg_param_type_to_string (s->type),
                       s->type == FG_PARAM_CHOICE ? "choices" : "component kind");
          return FALSE;
        }
      if ((s->flags & FG_PARAM_FLAG_REQUIRED) && s->default_value != NULL)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "parameter '%s' is required but has a default", s->name);
          return FALSE;
        }
      if (s->type == FG_PARAM_COMPONENT && s->default_value == NULL
          && !(s->flags & FG_PARAM_FLAG_REQUIRED))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "component parameter '%s' needs a default or the required flag", s->name);
          return FALSE;
        }
      if (s->doc == NULL || *s->doc == '\0')
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "parameter '%s' has no documentation line", s->name);
          return FALSE;
        }
      if (s->default_value != NULL && s->type != FG_PARAM_COMPONENT)
        {
          FgParamValue tmp = { 0 };
          g_autoptr (GError) local = NULL;
          if (!parse_value (s, s->default_value, &tmp, &local))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "default of %s",
                           local->message);
              return FALSE;
            }
          g_free (tmp.text);
        }
    }
  return TRUE;
}

static gboolean
parse_bool (const char *text, gboolean *out)
{
  static const char *const yes[] = { "true", "yes", "on", "1", NULL };
  static const char *const no[] = { "false", "no", "off", "0", NULL };
  for (guint i = 0; yes[i]; i++)
    if (g_ascii_strcasecmp (text, yes[i]) == 0)
      return (*out = TRUE), TRUE;
  for (guint i = 0; no[i]; i++)
    if (g_ascii_strcasecmp (text, no[i]) == 0)
      return (*out = FALSE), TRUE;
  return FALSE;
}

static gboolean
invalid (const FgParamSpec *spec, const char *text, GError **error)
{
  g_autofree char *expected = fg_param_spec_describe_type (spec);
  g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
               "invalid value '%s' for '%s': expected %s", text, spec->name, expected);
  return FALSE;
}

/* Parse text into out (out->text newly allocated for text types); out untouched on error. */
static gboolean
parse_value (const FgParamSpec *spec, const char *text, FgParamValue *out, GError **error)
{
  g_autofree char *stripped = g_strstrip (g_strdup (text));
  switch (spec->type)
    {
    case FG_PARAM_INT:
      {
        char *end = NULL;
        gint64 v;
        errno = 0;
        v = g_ascii_strtoll (stripped, &end, 10);
        if (*stripped == '\0' || end == NULL || *end != '\0' || errno != 0)
          return invalid (spec, text, error);
        if ((double) v < spec->min || (double) v > spec->max)
          return invalid (spec, text, error);
        out->v.i = v;
        return TRUE;
      }
    case FG_PARAM_DOUBLE:
      {
        char *end = NULL;
        double v;
        errno = 0;
        v = g_ascii_strtod (stripped, &end);
        if (*stripped == '\0' || end == NULL || *end != '\0' || errno == ERANGE || !isfinite (v))
          return invalid (spec, text, error);
        if (v < spec->min || v > spec->max)
          return invalid (spec, text, error);
        out->v.d = v;
        return TRUE;
      }
    case FG_PARAM_BOOL:
      {
        gboolean b;
        if (!parse_bool (stripped, &b))
          return invalid (spec, text, error);
        out->v.b = b;
        return TRUE;
      }
    case FG_PARAM_CHOICE:
      if (!choice_contains (spec->choices, stripped))
        return invalid (spec, text, error);
      out->text = g_steal_pointer (&stripped);
      return TRUE;
    case FG_PARAM_PATH:
    case FG_PARAM_COMPONENT:
      if (*stripped == '\0')
        return invalid (spec, text, error);
      out->text = g_steal_pointer (&stripped);
      return TRUE;
    case FG_PARAM_STRING:
      out->text = g_strdup (text); /* kept as written */
      return TRUE;
    }
  return invalid (spec, text, error);
}

static void
value_clear (FgParamValue *val)
{
  g_clear_pointer (&val->text, g_free);
  g_clear_pointer (&val->component, fg_params_free);
  val->bound = NULL;
  val->has_value = FALSE;
}

/**
 * fg_params_new:
 * @specs: (nullable): the declared parameters (must outlive the result)
 *
 * Returns: (transfer full): values for every declared parameter, at their defaults.  A parameter
 *   without a default has no value until set; a COMPONENT parameter's default names the
 *   component but its own parameters are attached by fg_params_set_component () or
 *   fg_params_resolve_components ().
 */
FgParams *
fg_params_new (const FgParamSpec *specs)
{
  FgParams *p = g_new0 (FgParams, 1);
  p->specs = specs;
  p->n = fg_param_spec_count (specs);
  p->values = g_new0 (FgParamValue, p->n ? p->n : 1);
  for (guint i = 0; i < p->n; i++)
    {
      FgParamValue *val = &p->values[i];
      val->spec = &specs[i];
      val->is_default = TRUE;
      if (specs[i].default_value != NULL)
        {
          g_autoptr (GError) error = NULL;
          if (parse_value (&specs[i], specs[i].default_value, val, &error))
            val->has_value = TRUE;
          else
            g_critical ("bad default for parameter '%s': %s", specs[i].name, error->message);
        }
    }
  return p;
}

/**
 * fg_params_copy:
 * @params: parameters
 *
 * Returns: (transfer full): a deep copy (sharing the specs).
 */
FgParams *
fg_params_copy (const FgParams *params)
{
  FgParams *p;
  g_return_val_if_fail (params != NULL, NULL);
  p = g_new0 (FgParams, 1);
  p->specs = params->specs;
  p->n = params->n;
  p->values = g_new0 (FgParamValue, p->n ? p->n : 1);
  for (guint i = 0; i < p->n; i++)
    {
      p->values[i] = params->values[i];
      p->values[i].text = g_strdup (params->values[i].text);
      p->values[i].component = params->values[i].component
                                   ? fg_params_copy (params->values[i].component)
                                   : NULL;
    }
  return p;
}

/**
 * fg_params_free:
 * @params: (nullable): parameters
 */
void
fg_params_free (FgParams *params)
{
  if (params == NULL)
    return;
  for (guint i = 0; i < params->n; i++)
    value_clear (&params->values[i]);
  g_free (params->values);
  g_free (params);
}

/**
 * fg_params_get_specs:
 * @params: parameters
 *
 * Returns: the declared specs.
 */
const FgParamSpec *
fg_params_get_specs (const FgParams *params)
{
  g_return_val_if_fail (params != NULL, NULL);
  return params->specs;
}

static FgParamValue *
find_value (const FgParams *params, const char *name)
{
  for (guint i = 0; i < params->n; i++)
    if (strcmp (params->values[i].spec->name, name) == 0)
      return &params->values[i];
  return NULL;
}

static char *
known_names (const FgParams *params)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < params->n; i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "", params->values[i].spec->name);
  if (params->n == 0)
    g_string_append (s, "none");
  return g_string_free (s, FALSE);
}

/* Resolve "a.b.c" to the FgParams holding "c"; sets *leaf. */
static FgParams *
resolve_key (FgParams *params, const char *key, const char **leaf, GError **error)
{
  const char *dot = strchr (key, '.');
  g_autofree char *head = NULL;
  FgParamValue *val;
  if (dot == NULL)
    {
      *leaf = key;
      return params;
    }
  head = g_strndup (key, (gsize) (dot - key));
  val = find_value (params, head);
  if (val == NULL || val->spec->type != FG_PARAM_COMPONENT)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "unknown parameter '%s': '%s' is not a component parameter", key, head);
      return NULL;
    }
  if (val->component == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "parameter '%s' needs the %s component '%s' to be resolved first", key,
                   val->spec->choices, val->text ? val->text : "(unset)");
      return NULL;
    }
  return resolve_key (val->component, dot + 1, leaf, error);
}

/**
 * fg_params_set:
 * @params: parameters
 * @key: a declared name, or "component.name" for a component parameter's own parameter
 * @text: the value as written in an experiment file
 * @error: return location for a #GError (%FG_ERROR_INVALID_PARAM)
 *
 * Parses and checks the value.  On error the old value is kept.
 *
 * Returns: %TRUE on success.
 */
gboolean
fg_params_set (FgParams *params, const char *key, const char *text, GError **error)
{
  const char *leaf = NULL;
  FgParams *target;
  FgParamValue *val;
  FgParamValue parsed = { 0 };

  g_return_val_if_fail (params != NULL, FALSE);
  g_return_val_if_fail (key != NULL && text != NULL, FALSE);

  target = resolve_key (params, key, &leaf, error);
  if (target == NULL)
    return FALSE;
  val = find_value (target, leaf);
  if (val == NULL)
    {
      g_autofree char *names = known_names (target);
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "unknown parameter '%s' (known: %s)", key, names);
      return FALSE;
    }
  if (val->spec->type == FG_PARAM_COMPONENT)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "parameter '%s' names a %s component: resolve it through the registry", key,
                   val->spec->choices);
      return FALSE;
    }
  if (!parse_value (val->spec, text, &parsed, error))
    return FALSE;
  value_clear (val);
  val->v = parsed.v;
  val->text = parsed.text;
  val->has_value = TRUE;
  val->is_default = FALSE;
  return TRUE;
}

/**
 * fg_params_set_component:
 * @params: parameters
 * @key: a COMPONENT parameter (possibly nested, "a.b")
 * @component_name: the component it names
 * @component_specs: (nullable): that component's declared parameters (must outlive @params)
 * @error: return location for a #GError
 *
 * Sets a COMPONENT parameter and attaches fresh default parameters of the component, so that
 * keys "key.name" can be set next.  Setting the same component again keeps its parameters.
 *
 * Returns: %TRUE on success.
 */
gboolean
fg_params_set_component (FgParams *params, const char *key, const char *component_name,
                         const FgParamSpec *component_specs, GError **error)
{
  const char *leaf = NULL;
  FgParams *target;
  FgParamValue *val;
  gboolean was_default;

  g_return_val_if_fail (params != NULL && key != NULL && component_name != NULL, FALSE);
  target = resolve_key (params, key, &leaf, error);
  if (target == NULL)
    return FALSE;
  val = find_value (target, leaf);
  if (val == NULL || val->spec->type != FG_PARAM_COMPONENT)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "'%s' is not a component parameter", key);
      return FALSE;
    }
  if (!name_is_valid (component_name))
    return invalid (val->spec, component_name, error);
  if (val->component != NULL && g_strcmp0 (val->text, component_name) == 0
      && fg_params_get_specs (val->component) == component_specs)
    {
      val->is_default = val->is_default && g_strcmp0 (component_name, val->spec->default_value) == 0;
      return TRUE;
    }
  was_default = g_strcmp0 (component_name, val->spec->default_value) == 0 && val->is_default;
  value_clear (val);
  val->text = g_strdup (component_name);
  val->component = fg_params_new (component_specs);
  val->has_value = TRUE;
  val->is_default = was_default;
  return TRUE;
}

/* One walk for both resolvers: `bind` when given, else `resolve`. */
static gboolean
resolve_rec (FgParams *params, FgComponentResolver resolve, FgComponentBinder bind,
             gpointer user_data, GError **error)
{
  for (guint i = 0; i < params->n; i++)
    {
      FgParamValue *val = &params->values[i];
      const FgParamSpec *specs = NULL;
      gconstpointer object = NULL;
      if (val->spec->type != FG_PARAM_COMPONENT || !val->has_value)
        continue;
      if (bind != NULL)
        {
          if (!bind (val->spec->choices, val->text, &specs, &object, user_data, error))
            {
              g_prefix_error (error, "parameter '%s': ", val->spec->name);
              return FALSE;
            }
          if (val->component != NULL && fg_params_get_specs (val->component) != specs)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                           "parameter '%s': the %s component '%s' found is not the one its "
                           "parameters were set for",
                           val->spec->name, val->spec->choices, val->text);
              return FALSE;
            }
          val->bound = object;
        }
      else if (val->component == NULL
               && !resolve (val->spec->choices, val->text, &specs, user_data, error))
        {
          g_prefix_error (error, "parameter '%s': ", val->spec->name);
          return FALSE;
        }
      if (val->component == NULL)
        val->component = fg_params_new (specs);
      if (!resolve_rec (val->component, resolve, bind, user_data, error))
        {
          g_prefix_error (error, "%s.", val->spec->name);
          return FALSE;
        }
    }
  return TRUE;
}

/**
 * fg_params_resolve_components:
 * @params: parameters
 * @resolve: maps a component kind and name to its specs
 * @user_data: for @resolve
 * @error: return location for a #GError
 *
 * Attaches default parameters to each COMPONENT value that has none yet, recursively.
 *
 * Returns: %TRUE on success.
 */
gboolean
fg_params_resolve_components (FgParams *params, FgComponentResolver resolve, gpointer user_data,
                              GError **error)
{
  g_return_val_if_fail (params != NULL && resolve != NULL, FALSE);
  return resolve_rec (params, resolve, NULL, user_data, error);
}

/**
 * fg_params_bind_components:
 * @params: parameters
 * @bind: maps a component kind and name to its specs and to the object that implements it
 * @user_data: for @bind
 * @error: return location for a #GError
 *
 * Looks up every COMPONENT value, recursively, attaching default parameters to those that have
 * none and keeping the object @bind returns with the value (fg_params_get_bound ()), so that
 * whoever uses the parameters gets the component from them rather than from a global lookup.
 * A value whose parameters were set for other specs than those @bind returns is an error.
 * Setting the value again later (to another component) drops the binding.
 *
 * Returns: %TRUE on success.
 */
gboolean
fg_params_bind_components (FgParams *params, FgComponentBinder bind, gpointer user_data,
                           GError **error)
{
  g_return_val_if_fail (params != NULL && bind != NULL, FALSE);
  return resolve_rec (params, NULL, bind, user_data, error);
}

static const FgParamSpec *
find_incomplete (const FgParams *params, const char *prefix, const char *owner_in, char **key,
                 char **owner)
{
  for (guint i = 0; i < params->n; i++)
    {
      const FgParamValue *val = &params->values[i];
      gboolean missing = !val->has_value && (val->spec->flags & FG_PARAM_FLAG_REQUIRED);
      gboolean unresolved = val->spec->type == FG_PARAM_COMPONENT && val->has_value
                            && val->component == NULL;
      if (missing || unresolved)
        {
          *key = g_strconcat (prefix, val->spec->name, NULL);
          *owner = g_strdup (owner_in);
          return val->spec;
        }
      if (val->component != NULL)
        {
          g_autofree char *sub_prefix = g_strconcat (prefix, val->spec->name, ".", NULL);
          g_autofree char *sub_owner = g_strdup_printf ("%s '%s'", val->spec->choices, val->text);
          const FgParamSpec *spec = find_incomplete (val->component, sub_prefix, sub_owner, key,
                                                     owner);
          if (spec != NULL)
            return spec;
        }
    }
  return NULL;
}

/**
 * fg_params_find_incomplete:
 * @params: parameters
 * @key: (out) (transfer full): the dotted name of the parameter
 * @owner: (out) (transfer full) (nullable): the component that declares it, or %NULL at the top
 * level
 *
 * Finds the first parameter, in declared order and recursively through components, that keeps
 * @params from being complete: a required parameter without a value, or a COMPONENT value whose
 * parameters are not attached.
 *
 * Returns: (nullable): its spec, or %NULL when @params is complete.
 */
const FgParamSpec *
fg_params_find_incomplete (const FgParams *params, char **key, char **owner)
{
  g_return_val_if_fail (params != NULL && key != NULL && owner != NULL, NULL);
  *key = NULL;
  *owner = NULL;
  return find_incomplete (params, "", NULL, key, owner);
}

/**
 * fg_params_check_complete:
 * @params: parameters
 * @error: return location for a #GError
 *
 * Returns: %TRUE when every required parameter (recursively) has a value and every COMPONENT
 *   value is resolved.
 */
gboolean
fg_params_check_complete (const FgParams *params, GError **error)
{
  g_autofree char *key = NULL;
  g_autofree char *owner = NULL;
  g_autofree char *name = NULL;
  const FgParamSpec *spec;
  g_return_val_if_fail (params != NULL, FALSE);
  spec = fg_params_find_incomplete (params, &key, &owner);
  if (spec == NULL)
    return TRUE;
  /* A parameter with a value can only be incomplete as an unresolved component. */
  name = fg_params_get_text (params, key);
  if (name != NULL)
    g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                 "%s component '%s' of parameter '%s' is not resolved", spec->choices, name, key);
  else
    g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "required parameter '%s' is not set (%s)",
                 key, spec->doc);
  return FALSE;
}

static const FgParamValue *
get_value (const FgParams *params, const char *name, FgParamType type)
{
  const FgParamValue *val;
  g_return_val_if_fail (params != NULL && name != NULL, NULL);
  val = find_value (params, name);
  if (val == NULL)
    {
      g_critical ("parameter '%s' is not declared", name);
      return NULL;
    }
  if (type != 0 && val->spec->type != type)
    {
      g_critical ("parameter '%s' is a %s, not a %s", name,
                  fg_param_type_to_string (val->spec->type), fg_param_type_to_string (type));
      return NULL;
    }
  return val;
}

/**
 * fg_params_has:
 * @params: parameters
 * @name: a parameter name
 *
 * Returns: %TRUE when @name is declared and has a value (default or set).
 */
gboolean
fg_params_has (const FgParams *params, const char *name)
{
  const FgParamValue *val;
  g_return_val_if_fail (params != NULL && name != NULL, FALSE);
  val = find_value (params, name);
  return val != NULL && val->has_value;
}

/**
 * fg_params_is_default:
 * @params: parameters
 * @name: a declared parameter name
 *
 * Returns: %TRUE when the value was not set explicitly.
 */
gboolean
fg_params_is_default (const FgParams *params, const char *name)
{
  const FgParamValue *val = get_value (params, name, 0);
  return val == NULL || val->is_default;
}

/**
 * fg_params_get_int:
 * @params: parameters
 * @name: a declared INT parameter
 *
 * Returns: its value (0 when unset).
 */
gint64
fg_params_get_int (const FgParams *params, const char *name)
{
  const FgParamValue *val = get_value (params, name, FG_PARAM_INT);
  return val && val->has_value ? val->v.i : 0;
}

/**
 * fg_params_get_double:
 * @params: parameters
 * @name: a declared DOUBLE parameter (an INT parameter is converted)
 *
 * Returns: its value (0 when unset).
 */
double
fg_params_get_double (const FgParams *params, const char *name)
{
  const FgParamValue *val = get_value (params, name, 0);
  if (val == NULL || !val->has_value)
    return 0.0;
  if (val->spec->type == FG_PARAM_INT)
    return (double) val->v.i;
  if (val->spec->type != FG_PARAM_DOUBLE)
    {
      g_critical ("parameter '%s' is a %s, not a double", name,
                  fg_param_type_to_string (val->spec->type));
      return 0.0;
    }
  return val->v.d;
}

/**
 * fg_params_get_bool:
 * @params: parameters
 * @name: a declared BOOL parameter
 *
 * Returns: its value (%FALSE when unset).
 */
gboolean
fg_params_get_bool (const FgParams *params, const char *name)
{
  const FgParamValue *val = get_value (params, name, FG_PARAM_BOOL);
  return val && val->has_value ? val->v.b : FALSE;
}

/**
 * fg_params_get_string:
 * @params: parameters
 * @name: a declared STRING, CHOICE, PATH or COMPONENT parameter
 *
 * Returns: (nullable): its text, or %NULL when unset.
 */
const char *
fg_params_get_string (const FgParams *params, const char *name)
{
  const FgParamValue *val = get_value (params, name, 0);
  if (val == NULL)
    return NULL;
  switch (val->spec->type)
    {
    case FG_PARAM_STRING:
    case FG_PARAM_CHOICE:
    case FG_PARAM_PATH:
    case FG_PARAM_COMPONENT:
      return val->has_value ? val->text : NULL;
    default:
      g_critical ("parameter '%s' is a %s, not text", name,
                  fg_param_type_to_string (val->spec->type));
      return NULL;
    }
}

/**
 * fg_params_get_component:
 * @params: parameters
 * @name: a declared COMPONENT parameter
 *
 * Returns: (nullable): the named component's parameters, or %NULL when not resolved.
 */
const FgParams *
fg_params_get_component (const FgParams *params, const char *name)
{
  const FgParamValue *val = get_value (params, name, FG_PARAM_COMPONENT);
  return val ? val->component : NULL;
}

/**
 * fg_params_get_bound:
 * @params: parameters
 * @name: a COMPONENT parameter
 *
 * Returns: (nullable) (transfer none): the object fg_params_bind_components () kept for the
 *   value of @name, or %NULL when it was not bound since it was last set.
 */
gconstpointer
fg_params_get_bound (const FgParams *params, const char *name)
{
  const FgParamValue *val = get_value (params, name, FG_PARAM_COMPONENT);
  return val ? val->bound : NULL;
}

static char *
value_text (const FgParamValue *val)
{
  if (!val->has_value)
    return NULL;
  switch (val->spec->type)
    {
    case FG_PARAM_INT:
      return g_strdup_printf ("%" G_GINT64_FORMAT, val->v.i);
    case FG_PARAM_DOUBLE:
      return format_double (val->v.d);
    case FG_PARAM_BOOL:
      return g_strdup (val->v.b ? "true" : "false");
    default:
      return g_strdup (val->text);
    }
}

/**
 * fg_params_get_text:
 * @params: parameters
 * @name: a declared parameter, or "component.name"
 *
 * Returns: (transfer full) (nullable): the value as it would be written in an experiment file,
 *   %NULL when unset or unknown.
 */
char *
fg_params_get_text (const FgParams *params, const char *name)
{
  const char *leaf = NULL;
  FgParams *target;
  FgParamValue *val;
  g_return_val_if_fail (params != NULL && name != NULL, NULL);
  target = resolve_key ((FgParams *) params, name, &leaf, NULL);
  if (target == NULL)
    return NULL;
  val = find_value (target, leaf);
  return val ? value_text (val) : NULL;
}

static void
append_params (GString *s, const FgParams *params, const char *prefix)
{
  for (guint i = 0; i < params->n; i++)
    {
      const FgParamValue *val = &params->values[i];
      g_autofree char *text = value_text (val);
      gboolean quote;
      if (text == NULL)
        continue;
      quote = *text == '\0' || strpbrk (text, " \t=\"\\") != NULL;
      if (s->len > 0)
        g_string_append_c (s, ' ');
      g_string_append_printf (s, "%s%s=", prefix, val->spec->name);
      if (quote)
        {
          g_string_append_c (s, '"');
          for (const char *p = text; *p; p++)
            {
              if (*p == '"' || *p == '\\')
                g_string_append_c (s, '\\');
              g_string_append_c (s, *p);
            }
          g_string_append_c (s, '"');
        }
      else
        g_string_append (s, text);
      if (val->component != NULL)
        {
          g_autofree char *sub = g_strconcat (prefix, val->spec->name, ".", NULL);
          append_params (s, val->component, sub);
        }
    }
}

/**
 * fg_params_to_string:
 * @params: parameters
 *
 * Returns: (transfer full): every value in declared order, "k=3 flow=x flow.hidden=64";
 *   values with spaces, '=' or quotes are double-quoted.
 */
char *
fg_params_to_string (const FgParams *params)
{
  GString *s;
  g_return_val_if_fail (params != NULL, NULL);
  s = g_string_new (NULL);
  append_params (s, params, "");
  return g_string_free (s, FALSE);
}

/**
 * fg_params_resolve_paths:
 * @params: parameters
 * @base_dir: (nullable): directory relative paths are taken from
 *
 * Makes every relative PATH value absolute against @base_dir (recursively).
 */
void
fg_params_resolve_paths (FgParams *params, const char *base_dir)
{
  g_return_if_fail (params != NULL);
  for (guint i = 0; i < params->n; i++)
    {
      FgParamValue *val = &params->values[i];
      if (val->spec->type == FG_PARAM_PATH && val->has_value && base_dir != NULL
          && !g_path_is_absolute (val->text))
        {
          char *abs = g_build_filename (base_dir, val->text, NULL);
          g_free (val->text);
          val->text = abs;
        }
      if (val->component != NULL)
        fg_params_resolve_paths (val->component, base_dir);
    }
}
