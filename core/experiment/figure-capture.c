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
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = NULL;
  g_autoptr (JsonNode) root = NULL;
  g_autofree float *all = NULL, *grid_xy = NULL, *grid_p = NULL, *lab_xy = NULL, *unl_xy = NULL;
  g_autofree gint32 *grid_y = NULL, *test_y = NULL;
  g_autofree guint8 *grid_u8 = NULL;
  g_autofree char *dir = NULL, *base = NULL, *path = NULL, *text = NULL, *b64 = NULL;
  const FgDataPart *unl_parts[2];
  gsize n_all = 0, n_unl = 0, n_unl_total, nodes;
  guint K, G;
  double box[4];
  FgRng rng;
  g_autofree char *stream = NULL;

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
  K = split->n_classes;
  G = opts->grid;
  stream = g_strdup_printf ("figure/%s/%s/%u", cell->dataset, cell->method, cell->point);
  fg_rng_init (&rng, cell->seed, fg_rng_stream_id (stream));

  /* The points: labeled; unlabeled and validation (drawn as unlabeled); test (box only). */
  unl_parts[0] = &split->unlabeled;
  unl_parts[1] = &split->validation;
  n_unl_total = split->unlabeled.n + split->validation.n;
  all = g_new (float, 2 * (split->labeled.n + n_unl_total + (test ? test->n : 0) + 1));
  copy_rows (&split->labeled, all);
  n_all = split->labeled.n;
  for (int p = 0; p < 2; p++)
    if (unl_parts[p]->n > 0)
      {
        copy_rows (unl_parts[p], all + 2 * n_all);
        n_all += unl_parts[p]->n;
      }
  if (test != NULL && test->n > 0)
    {
      copy_rows (test, all + 2 * n_all);
      n_all += test->n;
    }
  square_box (all, n_all, 0.08, box);

  lab_xy = g_new (float, 2 * MAX (split->labeled.n, 1));
  copy_rows (&split->labeled, lab_xy);
  /* At most MAX_DRAWN_POINTS unlabeled points, a random subset when there are more. */
  n_unl = MIN (n_unl_total, (gsize) MAX_DRAWN_POINTS);
  unl_xy = g_new (float, 2 * MAX (n_unl, 1));
  {
    g_autofree guint32 *perm = NULL;
    const float *src = all + 2 * split->labeled.n;
    if (n_unl < n_unl_total)
      {
        perm = g_new (guint32, n_unl_total);
        fg_rng_permutation (&rng, perm, n_unl_total);
      }
    for (gsize i = 0; i < n_unl; i++)
      {
        gsize r = perm ? perm[i] : i;
        unl_xy[2 * i] = src[2 * r];
        unl_xy[2 * i + 1] = src[2 * r + 1];
      }
  }

  /* Class probabilities on a G × G grid of nodes spanning the box (row j = y, column i = x). */
  nodes = (gsize) G * G;
  grid_xy = g_new (float, 2 * nodes);
  grid_y = g_new (gint32, nodes);
  grid_p = g_new (float, nodes * K);
  grid_u8 = g_new (guint8, nodes * K);
  for (guint j = 0; j < G; j++)
    for (guint i = 0; i < G; i++)
      {
        grid_xy[2 * ((gsize) j * G + i)] = (float) (box[0] + (box[1] - box[0]) * i / (G - 1));
        grid_xy[2 * ((gsize) j * G + i) + 1] = (float) (box[2] + (box[3] - box[2]) * j / (G - 1));
      }
  if (!predict_points (vt, self, grid_xy, nodes, K, grid_y, grid_p, error))
    return FALSE;
  for (gsize i = 0; i < nodes * K; i++)
    grid_u8[i] = (guint8) lround (CLAMP (grid_p[i], 0.0f, 1.0f) * 255.0f);

  json_builder_begin_object (b);
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
  json_builder_add_int_value (b, K);

  /* Test accuracy, for the titles. */
  if (test != NULL && test->n > 0 && test->y != NULL)
    {
      g_autofree float *txy = g_new (float, 2 * test->n);
      gsize right = 0;
      test_y = g_new (gint32, test->n);
      copy_rows (test, txy);
      if (!predict_points (vt, self, txy, test->n, K, test_y, NULL, error))
        return FALSE;
      for (gsize i = 0; i < test->n; i++)
        right += test_y[i] == test->y[i];
      json_builder_set_member_name (b, "test_accuracy");
      json_builder_add_double_value (b, (double) right / test->n);
    }

  add_double_array (b, "box", box, 4);
  json_builder_set_member_name (b, "grid");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "n");
  json_builder_add_int_value (b, G);
  b64 = g_base64_encode (grid_u8, nodes * K);
  json_builder_set_member_name (b, "proba_u8");
  json_builder_add_string_value (b, b64);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "labeled");
  json_builder_begin_object (b);
  add_f32_array (b, "xy_f32", lab_xy, 2 * split->labeled.n);
  add_int_array (b, "y", split->labeled.y, split->labeled.n);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "unlabeled");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "n_total");
  json_builder_add_int_value (b, (gint64) n_unl_total);
  add_f32_array (b, "xy_f32", unl_xy, 2 * n_unl);
  json_builder_end_object (b);

  /* (b): the points in the latent space. */
  if (FG_VTABLE_HAS (vt, FgBaselineVTable, embed))
    {
      g_autoptr (GError) local = NULL;
      g_autofree float *zl = g_new (float, 2 * MAX (split->labeled.n, 1));
      g_autofree float *zu = g_new (float, 2 * MAX (n_unl, 1));
      FgTensor xl = fg_tensor_wrap_2d (lab_xy, split->labeled.n, 2);
      FgTensor xu = fg_tensor_wrap_2d (unl_xy, n_unl, 2);
      if ((split->labeled.n == 0 || vt->embed (self, &xl, zl, &local))
          && (n_unl == 0 || vt->embed (self, &xu, zu, &local)))
        {
          json_builder_set_member_name (b, "latent");
          json_builder_begin_object (b);
          add_f32_array (b, "labeled_f32", zl, 2 * split->labeled.n);
          add_f32_array (b, "unlabeled_f32", zu, 2 * n_unl);
          json_builder_end_object (b);
        }
      else
        g_message ("figure: %s/%s: embed failed, no latent panel: %s", cell->dataset,
                   cell->method, local ? local->message : "no reason given");
    }

  /* (c), (d): samples per class in the latent and the data space; the latent regions. */
  if (FG_VTABLE_HAS (vt, FgBaselineVTable, sample))
    {
      gsize m = opts->samples;
      g_autoptr (GError) local = NULL;
      g_autofree float *fit = g_new (float, (gsize) K * LATENT_FIT_SAMPLES * 2);
      g_autofree float *ls = g_new (float, (gsize) K * m * 2);
      g_autofree float *ds = g_new (float, (gsize) K * m * 2);

      if (sample_all (vt, self, K, LATENT_FIT_SAMPLES, TRUE, 1.0, &rng, fit, &local))
        {
          /* The latent Gaussians: mean and isotropic variance of each class's samples. */
          g_autofree double *means = g_new0 (double, 2 * K), *vars = g_new0 (double, K);
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
          json_builder_set_member_name (b, "latent_fit");
          json_builder_begin_object (b);
          add_double_array (b, "means", means, 2 * K);
          add_double_array (b, "vars", vars, K);
          json_builder_end_object (b);
        }
      else
        {
          g_message ("figure: %s/%s: latent sample failed: %s", cell->dataset, cell->method,
                     local ? local->message : "no reason given");
          g_clear_error (&local);
        }
      if (sample_all (vt, self, K, m, TRUE, opts->temperature, &rng, ls, &local))
        {
          json_builder_set_member_name (b, "latent_samples");
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "per_class");
          json_builder_add_int_value (b, (gint64) m);
          json_builder_set_member_name (b, "temperature");
          json_builder_add_double_value (b, opts->temperature);
          add_f32_array (b, "xy_f32", ls, (gsize) K * m * 2);
          json_builder_end_object (b);
        }
      g_clear_error (&local);
      if (sample_all (vt, self, K, m, FALSE, opts->temperature, &rng, ds, &local))
        {
          json_builder_set_member_name (b, "samples");
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "per_class");
          json_builder_add_int_value (b, (gint64) m);
          json_builder_set_member_name (b, "temperature");
          json_builder_add_double_value (b, opts->temperature);
          add_f32_array (b, "xy_f32", ds, (gsize) K * m * 2);
          json_builder_end_object (b);
        }
      else
        g_message ("figure: %s/%s: sample failed: %s", cell->dataset, cell->method,
                   local ? local->message : "no reason given");
    }
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  gen = json_generator_new ();
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
  base = _fg_figure_cell_file_base (cell->dataset, cell->method, cell->seed, cell->point);
  path = g_strdup_printf ("%s/%s.json", dir, base);
  if (!g_file_set_contents (path, text, -1, error))
    {
      g_prefix_error (error, "figure: ");
      return FALSE;
    }
  return TRUE;
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
