/* SPDX-License-Identifier: MIT */
/* flowgmm — capturing a fitted cell for the figures of 2-D experiments (paper Fig. 1, 2, 4).
 *
 * After a cell is fitted, evaluate the method on a grid over the data box (class probabilities
 * from `predict`), map the training points to the latent space (`embed`) and draw
 * class-conditional samples in both spaces (`sample`), and store it all as one small JSON file
 * per cell, which the renderer (figure-render.c) draws later.  Arrays are stored as base64 of
 * little-endian float32 (points) or uint8 (probabilities quantised to 1/255), so a cell takes a
 * few hundred kB.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <flowgmm/rng.h>

#include "experiment/figure-private.h"

#define LATENT_FIT_SAMPLES 2000 /* per class, for the latent regions */
#define MAX_DRAWN_POINTS 5000   /* unlabeled points kept for drawing */
#define PREDICT_CHUNK 4096

static void
add_f32_array (JsonBuilder *b, const char *name, const float *v, gsize n)
{
  g_autofree guint32 *le = g_new (guint32, MAX (n, 1));
  g_autofree char *text = NULL;
  for (gsize i = 0; i < n; i++)
    {
      guint32 bits;
      memcpy (&bits, &v[i], sizeof bits);
      le[i] = GUINT32_TO_LE (bits);
    }
  text = g_base64_encode ((const guchar *) le, n * sizeof (guint32));
  json_builder_set_member_name (b, name);
  json_builder_add_string_value (b, text);
}

static void
add_int_array (JsonBuilder *b, const char *name, const gint32 *v, gsize n)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (gsize i = 0; i < n; i++)
    json_builder_add_int_value (b, v[i]);
  json_builder_end_array (b);
}

static void
add_double_array (JsonBuilder *b, const char *name, const double *v, gsize n)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (gsize i = 0; i < n; i++)
    json_builder_add_double_value (b, v[i]);
  json_builder_end_array (b);
}

/* Copy the rows of a 2-D part into xy (2 floats a row). */
static void
copy_rows (const FgDataPart *part, float *xy)
{
  for (gsize i = 0; i < part->n; i++)
    {
      const float *r = fg_tensor_row (&part->x, i);
      xy[2 * i] = r[0];
      xy[2 * i + 1] = r[1];
    }
}

/* Predict n rows of xy in chunks: labels and (sanitised) probabilities n × K. */
static gboolean
predict_points (const FgBaselineVTable *vt, gpointer self, const float *xy, gsize n, guint K,
                gint32 *labels, float *proba, GError **error)
{
  for (gsize start = 0; start < n; start += PREDICT_CHUNK)
    {
      gsize m = MIN ((gsize) PREDICT_CHUNK, n - start);
      FgTensor x = fg_tensor_wrap_2d ((float *) xy + 2 * start, m, 2);
      float *p = proba ? proba + start * K : NULL;
      if (p != NULL)
        for (gsize i = 0; i < m * K; i++)
          p[i] = NAN;
      if (!vt->predict (self, &x, labels + start, p, error))
        {
          g_prefix_error (error, "figure: predict: ");
          return FALSE;
        }
      for (gsize i = 0; i < m; i++)
        {
          gint32 y = labels[start + i];
          double sum = 0.0;
          gboolean ok = TRUE;
          if (y < 0 || y >= (gint32) K)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                           "figure: predict gave label %d outside the %u classes", y, K);
              return FALSE;
            }
          if (p == NULL)
            continue;
          for (guint k = 0; k < K; k++)
            {
              float v = p[i * K + k];
              ok &= isfinite (v) && v >= 0.0f;
              sum += ok ? v : 0.0;
            }
          /* A method that fills no probabilities is drawn from its labels. */
          if (!ok || fabs (sum - 1.0) > 1e-2)
            for (guint k = 0; k < K; k++)
              p[i * K + k] = (gint32) k == y ? 1.0f : 0.0f;
        }
    }
  return TRUE;
}

