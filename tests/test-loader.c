/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the plugin loader: every rejection path has its fixture, a good plugin's
 * components and parameters are registered, validated and listed. */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

static char *
fixture_path (const char *name)
{
  const char *dir = g_getenv ("FG_FIXTURE_PLUGIN_DIR");
  g_autofree char *file = g_strconcat (name, ".so", NULL);
  if (dir == NULL)
    dir = "tests/plugins/.libs";
  return g_build_filename (dir, file, NULL);
}

static gboolean
have_fixtures (void)
{
  g_autofree char *good = fixture_path ("good");
  if (!g_file_test (good, G_FILE_TEST_IS_REGULAR))
    {
      g_test_skip ("fixture plugins not built (set FG_FIXTURE_PLUGIN_DIR; run via make check)");
      return FALSE;
    }
  return TRUE;
}

typedef struct {
  const char *fixture;
  gint code;
  const char *expect;
} RejectCase;

static const RejectCase reject_cases[] = {
  { "bad-abi", FG_LOADER_ERROR_ABI_VERSION, "built for plugin ABI 2" },
  { "no-entry", FG_LOADER_ERROR_NO_ENTRY, "no entry symbol fg_plugin_query" },
  { "null-info", FG_LOADER_ERROR_BAD_DESCRIPTOR, "returned no descriptor" },
  { "small-info", FG_LOADER_ERROR_STRUCT_SIZE, "descriptor is 16 bytes" },
  { "name-mismatch", FG_LOADER_ERROR_BAD_DESCRIPTOR, "does not match the file name" },
  { "no-components", FG_LOADER_ERROR_BAD_DESCRIPTOR, "declares no components" },
  { "unknown-kind", FG_LOADER_ERROR_UNKNOWN_KIND, "kind 99" },
  { "missing-method", FG_LOADER_ERROR_MISSING_METHOD, "required method 'predict'" },
  { "small-vtable", FG_LOADER_ERROR_STRUCT_SIZE, "has a vtable of 16 bytes" },
  { "bad-params", FG_LOADER_ERROR_BAD_PARAMS, "default of invalid value '50'" },
};

static void
test_reject (gconstpointer data)
{
  const RejectCase *c = data;
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  const FgPluginRecord *rec;

  if (!have_fixtures ())
    return;
  path = fixture_path (c->fixture);
  g_assert_false (fg_registry_load_file (reg, path, &error));
  g_assert_error (error, FG_LOADER_ERROR, c->code);
  if (strstr (error->message, c->expect) == NULL)
    g_error ("%s: message '%s' lacks '%s'", c->fixture, error->message, c->expect);
  /* the error names the file */
  g_assert_nonnull (strstr (error->message, path));
  /* the attempt is recorded with its reason, and nothing was registered */
  g_assert_cmpuint (fg_registry_get_n_records (reg), ==, 1);
  rec = fg_registry_get_record (reg, 0);
  g_assert_null (rec->info);
  g_assert_error (rec->error, FG_LOADER_ERROR, c->code);
  for (int k = FG_KIND_FIRST; k <= FG_KIND_LAST; k++)
    {
      g_autoptr (GPtrArray) list = fg_registry_list (reg, (FgKind) k);
      g_assert_cmpuint (list->len, ==, 0);
    }
}

static void
test_not_shared_object (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("fgloader-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "junk.so", NULL);
  g_assert_true (g_file_set_contents (path, "this is not an ELF file\n", -1, NULL));
  g_assert_false (fg_registry_load_file (reg, path, &error));
  g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_OPEN);
  g_assert_nonnull (strstr (error->message, "junk.so"));
  g_assert_nonnull (strstr (error->message, "cannot load"));
  g_clear_error (&error);
  g_assert_false (fg_registry_load_file (reg, "/nonexistent/dir/x.so", &error));
  g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_OPEN);
  g_unlink (path);
  g_rmdir (dir);
}

