/* flowgmm — image-grid figures of a fitted generative method on image data (the paper's Fig. 6
 * and Fig. 3a/b), written right after the cell is fitted.
 *
 *   fig6    (a) f⁻¹(μ_k) for every class k: the method's samples at temperature 0;
 *           (b) class-conditional samples at T = 0.25² (z ~ N(μ_k, T σ² I), x = f⁻¹(z)):
 *               one row per class, IMAGE_FIG_SAMPLES columns.
 *   fig3    latent interpolations z(t) = (1 − t) f(x₁) + t f(x₂), t = 0, 1/7, ..., 1, decoded by
 *           f⁻¹: (a) between test images of the same class, (b) of different classes; one row
 *           per pair.
 *
 * Files OUT/figures/<dataset>-<method>-seed<seed>-{fig6a,fig6b,fig3a,fig3b}.png (and .svg) with
 * cairo, .pgm/.ppm without; pixels are clamped to [0, 1].  The draws come from a generator
 * seeded with the cell's seed, so a figure is reproducible.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#ifdef HAVE_CAIRO
#include <cairo.h>
#include <cairo-svg.h>
#endif

#include "experiment/experiment-private.h"

#define IMAGE_FIG_SAMPLES 10 /* columns of fig6b */
#define IMAGE_FIG_STEPS 8    /* images per interpolation row, end points included */
#define IMAGE_FIG_PAIRS 5    /* rows of fig3a and of fig3b */
#define IMAGE_FIG_SCALE 3    /* screen pixels per image pixel */

/* A grid of rows × cols images of shape C×H×W (C = 1 or 3), row-major, numel floats each. */
typedef struct {
  const float *x;
  gsize rows, cols, C, H, W;
} Grid;

static guint8
to_byte (float v)
{
  if (!(v > 0.0f))
    return 0;
  if (v >= 1.0f)
    return 255;
  return (guint8) lrintf (v * 255.0f);
}

/* The grid as 8-bit RGB, with a 1-pixel white border around every image. */
static guint8 *
grid_rgb (const Grid *g, gsize *width, gsize *height)
{
  const gsize W = g->cols * (g->W + 1) + 1, H = g->rows * (g->H + 1) + 1;
  const gsize numel = g->C * g->H * g->W;
  guint8 *rgb = g_malloc (W * H * 3);
  memset (rgb, 255, W * H * 3);
  for (gsize r = 0; r < g->rows; r++)
    for (gsize c = 0; c < g->cols; c++)
      {
        const float *img = g->x + (r * g->cols + c) * numel;
        for (gsize y = 0; y < g->H; y++)
          for (gsize x = 0; x < g->W; x++)
            {
              guint8 *p = rgb + ((r * (g->H + 1) + 1 + y) * W + c * (g->W + 1) + 1 + x) * 3;
              for (int k = 0; k < 3; k++)
                p[k] = to_byte (img[((g->C == 3 ? (gsize) k : 0) * g->H + y) * g->W + x]);
            }
      }
  *width = W;
  *height = H;
  return rgb;
}

static gboolean
write_grid (const char *base, const Grid *g, GPtrArray *written, GError **error)
{
  gsize w, h;
  g_autofree guint8 *rgb = grid_rgb (g, &w, &h);
#ifdef HAVE_CAIRO
  cairo_surface_t *img = cairo_image_surface_create (CAIRO_FORMAT_RGB24, (int) w, (int) h);
  const int stride = cairo_image_surface_get_stride (img);
  guint8 *data = cairo_image_surface_get_data (img);
  g_autofree char *png = g_strconcat (base, ".png", NULL);
  g_autofree char *svg = g_strconcat (base, ".svg", NULL);
  const char *formats[2] = { png, svg };
  cairo_surface_flush (img);
  for (gsize y = 0; y < h; y++)
    for (gsize x = 0; x < w; x++)
      {
        const guint8 *p = rgb + (y * w + x) * 3;
        guint32 v = 0xff000000u | ((guint32) p[0] << 16) | ((guint32) p[1] << 8) | p[2];
        memcpy (data + y * (gsize) stride + 4 * x, &v, 4);
      }
  cairo_surface_mark_dirty (img);
  for (int f = 0; f < 2; f++)
    {
      const double s = IMAGE_FIG_SCALE;
      cairo_surface_t *out = f == 0
                                 ? cairo_image_surface_create (CAIRO_FORMAT_RGB24, (int) (w * s),
                                                               (int) (h * s))
                                 : cairo_svg_surface_create (formats[f], w * s, h * s);
      cairo_t *cr = cairo_create (out);
      cairo_status_t st;
      cairo_scale (cr, s, s);
      cairo_set_source_surface (cr, img, 0, 0);
      cairo_pattern_set_filter (cairo_get_source (cr), CAIRO_FILTER_NEAREST);
      cairo_paint (cr);
      cairo_destroy (cr);
      st = f == 0 ? cairo_surface_write_to_png (out, formats[f]) : CAIRO_STATUS_SUCCESS;
      cairo_surface_finish (out);
      if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_status (out);
      cairo_surface_destroy (out);
      if (st != CAIRO_STATUS_SUCCESS)
        {
          cairo_surface_destroy (img);
          g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot write %s: %s", formats[f],
                       cairo_status_to_string (st));
          return FALSE;
        }
      g_ptr_array_add (written, g_strdup (formats[f]));
    }
  cairo_surface_destroy (img);
  return TRUE;