/* A square box around all points, padded. */
static void
square_box (const float *xy, gsize n, double pad, double box[4])
{
  double lo[2] = { INFINITY, INFINITY }, hi[2] = { -INFINITY, -INFINITY }, c[2], half = 0.0;
  for (gsize i = 0; i < n; i++)
    for (int j = 0; j < 2; j++)
      if (isfinite (xy[2 * i + j]))
        {
          lo[j] = MIN (lo[j], xy[2 * i + j]);
          hi[j] = MAX (hi[j], xy[2 * i + j]);
        }
  for (int j = 0; j < 2; j++)
    {
      if (!isfinite (lo[j]))
        lo[j] = -1.0, hi[j] = 1.0;
      c[j] = 0.5 * (lo[j] + hi[j]);
      half = MAX (half, 0.5 * (hi[j] - lo[j]));
    }
  if (half <= 0.0)
    half = 1.0;
  half *= 1.0 + pad;
  box[0] = c[0] - half;
  box[1] = c[0] + half;
  box[2] = c[1] - half;
  box[3] = c[1] + half;
}


/* Optional views; failures are logged and leave the panel empty. */
static gboolean
sample_all (const FgBaselineVTable *vt, gpointer self, guint K, gsize m, gboolean latent,
            double temperature, FgRng *rng, float *out, GError **error)
{
  for (guint k = 0; k < K; k++)
    if (!vt->sample (self, (gint) k, m, latent, temperature, rng, out + (gsize) k * m * 2, error))
      return FALSE;
  return TRUE;
}

/* What one capture works on: the fitted method, the cell's points and what goes to the file. */
typedef struct {
  const FgFigureOptions *opts;
  const FgFigureCell    *cell;
  const FgBaselineVTable *vt;
  gpointer               self;
  const FgSplit         *split;
  const FgDataPart      *test;
  guint                  K;
  FgRng                  rng;     /* the cell seed's own stream: capturing changes no result */
  double                 box[4];  /* the data box: every point, test included */
  float                 *lab_xy;  /* the labeled points */
  float                 *unl_xy;  /* at most MAX_DRAWN_POINTS unlabeled and validation points */
  gsize                  n_unl, n_unl_total;
  JsonBuilder           *b;
} Capture;

static void
capture_clear (Capture *c)
{
  g_free (c->lab_xy);
  g_free (c->unl_xy);
  g_clear_object (&c->b);
}

/* The points: labeled; unlabeled and validation (drawn as unlabeled, a random subset of at most
 * MAX_DRAWN_POINTS); test (box only).  The box is square and padded around all of them. */
static void
capture_points (Capture *c)
{
  const FgSplit *split = c->split;
  const FgDataPart *unl_parts[2] = { &split->unlabeled, &split->validation };
  gsize n_all;
  g_autofree float *all = NULL;
  g_autofree guint32 *perm = NULL;
  const float *src;

  c->n_unl_total = split->unlabeled.n + split->validation.n;
  all = g_new (float, 2 * (split->labeled.n + c->n_unl_total + (c->test ? c->test->n : 0) + 1));
  copy_rows (&split->labeled, all);
  n_all = split->labeled.n;
  for (int p = 0; p < 2; p++)
    if (unl_parts[p]->n > 0)
      {
        copy_rows (unl_parts[p], all + 2 * n_all);
        n_all += unl_parts[p]->n;
      }
  if (c->test != NULL && c->test->n > 0)
    {
      copy_rows (c->test, all + 2 * n_all);
      n_all += c->test->n;
    }
  square_box (all, n_all, 0.08, c->box);

  c->lab_xy = g_new (float, 2 * MAX (split->labeled.n, 1));
  copy_rows (&split->labeled, c->lab_xy);
  c->n_unl = MIN (c->n_unl_total, (gsize) MAX_DRAWN_POINTS);
  c->unl_xy = g_new (float, 2 * MAX (c->n_unl, 1));
  src = all + 2 * split->labeled.n;
  if (c->n_unl < c->n_unl_total)
    {
      perm = g_new (guint32, c->n_unl_total);
      fg_rng_permutation (&c->rng, perm, c->n_unl_total);
    }
  for (gsize i = 0; i < c->n_unl; i++)
    {
      gsize r = perm ? perm[i] : i;
      c->unl_xy[2 * i] = src[2 * r];
      c->unl_xy[2 * i + 1] = src[2 * r + 1];
    }
}

/* Class probabilities on a G × G grid of nodes spanning the box (row j = y, column i = x),
 * quantised to 1/255: newly allocated, G·G·K bytes. */