static void
test_good (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  const FgComponent *c;
  const FgPluginRecord *rec;
  g_autoptr (GPtrArray) baselines = NULL;

  if (!have_fixtures ())
    return;
  path = fixture_path ("good");
  g_assert_true (fg_registry_load_file (reg, path, &error));
  g_assert_no_error (error);

  c = fg_registry_lookup (reg, FG_KIND_BASELINE, "good-baseline");
  g_assert_nonnull (c);
  g_assert_cmpint (c->kind, ==, FG_KIND_BASELINE);
  g_assert_cmpuint (fg_param_spec_count (c->params), ==, 6);
  g_assert_nonnull (fg_registry_lookup (reg, FG_KIND_DATASET, "good-data"));
  g_assert_nonnull (fg_registry_lookup (reg, FG_KIND_LOSS, "good-loss"));
  g_assert_null (fg_registry_lookup (reg, FG_KIND_FLOW, "good-baseline"));
  g_assert_true (fg_registry_lookup_any (reg, "good-loss")->kind == FG_KIND_LOSS);

  rec = fg_registry_get_provider (reg, c);
  g_assert_nonnull (rec);
  g_assert_cmpstr (rec->info->name, ==, "good");
  g_assert_cmpstr (rec->path, ==, path);
  g_assert_null (rec->error);

  baselines = fg_registry_list (reg, FG_KIND_BASELINE);
  g_assert_cmpuint (baselines->len, ==, 2);
  g_assert_cmpstr (((const FgComponent *) baselines->pdata[0])->name, ==, "good-baseline");
  g_assert_cmpstr (((const FgComponent *) baselines->pdata[1])->name, ==, "good-wrapper");

  /* a lookup that fails names what is there */
  g_assert_null (fg_registry_find (reg, FG_KIND_BASELINE, "knn", &error));
  g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "good-baseline, good-wrapper"));
  g_clear_error (&error);
  g_assert_null (fg_registry_find (reg, FG_KIND_FLOW, "good-data", &error));
  g_assert_nonnull (strstr (error->message, "there is a dataset of that name"));
}

static void
test_good_params_validated (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  g_autoptr (FgParams) p = NULL;
  g_autoptr (FgParams) w = NULL;
  const FgComponent *c;

  if (!have_fixtures ())
    return;
  path = fixture_path ("good");
  g_assert_true (fg_registry_load_file (reg, path, NULL));
  c = fg_registry_lookup (reg, FG_KIND_BASELINE, "good-baseline");
  p = fg_params_new (c->params);
  g_assert_true (fg_params_set (p, "k", "7", &error));
  g_assert_false (fg_params_set (p, "k", "21", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_clear_error (&error);
  g_assert_false (fg_params_set (p, "metric", "manhattan", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_clear_error (&error);

  /* a COMPONENT parameter's default is resolved through the registry */
  c = fg_registry_lookup (reg, FG_KIND_BASELINE, "good-wrapper");
  w = fg_params_new (c->params);
  g_assert_true (fg_registry_resolve_params (reg, w, &error));
  g_assert_no_error (error);
  g_assert_true (fg_params_set (w, "inner.k", "5", &error));
  g_assert_cmpint (fg_params_get_int (fg_params_get_component (w, "inner"), "k"), ==, 5);
  g_assert_true (fg_params_check_complete (w, &error));
  g_assert_true (fg_params_get_resolved_component (w, "inner")
                 == fg_registry_lookup (reg, FG_KIND_BASELINE, "good-baseline"));
}

/* The default registry is deprecated but still works for ABI-1 programs that use it. */
static void
test_deprecated_default_registry (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new_with_builtins ();
  g_autoptr (GError) error = NULL;
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  fg_registry_set_default (reg);
  g_assert_true (fg_registry_get_default () == reg);
  g_assert_true (fg_registry_default_find (FG_KIND_BASELINE, "flowgmm", &error)
                 == fg_registry_lookup (reg, FG_KIND_BASELINE, "flowgmm"));
  g_assert_null (fg_registry_default_find (FG_KIND_BASELINE, "no-such", &error));
  g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_NOT_FOUND);
  fg_registry_set_default (NULL);
  g_assert_true (fg_registry_get_default () != reg);
  G_GNUC_END_IGNORE_DEPRECATIONS
}

static void
test_unresolvable_component (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  g_autoptr (GError) error = NULL;
  static const FgParamSpec specs[] = {
    FG_PARAM_SPEC_COMPONENT ("inner", "no-such-baseline", "baseline", "x"), FG_PARAM_SPEC_END };
  g_autoptr (FgParams) p = fg_params_new (specs);
  g_assert_false (fg_registry_resolve_params (reg, p, &error));
  g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "parameter 'inner'"));
  g_assert_nonnull (strstr (error->message, "no-such-baseline"));
}

static void
test_duplicate_component (void)
{
  g_autofree char *good = NULL, *dup = NULL;
  if (!have_fixtures ())
    return;
  good = fixture_path ("good");
  dup = fixture_path ("duplicate");
  /* No preference: the second file is rejected and the component they share is ambiguous, an
   * error naming both files; the first file's other components stay usable. */
  {
    g_autoptr (FgRegistry) reg = fg_registry_new ();
    g_autoptr (GError) error = NULL;
    g_assert_true (fg_registry_load_file (reg, good, NULL));
    g_assert_false (fg_registry_load_file (reg, dup, &error));
    g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_DUPLICATE);
    g_assert_nonnull (strstr (error->message, "already provided by plugin 'good'"));
    g_clear_error (&error);
    g_assert_null (fg_registry_lookup (reg, FG_KIND_BASELINE, "good-baseline"));
    g_assert_null (fg_registry_find (reg, FG_KIND_BASELINE, "good-baseline", &error));
    g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_DUPLICATE);
    g_assert_nonnull (strstr (error->message, good));
    g_assert_nonnull (strstr (error->message, dup));
    g_assert_nonnull (strstr (error->message, "--prefer"));
    g_assert_nonnull (fg_registry_lookup (reg, FG_KIND_DATASET, "good-data"));
  }
  /* The first one preferred: it stays, unambiguous. */
  {
    g_autoptr (FgRegistry) reg = fg_registry_new ();
    const FgComponent *c;
    fg_registry_prefer (reg, good);
    g_assert_true (fg_registry_load_file (reg, good, NULL));
    g_assert_false (fg_registry_load_file (reg, dup, NULL));
    c = fg_registry_lookup (reg, FG_KIND_BASELINE, "good-baseline");
    g_assert_nonnull (c);
    g_assert_cmpstr (fg_registry_get_provider (reg, c)->info->name, ==, "good");
  }
  /* The second one preferred: it replaces the first. */
  {
    g_autoptr (FgRegistry) reg = fg_registry_new ();
    const FgComponent *c;
    g_autoptr (GError) error = NULL;
    fg_registry_prefer (reg, dup);
    g_assert_true (fg_registry_load_file (reg, good, NULL));
    g_assert_true (fg_registry_load_file (reg, dup, &error));
    g_assert_no_error (error);
    c = fg_registry_lookup (reg, FG_KIND_BASELINE, "good-baseline");
    g_assert_nonnull (c);
    g_assert_cmpstr (fg_registry_get_provider (reg, c)->info->name, ==, "duplicate");
    g_assert_null (fg_registry_lookup (reg, FG_KIND_DATASET, "good-data"));
    g_assert_nonnull (fg_registry_get_record (reg, 0)->error);
    g_assert_nonnull (strstr (fg_registry_get_record (reg, 0)->error->message, "preferred"));
  }
}

