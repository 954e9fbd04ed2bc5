/* SPDX-License-Identifier: MIT */
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
 * Files OUT/figures/<dataset>-<method>-seed<seed>-{fig6a,fig6b,fig3a,fig3b}.png and .svg (the
 * PNG embedded), written without cairo (zlib through GIO), so every build has them; pixels are
 * clamped to [0, 1].  The draws come from a generator
 * seeded with the cell's seed, so a figure is reproducible.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <gio/gio.h>

#include "experiment/experiment-private.h"

#define IMAGE_FIG_SAMPLES 10 /* columns of fig6b */
#define IMAGE_FIG_STEPS 8    /* images per interpolation row, end points included */
#define IMAGE_FIG_PAIRS 5    /* rows of fig3a and of fig3b */
#define IMAGE_FIG_SCALE 2    /* screen pixels per image pixel */

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

/* ---- PNG without cairo (libflowgmm does not link it): zlib through GIO, CRC-32 here ---- */

static guint32
crc32_update (guint32 crc, const guint8 *p, gsize n)
{
  static guint32 table[256];
  static gsize table_ready = 0;
  if (g_once_init_enter (&table_ready))
    {
      for (guint32 i = 0; i < 256; i++)
        {
          guint32 c = i;
          for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
          table[i] = c;
        }
      g_once_init_leave (&table_ready, 1);
    }
  crc = ~crc;
  for (gsize i = 0; i < n; i++)
    crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static void
put_be32 (GByteArray *a, guint32 v)
{
  guint8 b[4] = { v >> 24, v >> 16, v >> 8, v };
  g_byte_array_append (a, b, 4);
}

static void
png_chunk (GByteArray *png, const char *type, const guint8 *data, gsize n)
{
  guint32 crc;
  put_be32 (png, (guint32) n);
  g_byte_array_append (png, (const guint8 *) type, 4);
  if (n > 0)
    g_byte_array_append (png, data, (guint) n);
  crc = crc32_update (0, (const guint8 *) type, 4);
  crc = crc32_update (crc, data, n);
  put_be32 (png, crc);
}

/* An 8-bit RGB PNG of w × h pixels. */
static GByteArray *
png_encode (const guint8 *rgb, gsize w, gsize h, GError **error)
{
  static const guint8 signature[8] = { 137, 80, 78, 71, 13, 10, 26, 10 };
  GByteArray *png = g_byte_array_new ();
  g_autoptr (GByteArray) ihdr = g_byte_array_new ();
  g_autoptr (GZlibCompressor) z = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_ZLIB, 9);
  g_autofree guint8 *raw = g_malloc (h * (1 + 3 * w));
  const gsize raw_len = h * (1 + 3 * w);
  gsize out_cap = raw_len + raw_len / 100 + 1024, in_done = 0, out_done = 0;
  g_autofree guint8 *out = g_malloc (out_cap);
  const guint8 tail[5] = { 8, 2, 0, 0, 0 }; /* depth 8, RGB, deflate, no filter, no interlace */

  for (gsize y = 0; y < h; y++)
    {
      raw[y * (1 + 3 * w)] = 0; /* filter: none */
      memcpy (raw + y * (1 + 3 * w) + 1, rgb + y * 3 * w, 3 * w);
    }
  while (TRUE)
    {
      gsize rd = 0, wr = 0;
      GConverterResult r = g_converter_convert (G_CONVERTER (z), raw + in_done, raw_len - in_done,
                                                out + out_done, out_cap - out_done,
                                                G_CONVERTER_INPUT_AT_END, &rd, &wr, error);
      if (r == G_CONVERTER_ERROR)
        {
          g_byte_array_unref (png);
          return NULL;
        }
      in_done += rd;
      out_done += wr;
      if (r == G_CONVERTER_FINISHED)
        break;
      if (out_done == out_cap)
        {
          out_cap *= 2;
          out = g_realloc (out, out_cap);
        }
    }
  g_byte_array_append (png, signature, 8);
  put_be32 (ihdr, (guint32) w);
  put_be32 (ihdr, (guint32) h);
  g_byte_array_append (ihdr, tail, 5);
  png_chunk (png, "IHDR", ihdr->data, ihdr->len);
  png_chunk (png, "IDAT", out, out_done);
  png_chunk (png, "IEND", NULL, 0);
  return png;
}

/* BASE.png (the grid, each image pixel IMAGE_FIG_SCALE² screen pixels) and BASE.svg (the same
 * PNG embedded, drawn without smoothing). */
static gboolean
write_grid (const char *base, const Grid *g, GPtrArray *written, GError **error)
{
  const gsize s = IMAGE_FIG_SCALE;
  gsize w, h;
  g_autofree guint8 *rgb = grid_rgb (g, &w, &h);
  g_autofree guint8 *big = g_malloc (w * s * h * s * 3);
  g_autofree char *png_path = g_strconcat (base, ".png", NULL);
  g_autofree char *svg_path = g_strconcat (base, ".svg", NULL);
  g_autoptr (GByteArray) png = NULL;
  g_autofree char *b64 = NULL, *svg = NULL;

  for (gsize y = 0; y < h * s; y++)
    for (gsize x = 0; x < w * s; x++)
      memcpy (big + (y * w * s + x) * 3, rgb + ((y / s) * w + x / s) * 3, 3);
  png = png_encode (big, w * s, h * s, error);
  if (png == NULL)
    return FALSE;
  if (!g_file_set_contents (png_path, (const char *) png->data, png->len, error))
    return FALSE;
  g_ptr_array_add (written, g_strdup (png_path));
  b64 = g_base64_encode (png->data, png->len);
  svg = g_strdup_printf ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%" G_GSIZE_FORMAT
                         "\" height=\"%" G_GSIZE_FORMAT "\" viewBox=\"0 0 %" G_GSIZE_FORMAT
                         " %" G_GSIZE_FORMAT "\">\n<image width=\"%" G_GSIZE_FORMAT
                         "\" height=\"%" G_GSIZE_FORMAT "\" style=\"image-rendering:pixelated\" "
                         "href=\"data:image/png;base64,%s\"/>\n</svg>\n",
                         w * s, h * s, w * s, h * s, w * s, h * s, b64);
  if (!g_file_set_contents (svg_path, svg, -1, error))
    return FALSE;
  g_ptr_array_add (written, g_strdup (svg_path));
  return TRUE;
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