static guint8 *
capture_grid (const Capture *c, guint G, GError **error)
{
  const double *box = c->box;
  gsize nodes = (gsize) G * G;
  g_autofree float *grid_xy = g_new (float, 2 * nodes);
  g_autofree gint32 *grid_y = g_new (gint32, nodes);
  g_autofree float *grid_p = g_new (float, nodes * c->K);
  guint8 *grid_u8;
  for (guint j = 0; j < G; j++)
    for (guint i = 0; i < G; i++)
      {
        grid_xy[2 * ((gsize) j * G + i)] = (float) (box[0] + (box[1] - box[0]) * i / (G - 1));
        grid_xy[2 * ((gsize) j * G + i) + 1] = (float) (box[2] + (box[3] - box[2]) * j / (G - 1));
      }
  if (!predict_points (c->vt, c->self, grid_xy, nodes, c->K, grid_y, grid_p, error))
    return NULL;
  grid_u8 = g_new (guint8, nodes * c->K);
  for (gsize i = 0; i < nodes * c->K; i++)
    grid_u8[i] = (guint8) lround (CLAMP (grid_p[i], 0.0f, 1.0f) * 255.0f);
  return grid_u8;
}

/* What identifies the cell, and its number of classes. */
static void
add_identity (Capture *c)
{
  JsonBuilder *b = c->b;
  const FgFigureCell *cell = c->cell;
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, FG_FIGURE_FORMAT);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, FG_FIGURE_FORMAT_VERSION);
  json_builder_set_member_name (b, "dataset");
  json_builder_add_string_value (b, cell->dataset);
  json_builder_set_member_name (b, "method");
  json_builder_add_string_value (b, cell->method);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, (gint64) cell->seed);
  json_builder_set_member_name (b, "point");
  json_builder_add_int_value (b, cell->point);
  if (cell->key)
    {
      json_builder_set_member_name (b, "key");
      json_builder_add_string_value (b, cell->key);
    }
  if (cell->grid && *cell->grid)
    {
      json_builder_set_member_name (b, "grid_point");
      json_builder_add_string_value (b, cell->grid);
    }
  json_builder_set_member_name (b, "n_classes");
  json_builder_add_int_value (b, c->K);
}

/* Test accuracy, for the titles. */
static gboolean
add_test_accuracy (Capture *c, GError **error)
{
  const FgDataPart *test = c->test;
  g_autofree float *txy = NULL;
  g_autofree gint32 *test_y = NULL;
  gsize right = 0;
  if (test == NULL || test->n == 0 || test->y == NULL)
    return TRUE;
  txy = g_new (float, 2 * test->n);
  test_y = g_new (gint32, test->n);
  copy_rows (test, txy);
  if (!predict_points (c->vt, c->self, txy, test->n, c->K, test_y, NULL, error))
    return FALSE;
  for (gsize i = 0; i < test->n; i++)
    right += test_y[i] == test->y[i];
  json_builder_set_member_name (c->b, "test_accuracy");
  json_builder_add_double_value (c->b, (double) right / test->n);
  return TRUE;
}

/* (a): the box, the grid's probabilities and the points. */
static void
add_data_panel (Capture *c, guint G, const guint8 *grid_u8)
{
  JsonBuilder *b = c->b;
  g_autofree char *b64 = g_base64_encode (grid_u8, (gsize) G * G * c->K);
  add_double_array (b, "box", c->box, 4);
  json_builder_set_member_name (b, "grid");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "n");
  json_builder_add_int_value (b, G);
  json_builder_set_member_name (b, "proba_u8");
  json_builder_add_string_value (b, b64);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "labeled");
  json_builder_begin_object (b);
  add_f32_array (b, "xy_f32", c->lab_xy, 2 * c->split->labeled.n);
  add_int_array (b, "y", c->split->labeled.y, c->split->labeled.n);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "unlabeled");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "n_total");
  json_builder_add_int_value (b, (gint64) c->n_unl_total);
  add_f32_array (b, "xy_f32", c->unl_xy, 2 * c->n_unl);
  json_builder_end_object (b);
}