static void
test_duplicate_plugin_and_dir_scan (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *good = NULL, *contents = NULL;
  g_autofree char *dir1 = g_dir_make_tmp ("fgloader-a-XXXXXX", NULL);
  g_autofree char *dir2 = g_dir_make_tmp ("fgloader-b-XXXXXX", NULL);
  g_autofree char *copy1 = g_build_filename (dir1, "good.so", NULL);
  g_autofree char *copy2 = g_build_filename (dir2, "good.so", NULL);
  g_autofree char *la = g_build_filename (dir1, "good.la", NULL);
  g_autofree char *hidden = g_build_filename (dir1, ".hidden.so", NULL);
  gsize len;
  const char *const extra[] = { dir1, dir2, NULL };

  if (!have_fixtures ())
    return;
  good = fixture_path ("good");
  g_assert_true (g_file_get_contents (good, &contents, &len, NULL));
  g_assert_true (g_file_set_contents (copy1, contents, (gssize) len, NULL));
  g_assert_true (g_file_set_contents (copy2, contents, (gssize) len, NULL));
  g_assert_true (g_file_set_contents (la, "libtool archive", -1, NULL));
  g_assert_true (g_file_set_contents (hidden, "not even tried", -1, NULL));

  g_setenv ("FLOWGMM_PLUGIN_PATH", "", TRUE);
  g_setenv ("FLOWGMM_PLUGIN_SYSTEM_PATH", "", TRUE);
  g_assert_cmpuint (fg_registry_load_default (reg, extra), ==, 1);
  /* .la and hidden files are not tried; the second copy is a duplicate plugin name */
  g_assert_cmpuint (fg_registry_get_n_records (reg), ==, 2);
  g_assert_cmpstr (fg_registry_get_record (reg, 0)->path, ==, copy1);
  g_assert_nonnull (fg_registry_get_record (reg, 0)->info);
  g_assert_error (fg_registry_get_record (reg, 1)->error, FG_LOADER_ERROR,
                  FG_LOADER_ERROR_DUPLICATE);
  g_assert_nonnull (strstr (fg_registry_get_record (reg, 1)->error->message,
                            "a plugin named 'good' is already registered"));
  g_assert_null (fg_registry_lookup (reg, FG_KIND_BASELINE, "good-baseline"));

  /* The same directory named twice (an option and the environment) is scanned once. */
  {
    g_autoptr (FgRegistry) reg2 = fg_registry_new ();
    g_autofree char *dotted = g_build_filename (dir1, ".", NULL);
    const char *const twice[] = { dir1, dotted, NULL };
    g_setenv ("FLOWGMM_PLUGIN_PATH", dir1, TRUE);
    g_assert_cmpuint (fg_registry_load_default (reg2, twice), ==, 1);
    g_assert_cmpuint (fg_registry_get_n_records (reg2), ==, 1);
    g_assert_nonnull (fg_registry_lookup (reg2, FG_KIND_BASELINE, "good-baseline"));
    g_setenv ("FLOWGMM_PLUGIN_PATH", "", TRUE);
  }

  g_unlink (copy1);
  g_unlink (copy2);
  g_unlink (la);
  g_unlink (hidden);
  g_rmdir (dir1);
  g_rmdir (dir2);
}

