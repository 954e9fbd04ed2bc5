/* SPDX-License-Identifier: MIT */
/* flowgmm tests — experiment files, the runner, the results store and tables.
 *
 * Plugins: the template plugin (template-blobs, template-centroid) from $FG_TEMPLATE_PLUGIN_DIR
 * and the fixture plugins tests/plugins/good.c (good-data, good-baseline with a `fail` knob,
 * good-wrapper with a COMPONENT parameter) and tests/plugins/crash.c (crash-baseline, which
 * crashes its process on purpose) from $FG_FIXTURE_PLUGIN_DIR.
 */
#include "config.h"

#include <math.h>
#include <string.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <flowgmm/flowgmm.h>

/* ---- helpers --------------------------------------------------------------------------------- */

static FgRegistry *
test_registry (void)
{
  FgRegistry *reg = fg_registry_new ();
  const char *tdir = g_getenv ("FG_TEMPLATE_PLUGIN_DIR");
  const char *fdir = g_getenv ("FG_FIXTURE_PLUGIN_DIR");
  g_autofree char *tdefault = g_test_build_filename (G_TEST_BUILT, "..", "plugins", ".libs", NULL);
  g_autofree char *fdefault = g_test_build_filename (G_TEST_BUILT, "plugins", ".libs", NULL);
  g_autofree char *template_so = g_build_filename (tdir ? tdir : tdefault, "template.so", NULL);
  g_autofree char *good_so = g_build_filename (fdir ? fdir : fdefault, "good.so", NULL);
  g_autofree char *crash_so = g_build_filename (fdir ? fdir : fdefault, "crash.so", NULL);
  g_autoptr (GError) error = NULL;

  fg_registry_load_file (reg, template_so, &error);
  g_assert_no_error (error);
  fg_registry_load_file (reg, good_so, &error);
  g_assert_no_error (error);
  fg_registry_load_file (reg, crash_so, &error);
  g_assert_no_error (error);
  return reg;
}

static void
rm_rf (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      GDir *dir = g_dir_open (path, 0, NULL);
      const char *name;
      while (dir && (name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          rm_rf (child);
        }
      if (dir)
        g_dir_close (dir);
      g_rmdir (path);
    }
  else
    g_unlink (path);
}

static char *
make_tmpdir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("fgexp-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

static char *
read_file (const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;
  char *contents = NULL;
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return contents;
}

static void
write_file (const char *dir, const char *name, const char *text)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;
  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

static guint
count_lines (const char *text)
{
  guint n = 0;
  for (const char *p = text; *p; p++)
    n += *p == '\n';
  return n;
}

/* Load `text` as "bad.exp" and check the error: domain, code, and that the message names the
 * file, the group ("[group]") and the key ("'key'") when given. */
static void
assert_load_error (FgRegistry *reg, const char *text, FgExperimentError code, const char *group,
                   const char *key)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = fg_experiment_load_data (text, -1, "bad.exp", NULL, reg, &error);

  g_assert_null (exp);
  g_assert_error (error, FG_EXPERIMENT_ERROR, (gint) code);
  if (g_test_verbose ())
    g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, "bad.exp:"));
  if (group != NULL)
    {
      g_autofree char *g = g_strdup_printf ("[%s]", group);
      g_assert_nonnull (strstr (error->message, g));
    }
  if (key != NULL)
    {
      g_autofree char *k = g_strdup_printf ("key '%s'", key);
      g_assert_nonnull (strstr (error->message, k));
    }
}

#define DATASET "[dataset:d]\nplugin = template-blobs\n"
#define METHOD "[method:m]\nplugin = template-centroid\n"

/* ---- malformed files ------------------------------------------------------------------------- */

static void
test_error_not_key_file (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  assert_load_error (reg, "this is not\na key file\n", FG_EXPERIMENT_ERROR_PARSE, NULL, NULL);
  assert_load_error (reg, "[experiment\ntitle = x\n", FG_EXPERIMENT_ERROR_PARSE, NULL, NULL);
}

static void
test_error_unknown_group (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  assert_load_error (reg, DATASET METHOD "[results]\nx = 1\n", FG_EXPERIMENT_ERROR_UNKNOWN_GROUP,
                     "results", NULL);
  assert_load_error (reg, DATASET METHOD "[method:]\nplugin = x\n",
                     FG_EXPERIMENT_ERROR_UNKNOWN_GROUP, "method:", NULL);
}

static void
test_error_unknown_key (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  /* In each kind of group; the line number is given too. */
  assert_load_error (reg, "[experiment]\ntitle = t\ncolour = red\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_UNKNOWN_KEY, "experiment", "colour");
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (FgExperiment) exp = fg_experiment_load_data (
        "[experiment]\ntitle = t\ncolour = red\n" DATASET METHOD, -1, "bad.exp", NULL, reg,
        &error);
    g_assert_nonnull (strstr (error->message, "bad.exp:3:"));
  }
  assert_load_error (reg, DATASET "colour = red\n" METHOD, FG_EXPERIMENT_ERROR_UNKNOWN_KEY,
                     "dataset:d", "colour");
  assert_load_error (reg, DATASET METHOD "k = 3\n", FG_EXPERIMENT_ERROR_UNKNOWN_KEY, "method:m",
                     "k");
  /* A dotted key on a parameter that is not a component. */
  assert_load_error (reg, DATASET METHOD "shrink.x = 3\n", FG_EXPERIMENT_ERROR_UNKNOWN_KEY,
                     "method:m", "shrink.x");
}

static void
test_error_bad_type (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  assert_load_error (reg, DATASET "n = many\n" METHOD, FG_EXPERIMENT_ERROR_BAD_TYPE, "dataset:d",
                     "n");
  assert_load_error (reg, DATASET "labeled = 1.5\n" METHOD, FG_EXPERIMENT_ERROR_BAD_TYPE,
                     "dataset:d", "labeled");
  assert_load_error (reg, DATASET METHOD "shrink = half\n", FG_EXPERIMENT_ERROR_BAD_TYPE,
                     "method:m", "shrink");
  assert_load_error (reg, DATASET METHOD "use_unlabeled = maybe\n", FG_EXPERIMENT_ERROR_BAD_TYPE,
                     "method:m", "use_unlabeled");
  assert_load_error (reg, DATASET METHOD "shrink = 1..x\n", FG_EXPERIMENT_ERROR_BAD_TYPE,
                     "method:m", "shrink");
  /* A choice outside its list. */
  assert_load_error (reg, "[dataset:d]\nplugin = good-data\n[method:m]\nplugin = good-baseline\n"
                     "metric = manhattan\n", FG_EXPERIMENT_ERROR_BAD_VALUE, "method:m", "metric");
}

static void
test_error_bad_range (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  assert_load_error (reg, DATASET "classes = 1\n" METHOD, FG_EXPERIMENT_ERROR_BAD_RANGE,
                     "dataset:d", "classes");
  assert_load_error (reg, DATASET METHOD "shrink = 2\n", FG_EXPERIMENT_ERROR_BAD_RANGE,
                     "method:m", "shrink");
  /* One grid value out of range is enough. */
  assert_load_error (reg, DATASET METHOD "shrink = 0;0.5;1.5\n", FG_EXPERIMENT_ERROR_BAD_RANGE,
                     "method:m", "shrink");
  /* Empty ranges and bad steps. */
  assert_load_error (reg, "[dataset:d]\nplugin = good-data\n[method:m]\nplugin = good-baseline\n"
                     "k = 5..1\n", FG_EXPERIMENT_ERROR_BAD_RANGE, "method:m", "k");
  assert_load_error (reg, "[dataset:d]\nplugin = good-data\n[method:m]\nplugin = good-baseline\n"
                     "k = 1..5:0\n", FG_EXPERIMENT_ERROR_BAD_RANGE, "method:m", "k");
  assert_load_error (reg, "[dataset:d]\nplugin = good-data\n[method:m]\nplugin = good-baseline\n"
                     "k = 0..3\n", FG_EXPERIMENT_ERROR_BAD_RANGE, "method:m", "k");
}