/* (b): the points in the latent space, when the method has `embed`. */
static void
add_latent_points (Capture *c)
{
  gsize n_lab = c->split->labeled.n;
  g_autoptr (GError) local = NULL;
  g_autofree float *zl = NULL, *zu = NULL;
  FgTensor xl, xu;
  if (!FG_VTABLE_HAS (c->vt, FgBaselineVTable, embed))
    return;
  zl = g_new (float, 2 * MAX (n_lab, 1));
  zu = g_new (float, 2 * MAX (c->n_unl, 1));
  xl = fg_tensor_wrap_2d (c->lab_xy, n_lab, 2);
  xu = fg_tensor_wrap_2d (c->unl_xy, c->n_unl, 2);
  if ((n_lab == 0 || c->vt->embed (c->self, &xl, zl, &local))
      && (c->n_unl == 0 || c->vt->embed (c->self, &xu, zu, &local)))
    {
      json_builder_set_member_name (c->b, "latent");
      json_builder_begin_object (c->b);
      add_f32_array (c->b, "labeled_f32", zl, 2 * n_lab);
      add_f32_array (c->b, "unlabeled_f32", zu, 2 * c->n_unl);
      json_builder_end_object (c->b);
    }
  else
    g_message ("figure: %s/%s: embed failed, no latent panel: %s", c->cell->dataset,
               c->cell->method, local ? local->message : "no reason given");
}

/* The latent Gaussians that the latent panels' regions come from: mean and isotropic variance
 * of LATENT_FIT_SAMPLES samples of each class. */
static void
add_latent_fit (Capture *c)
{
  guint K = c->K;
  g_autoptr (GError) local = NULL;
  g_autofree float *fit = g_new (float, (gsize) K * LATENT_FIT_SAMPLES * 2);
  g_autofree double *means = NULL, *vars = NULL;
  if (!sample_all (c->vt, c->self, K, LATENT_FIT_SAMPLES, TRUE, 1.0, &c->rng, fit, &local))
    {
      g_message ("figure: %s/%s: latent sample failed: %s", c->cell->dataset, c->cell->method,
                 local ? local->message : "no reason given");
      return;
    }
  means = g_new0 (double, 2 * K);
  vars = g_new0 (double, K);
  for (guint k = 0; k < K; k++)
    {
      const float *s = fit + (gsize) k * LATENT_FIT_SAMPLES * 2;
      double sx = 0, sy = 0, ss = 0, n = 0;
      for (gsize i = 0; i < LATENT_FIT_SAMPLES; i++)
        if (isfinite (s[2 * i]) && isfinite (s[2 * i + 1]))
          sx += s[2 * i], sy += s[2 * i + 1], n++;
      means[2 * k] = n ? sx / n : 0.0;
      means[2 * k + 1] = n ? sy / n : 0.0;
      for (gsize i = 0; i < LATENT_FIT_SAMPLES; i++)
        if (isfinite (s[2 * i]) && isfinite (s[2 * i + 1]))
          ss += pow (s[2 * i] - means[2 * k], 2) + pow (s[2 * i + 1] - means[2 * k + 1], 2);
      vars[k] = n > 1 ? MAX (ss / (2 * (n - 1)), 1e-12) : 1.0;
    }
  json_builder_set_member_name (c->b, "latent_fit");
  json_builder_begin_object (c->b);
  add_double_array (c->b, "means", means, 2 * K);
  add_double_array (c->b, "vars", vars, K);
  json_builder_end_object (c->b);
}

/* (c) or (d): `samples` per class at the figure temperature, in the latent or the data space.
 * A failure is logged when `report` (the latent samples' is not: the latent fit's was). */
static void
add_samples (Capture *c, const char *member, gboolean latent, gboolean report)
{
  gsize m = c->opts->samples;
  g_autoptr (GError) local = NULL;
  g_autofree float *xy = g_new (float, (gsize) c->K * m * 2);
  if (!sample_all (c->vt, c->self, c->K, m, latent, c->opts->temperature, &c->rng, xy, &local))
    {
      if (report)
        g_message ("figure: %s/%s: sample failed: %s", c->cell->dataset, c->cell->method,
                   local ? local->message : "no reason given");
      return;
    }
  json_builder_set_member_name (c->b, member);
  json_builder_begin_object (c->b);
  json_builder_set_member_name (c->b, "per_class");
  json_builder_add_int_value (c->b, (gint64) m);
  json_builder_set_member_name (c->b, "temperature");
  json_builder_add_double_value (c->b, c->opts->temperature);
  add_f32_array (c->b, "xy_f32", xy, (gsize) c->K * m * 2);
  json_builder_end_object (c->b);
}