#else
  g_autofree char *path = g_strconcat (base, ".ppm", NULL);
  g_autoptr (GString) s = g_string_new (NULL);
  g_string_append_printf (s, "P6\n%" G_GSIZE_FORMAT " %" G_GSIZE_FORMAT "\n255\n", w, h);
  g_string_append_len (s, (const char *) rgb, (gssize) (w * h * 3));
  if (!g_file_set_contents (path, s->str, (gssize) s->len, error))
    return FALSE;
  g_ptr_array_add (written, g_strdup (path));
  return TRUE;
#endif
}

/* Test rows to interpolate: pairs of the same class (same = TRUE) or of different classes,
 * the first IMAGE_FIG_PAIRS found scanning the test set in order. */
static gsize
pick_pairs (const FgDataPart *test, gboolean same, gsize pairs[][2])
{
  gsize n = 0;
  for (gsize i = 0; i < test->n && n < IMAGE_FIG_PAIRS; i++)
    {
      gboolean used = FALSE;
      for (gsize p = 0; p < n && !used; p++)
        used = pairs[p][0] == i || pairs[p][1] == i;
      for (gsize j = i + 1; j < test->n && !used; j++)
        {
          gboolean taken = FALSE;
          for (gsize p = 0; p < n && !taken; p++)
            taken = pairs[p][0] == j || pairs[p][1] == j;
          /* different classes: each row starts from a new class (0 → 1, 1 → 2, ...) */
          if (!taken && test->y[i] >= 0 && test->y[j] >= 0
              && (same ? test->y[i] == test->y[j]
                       : test->y[i] != test->y[j] && test->y[i] == (gint32) n
                             && test->y[j] == (gint32) (n + 1)))
            {
              pairs[n][0] = i;
              pairs[n][1] = j;
              n++;
              break;
            }
        }
    }
  return n;
}

static gboolean
interpolations (const FgBaselineVTable *vt, gpointer self, const FgSplit *split,
                const FgDataPart *test, gboolean same, const char *base, GPtrArray *written,
                GError **error)
{
  const gsize D = split->dim;
  gsize pairs[IMAGE_FIG_PAIRS][2], n_pairs = pick_pairs (test, same, pairs);
  g_autofree float *ends = g_new (float, 2 * D);
  g_autofree float *zs = g_new (float, MAX (n_pairs, 1) * IMAGE_FIG_STEPS * D);
  Grid g = { zs, n_pairs, IMAGE_FIG_STEPS, split->shape.dims[0], split->shape.dims[1],
             split->shape.dims[2] };
  if (n_pairs == 0)
    return TRUE;
  for (gsize p = 0; p < n_pairs; p++)
    {
      for (int e = 0; e < 2; e++)
        {
          FgTensor row = fg_tensor_view_rows (&test->x, pairs[p][e], 1);
          if (!vt->embed (self, &row, ends + e * D, error))
            return FALSE;
        }
      for (gsize s = 0; s < IMAGE_FIG_STEPS; s++)
        {
          const float t = (float) s / (float) (IMAGE_FIG_STEPS - 1);
          float *z = zs + (p * IMAGE_FIG_STEPS + s) * D;
          for (gsize d = 0; d < D; d++)
            z[d] = (1.0f - t) * ends[d] + t * ends[D + d];
        }
    }
  if (!vt->decode (self, zs, n_pairs * IMAGE_FIG_STEPS, zs, error))
    return FALSE;
  return write_grid (base, &g, written, error);
}