/* A truncated copy of a plugin (an interrupted copy or build) is rejected with a reason, at
 * every cut, instead of crashing the dynamic loader with SIGBUS. */
static void
test_truncated (void)
{
  g_autofree char *good = NULL;
  g_autofree char *contents = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *copy = NULL;
  g_autoptr (GError) error = NULL;
  gsize len = 0;

  if (!have_fixtures ())
    return;
  good = fixture_path ("good");
  g_file_get_contents (good, &contents, &len, &error);
  g_assert_no_error (error);
  dir = g_dir_make_tmp ("fgtrunc-XXXXXX", &error);
  g_assert_no_error (error);
  copy = g_build_filename (dir, "good.so", NULL);
  for (guint k = 1; k < 8; k++)
    {
      g_autoptr (FgRegistry) reg = fg_registry_new ();
      gsize cut = len * k / 8;
      g_file_set_contents (copy, contents, (gssize) cut, &error);
      g_assert_no_error (error);
      g_assert_false (fg_registry_load_file (reg, copy, &error));
      g_assert_error (error, FG_LOADER_ERROR, FG_LOADER_ERROR_OPEN);
      g_assert_nonnull (strstr (error->message, "truncated"));
      g_assert_nonnull (strstr (error->message, copy));
      g_clear_error (&error);
      g_unlink (copy);
      /* A directory scan records it and goes on. */
      g_file_set_contents (copy, contents, (gssize) cut, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (fg_registry_load_dir (reg, dir), ==, 0);
      g_unlink (copy);
    }
  g_rmdir (dir);
}

static void
test_env_search_path (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  const char *dir = g_getenv ("FG_FIXTURE_PLUGIN_DIR");
  guint n;
  if (!have_fixtures () || dir == NULL)
    return;
  /* The whole fixture directory: good and crash load, every other file is rejected, loading
   * goes on. */
  g_setenv ("FLOWGMM_PLUGIN_PATH", dir, TRUE);
  g_setenv ("FLOWGMM_PLUGIN_SYSTEM_PATH", "", TRUE);
  n = fg_registry_load_default (reg, NULL);
  /* good loads; duplicate.so sorts before good.so, so it registers first and good's
   * good-baseline is then the duplicate — either way exactly one of the two is rejected. */
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpuint (fg_registry_get_n_records (reg), ==, 13);
  for (guint i = 0; i < fg_registry_get_n_records (reg); i++)
    {
      const FgPluginRecord *rec = fg_registry_get_record (reg, i);
      g_assert_true ((rec->info == NULL) == (rec->error != NULL));
    }
}

static void
test_builtins (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new_with_builtins ();
  for (guint i = 0; i < fg_registry_get_n_records (reg); i++)
    {
      const FgPluginRecord *rec = fg_registry_get_record (reg, i);
      g_assert_no_error (rec->error);
      g_assert_cmpstr (rec->path, ==, "(built-in)");
    }
}

static void
test_kind_strings (void)
{
  FgKind k;
  for (int i = FG_KIND_FIRST; i <= FG_KIND_LAST; i++)
    {
      g_assert_true (fg_kind_from_string (fg_kind_to_string ((FgKind) i), &k));
      g_assert_cmpint (k, ==, i);
    }
  g_assert_false (fg_kind_from_string ("classifier", &k));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (reject_cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("/loader/rejects/%s", reject_cases[i].fixture);
      g_test_add_data_func (name, &reject_cases[i], test_reject);
    }
  g_test_add_func ("/loader/rejects/not-a-shared-object", test_not_shared_object);
  g_test_add_func ("/loader/rejects/duplicate-component", test_duplicate_component);
  g_test_add_func ("/loader/rejects/truncated", test_truncated);
  g_test_add_func ("/loader/rejects/duplicate-plugin-name", test_duplicate_plugin_and_dir_scan);
  g_test_add_func ("/loader/good-plugin", test_good);
  g_test_add_func ("/loader/good-params-validated", test_good_params_validated);
  g_test_add_func ("/loader/unresolvable-component", test_unresolvable_component);
  g_test_add_func ("/loader/search-path-goes-on", test_env_search_path);
  g_test_add_func ("/loader/builtins", test_builtins);
  g_test_add_func ("/loader/deprecated-default-registry", test_deprecated_default_registry);
  g_test_add_func ("/loader/kind-strings", test_kind_strings);
  return g_test_run ();
}