/* Input that used to be taken silently (or crash): each is an error naming file and line. */
static void
test_error_file_defects (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  static const struct {
    const char *text;
    FgExperimentError code;
    const char *expect;
  } cases[] = {
    /* A value that is not UTF-8 would make a result line no JSON reader accepts. */
    { DATASET METHOD "label = caf\xe9\n", FG_EXPERIMENT_ERROR_BAD_VALUE,
      "bad.exp:5: [method:m] 'label = caf" },
    { DATASET METHOD "shrink = 0\nshrink = 0.5\n", FG_EXPERIMENT_ERROR_BAD_VALUE,
      "bad.exp:6: [method:m] key 'shrink' is set twice (first at line 5)" },
    { DATASET METHOD DATASET, FG_EXPERIMENT_ERROR_BAD_VALUE,
      "bad.exp:5: [dataset:d] appears twice (first at line 1)" },
    { DATASET METHOD "shrink = 0;0.5;0\n", FG_EXPERIMENT_ERROR_BAD_VALUE,
      "bad.exp:5: [method:m] key 'shrink': '0' is listed twice" },
    { DATASET "oops\n" METHOD, FG_EXPERIMENT_ERROR_PARSE,
      "bad.exp:3: 'oops' is not a [group], a key = value line or a # comment" },
    { "plugin = x\n" DATASET METHOD, FG_EXPERIMENT_ERROR_PARSE,
      "bad.exp:1: 'plugin = x' comes before any [group]" },
    { DATASET "[method:m\n", FG_EXPERIMENT_ERROR_PARSE, "bad.exp:3: '[method:m' opens a group" },
    { "[experiment]\nfigures = fig1:nosuch\n" DATASET METHOD, FG_EXPERIMENT_ERROR_BAD_VALUE,
      "bad.exp:2: [experiment] key 'figures': no [dataset:NAME] group named 'nosuch'" },
    { "[experiment]\nfigures = fig2\nfigure_methods = m;zz\n" DATASET METHOD,
      FG_EXPERIMENT_ERROR_BAD_VALUE,
      "bad.exp:3: [experiment] key 'figure_methods': no [method:NAME] group named 'zz'" },
    { "[dataset:d]\nplugin = good-data\n[method:m]\nplugin = good-baseline\n"
      "k = -9223372036854775808..9223372036854775807\n", FG_EXPERIMENT_ERROR_BAD_RANGE,
      "bad.exp:5: [method:m] key 'k': range '-9223372036854775808..9223372036854775807' has "
      "more than" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (FgExperiment) exp = fg_experiment_load_data (cases[i].text, -1, "bad.exp", NULL,
                                                              reg, &error);
      g_assert_null (exp);
      g_assert_error (error, FG_EXPERIMENT_ERROR, (gint) cases[i].code);
      if (!g_str_has_prefix (error->message, cases[i].expect))
        g_error ("case %u: '%s' does not start with '%s'", i, error->message, cases[i].expect);
    }
  /* A range whose bounds are the extremes of int64: no overflow, every point. */
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (FgExperiment) exp = fg_experiment_load_data (
        "[dataset:d]\nplugin = x\n[method:m]\nplugin = y\n"
        "k = -9223372036854775808..9223372036854775807:4611686018427387904\n",
        -1, "range.exp", NULL, NULL, &error);
    FgCellInfo info;
    g_assert_no_error (error);
    g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, 4);
    g_assert_true (fg_experiment_get_cell (exp, 3, &info));
    g_assert_cmpstr (info.grid, ==, "k=4611686018427387904");
  }
}

static void
test_error_missing_plugin (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  assert_load_error (reg, "[dataset:d]\nn = 10\n" METHOD, FG_EXPERIMENT_ERROR_MISSING_KEY,
                     "dataset:d", "plugin");
  assert_load_error (reg, DATASET "[method:m]\nshrink = 0\n", FG_EXPERIMENT_ERROR_MISSING_KEY,
                     "method:m", "plugin");
  /* No datasets or no methods at all. */
  assert_load_error (reg, METHOD, FG_EXPERIMENT_ERROR_MISSING_KEY, NULL, NULL);
  assert_load_error (reg, DATASET, FG_EXPERIMENT_ERROR_MISSING_KEY, NULL, NULL);
}

static void
test_error_unknown_plugin (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  assert_load_error (reg, "[dataset:d]\nplugin = no-such-data\n" METHOD,
                     FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, "dataset:d", "plugin");
  assert_load_error (reg, DATASET "[method:m]\nplugin = no-such-method\n",
                     FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, "method:m", "plugin");
  /* A component of the wrong kind. */
  assert_load_error (reg, DATASET "[method:m]\nplugin = template-blobs\n",
                     FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, "method:m", "plugin");
  /* A COMPONENT parameter naming nothing registered, or a component of another kind. */
  assert_load_error (reg, DATASET "[method:w]\nplugin = good-wrapper\ninner = nothing\n",
                     FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, "method:w", "inner");
  assert_load_error (reg, DATASET "[method:w]\nplugin = good-wrapper\ninner = template-blobs\n",
                     FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN, "method:w", "inner");
}

static void
test_error_grid_in_dataset (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = NULL;

  assert_load_error (reg, DATASET "n = 100;200\n" METHOD, FG_EXPERIMENT_ERROR_BAD_VALUE,
                     "dataset:d", "n");
  assert_load_error (reg, DATASET "labeled = 10..20\n" METHOD, FG_EXPERIMENT_ERROR_BAD_VALUE,
                     "dataset:d", "labeled");
  exp = fg_experiment_load_data (DATASET "n = 100;200\n" METHOD, -1, "bad.exp", NULL, reg,
                                 &error);
  g_assert_nonnull (strstr (error->message, "method"));
}

