/* SPDX-License-Identifier: MIT */
/* flowgmm tests — figures: options, capture of a fitted toy model, rendering to PNG/SVG. */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>
#ifdef HAVE_CAIRO
#include <cairo.h>
#endif

#include <flowgmm/flowgmm.h>

/* ---- a toy method with a latent space: z = (x − m)/s, one unit Gaussian per class at the
 * standardised class centroid; predict is the Bayes rule, sample draws z (and maps it back). */

typedef struct {
  guint  K;
  double m[2], s;
  double *mu; /* K × 2 */
} Toy;

static gpointer
toy_create (const FgParams *params, FgRng *rng, GError **error)
{
  return g_new0 (Toy, 1);
}

static gboolean
toy_fit (gpointer data, const FgSplit *split, GError **error)
{
  Toy *t = data;
  double sum[2] = { 0 }, ss = 0, n = 0;
  g_autofree double *cnt = NULL;
  const FgDataPart *parts[2] = { &split->labeled, &split->unlabeled };

  t->K = split->n_classes;
  t->mu = g_new0 (double, 2 * t->K);
  cnt = g_new0 (double, t->K);
  for (int p = 0; p < 2; p++)
    for (gsize i = 0; i < parts[p]->n; i++)
      {
        const float *r = fg_tensor_row (&parts[p]->x, i);
        sum[0] += r[0], sum[1] += r[1], n++;
      }
  t->m[0] = sum[0] / n;
  t->m[1] = sum[1] / n;
  for (int p = 0; p < 2; p++)
    for (gsize i = 0; i < parts[p]->n; i++)
      {
        const float *r = fg_tensor_row (&parts[p]->x, i);
        ss += pow (r[0] - t->m[0], 2) + pow (r[1] - t->m[1], 2);
      }
  t->s = sqrt (ss / (2 * n));
  for (gsize i = 0; i < split->labeled.n; i++)
    {
      const float *r = fg_tensor_row (&split->labeled.x, i);
      gint32 y = split->labeled.y[i];
      t->mu[2 * y] += (r[0] - t->m[0]) / t->s;
      t->mu[2 * y + 1] += (r[1] - t->m[1]) / t->s;
      cnt[y]++;
    }
  for (guint k = 0; k < t->K; k++)
    t->mu[2 * k] /= cnt[k], t->mu[2 * k + 1] /= cnt[k];
  return TRUE;
}

static gboolean
toy_predict (gpointer data, const FgTensor *x, gint32 *labels, float *proba, GError **error)
{
  Toy *t = data;
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    {
      const float *r = fg_tensor_row (x, i);
      double z[2] = { (r[0] - t->m[0]) / t->s, (r[1] - t->m[1]) / t->s }, best = -INFINITY, tot = 0;
      double *lg = g_newa (double, t->K);
      for (guint k = 0; k < t->K; k++)
        {
          lg[k] = -0.5 * (pow (z[0] - t->mu[2 * k], 2) + pow (z[1] - t->mu[2 * k + 1], 2));
          if (lg[k] > best)
            best = lg[k], labels[i] = (gint32) k;
        }
      for (guint k = 0; k < t->K; k++)
        tot += exp (lg[k] - best);
      if (proba)
        for (guint k = 0; k < t->K; k++)
          proba[i * t->K + k] = (float) (exp (lg[k] - best) / tot);
    }
  return TRUE;
}

static gboolean
toy_embed (gpointer data, const FgTensor *x, float *z, GError **error)
{
  Toy *t = data;
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    {
      const float *r = fg_tensor_row (x, i);
      z[2 * i] = (float) ((r[0] - t->m[0]) / t->s);
      z[2 * i + 1] = (float) ((r[1] - t->m[1]) / t->s);
    }
  return TRUE;
}

static gboolean
toy_sample (gpointer data, gint k, gsize n, gboolean latent, double temperature, FgRng *rng,
            float *out, GError **error)
{
  Toy *t = data;
  for (gsize i = 0; i < n; i++)
    {
      guint c = k >= 0 ? (guint) k : (guint) fg_rng_below (rng, t->K);
      for (int j = 0; j < 2; j++)
        {
          double z = t->mu[2 * c + j] + sqrt (temperature) * fg_rng_normal (rng);
          out[2 * i + j] = (float) (latent ? z : z * t->s + t->m[j]);
        }
    }
  return TRUE;
}

