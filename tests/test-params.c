/* SPDX-License-Identifier: MIT */
/* flowgmm tests — declared parameters: parsing, ranges, components, canonical text. */
#include "config.h"

#include <flowgmm/flowgmm.h>

static const FgParamSpec inner_specs[] = {
  FG_PARAM_SPEC_INT ("hidden", "64", 1, 4096, "hidden width"),
  FG_PARAM_SPEC_CHOICE ("act", "relu", "relu|tanh", "activation"),
  FG_PARAM_SPEC_END,
};

static const FgParamSpec specs[] = {
  FG_PARAM_SPEC_INT ("k", "3", 1, 20, "neighbours"),
  FG_PARAM_SPEC_DOUBLE ("lr", "1e-3", 0.0, 1.0, "learning rate"),
  FG_PARAM_SPEC_DOUBLE ("shift", "0", -INFINITY, INFINITY, "an unbounded number"),
  FG_PARAM_SPEC_BOOL ("verbose", "no", "talk"),
  FG_PARAM_SPEC_STRING ("note", NULL, "optional text"),
  FG_PARAM_SPEC_CHOICE ("metric", "l2", "l2|cosine", "distance"),
  FG_PARAM_SPEC_PATH ("file", NULL, "a file"),
  FG_PARAM_SPEC_COMPONENT ("flow", "inner", "flow", "the flow"),
  FG_PARAM_SPEC_REQUIRED_INT ("required", 0, 10, "must be given"),
  FG_PARAM_SPEC_END,
};

static void
test_defaults (void)
{
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_assert_cmpint (fg_params_get_int (p, "k"), ==, 3);
  g_assert_cmpfloat (fg_params_get_double (p, "lr"), ==, 1e-3);
  g_assert_false (fg_params_get_bool (p, "verbose"));
  g_assert_null (fg_params_get_string (p, "note"));
  g_assert_cmpstr (fg_params_get_string (p, "metric"), ==, "l2");
  g_assert_cmpstr (fg_params_get_string (p, "flow"), ==, "inner");
  g_assert_null (fg_params_get_component (p, "flow"));
  g_assert_true (fg_params_is_default (p, "k"));
  g_assert_false (fg_params_has (p, "required"));
  g_assert_true (fg_params_has (p, "k"));
  /* INT read as double */
  g_assert_cmpfloat (fg_params_get_double (p, "k"), ==, 3.0);
}

static void
test_set_valid (void)
{
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_autoptr (GError) error = NULL;
  g_assert_true (fg_params_set (p, "k", " 20 ", &error));
  g_assert_no_error (error);
  g_assert_cmpint (fg_params_get_int (p, "k"), ==, 20);
  g_assert_false (fg_params_is_default (p, "k"));
  g_assert_true (fg_params_set (p, "lr", "0.25", &error));
  g_assert_cmpfloat (fg_params_get_double (p, "lr"), ==, 0.25);
  g_assert_true (fg_params_set (p, "shift", "-1e300", &error));
  g_assert_true (fg_params_set (p, "verbose", "On", &error));
  g_assert_true (fg_params_get_bool (p, "verbose"));
  g_assert_true (fg_params_set (p, "metric", "cosine", &error));
  g_assert_true (fg_params_set (p, "note", "  kept as written ", &error));
  g_assert_cmpstr (fg_params_get_string (p, "note"), ==, "  kept as written ");
  g_assert_no_error (error);
}

typedef struct {
  const char *key, *text, *expect;
} BadCase;