/**
 * _fg_image_figures_write:
 * @out_dir: the run's output directory
 * @cell: the fitted cell
 * @vt: its method's vtable
 * @self: the fitted method
 * @split: the cell's split
 * @test: its test part
 * @which: "fig6" and/or "fig3" (NULL-terminated)
 * @written: (element-type utf8): the files written are appended
 * @error: return location for a #GError
 *
 * Writes the image grids of the paper's Fig. 6 and Fig. 3a/b for one fitted cell.  Needs image
 * examples (C×H×W with C = 1 or 3) and a method with `sample` (fig6), `embed` and `decode`
 * (fig3): FG_ERROR_UNSUPPORTED otherwise.
 *
 * Returns: %TRUE when every asked figure was written.
 */
gboolean
_fg_image_figures_write (const char *out_dir, const FgCell *cell, const FgBaselineVTable *vt,
                         gpointer self, const FgSplit *split, const FgDataPart *test,
                         const char *const *which, GPtrArray *written, GError **error)
{
  const gsize D = split->dim;
  g_autofree char *dir = g_build_filename (out_dir, "figures", NULL);
  g_autofree char *stem = g_strdup_printf ("%s-%s-seed%" G_GUINT64_FORMAT, cell->dataset->name,
                                           cell->method->name, cell->seed);
  FgRng rng;

  if (split->shape.ndim != 3 || (split->shape.dims[0] != 1 && split->shape.dims[0] != 3))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "image figures need 1- or 3-channel images (C×H×W); the examples of '%s' are "
                   "%" G_GSIZE_FORMAT "-vectors", cell->dataset->name, D);
      return FALSE;
    }
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot create %s", dir);
      return FALSE;
    }
  fg_rng_init (&rng, cell->seed, fg_rng_stream_id ("image-figures"));
  for (guint w = 0; which[w]; w++)
    {
      if (strcmp (which[w], "fig6") == 0)
        {
          const guint K = split->n_classes;
          g_autofree float *means = g_new (float, K * D);
          g_autofree float *samples = g_new (float, (gsize) K * IMAGE_FIG_SAMPLES * D);
          g_autofree char *a = g_strdup_printf ("%s/%s-fig6a", dir, stem);
          g_autofree char *b = g_strdup_printf ("%s/%s-fig6b", dir, stem);
          Grid ga = { means, 1, K, split->shape.dims[0], split->shape.dims[1],
                      split->shape.dims[2] };
          Grid gb = { samples, K, IMAGE_FIG_SAMPLES, split->shape.dims[0], split->shape.dims[1],
                      split->shape.dims[2] };
          if (!FG_VTABLE_HAS (vt, FgBaselineVTable, sample))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                           "fig6: the method '%s' cannot sample", cell->method->plugin);
              return FALSE;
            }
          for (guint k = 0; k < K; k++)
            if (!vt->sample (self, (gint) k, 1, FALSE, 0.0, &rng, means + k * D, error)
                || !vt->sample (self, (gint) k, IMAGE_FIG_SAMPLES, FALSE, 0.25 * 0.25, &rng,
                                samples + (gsize) k * IMAGE_FIG_SAMPLES * D, error))
              return FALSE;
          if (!write_grid (a, &ga, written, error) || !write_grid (b, &gb, written, error))
            return FALSE;
        }
      else if (strcmp (which[w], "fig3") == 0)
        {
          g_autofree char *a = g_strdup_printf ("%s/%s-fig3a", dir, stem);
          g_autofree char *b = g_strdup_printf ("%s/%s-fig3b", dir, stem);
          if (!FG_VTABLE_HAS (vt, FgBaselineVTable, embed)
              || !FG_VTABLE_HAS (vt, FgBaselineVTable, decode))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                           "fig3: the method '%s' cannot embed and decode", cell->method->plugin);
              return FALSE;
            }
          if (test == NULL || test->y == NULL)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED, "fig3: no labeled test images");
              return FALSE;
            }
          if (!interpolations (vt, self, split, test, TRUE, a, written, error)
              || !interpolations (vt, self, split, test, FALSE, b, written, error))
            return FALSE;
        }
    }
  return TRUE;
}