static void
toy_destroy (gpointer data)
{
  Toy *t = data;
  g_free (t->mu);
  g_free (t);
}

static const FgBaselineVTable toy_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = toy_create,
  .fit = toy_fit,
  .predict = toy_predict,
  .destroy = toy_destroy,
  .embed = toy_embed,
  .sample = toy_sample,
};

/* The same method as a plugin built before embed/sample existed. */
static const FgBaselineVTable toy_old_vtable = {
  .struct_size = G_STRUCT_OFFSET (FgBaselineVTable, embed),
  .create = toy_create,
  .fit = toy_fit,
  .predict = toy_predict,
  .destroy = toy_destroy,
  .embed = toy_embed, /* beyond struct_size: must not be used */
  .sample = toy_sample,
};

/* Three Gaussian blobs at 120° (dim 2), or the same with a third feature. */
static FgDataset *
blobs (guint dim)
{
  FgDataset *ds = fg_dataset_new ("blobs");
  g_autoptr (GError) error = NULL;
  FgRng rng;
  fg_rng_init (&rng, 7, 1);
  fg_dataset_set_classes (ds, 3, NULL);
  for (int p = 0; p < 2; p++)
    {
      gsize n = p ? 150 : 300;
      FgTensor *x = fg_tensor_new_2d (n, dim);
      gint32 *y = g_new (gint32, n);
      for (gsize i = 0; i < n; i++)
        {
          float *r = fg_tensor_row (x, i);
          y[i] = (gint32) (i % 3);
          for (guint j = 0; j < dim; j++)
            r[j] = (float) (0.5 * fg_rng_normal (&rng));
          r[0] += (float) (3 * cos (2 * G_PI * y[i] / 3));
          r[1] += (float) (3 * sin (2 * G_PI * y[i] / 3));
        }
      g_assert_true (fg_dataset_set_part (ds, p ? FG_PART_TEST : FG_PART_TRAIN, x, y, &error));
    }
  g_assert_true (fg_dataset_finish (ds, &error));
  g_assert_no_error (error);
  return ds;
}

static FgSplitData *
split_of (FgDataset *ds)
{
  g_autoptr (FgParams) sp = fg_params_new (fg_split_param_specs ());
  g_autoptr (GError) error = NULL;
  FgSplitData *d;
  g_assert_true (fg_params_set (sp, "labeled_per_class", "4", &error));
  d = fg_split_data_new (ds, sp, 0, &error);
  g_assert_no_error (error);
  return d;
}

static FgFigureOptions *
options (const char *first_key, ...)
{
  FgFigureOptions *o = fg_figure_options_new ();
  va_list ap;
  va_start (ap, first_key);
  for (const char *k = first_key; k != NULL; k = va_arg (ap, const char *))
    {
      g_autoptr (GError) error = NULL;
      g_assert_true (fg_figure_options_set (o, k, va_arg (ap, const char *), &error));
      g_assert_no_error (error);
    }
  va_end (ap);
  return o;
}

/* Fit the toy (or its old-ABI twin) on blobs and capture it as dataset/method, seed 0. */
static void
capture (const char *out, const FgFigureOptions *o, const char *dataset, const char *method,
         const FgBaselineVTable *vt, guint dim)
{
  g_autoptr (FgDataset) ds = blobs (dim);
  g_autoptr (FgSplitData) sd = split_of (ds);
  g_autoptr (GError) error = NULL;
  FgFigureCell cell = { dataset, method, 0, 0, "key", NULL, { 0 } };
  gpointer self = vt->create (NULL, NULL, &error);
  g_assert_true (vt->fit (self, fg_split_data_get_split (sd), &error));
  g_assert_true (fg_figure_capture_cell (out, o, &cell, vt, self, fg_split_data_get_split (sd),
                                         fg_split_data_get_test (sd), &error));
  g_assert_no_error (error);
  vt->destroy (self);
}

static void
rm_rf (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
      const char *name;
      while (d && (name = g_dir_read_name (d)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          rm_rf (child);
        }
      g_rmdir (path);
    }
  else
    g_unlink (path);
}

/* ---- tests ---- */