static void
test_set_invalid (void)
{
  static const BadCase cases[] = {
    { "k", "0", "expected an integer in [1, 20]" },
    { "k", "21", "expected an integer in [1, 20]" },
    { "k", "3.5", "expected an integer" },
    { "k", "", "expected an integer" },
    { "k", "99999999999999999999999", "expected an integer" },
    { "lr", "2", "expected a number in [0, 1]" },
    { "lr", "nan", "expected a number" },
    { "lr", "1e-3x", "expected a number" },
    { "shift", "inf", "expected a number" },
    { "verbose", "maybe", "expected a boolean" },
    { "metric", "manhattan", "one of l2|cosine" },
    { "metric", "l", "one of l2|cosine" },
    { "file", "  ", "expected a file name" },
    { "nokey", "1", "unknown parameter 'nokey'" },
    { "flow", "x", "resolve it through the registry" },
    { "flow.hidden", "3", "to be resolved first" },
    { "k.sub", "3", "not a component parameter" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (FgParams) p = fg_params_new (specs);
      g_autoptr (GError) error = NULL;
      g_assert_false (fg_params_set (p, cases[i].key, cases[i].text, &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
      if (strstr (error->message, cases[i].expect) == NULL)
        g_error ("case %u (%s = '%s'): message '%s' lacks '%s'", i, cases[i].key, cases[i].text,
                 error->message, cases[i].expect);
      /* the old value is kept */
      g_assert_cmpint (fg_params_get_int (p, "k"), ==, 3);
    }
}

static void
test_component (void)
{
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  const FgParams *sub;

  g_assert_true (fg_params_set_component (p, "flow", "inner", inner_specs, &error));
  g_assert_no_error (error);
  g_assert_true (fg_params_is_default (p, "flow"));
  g_assert_true (fg_params_set (p, "flow.hidden", "512", &error));
  g_assert_true (fg_params_set (p, "flow.act", "tanh", &error));
  g_assert_no_error (error);
  sub = fg_params_get_component (p, "flow");
  g_assert_nonnull (sub);
  g_assert_cmpint (fg_params_get_int (sub, "hidden"), ==, 512);
  text = fg_params_get_text (p, "flow.hidden");
  g_assert_cmpstr (text, ==, "512");

  g_assert_false (fg_params_set (p, "flow.hidden", "0", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_assert_nonnull (strstr (error->message, "'hidden'"));
  g_clear_error (&error);
  g_assert_false (fg_params_set (p, "flow.depth", "3", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_assert_nonnull (strstr (error->message, "known: hidden, act"));
  g_clear_error (&error);

  /* Setting the same component again keeps its parameters; another resets them. */
  g_assert_true (fg_params_set_component (p, "flow", "inner", inner_specs, &error));
  g_assert_cmpint (fg_params_get_int (fg_params_get_component (p, "flow"), "hidden"), ==, 512);
  g_assert_true (fg_params_set_component (p, "flow", "other", inner_specs, &error));
  g_assert_false (fg_params_is_default (p, "flow"));
  g_assert_cmpint (fg_params_get_int (fg_params_get_component (p, "flow"), "hidden"), ==, 64);
}

static gboolean
resolver (const char *kind, const char *name, const FgParamSpec **out, gpointer user_data,
          GError **error)
{
  g_assert_cmpstr (kind, ==, "flow");
  if (g_strcmp0 (name, "inner") != 0)
    {
      g_set_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_NOT_FOUND, "no flow '%s'", name);
      return FALSE;
    }
  *out = inner_specs;
  return TRUE;
}

static void
test_resolve_components (void)
{
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_autoptr (FgParams) copy = NULL;
  g_autoptr (GError) error = NULL;
  g_assert_true (fg_params_resolve_components (p, resolver, NULL, &error));
  g_assert_no_error (error);
  g_assert_nonnull (fg_params_get_component (p, "flow"));
  g_assert_true (fg_params_set (p, "flow.act", "tanh", &error));
  copy = fg_params_copy (p);
  g_assert_cmpstr (fg_params_get_string (fg_params_get_component (copy, "flow"), "act"), ==, "tanh");
}

static const char inner_object[] = "the inner flow";
static const FgParamSpec other_specs[] = { FG_PARAM_SPEC_INT ("n", "1", 1, 9, "n"), FG_PARAM_SPEC_END };

static gboolean
binder (const char *kind, const char *name, const FgParamSpec **out, gconstpointer *object,
        gpointer user_data, GError **error)
{
  guint *calls = user_data;
  (*calls)++;
  if (!resolver (kind, name, out, NULL, error))
    return FALSE;
  *object = inner_object;
  return TRUE;
}

/* Binding keeps the resolver's object with the value, for already attached parameters too;
 * setting the value to another component drops it; parameters set for other specs are refused. */
static void
test_bind_components (void)
{
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_autoptr (FgParams) copy = NULL;
  g_autoptr (GError) error = NULL;
  guint calls = 0;

  g_assert_null (fg_params_get_bound (p, "flow"));
  g_assert_true (fg_params_bind_components (p, binder, &calls, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (calls, ==, 1);
  g_assert_true (fg_params_get_bound (p, "flow") == inner_object);
  g_assert_true (fg_params_set (p, "flow.act", "tanh", &error));
  copy = fg_params_copy (p);
  g_assert_true (fg_params_get_bound (copy, "flow") == inner_object);
  /* Bound again: the parameters set so far are kept. */
  g_assert_true (fg_params_bind_components (p, binder, &calls, &error));
  g_assert_cmpuint (calls, ==, 2);
  g_assert_cmpstr (fg_params_get_string (fg_params_get_component (p, "flow"), "act"), ==, "tanh");
  /* The same component again keeps the binding; another drops it until bound again. */
  g_assert_true (fg_params_set_component (p, "flow", "inner", inner_specs, &error));
  g_assert_true (fg_params_get_bound (p, "flow") == inner_object);
  g_assert_true (fg_params_set_component (p, "flow", "other", inner_specs, &error));
  g_assert_null (fg_params_get_bound (p, "flow"));
  g_assert_false (fg_params_bind_components (p, binder, &calls, &error));
  g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "parameter 'flow': no flow 'other'"));
  g_clear_error (&error);
  /* Parameters attached for other specs than the bound component's. */
  g_assert_true (fg_params_set_component (p, "flow", "inner", other_specs, &error));
  g_assert_false (fg_params_bind_components (p, binder, &calls, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_assert_nonnull (strstr (error->message, "not the one its parameters were set for"));
  g_assert_null (fg_params_get_bound (p, "flow"));
}

static void
test_complete (void)
{
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_autoptr (GError) error = NULL;
  /* Checked in declared order: the unresolved flow comes before the missing 'required'. */
  g_assert_false (fg_params_check_complete (p, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_assert_nonnull (strstr (error->message, "not resolved"));
  g_clear_error (&error);
  g_assert_true (fg_params_set_component (p, "flow", "inner", inner_specs, &error));
  g_assert_false (fg_params_check_complete (p, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_assert_nonnull (strstr (error->message, "'required'"));
  g_clear_error (&error);
  g_assert_true (fg_params_set (p, "required", "4", &error));
  g_assert_true (fg_params_check_complete (p, &error));
  g_assert_no_error (error);
}

static void
test_to_string (void)
{
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_autoptr (GError) error = NULL;
  g_autofree char *s = NULL;
  g_assert_true (fg_params_set (p, "lr", "0.1", &error));
  g_assert_true (fg_params_set (p, "note", "a \"b\" c", &error));
  g_assert_true (fg_params_set_component (p, "flow", "inner", inner_specs, &error));
  s = fg_params_to_string (p);
  g_assert_cmpstr (s, ==,
                   "k=3 lr=0.1 shift=0 verbose=false note=\"a \\\"b\\\" c\" metric=l2 "
                   "flow=inner flow.hidden=64 flow.act=relu");
}

static void
test_double_text_round_trip (void)
{
  static const char *const values[] = { "0.1", "1e-05", "0.30000000000000004", "123456789", "1" };
  for (guint i = 0; i < G_N_ELEMENTS (values); i++)
    {
      g_autoptr (FgParams) p = fg_params_new (specs);
      g_autoptr (GError) error = NULL;
      g_autofree char *text = NULL;
      double v;
      g_assert_true (fg_params_set (p, "shift", values[i], &error));
      v = fg_params_get_double (p, "shift");
      text = fg_params_get_text (p, "shift");
      g_assert_cmpfloat (g_ascii_strtod (text, NULL), ==, v);
      g_assert_cmpuint (strlen (text), <=, 19);
    }
}

static void
test_resolve_paths (void)
{
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_autoptr (GError) error = NULL;
  g_assert_true (fg_params_set (p, "file", "data/x.csv", &error));
  fg_params_resolve_paths (p, "/base");
  g_assert_cmpstr (fg_params_get_string (p, "file"), ==, "/base/data/x.csv");
  g_assert_true (fg_params_set (p, "file", "/abs/y.csv", &error));
  fg_params_resolve_paths (p, "/base");
  g_assert_cmpstr (fg_params_get_string (p, "file"), ==, "/abs/y.csv");
}

static void
test_spec_validate (void)
{
  static const FgParamSpec bad_default[] = {
    FG_PARAM_SPEC_INT ("k", "50", 1, 20, "x"), FG_PARAM_SPEC_END };
  static const FgParamSpec dup[] = {
    FG_PARAM_SPEC_INT ("k", "1", 1, 20, "x"), FG_PARAM_SPEC_INT ("k", "1", 1, 20, "y"),
    FG_PARAM_SPEC_END };
  static const FgParamSpec bad_name[] = { FG_PARAM_SPEC_INT ("K x", "1", 1, 20, "x"),
                                          FG_PARAM_SPEC_END };
  static const FgParamSpec no_choices[] = { FG_PARAM_SPEC_CHOICE ("m", "a", NULL, "x"),
                                            FG_PARAM_SPEC_END };
  static const FgParamSpec empty_range[] = { FG_PARAM_SPEC_DOUBLE ("d", "1", 2, 1, "x"),
                                             FG_PARAM_SPEC_END };
  static const FgParamSpec no_doc[] = { FG_PARAM_SPEC_INT ("k", "1", 1, 2, NULL),
                                        FG_PARAM_SPEC_END };
  static const FgParamSpec req_default[] = {
    FG_PARAM_SPEC_FULL ("k", FG_PARAM_INT, "1", 1, 2, NULL, "x", FG_PARAM_FLAG_REQUIRED),
    FG_PARAM_SPEC_END };
  static const FgParamSpec comp_none[] = { FG_PARAM_SPEC_COMPONENT ("f", NULL, "flow", "x"),
                                           FG_PARAM_SPEC_END };
  static const struct {
    const FgParamSpec *specs;
    const char *expect;
  } cases[] = {
    { bad_default, "default of invalid value '50'" },
    { dup, "declared twice" },
    { bad_name, "names may only use" },
    { no_choices, "declares no choices" },
    { empty_range, "empty or invalid range" },
    { no_doc, "no documentation" },
    { req_default, "required but has a default" },
    { comp_none, "needs a default or the required flag" },
  };
  g_autoptr (GError) error = NULL;
  g_assert_true (fg_param_spec_validate (specs, &error));
  g_assert_true (fg_param_spec_validate (NULL, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) e = NULL;
      g_assert_false (fg_param_spec_validate (cases[i].specs, &e));
      g_assert_error (e, FG_ERROR, FG_ERROR_INVALID_PARAM);
      if (strstr (e->message, cases[i].expect) == NULL)
        g_error ("case %u: '%s' lacks '%s'", i, e->message, cases[i].expect);
    }
}

static void
test_describe_type (void)
{
  g_autofree char *a = fg_param_spec_describe_type (&specs[0]);
  g_autofree char *b = fg_param_spec_describe_type (&specs[2]);
  g_autofree char *c = fg_param_spec_describe_type (&specs[7]);
  static const FgParamSpec half[] = { FG_PARAM_SPEC_DOUBLE ("x", "1", 0.5, INFINITY, "x"),
                                      FG_PARAM_SPEC_END };
  g_autofree char *d = fg_param_spec_describe_type (&half[0]);
  g_assert_cmpstr (a, ==, "an integer in [1, 20]");
  g_assert_cmpstr (b, ==, "a number");
  g_assert_cmpstr (c, ==, "the name of a flow component");
  g_assert_cmpstr (d, ==, "a number >= 0.5");
  g_assert_cmpuint (fg_param_spec_count (specs), ==, 9);
  g_assert_nonnull (fg_param_spec_lookup (specs, "metric"));
  g_assert_null (fg_param_spec_lookup (specs, "nope"));
}

static void
test_wrong_getter_type (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr (FgParams) p = fg_params_new (specs);
      fg_params_get_int (p, "metric");
      return;
    }
  g_test_trap_subprocess (NULL, 0, 0);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*is a choice, not a int*");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/params/defaults", test_defaults);
  g_test_add_func ("/params/set-valid", test_set_valid);
  g_test_add_func ("/params/set-invalid", test_set_invalid);
  g_test_add_func ("/params/component", test_component);
  g_test_add_func ("/params/resolve-components", test_resolve_components);
  g_test_add_func ("/params/bind-components", test_bind_components);
  g_test_add_func ("/params/check-complete", test_complete);
  g_test_add_func ("/params/to-string", test_to_string);
  g_test_add_func ("/params/double-text-round-trip", test_double_text_round_trip);
  g_test_add_func ("/params/resolve-paths", test_resolve_paths);
  g_test_add_func ("/params/spec-validate", test_spec_validate);
  g_test_add_func ("/params/describe-type", test_describe_type);
  g_test_add_func ("/params/wrong-getter-type", test_wrong_getter_type);
  return g_test_run ();
}