/* `out_dir`/figures/data/<cell>.json, written atomically. */
static gboolean
write_capture (const Capture *c, const char *out_dir, GError **error)
{
  g_autoptr (JsonNode) root = json_builder_get_root (c->b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autofree char *text = NULL, *dir = NULL, *base = NULL, *path = NULL;
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  dir = g_build_filename (out_dir, "figures", "data", NULL);
  if (g_mkdir_with_parents (dir, 0777) != 0)
    {
      int errsv = errno;
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "figure: cannot create %s: %s", dir,
                   g_strerror (errsv));
      return FALSE;
    }
  base = _fg_figure_cell_file_base (c->cell->dataset, c->cell->method, c->cell->seed,
                                    c->cell->point);
  path = g_strdup_printf ("%s/%s.json", dir, base);
  if (!g_file_set_contents (path, text, -1, error))
    {
      g_prefix_error (error, "figure: ");
      return FALSE;
    }
  return TRUE;
}

/**
 * fg_figure_capture_cell:
 * @out_dir: the experiment's output directory
 * @opts: (nullable): figure options (grid size, samples, temperature); NULL for defaults
 * @cell: what identifies the cell
 * @vt: the method's vtable
 * @self: the fitted method
 * @split: the cell's split (labeled, unlabeled, validation)
 * @test: (nullable): the cell's test part
 * @error: return location for a #GError
 *
 * Evaluates the fitted method for the figures and writes
 * `out_dir`/figures/data/DATASET__METHOD__sSEED__pPOINT.json (atomically).  Skips data that are
 * not 2-D.  A failing optional `embed` or `sample` only leaves its panels empty (logged).
 *
 * Returns: %TRUE on success (or when skipped); %FALSE when predict fails or the file cannot be
 *   written.
 */
gboolean
fg_figure_capture_cell (const char *out_dir, const FgFigureOptions *opts,
                        const FgFigureCell *cell, const FgBaselineVTable *vt, gpointer self,
                        const FgSplit *split, const FgDataPart *test, GError **error)
{
  g_autoptr (FgFigureOptions) defaults = NULL;
  g_autofree char *stream = NULL;
  g_autofree guint8 *grid_u8 = NULL;
  Capture c = { 0 };
  gboolean ok = FALSE;

  g_return_val_if_fail (out_dir != NULL && cell != NULL && vt != NULL && split != NULL, FALSE);
  g_return_val_if_fail (cell->dataset != NULL && cell->method != NULL, FALSE);
  if (opts == NULL)
    opts = defaults = fg_figure_options_new ();
  if (split->shape.ndim != 1 || split->dim != 2)
    {
      g_debug ("figure: %s has %" G_GSIZE_FORMAT "-D examples; only 2-D data are drawn",
               cell->dataset, split->dim);
      return TRUE;
    }
  c.opts = opts;
  c.cell = cell;
  c.vt = vt;
  c.self = self;
  c.split = split;
  c.test = test;
  c.K = split->n_classes;
  stream = g_strdup_printf ("figure/%s/%s/%u", cell->dataset, cell->method, cell->point);
  fg_rng_init (&c.rng, cell->seed, fg_rng_stream_id (stream));

  capture_points (&c);
  grid_u8 = capture_grid (&c, opts->grid, error);
  if (grid_u8 == NULL)
    goto out;
  c.b = json_builder_new ();
  json_builder_begin_object (c.b);
  add_identity (&c);
  if (!add_test_accuracy (&c, error))
    goto out;
  add_data_panel (&c, opts->grid, grid_u8);
  add_latent_points (&c);
  /* (c), (d): samples per class in the latent and the data space; the latent regions. */
  if (FG_VTABLE_HAS (vt, FgBaselineVTable, sample))
    {
      add_latent_fit (&c);
      add_samples (&c, "latent_samples", TRUE, FALSE);
      add_samples (&c, "samples", FALSE, TRUE);
    }
  json_builder_end_object (c.b);
  ok = write_capture (&c, out_dir, error);
out:
  capture_clear (&c);
  return ok;
}

/**
 * fg_figure_has_capture:
 * @out_dir: the experiment's output directory
 * @cell: what identifies the cell (dataset, method, seed, point)
 *
 * Returns: whether fg_figure_capture_cell () has stored this cell's figure data.
 */
gboolean
fg_figure_has_capture (const char *out_dir, const FgFigureCell *cell)
{
  g_autofree char *base = NULL, *name = NULL, *path = NULL;
  g_return_val_if_fail (out_dir != NULL && cell != NULL, FALSE);
  base = _fg_figure_cell_file_base (cell->dataset, cell->method, cell->seed, cell->point);
  name = g_strconcat (base, ".json", NULL);
  path = g_build_filename (out_dir, "figures", "data", name, NULL);
  return g_file_test (path, G_FILE_TEST_IS_REGULAR);
}