static void
test_options (void)
{
  g_autoptr (FgFigureOptions) o = fg_figure_options_new ();
  g_autoptr (FgFigureOptions) copy = NULL;
  struct { const char *key, *value; } bad[] = {
    { "figures", "fig3" },
    { "figures", "fig2:moons,,bad name" },
    { "figure_methods", " ; " },
    { "figure_seed", "-1" },
    { "figure_seed", "first" },
    { "figure_grid", "8" },
    { "figure_samples", "0" },
    { "figure_temperature", "0" },
    { "figure_temperature", "x" },
    { "figure_colour", "red" },
  };

  g_assert_false (fg_figure_options_enabled (o));
  g_assert_false (fg_figure_options_wants_cell (o, "moons", "m", 0));
  for (const char *const *k = fg_figure_option_keys (); *k; k++)
    g_assert_true (fg_figure_is_option_key (*k));
  g_assert_false (fg_figure_is_option_key ("seeds"));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_assert_false (fg_figure_options_set (o, bad[i].key, bad[i].value, &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
      g_test_message ("%s = %s: %s", bad[i].key, bad[i].value, error->message);
    }
  g_assert_false (fg_figure_options_enabled (o));

  /* figures = none */
  g_assert_true (fg_figure_options_set (o, "figures", "none", NULL));
  g_assert_false (fg_figure_options_enabled (o));

  /* Items with their own rows restrict the captured datasets; methods and seed too. */
  g_assert_true (fg_figure_options_set (o, "figures", " fig2:circles,pinwheel ; fig4:moons ",
                                        NULL));
  g_assert_true (fg_figure_options_set (o, "figure_methods", "flowgmm;flowgmm-sup", NULL));
  g_assert_true (fg_figure_options_enabled (o));
  fg_figure_options_set_defaults (o, (const char *const[]){ "moons", "circles", NULL },
                                  (const char *const[]){ "flowgmm", "knn", NULL }, 3);
  g_assert_true (fg_figure_options_wants_cell (o, "circles", "flowgmm", 3));
  g_assert_true (fg_figure_options_wants_cell (o, "moons", "flowgmm-sup", 3));
  g_assert_false (fg_figure_options_wants_cell (o, "eight-gaussians", "flowgmm", 3));
  g_assert_false (fg_figure_options_wants_cell (o, "circles", "knn", 3));
  g_assert_false (fg_figure_options_wants_cell (o, "circles", "flowgmm", 4)); /* first seed */
  g_assert_true (fg_figure_options_set (o, "figure_seed", "all", NULL));
  g_assert_true (fg_figure_options_wants_cell (o, "circles", "flowgmm", 4));
  g_assert_true (fg_figure_options_set (o, "figure_seed", "5", NULL));
  g_assert_false (fg_figure_options_wants_cell (o, "circles", "flowgmm", 4));
  g_assert_true (fg_figure_options_wants_cell (o, "circles", "flowgmm", 5));
  /* An item without its own rows draws every dataset. */
  g_assert_true (fg_figure_options_set (o, "figures", "fig2:circles;cells", NULL));
  g_assert_true (fg_figure_options_wants_cell (o, "eight-gaussians", "flowgmm", 5));
  copy = fg_figure_options_copy (o);
  g_assert_true (fg_figure_options_wants_cell (copy, "eight-gaussians", "flowgmm", 5));
  g_assert_false (fg_figure_options_wants_cell (copy, "eight-gaussians", "flowgmm", 4));
}

/* The captured file holds the grid, the points, the latent view and the samples. */
static void
test_capture (void)
{
  g_autofree char *out = g_dir_make_tmp ("fg-figure-XXXXXX", NULL);
  g_autoptr (FgFigureOptions) o = options ("figures", "fig1", "figure_grid", "40",
                                           "figure_samples", "50", NULL);
  g_autofree char *path = g_build_filename (out, "figures", "data", "blobs__toy__s0__p0.json",
                                            NULL);
  g_autofree char *old_path = g_build_filename (out, "figures", "data",
                                                "blobs__old__s0__p0.json", NULL);
  g_autofree char *flat_dir = g_build_filename (out, "figures", "data", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonObject *root, *grid;
  gsize len;
  g_autofree guchar *raw = NULL;

  {
    FgFigureCell c = { "blobs", "toy", 0, 0, NULL, NULL, { 0 } };
    g_assert_false (fg_figure_has_capture (out, &c));
    capture (out, o, "blobs", "toy", &toy_vtable, 2);
    g_assert_true (fg_figure_has_capture (out, &c));
    c.seed = 1;
    g_assert_false (fg_figure_has_capture (out, &c));
  }
  capture (out, o, "blobs", "old", &toy_old_vtable, 2);
  g_assert_true (json_parser_load_from_file (parser, path, &error));
  g_assert_no_error (error);
  root = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (root, "dataset"), ==, "blobs");
  g_assert_cmpstr (json_object_get_string_member (root, "method"), ==, "toy");
  g_assert_cmpint (json_object_get_int_member (root, "n_classes"), ==, 3);
  g_assert_cmpfloat (json_object_get_double_member (root, "test_accuracy"), >, 0.95);
  grid = json_object_get_object_member (root, "grid");
  g_assert_cmpint (json_object_get_int_member (grid, "n"), ==, 40);
  raw = g_base64_decode (json_object_get_string_member (grid, "proba_u8"), &len);
  g_assert_cmpuint (len, ==, 40 * 40 * 3);
  g_assert_true (json_object_has_member (root, "latent"));
  g_assert_true (json_object_has_member (root, "latent_fit"));
  g_assert_true (json_object_has_member (root, "latent_samples"));
  g_assert_true (json_object_has_member (root, "samples"));
  g_assert_cmpint (json_object_get_int_member (json_object_get_object_member (root, "samples"),
                                               "per_class"), ==, 50);

  /* The old-ABI twin: no latent view, no samples. */
  g_assert_true (json_parser_load_from_file (parser, old_path, &error));
  root = json_node_get_object (json_parser_get_root (parser));
  g_assert_false (json_object_has_member (root, "latent"));
  g_assert_false (json_object_has_member (root, "samples"));
  g_assert_true (json_object_has_member (root, "grid"));

  /* Data that are not 2-D are skipped without an error. */
  capture (out, o, "blobs3d", "toy", &toy_vtable, 3);
  {
    g_autofree char *p3 = g_build_filename (flat_dir, "blobs3d__toy__s0__p0.json", NULL);
    g_assert_false (g_file_test (p3, G_FILE_TEST_EXISTS));
  }
  rm_rf (out);
}

#ifdef HAVE_CAIRO
/* Distinct colours of the background tints of the first three classes found in a rectangle of
 * a PNG (pixels). */
static guint
count_class_tints (cairo_surface_t *img, int x0, int y0, int x1, int y1)
{
  static const double pal[3][3] = { { 1.000, 0.498, 0.055 }, { 0.173, 0.627, 0.173 },
                                    { 0.839, 0.153, 0.157 } };
  unsigned char *data = cairo_image_surface_get_data (img);
  int stride = cairo_image_surface_get_stride (img);
  gboolean seen[3] = { FALSE, FALSE, FALSE };
  guint n = 0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      {
        guint32 px = *(guint32 *) (data + (gsize) y * stride + 4 * x);
        int rgb[3] = { (px >> 16) & 255, (px >> 8) & 255, px & 255 };
        for (int k = 0; k < 3; k++)
          {
            gboolean match = TRUE;
            for (int c = 0; c < 3; c++)
              match &= abs (rgb[c] - (int) lround ((0.7 + 0.3 * pal[k][c]) * 255)) <= 2;
            seen[k] |= match;
          }
      }
  for (int k = 0; k < 3; k++)
    n += seen[k];
  return n;
}

static void
check_png (const char *path, int want_w, int want_h, gboolean decision_panel)
{
  cairo_surface_t *img = cairo_image_surface_create_from_png (path);
  g_assert_cmpint (cairo_surface_status (img), ==, CAIRO_STATUS_SUCCESS);
  g_assert_cmpint (cairo_image_surface_get_width (img), ==, want_w);
  g_assert_cmpint (cairo_image_surface_get_height (img), ==, want_h);
  if (decision_panel)
    {
      /* Panel (a) sits at (40, 38) pt, 170 pt wide: all three regions show in it. */
      const double s = 150.0 / 72.0;
      g_assert_cmpuint (count_class_tints (img, (int) (42 * s), (int) (40 * s), (int) (208 * s),
                                           (int) (206 * s)), ==, 3);
    }
  cairo_surface_destroy (img);
}

static void
check_svg (const char *path)
{
  g_autofree char *text = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &text, &len, NULL));
  g_assert_cmpuint (len, >, 2000);
  g_assert_nonnull (strstr (text, "<svg"));
  g_assert_nonnull (strstr (text, "</svg>"));
}
#endif