static void
test_error_bad_seeds (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  assert_load_error (reg, "[experiment]\nseeds = one\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_TYPE, "experiment", "seeds");
  assert_load_error (reg, "[experiment]\nseeds = -1\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_RANGE, "experiment", "seeds");
  assert_load_error (reg, "[experiment]\nseeds = 3..1\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_RANGE, "experiment", "seeds");
  assert_load_error (reg, "[experiment]\nseeds = 1;2;1\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "seeds");
  assert_load_error (reg, "[experiment]\nseeds =\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "seeds");
  assert_load_error (reg, "[experiment]\nseeds = 0;;1\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "seeds");
}

static void
test_error_experiment_values (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  assert_load_error (reg, "[experiment]\nselect = best-test\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "select");
  assert_load_error (reg, "[experiment]\ntable = rows:seed\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "table");
  assert_load_error (reg, "[experiment]\ntable = metric:f1\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "table");
  assert_load_error (reg, "[experiment]\nmetrics = accuracy;auc\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "metrics");
  assert_load_error (reg, "[experiment]\nmetrics = accuracy\ntable = metric:nll\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "table");
  assert_load_error (reg, "[experiment]\ndatasets = d;e\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "datasets");
  assert_load_error (reg, DATASET METHOD "datasets = e\n", FG_EXPERIMENT_ERROR_BAD_VALUE,
                     "method:m", "datasets");
  assert_load_error (reg, DATASET METHOD "plugin2 = x\n", FG_EXPERIMENT_ERROR_UNKNOWN_KEY,
                     "method:m", "plugin2");
}

/* ---- components, grids and cells ------------------------------------------------------------- */

static void
test_component_keys (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (GError) error = NULL;
  /* The sub-key comes first in the file; the component key is still applied first. */
  g_autoptr (FgExperiment) exp = fg_experiment_load_data (
      DATASET "[method:w]\ninner.k = 1..3\nplugin = good-wrapper\ninner = good-baseline\n"
      "weight = 2\n", -1, "w.exp",
      NULL, reg, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, 3);
  g_clear_pointer (&exp, fg_experiment_free);

  /* Without `inner`, its default component takes the sub-keys. */
  exp = fg_experiment_load_data (DATASET "[method:w]\nplugin = good-wrapper\ninner.k = 4\n", -1,
                                 "w.exp", NULL, reg, &error);
  g_assert_no_error (error);
  g_clear_pointer (&exp, fg_experiment_free);

  /* The sub-keys are checked against the chosen component. */
  assert_load_error (reg, DATASET "[method:w]\nplugin = good-wrapper\ninner.colour = red\n",
                     FG_EXPERIMENT_ERROR_UNKNOWN_KEY, "method:w", "inner.colour");
  assert_load_error (reg, DATASET "[method:w]\nplugin = good-wrapper\ninner.k = 99\n",
                     FG_EXPERIMENT_ERROR_BAD_RANGE, "method:w", "inner.k");
}

static void
test_grid_counts (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = NULL;
  FgCellInfo info;
  const char *text =
    "[experiment]\nseeds = 0..2\n"
    "[dataset:a]\nplugin = good-data\n"
    "[dataset:b]\nplugin = good-data\nn = 80\n"
    "[method:knn]\nplugin = good-baseline\nk = 1..5\nmetric = l2;cosine\n"
    "[method:stepped]\nplugin = good-baseline\nk = 1..20:5\ndatasets = b\n"
    "[method:mixed]\nplugin = good-baseline\nk = 1..3;10;20   # a comment\nrate = 0.25\n";

  exp = fg_experiment_load_data (text, -1, "grid.exp", NULL, reg, &error);
  g_assert_no_error (error);
  /* knn: 5 × 2 points on 2 data sets; stepped: 1, 6, 11, 16 on b only; mixed: 5 points. */
  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, (2 * 10 + 4 + 2 * 5) * 3);

  /* Order: data set, method, grid point (last key fastest), seed. */
  g_assert_true (fg_experiment_get_cell (exp, 0, &info));
  g_assert_cmpstr (info.dataset, ==, "a");
  g_assert_cmpstr (info.method, ==, "knn");
  g_assert_cmpstr (info.grid, ==, "k=1 metric=l2");
  g_assert_cmpuint (info.seed, ==, 0);
  g_assert_true (fg_experiment_get_cell (exp, 4, &info));
  g_assert_cmpstr (info.grid, ==, "k=1 metric=cosine");
  g_assert_cmpuint (info.seed, ==, 1);
  g_assert_cmpuint (info.point, ==, 1);
  g_assert_true (fg_experiment_get_cell (exp, 30, &info));
  g_assert_cmpstr (info.method, ==, "mixed");
  g_assert_cmpstr (info.grid, ==, "k=1");
  g_assert_true (fg_experiment_get_cell (exp, 30 + 3 * 4, &info));
  g_assert_cmpstr (info.grid, ==, "k=20");
  /* The restricted method appears on b only, with the stepped range. */
  {
    guint n_stepped = 0;
    for (guint i = 0; i < fg_experiment_get_n_cells (exp); i++)
      {
        g_assert_true (fg_experiment_get_cell (exp, i, &info));
        if (strcmp (info.method, "stepped") == 0)
          {
            const char *expected[] = { "k=1", "k=6", "k=11", "k=16" };
            g_assert_cmpstr (info.dataset, ==, "b");
            g_assert_cmpstr (info.grid, ==, expected[info.point]);
            n_stepped++;
          }
      }
    g_assert_cmpuint (n_stepped, ==, 4 * 3);
  }
  g_assert_false (fg_experiment_get_cell (exp, fg_experiment_get_n_cells (exp), &info));
  g_clear_pointer (&exp, fg_experiment_free);

  /* The [experiment] datasets/methods lists order and select the groups. */
  {
    g_autofree char *t2 = g_strconcat ("[experiment]\nseeds = 0..2\ndatasets = b\n"
                                       "methods = mixed;knn\n", strstr (text, "[dataset:a]"),
                                       NULL);
    exp = fg_experiment_load_data (t2, -1, "grid.exp", NULL, reg, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, (10 + 5) * 3);
    g_assert_true (fg_experiment_get_cell (exp, 0, &info));
    g_assert_cmpstr (info.method, ==, "mixed");
    g_assert_cmpstr (info.dataset, ==, "b");
  }
}

/* Keys depend on what a cell computes, not on layout: reordering and comments keep them,
 * editing a value changes the affected cells only. */
static void
test_cell_keys (void)
{
  const char *a = "[dataset:d]\nplugin = good-data\nn = 40\nnoise = 0.5\n"
                  "[method:m]\nplugin = good-baseline\nk = 1;2\n"
                  "[method:o]\nplugin = good-baseline\nrate = 0.1\n";
  const char *b = "# reordered, with comments\n[method:o]\nrate = 0.1  # same\nplugin = good-baseline\n"
                  "[method:m]\nk = 1;2\nplugin = good-baseline\n"
                  "[experiment]\nmethods = m;o\n"
                  "[dataset:d]\nnoise = 0.5\nplugin = good-data\nn = 40\n";
  const char *c = "[dataset:d]\nplugin = good-data\nn = 40\nnoise = 0.5\n"
                  "[method:m]\nplugin = good-baseline\nk = 1;2\n"
                  "[method:o]\nplugin = good-baseline\nrate = 0.2\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) ea = fg_experiment_load_data (a, -1, "a.exp", NULL, NULL, &error);
  g_autoptr (FgExperiment) eb = fg_experiment_load_data (b, -1, "b.exp", NULL, NULL, &error);
  g_autoptr (FgExperiment) ec = fg_experiment_load_data (c, -1, "c.exp", NULL, NULL, &error);
  FgCellInfo ia, ib, ic;

  g_assert_no_error (error);
  g_assert_cmpuint (fg_experiment_get_n_cells (ea), ==, 3);
  g_assert_cmpuint (fg_experiment_get_n_cells (eb), ==, 3);
  for (guint i = 0; i < 3; i++)
    {
      fg_experiment_get_cell (ea, i, &ia);
      fg_experiment_get_cell (eb, i, &ib);
      fg_experiment_get_cell (ec, i, &ic);
      g_assert_cmpstr (ia.key, ==, ib.key);
      if (strcmp (ia.method, "o") == 0)
        g_assert_cmpstr (ia.key, !=, ic.key);
      else
        g_assert_cmpstr (ia.key, ==, ic.key);
    }
  fg_experiment_get_cell (ea, 0, &ia);
  fg_experiment_get_cell (ea, 1, &ib);
  g_assert_cmpstr (ia.key, !=, ib.key);
}

/* ---- running --------------------------------------------------------------------------------- */

static FgExperiment *
load_data_file (FgRegistry *reg, const char *name)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "data", name, NULL);
  g_autoptr (GError) error = NULL;
  FgExperiment *exp = fg_experiment_load (path, reg, &error);
  g_assert_no_error (error);
  return exp;
}

static void
run_ok (FgExperiment *exp, const char *out, guint jobs, gboolean retry, FgRunSummary *summary)
{
  FgRunOptions opts = { 0 };
  g_autoptr (GError) error = NULL;
  opts.out_dir = out;
  opts.quiet = TRUE;
  opts.jobs = jobs;
  opts.retry_failed = retry;
  g_assert_true (fg_experiment_run (exp, &opts, summary, &error));
  g_assert_no_error (error);
}

static GHashTable *
load_records (const char *out)
{
  g_autofree char *text = read_file (out, "results.jsonl");
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  GHashTable *records = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                               (GDestroyNotify) json_object_unref);
  for (guint i = 0; lines[i]; i++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autoptr (GError) error = NULL;
      JsonObject *obj;
      if (*lines[i] == '\0')
        continue;
      json_parser_load_from_data (parser, lines[i], -1, &error);
      g_assert_no_error (error);
      obj = json_node_get_object (json_parser_get_root (parser));
      g_hash_table_replace (records, g_strdup (json_object_get_string_member (obj, "key")),
                            json_object_ref (obj));
    }
  return records;
}

static void
test_run_end_to_end (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (FgExperiment) exp = load_data_file (reg, "tiny.exp");
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  g_autofree char *results = NULL, *results2 = NULL, *md = NULL, *csv = NULL, *tex = NULL;
  g_autofree char *copy = NULL;
  g_autoptr (GHashTable) records = NULL;
  FgRunSummary s;

  g_assert_cmpstr (fg_experiment_get_title (exp), ==, "tiny");
  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, 6);
  {
    g_autofree char *def = fg_experiment_default_out_dir (exp);
    g_assert_true (g_str_has_suffix (def, G_DIR_SEPARATOR_S "tiny.out"));
  }
  run_ok (exp, out, 1, FALSE, &s);
  g_assert_cmpuint (s.n_cells, ==, 6);
  g_assert_cmpuint (s.n_ok, ==, 6);
  g_assert_cmpuint (s.n_failed + s.n_skipped + s.n_cancelled, ==, 0);

  results = read_file (out, "results.jsonl");
  g_assert_cmpuint (count_lines (results), ==, 6);
  records = load_records (out);
  for (guint i = 0; i < fg_experiment_get_n_cells (exp); i++)
    {
      FgCellInfo info;
      JsonObject *rec;
      double acc;
      fg_experiment_get_cell (exp, i, &info);
      rec = g_hash_table_lookup (records, info.key);
      g_assert_nonnull (rec);
      g_assert_cmpstr (json_object_get_string_member (rec, "status"), ==, "ok");
      g_assert_cmpstr (json_object_get_string_member (rec, "dataset"), ==, "blobs");
      g_assert_cmpstr (json_object_get_string_member (rec, "method"), ==, info.method);
      g_assert_cmpstr (json_object_get_string_member (rec, "plugin"), ==, "template-centroid");
      g_assert_cmpint (json_object_get_int_member (rec, "seed"), ==, (gint64) info.seed);
      g_assert_true (json_object_get_null_member (rec, "error"));
      g_assert_true (json_object_has_member (rec, "params"));
      g_assert_true (json_object_has_member (json_object_get_object_member (rec, "params"),
                                             "shrink"));
      g_assert_cmpint (json_object_get_int_member (rec, "n_labeled"), ==, 12);
      g_assert_cmpint (json_object_get_int_member (rec, "n_val"), ==, 30);
      g_assert_cmpint (json_object_get_int_member (rec, "n_test"), ==, 100);
      g_assert_nonnull (json_object_get_string_member (rec, "split"));
      g_assert_nonnull (json_object_get_string_member (rec, "config"));
      acc = json_object_get_double_member (rec, "test_accuracy");
      g_assert_cmpfloat (acc, >, 0.5);
      g_assert_cmpfloat (acc, <=, 1.0);
      g_assert_cmpfloat (json_object_get_double_member (rec, "val_accuracy"), >=, 0.0);
      g_assert_cmpfloat (json_object_get_double_member (rec, "test_nll"), >=, 0.0);
      g_assert_cmpfloat (json_object_get_double_member (rec, "test_ece"), >=, 0.0);
      g_assert_cmpfloat (json_object_get_double_member (rec, "test_ece"), <=, 1.0);
      g_assert_cmpfloat (json_object_get_double_member (rec, "seconds"), >=, 0.0);
    }

  /* The table files, and the copy of the experiment. */
  md = read_file (out, "table.md");
  csv = read_file (out, "table.csv");
  tex = read_file (out, "table.tex");
  copy = read_file (out, "experiment.exp");
  g_assert_nonnull (strstr (md, "| centroid |"));
  g_assert_nonnull (strstr (md, "| centroid-u |"));
  g_assert_nonnull (strstr (md, "blobs"));
  g_assert_nonnull (strstr (md, "**"));
  g_assert_true (g_str_has_prefix (csv, "dataset,method,metric,mean,std,n,params,seed,status\n"));
  g_assert_nonnull (strstr (csv, "blobs,centroid,test_accuracy,"));
  g_assert_nonnull (strstr (csv, "blobs,centroid-u,test_nll,"));
  g_assert_nonnull (strstr (tex, "\\toprule"));
  g_assert_nonnull (strstr (tex, "\\textbf{"));
  g_assert_nonnull (strstr (copy, "[method:centroid-u]"));

  /* Rendering again from the directory alone gives the same table. */
  {
    g_autoptr (GError) error = NULL;
    g_autofree char *again = fg_table_render_dir (out, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (again, ==, md);
  }

  /* A second run computes nothing and leaves the results alone. */
  run_ok (exp, out, 1, FALSE, &s);
  g_assert_cmpuint (s.n_skipped, ==, s.n_cells);
  g_assert_cmpuint (s.n_ok + s.n_failed + s.n_cancelled, ==, 0);
  results2 = read_file (out, "results.jsonl");
  g_assert_cmpstr (results, ==, results2);

  /* The same cells on three threads give the same numbers: cells are reproducible. */
  {
    g_autofree char *out3 = g_build_filename (tmp, "out3", NULL);
    g_autoptr (GHashTable) records3 = NULL;
    GHashTableIter it;
    gpointer key, value;
    run_ok (exp, out3, 3, FALSE, &s);
    g_assert_cmpuint (s.n_ok, ==, 6);
    records3 = load_records (out3);
    g_hash_table_iter_init (&it, records);
    while (g_hash_table_iter_next (&it, &key, &value))
      {
        JsonObject *r3 = g_hash_table_lookup (records3, key);
        g_assert_nonnull (r3);
        g_assert_cmpfloat (json_object_get_double_member (value, "test_accuracy"), ==,
                           json_object_get_double_member (r3, "test_accuracy"));
        g_assert_cmpstr (json_object_get_string_member (value, "split"), ==,
                         json_object_get_string_member (r3, "split"));
      }
  }
  rm_rf (tmp);
}

static void
test_run_torn_line (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (FgExperiment) exp = load_data_file (reg, "tiny.exp");
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *results = NULL, *torn = NULL, *after = NULL, *repaired = NULL;
  g_autofree char *path = g_build_filename (tmp, "results.jsonl", NULL);
  FgRunSummary s;
  char *last_nl;

  run_ok (exp, tmp, 1, FALSE, &s);
  results = read_file (tmp, "results.jsonl");

  /* A crash in the middle of writing a record: the last line is cut short. */
  torn = g_strconcat (results, "{\"key\": \"blobs/centroid/0/abc\", \"stat", NULL);
  write_file (tmp, "results.jsonl", torn);
  g_test_expect_message ("flowgmm", G_LOG_LEVEL_WARNING, "*results.jsonl:7: skipping*");
  run_ok (exp, tmp, 1, FALSE, &s);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (s.n_skipped, ==, s.n_cells);

  /* A lost record: its cell runs again, and the file is repaired first. */
  last_nl = strrchr (results, '\n');
  *last_nl = '\0';
  last_nl = strrchr (results, '\n');
  last_nl[1] = '\0'; /* the first five records */
  torn = (g_free (torn), g_strconcat (results, "{\"key\": \"blobs/cen", NULL));
  write_file (tmp, "results.jsonl", torn);
  g_test_expect_message ("flowgmm", G_LOG_LEVEL_WARNING, "*skipping a damaged record*");
  run_ok (exp, tmp, 1, FALSE, &s);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (s.n_skipped, ==, 5);
  g_assert_cmpuint (s.n_ok, ==, 1);
  repaired = read_file (tmp, "results.jsonl");
  g_assert_cmpuint (count_lines (repaired), ==, 6);
  g_assert_null (strstr (repaired, "\"blobs/cen\n"));
  g_assert_true (g_str_has_prefix (repaired, results));
  /* And it reads back without warnings. */
  run_ok (exp, tmp, 1, FALSE, &s);
  g_assert_cmpuint (s.n_skipped, ==, 6);
  rm_rf (tmp);
}

/* "{seed}" in a dataset's path loads one data set per seed; in a method's path it names one
 * file per cell. */
static void
test_run_seed_paths (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  g_autofree char *text = g_strdup_printf ("[experiment]\nseeds = 0;1\n"
                                           "[dataset:d]\nplugin = good-data\n"
                                           "n_file = %s/n-{seed}.txt\nlabeled = 4\n"
                                           "[method:m]\nplugin = good-baseline\n"
                                           "file = %s/fit-{seed}.txt\n", tmp, tmp);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = NULL;
  g_autoptr (GHashTable) records = NULL;
  FgRunSummary s;

  write_file (tmp, "n-0.txt", "30\n");
  write_file (tmp, "n-1.txt", "50\n");
  exp = fg_experiment_load_data (text, -1, "seed.exp", NULL, reg, &error);
  g_assert_no_error (error);
  run_ok (exp, out, 1, FALSE, &s);
  g_assert_cmpuint (s.n_ok, ==, 2);
  records = load_records (out);
  for (guint i = 0; i < 2; i++)
    {
      FgCellInfo info;
      JsonObject *rec;
      g_autofree char *fit = NULL;
      fg_experiment_get_cell (exp, i, &info);
      rec = g_hash_table_lookup (records, info.key);
      /* 30 or 50 training rows: 4 labeled, the rest unlabeled. */
      g_assert_cmpint (json_object_get_int_member (rec, "n_unlabeled"), ==,
                       info.seed == 0 ? 26 : 46);
      fit = read_file (tmp, info.seed == 0 ? "fit-0.txt" : "fit-1.txt");
      g_assert_cmpstr (fit, ==, "4\n");
    }
  rm_rf (tmp);
}

/* The labeled_indices path that a run of `text` (one cell) resolved, from results.jsonl. */
static char *
resolved_indices_path (FgRegistry *reg, const char *text, const char *base_dir)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = fg_experiment_load_data (text, -1, "data.exp", base_dir, reg,
                                                          &error);
  g_autofree char *out = make_tmpdir ();
  g_autoptr (GHashTable) records = NULL;
  FgCellInfo info;
  FgRunSummary s;
  JsonObject *rec;

  g_assert_no_error (error);
  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, 1);
  run_ok (exp, out, 1, FALSE, &s);
  g_assert_cmpuint (s.n_ok, ==, 1);
  records = load_records (out);
  fg_experiment_get_cell (exp, 0, &info);
  rec = g_hash_table_lookup (records, info.key);
  g_assert_nonnull (rec);
  return g_strdup (json_object_get_string_member (
      json_object_get_object_member (rec, "dataset_params"), "labeled_indices"));
}

/* "{data}/..." paths go to [experiment] data_dir (relative to the file), else to
 * $FLOWGMM_DATA_DIR, else to the configured directory; nothing else is expanded. */
static void
test_data_dir (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autofree char *key_dir = make_tmpdir ();
  g_autofree char *env_dir = make_tmpdir ();
  g_autofree char *base = g_path_get_dirname (key_dir);
  g_autofree char *key_rel = g_path_get_basename (key_dir);
  g_autofree char *key_file = g_build_filename (key_dir, "lab.txt", NULL);
  g_autofree char *env_file = g_build_filename (env_dir, "lab.txt", NULL);
  g_autofree char *with_key = NULL, *path = NULL;
  const char *body = "[dataset:d]\nplugin = template-blobs\nn = 60\nclasses = 2\n"
                     "labeled_indices = {data}/lab.txt\n" METHOD;
  const char *raw = "[dataset:d]\nplugin = template-blobs\nn = 60\nclasses = 2\n"
                    "labeled_indices = {data}x/lab.txt\n" METHOD;
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_set_contents (key_file, "0 1 2 3\n", -1, NULL));
  g_assert_true (g_file_set_contents (env_file, "4 5 6 7\n", -1, NULL));

  g_setenv ("FLOWGMM_DATA_DIR", env_dir, TRUE);
  path = resolved_indices_path (reg, body, base);
  g_assert_cmpstr (path, ==, env_file);
  g_clear_pointer (&path, g_free);

  /* The key wins over the environment, and is relative to the experiment file. */
  with_key = g_strdup_printf ("[experiment]\ndata_dir = %s\n%s", key_rel, body);
  path = resolved_indices_path (reg, with_key, base);
  g_assert_cmpstr (path, ==, key_file);
  g_clear_pointer (&path, g_free);

  /* Not "{data}" followed by '/' or the end: an ordinary relative path (which is missing). */
  {
    g_autoptr (FgExperiment) exp = fg_experiment_load_data (raw, -1, "raw.exp", base, reg,
                                                            &error);
    g_autofree char *out = make_tmpdir ();
    FgRunSummary s;
    g_assert_no_error (error);
    run_ok (exp, out, 1, FALSE, &s);
    g_assert_cmpuint (s.n_ok, ==, 0);
  }

  g_unsetenv ("FLOWGMM_DATA_DIR");
  assert_load_error (reg, "[experiment]\ndata_dir =\n" DATASET METHOD,
                     FG_EXPERIMENT_ERROR_BAD_VALUE, "experiment", "data_dir");
}

static void
test_run_failing_cells (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (FgExperiment) exp = load_data_file (reg, "fail.exp");
  g_autofree char *tmp = make_tmpdir ();
  g_autoptr (GHashTable) records = NULL;
  g_autofree char *md = NULL, *csv = NULL;
  FgRunSummary s;
  guint n_error = 0;

  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, 6);
  run_ok (exp, tmp, 2, FALSE, &s);
  g_assert_cmpuint (s.n_ok, ==, 2);
  g_assert_cmpuint (s.n_failed, ==, 4);

  records = load_records (tmp);
  g_assert_cmpuint (g_hash_table_size (records), ==, 6);
  for (guint i = 0; i < 6; i++)
    {
      FgCellInfo info;
      JsonObject *rec;
      fg_experiment_get_cell (exp, i, &info);
      rec = g_hash_table_lookup (records, info.key);
      g_assert_nonnull (rec);
      if (strcmp (json_object_get_string_member (rec, "status"), "error") == 0)
        {
          n_error++;
          g_assert_nonnull (strstr (json_object_get_string_member (rec, "error"),
                                    "NaN (on purpose)"));
          g_assert_true (json_object_get_null_member (rec, "test_accuracy"));
        }
      else
        g_assert_cmpfloat (json_object_get_double_member (rec, "test_accuracy"), >, 0.5);
    }
  g_assert_cmpuint (n_error, ==, 4);

  md = read_file (tmp, "table.md");
  g_assert_nonnull (strstr (md, "| broken | error |"));
  g_assert_null (strstr (md, "| knn | error |"));
  csv = read_file (tmp, "table.csv");
  g_assert_nonnull (strstr (csv, "clusters,knn,test_accuracy,"));
  g_assert_nonnull (strstr (csv, ",fail=false,"));
  g_assert_nonnull (strstr (csv, "clusters,broken,test_accuracy,,,0,,,error\n"));

  /* Error cells are results: a rerun skips them, --retry-failed runs them again. */
  run_ok (exp, tmp, 1, FALSE, &s);
  g_assert_cmpuint (s.n_skipped, ==, 6);
  run_ok (exp, tmp, 1, TRUE, &s);
  g_assert_cmpuint (s.n_skipped, ==, 2);
  g_assert_cmpuint (s.n_failed, ==, 4);
  rm_rf (tmp);
}

/* A cell that crashes its worker process is stored as that cell's error, naming the signal,
 * the component and the phase; the other cells run; --retry-failed runs them again. */
static void
test_run_crash_isolated (void)
{
  static const struct { const char *method, *message; } expected[] = {
    { "segv", "crashed: SIGSEGV in baseline 'crash-baseline' during fit" },
    { "abort", "crashed: SIGABRT in baseline 'crash-baseline' during create" },
    { "oom", "crashed: SIGKILL (killed; out of memory?) in baseline 'crash-baseline' during "
             "predict" },
    { "exit", "crashed: exit status 3 in baseline 'crash-baseline' during fit" },
  };
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (FgExperiment) exp = load_data_file (reg, "crash.exp");
  g_autofree char *tmp = make_tmpdir ();
  g_autoptr (GHashTable) records = NULL;
  g_autofree char *md = NULL;
  FgRunSummary s;

  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, 12);
  for (guint jobs = 1; jobs <= 2; jobs++)
    {
      g_autofree char *out = g_strdup_printf ("%s/j%u", tmp, jobs);
      run_ok (exp, out, jobs, FALSE, &s);
      g_assert_cmpuint (s.n_ok, ==, 4);
      g_assert_cmpuint (s.n_failed, ==, 8);
      g_assert_cmpuint (s.n_cancelled, ==, 0);
      g_clear_pointer (&records, g_hash_table_unref);
      records = load_records (out);
      g_assert_cmpuint (g_hash_table_size (records), ==, 12);
      for (guint i = 0; i < 12; i++)
        {
          FgCellInfo info;
          JsonObject *rec;
          const char *want = NULL;
          fg_experiment_get_cell (exp, i, &info);
          rec = g_hash_table_lookup (records, info.key);
          g_assert_nonnull (rec);
          for (guint k = 0; k < G_N_ELEMENTS (expected); k++)
            if (strcmp (info.method, expected[k].method) == 0)
              want = expected[k].message;
          if (want == NULL)
            g_assert_cmpstr (json_object_get_string_member (rec, "status"), ==, "ok");
          else
            {
              g_assert_cmpstr (json_object_get_string_member (rec, "status"), ==, "error");
              g_assert_cmpstr (json_object_get_string_member (rec, "error"), ==, want);
            }
        }
      g_free (md);
      md = read_file (out, "table.md");
      g_assert_nonnull (strstr (md, "| segv | error |"));
      g_assert_nonnull (strstr (md, "| after |"));
      g_assert_null (strstr (md, "| after | error |"));
    }
  /* Stored: a rerun skips the crashed cells, --retry-failed runs them (and they crash again). */
  {
    g_autofree char *out = g_strdup_printf ("%s/j1", tmp);
    run_ok (exp, out, 1, FALSE, &s);
    g_assert_cmpuint (s.n_skipped, ==, 12);
    run_ok (exp, out, 2, TRUE, &s);
    g_assert_cmpuint (s.n_skipped, ==, 4);
    g_assert_cmpuint (s.n_failed, ==, 8);
  }
  rm_rf (tmp);
}

/* Worker processes store exactly the numbers the in-process runner stores. */
static void
test_run_isolated_identical (void)
{
  static const char *const same[] = { "val_accuracy", "test_accuracy", "val_nll", "test_nll",
                                      "val_ece", "test_ece", "split", "params_text", "status" };
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (FgExperiment) exp = load_data_file (reg, "tiny.exp");
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *a = g_build_filename (tmp, "in-process", NULL);
  g_autofree char *b = g_build_filename (tmp, "workers", NULL);
  g_autoptr (GHashTable) ra = NULL, rb = NULL;
  g_autoptr (GError) error = NULL;
  FgRunOptions opts = { 0 };
  FgRunSummary s;

  opts.out_dir = a;
  opts.quiet = TRUE;
  opts.jobs = 2;
  opts.no_isolate = TRUE;
  g_assert_true (fg_experiment_run (exp, &opts, &s, &error));
  g_assert_no_error (error);
  run_ok (exp, b, 2, FALSE, &s);
  g_assert_cmpuint (s.n_ok, ==, 6);
  ra = load_records (a);
  rb = load_records (b);
  g_assert_cmpuint (g_hash_table_size (ra), ==, 6);
  for (guint i = 0; i < 6; i++)
    {
      FgCellInfo info;
      JsonObject *x, *y;
      fg_experiment_get_cell (exp, i, &info);
      x = g_hash_table_lookup (ra, info.key);
      y = g_hash_table_lookup (rb, info.key);
      g_assert_nonnull (x);
      g_assert_nonnull (y);
      for (guint k = 0; k < G_N_ELEMENTS (same); k++)
        {
          JsonNode *nx = json_object_get_member (x, same[k]);
          JsonNode *ny = json_object_get_member (y, same[k]);
          g_assert_nonnull (nx);
          g_assert_true (json_node_equal (nx, ny));
        }
    }
  rm_rf (tmp);
}

/* A plugin file that changed after its cells were stored makes them stale: counted and kept,
 * marked in the table, computed again only with rerun_stale. */
static void
test_run_stale (void)
{
  const char *fdir = g_getenv ("FG_FIXTURE_PLUGIN_DIR");
  g_autofree char *fdefault = g_test_build_filename (G_TEST_BUILT, "plugins", ".libs", NULL);
  g_autofree char *good_so = g_build_filename (fdir ? fdir : fdefault, "good.so", NULL);
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *copy = g_build_filename (tmp, "good.so", NULL);
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  g_autofree char *contents = NULL, *md = NULL;
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  g_autoptr (FgExperiment) exp = NULL;
  g_autoptr (GHashTable) records = NULL;
  g_autoptr (GError) error = NULL;
  FgRunOptions opts = { 0 };
  FgRunSummary s;
  gsize len;
  FgCellInfo info;
  JsonObject *prov;
  JsonArray *comps;

  g_file_get_contents (good_so, &contents, &len, &error);
  g_assert_no_error (error);
  g_file_set_contents (copy, contents, (gssize) len, &error);
  g_assert_no_error (error);
  fg_registry_load_file (reg, copy, &error);
  g_assert_no_error (error);
  exp = fg_experiment_load_data ("[experiment]\nseeds = 0;1\nselect = mean-std\n"
                                 "[dataset:d]\nplugin = good-data\nn = 40\nlabeled_per_class = 2\n"
                                 "validation = 10\n[method:knn]\nplugin = good-baseline\n",
                                 -1, "stale.exp", tmp, reg, &error);
  g_assert_no_error (error);
  run_ok (exp, out, 1, FALSE, &s);
  g_assert_cmpuint (s.n_ok, ==, 2);
  g_assert_cmpuint (s.n_stale, ==, 0);

  /* Every component with its plugin, version, file and digest; the BLAS kernel. */
  records = load_records (out);
  fg_experiment_get_cell (exp, 0, &info);
  prov = json_object_get_object_member (g_hash_table_lookup (records, info.key), "provenance");
  g_assert_nonnull (prov);
  g_assert_cmpstr (json_object_get_string_member (json_object_get_object_member (prov, "flowgmm"),
                                                  "version"), ==, fg_version ());
  g_assert_true (json_object_has_member (json_object_get_object_member (prov, "blas"), "kernel"));
  comps = json_object_get_array_member (prov, "components");
  g_assert_cmpuint (json_array_get_length (comps), ==, 2);
  for (guint i = 0; i < 2; i++)
    {
      JsonObject *c = json_array_get_object_element (comps, i);
      g_assert_cmpstr (json_object_get_string_member (c, "kind"), ==, i == 0 ? "dataset" : "baseline");
      g_assert_cmpstr (json_object_get_string_member (c, "name"), ==, i == 0 ? "good-data" : "good-baseline");
      g_assert_cmpstr (json_object_get_string_member (c, "plugin"), ==, "good");
      g_assert_cmpstr (json_object_get_string_member (c, "version"), ==, "1.0");
      g_assert_cmpstr (json_object_get_string_member (c, "file"), ==, copy);
      g_assert_cmpuint (strlen (json_object_get_string_member (c, "sha256")), ==, 64);
    }

  /* The plugin file changes (a rebuild): its cells are stale, kept and marked. */
  {
    g_autoptr (GString) more = g_string_new_len (contents, (gssize) len);
    g_string_append (more, "rebuilt");
    g_file_set_contents (copy, more->str, (gssize) more->len, &error);
    g_assert_no_error (error);
  }
  run_ok (exp, out, 1, FALSE, &s);
  g_assert_cmpuint (s.n_stale, ==, 2);
  g_assert_cmpuint (s.n_skipped, ==, 2);
  g_assert_cmpuint (s.n_ok, ==, 0);
  md = read_file (out, "table.md");
  g_assert_nonnull (strstr (md, " † |"));
  g_assert_nonnull (strstr (md, "has changed since"));
  g_free (md);

  opts.out_dir = out;
  opts.quiet = TRUE;
  opts.rerun_stale = TRUE;
  g_assert_true (fg_experiment_run (exp, &opts, &s, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (s.n_ok, ==, 2);
  md = read_file (out, "table.md");
  g_assert_null (strstr (md, "†"));
  run_ok (exp, out, 1, FALSE, &s);
  g_assert_cmpuint (s.n_stale, ==, 0);
  rm_rf (tmp);
}

static void
test_run_cancelled (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (FgExperiment) exp = load_data_file (reg, "tiny.exp");
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *results = g_build_filename (tmp, "results.jsonl", NULL);
  g_autoptr (GError) error = NULL;
  volatile gint cancel = 1;
  FgRunOptions opts = { 0 };
  FgRunSummary s;

  opts.out_dir = tmp;
  opts.quiet = TRUE;
  opts.cancel = &cancel;
  g_assert_true (fg_experiment_run (exp, &opts, &s, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (s.n_cancelled, ==, 6);
  g_assert_cmpuint (s.n_ok + s.n_failed, ==, 0);
  g_assert_false (g_file_test (results, G_FILE_TEST_EXISTS));
  /* Nothing was lost: the next run does them all. */
  run_ok (exp, tmp, 1, FALSE, &s);
  g_assert_cmpuint (s.n_ok, ==, 6);
  rm_rf (tmp);
}

static void
test_run_other_experiment (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (FgExperiment) tiny = load_data_file (reg, "tiny.exp");
  g_autoptr (FgExperiment) fail = load_data_file (reg, "fail.exp");
  g_autofree char *tmp = make_tmpdir ();
  g_autoptr (GError) error = NULL;
  FgRunOptions opts = { 0 };
  FgRunSummary s;

  run_ok (tiny, tmp, 1, FALSE, &s);
  opts.out_dir = tmp;
  opts.quiet = TRUE;
  g_assert_false (fg_experiment_run (fail, &opts, &s, &error));
  g_assert_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_RESULTS);
  g_assert_nonnull (strstr (error->message, "tiny"));
  rm_rf (tmp);
}

static void
test_run_unwritable (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (FgExperiment) exp = load_data_file (reg, "tiny.exp");
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *out = g_build_filename (tmp, "a-file", "out", NULL);
  g_autoptr (GError) error = NULL;
  FgRunOptions opts = { 0 };
  FgRunSummary s;

  write_file (tmp, "a-file", "not a directory\n");
  opts.out_dir = out;
  opts.quiet = TRUE;
  g_assert_false (fg_experiment_run (exp, &opts, &s, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_IO);
  g_assert_cmpuint (s.n_ok + s.n_failed, ==, 0);
  rm_rf (tmp);
}

/* A metric asked for after the cells were stored: those cells run again. */
static void
test_run_new_metric (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "data", "tiny.exp", NULL);
  g_autofree char *text = NULL;
  g_autofree char *acc_only = NULL;
  g_autofree char *tmp = make_tmpdir ();
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = NULL;
  g_autoptr (GHashTable) records = NULL;
  FgCellInfo info;
  FgRunSummary s;
  char *m;

  g_file_get_contents (path, &text, NULL, &error);
  g_assert_no_error (error);
  acc_only = g_strdup (text);
  m = strstr (acc_only, "metrics = accuracy;nll;ece");
  g_assert_nonnull (m);
  memcpy (m, "metrics = accuracy        ", strlen ("metrics = accuracy;nll;ece"));

  exp = fg_experiment_load_data (acc_only, -1, "tiny.exp", NULL, reg, &error);
  g_assert_no_error (error);
  run_ok (exp, tmp, 1, FALSE, &s);
  g_assert_cmpuint (s.n_ok, ==, 6);
  records = load_records (tmp);
  fg_experiment_get_cell (exp, 0, &info);
  g_assert_false (json_object_has_member (g_hash_table_lookup (records, info.key), "test_nll"));
  g_clear_pointer (&exp, fg_experiment_free);
  g_clear_pointer (&records, g_hash_table_unref);

  exp = fg_experiment_load_data (text, -1, "tiny.exp", NULL, reg, &error);
  g_assert_no_error (error);
  run_ok (exp, tmp, 1, FALSE, &s);
  g_assert_cmpuint (s.n_skipped, ==, 0);
  g_assert_cmpuint (s.n_ok, ==, 6);
  records = load_records (tmp);
  fg_experiment_get_cell (exp, 0, &info);
  g_assert_true (json_object_has_member (g_hash_table_lookup (records, info.key), "test_nll"));
  run_ok (exp, tmp, 1, FALSE, &s);
  g_assert_cmpuint (s.n_skipped, ==, 6);
  rm_rf (tmp);
}

/* ---- selection on hand-made results ---------------------------------------------------------- */

static const char selection_exp[] =
  "[experiment]\n"
  "title = selection\n"
  "seeds = 0;1;2\n"
  "select = %s\n"
  "metrics = accuracy;nll\n"
  "[dataset:d1]\nplugin = p\n"
  "[dataset:d2]\nplugin = p\n"
  "[method:a]\nplugin = q\nk = 1;2\n"
  "[method:b]\nplugin = q\n"
  "[method:c]\nplugin = q\ndatasets = d1\n";

/* Per (dataset, method, point, seed): val, test accuracy; NAN: an error; -1: not stored. */
typedef struct {
  const char *dataset, *method;
  guint point;
  guint64 seed;
  double val, test;
} Fake;

static const Fake fakes[] = {
  /* d1/a point 0 (k=1): best single val 0.90 at seed 1 -> test 0.70; mean val 0.80. */
  { "d1", "a", 0, 0, 0.80, 0.60 },
  { "d1", "a", 0, 1, 0.90, 0.70 },
  { "d1", "a", 0, 2, 0.70, 0.80 },
  /* d1/a point 1 (k=2): mean val 0.85 (best mean), best single 0.88. */
  { "d1", "a", 1, 0, 0.85, 0.90 },
  { "d1", "a", 1, 1, 0.88, 0.50 },
  { "d1", "a", 1, 2, 0.82, 0.70 },
  /* d1/b: a tie at val 0.75 between seeds 0 and 2: the earlier wins; seed 1 failed. */
  { "d1", "b", 0, 0, 0.75, 0.65 },
  { "d1", "b", 0, 1, NAN, NAN },
  { "d1", "b", 0, 2, 0.75, 0.99 },
  /* d1/c: errors only. */
  { "d1", "c", 0, 0, NAN, NAN },
  /* d2/a: only one cell stored; d2/b: nothing stored. */
  { "d2", "a", 1, 2, 0.60, 0.55 },
};

static void
write_fake_results (FgExperiment *exp, const char *dir)
{
  g_autoptr (GString) s = g_string_new (NULL);
  for (guint i = 0; i < fg_experiment_get_n_cells (exp); i++)
    {
      FgCellInfo info;
      fg_experiment_get_cell (exp, i, &info);
      for (guint f = 0; f < G_N_ELEMENTS (fakes); f++)
        {
          const Fake *fk = &fakes[f];
          char v[G_ASCII_DTOSTR_BUF_SIZE], t[G_ASCII_DTOSTR_BUF_SIZE];
          if (strcmp (fk->dataset, info.dataset) != 0 || strcmp (fk->method, info.method) != 0
              || fk->point != info.point || fk->seed != info.seed)
            continue;
          if (isnan (fk->val))
            g_string_append_printf (s, "{\"key\": \"%s\", \"dataset\": \"%s\", \"method\": \"%s\", "
                                    "\"seed\": %u, \"status\": \"error\", \"error\": \"boom\"}\n",
                                    info.key, info.dataset, info.method, (guint) info.seed);
          else
            g_string_append_printf (s, "{\"key\": \"%s\", \"dataset\": \"%s\", \"method\": \"%s\", "
                                    "\"seed\": %u, \"status\": \"ok\", \"error\": null, "
                                    "\"val_accuracy\": %s, \"test_accuracy\": %s, "
                                    "\"val_nll\": 1.0, \"test_nll\": 2.0}\n",
                                    info.key, info.dataset, info.method, (guint) info.seed,
                                    g_ascii_dtostr (v, sizeof v, fk->val),
                                    g_ascii_dtostr (t, sizeof t, fk->test));
        }
    }
  /* A stale record of a cell no longer in the experiment is ignored. */
  g_string_append (s, "{\"key\": \"d1/a/0/0000\", \"dataset\": \"d1\", \"method\": \"a\", "
                      "\"status\": \"ok\", \"val_accuracy\": 1.0, \"test_accuracy\": 1.0}\n");
  write_file (dir, "results.jsonl", s->str);
}

static char *
render_selection (const char *rule, char **csv)
{
  g_autofree char *text = g_strdup_printf (selection_exp, rule);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = fg_experiment_load_data (text, -1, "selection.exp", NULL, NULL,
                                                          &error);
  g_autofree char *tmp = make_tmpdir ();
  char *md;

  g_assert_no_error (error);
  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, (2 * 3 + 3) * 2 + 3);
  write_file (tmp, "experiment.exp", text);
  write_fake_results (exp, tmp);
  md = fg_table_render_dir (tmp, &error);
  g_assert_no_error (error);
  *csv = read_file (tmp, "table.csv");
  if (g_test_verbose ())
    g_test_message ("%s\n%s", md, *csv);
  rm_rf (tmp);
  return md;
}

static void
test_select_best_validation (void)
{
  g_autofree char *csv = NULL;
  g_autofree char *md = render_selection ("best-validation", &csv);

  /* d1/a: the single best validation cell is k=1 seed 1 (val 0.90), test 0.70. */
  g_assert_nonnull (strstr (csv, "d1,a,test_accuracy,0.7,,1,k=1,1,ok\n"));
  g_assert_nonnull (strstr (csv, "d1,a,val_accuracy,0.9,,1,k=1,1,ok\n"));
  /* d1/b: tie at 0.75: seed 0 (earlier), test 0.65, not the 0.99 of seed 2. */
  g_assert_nonnull (strstr (csv, "d1,b,test_accuracy,0.65,,1,,0,ok\n"));
  g_assert_nonnull (strstr (csv, "d1,c,test_accuracy,,,0,,,error\n"));
  g_assert_nonnull (strstr (csv, "d2,a,test_accuracy,0.55,,1,k=2,2,ok\n"));
  g_assert_nonnull (strstr (csv, "d2,b,test_accuracy,,,0,,,missing\n"));
  g_assert_null (strstr (csv, "d2,c,")); /* c does not run on d2 */
  /* Markdown: percentages with one decimal, the best per dataset in bold. */
  g_assert_nonnull (strstr (md, "| a | **70.0** | **55.0** |"));
  g_assert_nonnull (strstr (md, "| b | 65.0 | – |"));
  g_assert_nonnull (strstr (md, "| c | error | – |"));
}

static void
test_select_mean_std (void)
{
  g_autofree char *csv = NULL;
  g_autofree char *md = render_selection ("mean-std", &csv);

  /* d1/a: point k=2 has the best mean validation (0.85): test 0.90, 0.50, 0.70 -> mean 0.7,
   * sample std 0.2. */
  g_assert_nonnull (strstr (csv, "d1,a,test_accuracy,0.7,0.2,3,k=2,,ok\n"));
  g_assert_nonnull (strstr (csv, "d1,a,val_accuracy,0.85,"));
  /* d1/b: two ok seeds (0.65, 0.99): mean 0.82. */
  g_assert_nonnull (strstr (csv, "d1,b,test_accuracy,0.82,"));
  g_assert_nonnull (strstr (csv, "d1,b,test_nll,2,0,2,,,ok\n"));
  g_assert_nonnull (strstr (md, "| a | 70.0 ± 20.0 |"));
  /* Fewer seeds finished than the caption says: the cell says how many. */
  g_assert_nonnull (strstr (md, "| b | **82.0 ± 24.0** (n = 2) |"));
  g_assert_nonnull (strstr (md, "mean ± std over 3 seeds"));
  g_assert_nonnull (strstr (md, "(n = k): only k seeds finished"));
}

static void
test_select_per_seed (void)
{
  g_autofree char *csv = NULL;
  g_autofree char *md = render_selection ("per-seed", &csv);

  /* d1/a: seed 0 picks k=2 (0.85 > 0.80, test 0.90), seed 1 k=1 (0.90 > 0.88, test 0.70),
   * seed 2 k=2 (0.82 > 0.70, test 0.70): mean 0.766667, sample std 0.11547. */
  g_assert_nonnull (strstr (csv, "d1,a,test_accuracy,0.766667,0.11547,3,"
                                 "seed 0: k=2; seed 1: k=1; seed 2: k=2,,ok\n"));
  g_assert_nonnull (strstr (csv, "d1,a,val_accuracy,0.856667,"));
  /* d1/b: one point, two ok seeds: the same as mean-std. */
  g_assert_nonnull (strstr (csv, "d1,b,test_accuracy,0.82,0.240416,2,,,ok\n"));
  /* d2/a: only seed 2 stored. */
  g_assert_nonnull (strstr (csv, "d2,a,test_accuracy,0.55,0,1,seed 2: k=2,,ok\n"));
  g_assert_nonnull (strstr (md, "| a | 76.7 ± 11.5 |"));
  g_assert_nonnull (strstr (md, "of each seed's grid point"));
}

/* Two method groups with one `row` and disjoint data sets make one row of the table (a grid
 * per dataset group); overlapping data sets are refused. */
static void
test_shared_row (void)
{
  const char *text = "[experiment]\ntitle = rows\nseeds = 0\n"
                     "[dataset:d1]\nplugin = p\n[dataset:d2]\nplugin = p\n"
                     "[method:a]\nplugin = q\nk = 1;2\ndatasets = d1\n"
                     "[method:a-d2]\nplugin = q\nrow = a\nk = 3\ndatasets = d2\n"
                     "[method:b]\nplugin = q\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = fg_experiment_load_data (text, -1, "rows.exp", NULL, NULL,
                                                          &error);
  g_autoptr (FgExperiment) bad = NULL;
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *md = NULL;
  GString *res = g_string_new (NULL);

  g_assert_no_error (error);
  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, 2 + 1 + 2);
  write_file (tmp, "experiment.exp", text);
  for (guint i = 0; i < fg_experiment_get_n_cells (exp); i++)
    {
      FgCellInfo info;
      fg_experiment_get_cell (exp, i, &info);
      g_string_append_printf (res, "{\"key\": \"%s\", \"status\": \"ok\", "
                              "\"val_accuracy\": 0.5, \"test_accuracy\": %s}\n", info.key,
                              strcmp (info.method, "a-d2") == 0 ? "0.25" : "0.75");
    }
  write_file (tmp, "results.jsonl", res->str);
  g_string_free (res, TRUE);
  md = fg_table_render_dir (tmp, &error);
  g_assert_no_error (error);
  g_assert_nonnull (strstr (md, "| Method | d1 | d2 |"));
  g_assert_nonnull (strstr (md, "| a | **75.0** | 25.0 |"));
  g_assert_nonnull (strstr (md, "| b | **75.0** | **75.0** |"));
  g_assert_null (strstr (md, "a-d2"));
  rm_rf (tmp);

  bad = fg_experiment_load_data ("[dataset:d1]\nplugin = p\n[method:a]\nplugin = q\n"
                                 "[method:c]\nplugin = q\nrow = a\n", -1, "bad.exp", NULL,
                                 NULL, &error);
  g_assert_null (bad);
  g_assert_nonnull (strstr (error->message, "bad.exp:7: [method:c] key 'row'"));
  g_assert_nonnull (strstr (error->message, "disjoint"));
}

static void
test_select_swapped_layout (void)
{
  g_autofree char *text = g_strdup_printf (selection_exp, "best-validation");
  g_autofree char *swapped = g_strconcat ("[experiment]\ntable = rows:dataset columns:method "
                                          "metric:val_accuracy\n",
                                          strstr (text, "title"), NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = fg_experiment_load_data (swapped, -1, "selection.exp", NULL,
                                                          NULL, &error);
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *md = NULL, *tex = NULL;

  g_assert_no_error (error);
  write_file (tmp, "experiment.exp", swapped);
  write_fake_results (exp, tmp);
  md = fg_table_render_dir (tmp, &error);
  g_assert_no_error (error);
  g_assert_nonnull (strstr (md, "| Dataset | a | b | c |"));
  g_assert_nonnull (strstr (md, "| d1 | **90.0** | 75.0 | error |"));
  tex = read_file (tmp, "table.tex");
  g_assert_nonnull (strstr (tex, "d1 & \\textbf{90.0} & 75.0 & error \\\\"));
  g_assert_nonnull (strstr (tex, "d2 & \\textbf{60.0} & -- & -- \\\\"));
  rm_rf (tmp);
}

static void
test_table_dir_errors (void)
{
  g_autofree char *tmp = make_tmpdir ();
  g_autoptr (GError) error = NULL;
  g_autofree char *md = fg_table_render_dir (tmp, &error);
  g_assert_null (md);
  g_assert_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_RESULTS);
  rm_rf (tmp);
}

/* [reference:NAME]: published values as extra columns beside the measured ones, by method name
 * or row and data set; keys naming nothing are errors; the cells are not changed by them. */
static void
test_reference_columns (void)
{
  g_autoptr (FgRegistry) reg = test_registry ();
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = make_tmpdir ();
  g_autofree char *out = g_build_filename (tmp, "out", NULL);
  g_autofree char *md = NULL, *tex = NULL, *json = NULL;
  const char *base = "[experiment]\ntitle = ref\nseeds = 0\n"
                     "[dataset:a]\nplugin = template-blobs\nn = 60\nlabeled = 6\nvalidation = 6\n"
                     "[dataset:b]\nplugin = template-blobs\nn = 60\nlabeled = 6\nvalidation = 6\n"
                     "spread = 2\n"
                     "[method:m]\nplugin = template-centroid\nrow = Centroid\n";
  g_autofree char *text = g_strconcat (base, "[reference:paper]\ntitle = Paper\n"
                                       "Centroid/b = 97.36 ± 0.1\n"
                                       "[reference:other]\nm/a = 1|2\n", NULL);
  g_autoptr (FgExperiment) plain = fg_experiment_load_data (base, -1, "ref.exp", tmp, reg, &error);
  g_autoptr (FgExperiment) exp = fg_experiment_load_data (text, -1, "ref.exp", tmp, reg, &error);
  FgCellInfo c1, c2;
  FgRunSummary s;

  g_assert_no_error (error);
  /* The groups change no cell. */
  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, fg_experiment_get_n_cells (plain));
  g_assert_true (fg_experiment_get_cell (exp, 0, &c1) && fg_experiment_get_cell (plain, 0, &c2));
  g_assert_cmpstr (c1.key, ==, c2.key);

  run_ok (exp, out, 1, FALSE, &s);
  md = read_file (out, "table.md");
  tex = read_file (out, "table.tex");
  json = read_file (out, "table.json");
  if (g_test_verbose ())
    g_test_message ("%s", md);
  g_assert_nonnull (strstr (md, "| Method | a | a (other) | b | b (Paper) |"));
  g_assert_nonnull (strstr (md, " | 1\\|2 | "));      /* escaped, as written */
  g_assert_nonnull (strstr (md, " | 97.36 ± 0.1 |\n")); /* by row, last column */
  g_assert_nonnull (strstr (md, "published values"));
  g_assert_nonnull (strstr (tex, "b (Paper)"));
  g_assert_nonnull (strstr (json, "\"Centroid/b\" : \"97.36 ± 0.1\""));

  /* Errors name the group and the key. */
  {
    g_autofree char *t1 = g_strconcat (base, "[reference:p]\nnope/a = 1\n", NULL);
    g_autofree char *t2 = g_strconcat (base, "[reference:p]\nm/c = 1\n", NULL);
    g_autofree char *t3 = g_strconcat (base, "[reference:p]\nm = 1\n", NULL);
    g_autofree char *t4 = g_strconcat (base, "[reference:p]\nm/a =\n", NULL);
    assert_load_error (reg, t1, FG_EXPERIMENT_ERROR_BAD_VALUE, "reference:p", "nope/a");
    assert_load_error (reg, t2, FG_EXPERIMENT_ERROR_BAD_VALUE, "reference:p", "m/c");
    assert_load_error (reg, t3, FG_EXPERIMENT_ERROR_UNKNOWN_KEY, "reference:p", "m");
    assert_load_error (reg, t4, FG_EXPERIMENT_ERROR_BAD_VALUE, "reference:p", "m/a");
  }
  /* A group left out by `methods` or `datasets` may still have published values (running a
   * part of a paper file); names that no group has are still errors. */
  {
    const char *narrowed = "[experiment]\ntitle = ref\nseeds = 0\nmethods = m\ndatasets = a\n"
                           "[dataset:a]\nplugin = template-blobs\nn = 60\nlabeled = 6\n"
                           "[dataset:b]\nplugin = template-blobs\nn = 60\nlabeled = 6\n"
                           "[method:m]\nplugin = template-centroid\n"
                           "[method:n]\nplugin = template-centroid\nrow = Other\n";
    g_autofree char *t5 = g_strconcat (narrowed, "[reference:p]\nOther/a = 1\nm/b = 2\n", NULL);
    g_autofree char *t6 = g_strconcat (narrowed, "[reference:p]\nnope/a = 1\n", NULL);
    g_autoptr (FgExperiment) part = fg_experiment_load_data (t5, -1, "ref.exp", tmp, reg, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (fg_experiment_get_n_cells (part), ==, 1);
    assert_load_error (reg, t6, FG_EXPERIMENT_ERROR_BAD_VALUE, "reference:p", "nope/a");
  }
  rm_rf (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/experiment/errors/not-a-key-file", test_error_not_key_file);
  g_test_add_func ("/experiment/errors/unknown-group", test_error_unknown_group);
  g_test_add_func ("/experiment/errors/unknown-key", test_error_unknown_key);
  g_test_add_func ("/experiment/errors/bad-type", test_error_bad_type);
  g_test_add_func ("/experiment/errors/bad-range", test_error_bad_range);
  g_test_add_func ("/experiment/errors/file-defects", test_error_file_defects);
  g_test_add_func ("/experiment/errors/missing-plugin", test_error_missing_plugin);
  g_test_add_func ("/experiment/errors/unknown-plugin", test_error_unknown_plugin);
  g_test_add_func ("/experiment/errors/grid-in-dataset", test_error_grid_in_dataset);
  g_test_add_func ("/experiment/errors/bad-seeds", test_error_bad_seeds);
  g_test_add_func ("/experiment/errors/experiment-values", test_error_experiment_values);
  g_test_add_func ("/experiment/component-keys", test_component_keys);
  g_test_add_func ("/experiment/grid/counts", test_grid_counts);
  g_test_add_func ("/experiment/grid/cell-keys", test_cell_keys);
  g_test_add_func ("/experiment/run/end-to-end", test_run_end_to_end);
  g_test_add_func ("/experiment/run/torn-line", test_run_torn_line);
  g_test_add_func ("/experiment/run/failing-cells", test_run_failing_cells);
  g_test_add_func ("/experiment/run/crash-isolated", test_run_crash_isolated);
  g_test_add_func ("/experiment/run/isolated-identical", test_run_isolated_identical);
  g_test_add_func ("/experiment/run/seed-paths", test_run_seed_paths);
  g_test_add_func ("/experiment/run/data-dir", test_data_dir);
  g_test_add_func ("/experiment/run/stale", test_run_stale);
  g_test_add_func ("/experiment/run/cancelled", test_run_cancelled);
  g_test_add_func ("/experiment/run/other-experiment", test_run_other_experiment);
  g_test_add_func ("/experiment/run/unwritable", test_run_unwritable);
  g_test_add_func ("/experiment/run/new-metric", test_run_new_metric);
  g_test_add_func ("/experiment/table/reference-columns", test_reference_columns);
  g_test_add_func ("/experiment/select/best-validation", test_select_best_validation);
  g_test_add_func ("/experiment/select/mean-std", test_select_mean_std);
  g_test_add_func ("/experiment/select/per-seed", test_select_per_seed);
  g_test_add_func ("/experiment/select/shared-row", test_shared_row);
  g_test_add_func ("/experiment/select/swapped-layout", test_select_swapped_layout);
  g_test_add_func ("/experiment/table/not-an-output-dir", test_table_dir_errors);
  return g_test_run ();
}