static void
test_render (void)
{
  g_autofree char *out = g_dir_make_tmp ("fg-figure-XXXXXX", NULL);
  g_autoptr (FgFigureOptions) o = options ("figures", "fig1;fig2;fig4;cells",
                                           "figure_methods", "toy;old", "figure_grid", "60",
                                           "figure_samples", "100", NULL);
  g_autoptr (GPtrArray) written = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;

  capture (out, o, "blobs", "toy", &toy_vtable, 2);
  capture (out, o, "blobs", "old", &toy_old_vtable, 2);
  capture (out, o, "blobs2", "toy", &toy_vtable, 2);

  if (!fg_figure_can_render ())
    {
      g_assert_false (fg_figure_render (out, o, written, &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED);
      g_assert_cmpuint (written->len, ==, 0);
      g_test_skip ("built without cairo: figures are not drawn (the capture is still tested)");
      rm_rf (out);
      return;
    }
  g_assert_true (fg_figure_render (out, o, written, &error));
  g_assert_no_error (error);
  /* fig1, fig2, fig4 and three cell rows, each PNG + SVG */
  g_assert_cmpuint (written->len, ==, 12);
#ifdef HAVE_CAIRO
  {
    const double s = 150.0 / 72.0;
    /* page: 40 + n·170 + (n−1)·28 + 10 wide, 24 + 14 + r·170 + (r−1)·26 + 16 high */
    int w4 = (int) ceil ((40 + 4 * 170 + 3 * 28 + 10) * s);
    int w2 = (int) ceil ((40 + 2 * 170 + 1 * 28 + 10) * s);
    int h1 = (int) ceil ((24 + 14 + 170 + 16) * s), h2 = (int) ceil ((24 + 14 + 2 * 170 + 26 + 16) * s);
    g_autofree char *fig1 = g_build_filename (out, "figures", "fig1.png", NULL);
    g_autofree char *fig2 = g_build_filename (out, "figures", "fig2.png", NULL);
    g_autofree char *fig4 = g_build_filename (out, "figures", "fig4.png", NULL);
    g_autofree char *cell = g_build_filename (out, "figures", "cells", "blobs__old__s0__p0.png",
                                              NULL);
    g_autofree char *svg = g_build_filename (out, "figures", "fig4.svg", NULL);
    check_png (fig1, w4, h1, TRUE);
    check_png (fig2, w2, h2, TRUE);
    check_png (fig4, w4, h2, TRUE);
    check_png (cell, w4, h1, TRUE);
    check_svg (svg);
    if (g_getenv ("FG_FIGURE_KEEP") != NULL)
      {
        g_test_message ("figures kept in %s", out);
        return;
      }
  }
#endif
  /* Rendering again from the stored data gives the same files. */
  g_ptr_array_set_size (written, 0);
  g_assert_true (fg_figure_render (out, o, written, &error));
  g_assert_cmpuint (written->len, ==, 12);
  rm_rf (out);
}

/* Without the renderer module (a build without cairo, or not installed) the figures are
 * skipped with FG_ERROR_UNSUPPORTED saying where the module was looked for and that the data
 * stay; capturing does not need it.  In a subprocess: the module is looked for once. */
static void
test_render_without_module (void)
{
  if (g_test_subprocess ())
    {
      g_autofree char *out = g_dir_make_tmp ("fg-figure-XXXXXX", NULL);
      g_autofree char *empty = g_dir_make_tmp ("fg-modules-XXXXXX", NULL);
      g_autoptr (FgFigureOptions) o = options ("figures", "fig1", "figure_grid", "20",
                                               "figure_samples", "10", NULL);
      g_autoptr (GPtrArray) written = g_ptr_array_new_with_free_func (g_free);
      g_autoptr (GError) error = NULL;
      g_setenv ("FLOWGMM_MODULE_DIR", empty, TRUE);
      capture (out, o, "blobs", "toy", &toy_vtable, 2);
      g_assert_false (fg_figure_can_render ());
      g_assert_false (fg_figure_render (out, o, written, &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED);
      g_assert_nonnull (strstr (error->message, "there is no figure renderer"));
      g_assert_nonnull (strstr (error->message, empty));
      g_assert_nonnull (strstr (error->message, "built without cairo"));
      g_assert_nonnull (strstr (error->message, "figures/data"));
      g_assert_cmpuint (written->len, ==, 0);
      rm_rf (out);
      rm_rf (empty);
      return;
    }
  g_test_trap_subprocess (NULL, 0, 0);
  g_test_trap_assert_passed ();
}

/* Nothing captured: nothing drawn, no error. */
static void
test_render_empty (void)
{
  g_autofree char *out = g_dir_make_tmp ("fg-figure-XXXXXX", NULL);
  g_autoptr (FgFigureOptions) o = options ("figures", "fig2", NULL);
  g_autoptr (GPtrArray) written = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  gboolean ok = fg_figure_render (out, o, written, &error);
  if (fg_figure_can_render ())
    {
      g_assert_true (ok);
      g_assert_no_error (error);
    }
  g_assert_cmpuint (written->len, ==, 0);
  rm_rf (out);
}

/* The driver path the runner takes: a plugin method (the template's nearest centroid, which
 * has no embed/sample) fitted on the synthetic moons, captured, rendered. */
static void
test_synthetic_template (void)
{
  g_autoptr (FgRegistry) reg = fg_registry_new ();
  g_autofree char *out = NULL;
  g_autoptr (FgFigureOptions) o = options ("figures", "fig1;fig2", NULL);
  g_autoptr (GPtrArray) written = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgParams) dp = NULL, mp = NULL, sp = NULL;
  g_autoptr (FgDataset) ds = NULL;
  g_autoptr (FgSplitData) sd = NULL;
  const FgComponent *dc, *mc;
  const FgBaselineVTable *vt;
  FgLoadContext ctx = { "." };
  FgFigureCell cell = { "moons", "centroid", 2, 0, NULL, NULL, { 0 } };
  gpointer self;
  FgRng rng;

  fg_registry_load_default (reg, NULL);
  dc = fg_registry_lookup (reg, FG_KIND_DATASET, "moons");
  mc = fg_registry_lookup (reg, FG_KIND_BASELINE, "template-centroid");
  if (dc == NULL || mc == NULL)
    {
      g_test_skip ("the synthetic and template plugins are not on FLOWGMM_PLUGIN_PATH");
      return;
    }
  out = g_dir_make_tmp ("fg-figure-XXXXXX", NULL);
  dp = fg_params_new (dc->params);
  ds = ((const FgDatasetVTable *) dc->vtable)->load (dp, &ctx, &error);
  g_assert_no_error (error);
  sp = fg_params_new (fg_split_param_specs ());
  sd = fg_split_data_new (ds, sp, 2, &error);
  g_assert_no_error (error);
  mp = fg_params_new (mc->params);
  vt = mc->vtable;
  fg_rng_init (&rng, 2, 1);
  self = vt->create (mp, &rng, &error);
  g_assert_true (vt->fit (self, fg_split_data_get_split (sd), &error));
  fg_figure_options_set_defaults (o, (const char *const[]){ "moons", NULL },
                                  (const char *const[]){ "centroid", NULL }, 2);
  g_assert_true (fg_figure_options_wants_cell (o, "moons", "centroid", 2));
  g_assert_true (fg_figure_capture_cell (out, o, &cell, vt, self, fg_split_data_get_split (sd),
                                         fg_split_data_get_test (sd), &error));
  g_assert_no_error (error);
  vt->destroy (self);
  if (fg_figure_can_render ())
    {
      g_autofree char *png = g_build_filename (out, "figures", "fig2.png", NULL);
      g_assert_true (fg_figure_render (out, o, written, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (written->len, ==, 4);
#ifdef HAVE_CAIRO
      {
        const double s = 150.0 / 72.0;
        cairo_surface_t *img = cairo_image_surface_create_from_png (png);
        g_assert_cmpint (cairo_surface_status (img), ==, CAIRO_STATUS_SUCCESS);
        g_assert_cmpint (cairo_image_surface_get_width (img), ==,
                         (int) ceil ((40 + 170 + 10) * s));
        /* both classes' regions show */
        g_assert_cmpuint (count_class_tints (img, (int) (42 * s), (int) (40 * s),
                                             (int) (208 * s), (int) (206 * s)), ==, 2);
        cairo_surface_destroy (img);
      }
#endif
    }
  rm_rf (out);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/figure/options", test_options);
  g_test_add_func ("/figure/capture", test_capture);
  g_test_add_func ("/figure/render", test_render);
  g_test_add_func ("/figure/render-empty", test_render_empty);
  g_test_add_func ("/figure/render-without-module", test_render_without_module);
  g_test_add_func ("/figure/synthetic-template", test_synthetic_template);
  return g_test_run ();
}
