/* SPDX-License-Identifier: MIT */
/* flowgmm — the figure renderer: a module of its own, built only with cairo, so that
 * libflowgmm does not depend on cairo.  The core opens it when figures are drawn
 * (figure-module.c).
 *
 * It reads every captured file (figure-capture.c) and composes the figures the experiment asks
 * for, as PNG at 150 dpi and SVG.  A panel of decision regions is a raster (the probabilities
 * interpolated bilinearly to each pixel, then the arg max), with the boundary drawn over it as
 * vector polylines (marching squares on p_k − max_{j≠k} p_j).  The latent panels' regions come
 * from the isotropic Gaussians fitted to each class's latent samples (one pooled variance when
 * the classes' agree up to sampling noise): for FlowGMM, whose mixture has equal weights and
 * variances, that is its own nearest-mean rule.  Two classes get one dashed boundary (Fig. 1),
 * more classes solid region outlines.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <cairo.h>
#include <cairo-svg.h>

#include "experiment/figure-private.h"

/* ============================================================================================ */
/* Reading captured cells                                                                         */
/* ============================================================================================ */

static int
cmp_float (gconstpointer a, gconstpointer b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

/* A square box around the central 98% of the latent points on each axis. */
static void
robust_box (GArray *xy, double box[4])
{
  gsize n = xy->len / 2;
  g_autofree float *col = g_new (float, MAX (n, 1));
  double lo[2], hi[2], c[2], half = 0.0;
  for (int j = 0; j < 2; j++)
    {
      gsize m = 0;
      for (gsize i = 0; i < n; i++)
        {
          float v = g_array_index (xy, float, 2 * i + j);
          if (isfinite (v))
            col[m++] = v;
        }
      if (m == 0)
        {
          lo[j] = -1.0, hi[j] = 1.0;
        }
      else
        {
          qsort (col, m, sizeof *col, cmp_float);
          lo[j] = col[(gsize) (0.01 * (m - 1))];
          hi[j] = col[(gsize) ceil (0.99 * (m - 1))];
        }
      c[j] = 0.5 * (lo[j] + hi[j]);
      half = MAX (half, 0.5 * (hi[j] - lo[j]));
    }
  if (half <= 0.0)
    half = 1.0;
  half *= 1.25;
  box[0] = c[0] - half;
  box[1] = c[0] + half;
  box[2] = c[1] - half;
  box[3] = c[1] + half;
}


typedef struct {
  char    *path;
  char    *dataset, *method;
  guint64  seed;
  guint    point;
  guint    K;
  double   test_accuracy; /* NAN when unknown */
  double   box[4];
  guint    G;
  guint8  *proba;         /* G·G·K */
  gsize    n_lab, n_unl;
  float   *lab_xy, *unl_xy;
  gint32  *lab_y;
  gboolean have_latent;
  float   *lat_lab, *lat_unl;
  gboolean have_fit;
  double  *means, *vars;
  gsize    ls_m, s_m;      /* samples per class, 0 when absent */
  float   *ls_xy, *s_xy;
  double   lbox[4];        /* latent box */
} CellFig;

static void
cell_fig_free (gpointer data)
{
  CellFig *c = data;
  if (c == NULL)
    return;
  g_free (c->path);
  g_free (c->dataset);
  g_free (c->method);
  g_free (c->proba);
  g_free (c->lab_xy);
  g_free (c->unl_xy);
  g_free (c->lab_y);
  g_free (c->lat_lab);
  g_free (c->lat_unl);
  g_free (c->means);
  g_free (c->vars);
  g_free (c->ls_xy);
  g_free (c->s_xy);
  g_free (c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CellFig, cell_fig_free)

/* A string member, or NULL when absent or not a string. */
static const char *
get_str (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

static gboolean
bad_file (GError **error, const char *path, const char *what)
{
  g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT, "%s: %s", path, what);
  return FALSE;
}

/* Decode a base64 float32 array of exactly n values. */
static float *
get_f32 (JsonObject *o, const char *name, gsize n, const char *path, GError **error)
{
  const char *text;
  g_autofree guchar *raw = NULL;
  gsize len;
  float *out;
  if ((text = get_str (o, name)) == NULL)
    {
      g_autofree char *msg = g_strdup_printf ("missing '%s'", name);
      bad_file (error, path, msg);
      return NULL;
    }
  raw = g_base64_decode (text, &len);
  if (len != n * 4)
    {
      g_autofree char *msg = g_strdup_printf ("'%s' holds %" G_GSIZE_FORMAT " bytes, expected %"
                                              G_GSIZE_FORMAT, name, len, n * 4);
      bad_file (error, path, msg);
      return NULL;
    }
  out = g_new (float, MAX (n, 1));
  for (gsize i = 0; i < n; i++)
    {
      guint32 bits;
      memcpy (&bits, raw + 4 * i, 4);
      bits = GUINT32_FROM_LE (bits);
      memcpy (&out[i], &bits, 4);
    }
  return out;
}

static gboolean
get_doubles (JsonObject *o, const char *name, double *out, guint n, const char *path,
             GError **error)
{
  JsonArray *a;
  if (o == NULL || !json_object_has_member (o, name)
      || (a = json_object_get_array_member (o, name)) == NULL || json_array_get_length (a) != n)
    {
      g_autofree char *msg = g_strdup_printf ("missing or short '%s'", name);
      return bad_file (error, path, msg);
    }
  for (guint i = 0; i < n; i++)
    out[i] = json_array_get_double_element (a, i);
  return TRUE;
}

static gint64
get_int (JsonObject *o, const char *name, gint64 def)
{
  return json_object_has_member (o, name) ? json_object_get_int_member (o, name) : def;
}

static JsonObject *
get_obj (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);
  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static CellFig *
cell_fig_load (const char *path, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (CellFig) dummy = NULL;
  CellFig *c;
  JsonNode *root;
  JsonObject *o, *sub;
  const char *s;

  if (!json_parser_load_from_file (parser, path, error))
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      bad_file (error, path, "not a JSON object");
      return NULL;
    }
  o = json_node_get_object (root);
  if (g_strcmp0 (get_str (o, "format"), FG_FIGURE_FORMAT) != 0
      || get_int (o, "version", 0) != FG_FIGURE_FORMAT_VERSION)
    {
      bad_file (error, path, "not flowgmm figure data of version 1");
      return NULL;
    }
  c = g_new0 (CellFig, 1);
  c->path = g_strdup (path);
  c->dataset = g_strdup (get_str (o, "dataset") ? get_str (o, "dataset") : "?");
  c->method = g_strdup (get_str (o, "method") ? get_str (o, "method") : "?");
  c->seed = (guint64) get_int (o, "seed", 0);
  c->point = (guint) get_int (o, "point", 0);
  c->K = (guint) get_int (o, "n_classes", 0);
  c->test_accuracy = json_object_has_member (o, "test_accuracy")
                       ? json_object_get_double_member (o, "test_accuracy")
                       : NAN;
  if (c->K < 1 || c->K > 1000 || !get_doubles (o, "box", c->box, 4, path, error))
    goto fail;
  sub = get_obj (o, "grid");
  c->G = sub ? (guint) get_int (sub, "n", 0) : 0;
  if (c->G < 2 || c->G > 4000 || (s = get_str (sub, "proba_u8")) == NULL)
    {
      bad_file (error, path, "missing or bad 'grid'");
      goto fail;
    }
  {
    gsize len;
    c->proba = g_base64_decode (s, &len);
    if (len != (gsize) c->G * c->G * c->K)
      {
        bad_file (error, path, "'grid.proba_u8' has the wrong size");
        goto fail;
      }
  }
  sub = get_obj (o, "labeled");
  {
    JsonArray *ya = sub && json_object_has_member (sub, "y")
                      ? json_object_get_array_member (sub, "y") : NULL;
    if (ya == NULL)
      {
        bad_file (error, path, "missing 'labeled.y'");
        goto fail;
      }
    c->n_lab = json_array_get_length (ya);
    c->lab_y = g_new (gint32, MAX (c->n_lab, 1));
    for (gsize i = 0; i < c->n_lab; i++)
      c->lab_y[i] = (gint32) json_array_get_int_element (ya, (guint) i);
    if ((c->lab_xy = get_f32 (sub, "xy_f32", 2 * c->n_lab, path, error)) == NULL)
      goto fail;
  }
  sub = get_obj (o, "unlabeled");
  if ((s = get_str (sub, "xy_f32")) == NULL)
    {
      bad_file (error, path, "missing 'unlabeled'");
      goto fail;
    }
  {
    gsize len;
    g_free (g_base64_decode (s, &len));
    c->n_unl = len / 8;
    if ((c->unl_xy = get_f32 (sub, "xy_f32", 2 * c->n_unl, path, error)) == NULL)
      goto fail;
  }
  if ((sub = get_obj (o, "latent")) != NULL)
    {
      if ((c->lat_lab = get_f32 (sub, "labeled_f32", 2 * c->n_lab, path, error)) == NULL
          || (c->lat_unl = get_f32 (sub, "unlabeled_f32", 2 * c->n_unl, path, error)) == NULL)
        goto fail;
      c->have_latent = TRUE;
    }
  if ((sub = get_obj (o, "latent_fit")) != NULL)
    {
      c->means = g_new (double, 2 * c->K);
      c->vars = g_new (double, c->K);
      if (!get_doubles (sub, "means", c->means, 2 * c->K, path, error)
          || !get_doubles (sub, "vars", c->vars, c->K, path, error))
        goto fail;
      c->have_fit = TRUE;
    }
  for (int which = 0; which < 2; which++)
    if ((sub = get_obj (o, which ? "samples" : "latent_samples")) != NULL)
      {
        gsize m = (gsize) get_int (sub, "per_class", 0);
        float *xy = get_f32 (sub, "xy_f32", 2 * m * c->K, path, error);
        if (xy == NULL)
          goto fail;
        if (which)
          c->s_m = m, c->s_xy = xy;
        else
          c->ls_m = m, c->ls_xy = xy;
      }

  /* The latent box: around the latent points and samples (central 98%) and the means. */
  if (c->have_latent || c->ls_m > 0)
    {
      g_autoptr (GArray) pts = g_array_new (FALSE, FALSE, sizeof (float));
      if (c->have_latent)
        {
          g_array_append_vals (pts, c->lat_lab, (guint) (2 * c->n_lab));
          g_array_append_vals (pts, c->lat_unl, (guint) (2 * c->n_unl));
        }
      if (c->ls_m > 0)
        g_array_append_vals (pts, c->ls_xy, (guint) (2 * c->ls_m * c->K));
      robust_box (pts, c->lbox);
    }
  return c;

fail:
  dummy = c; /* freed */
  return NULL;
}

/* Every readable captured cell of out_dir, sorted by dataset, method, seed, point. */
static int
cmp_cells (gconstpointer a, gconstpointer b)
{
  const CellFig *x = *(CellFig *const *) a, *y = *(CellFig *const *) b;
  int r = strcmp (x->dataset, y->dataset);
  if (r == 0)
    r = strcmp (x->method, y->method);
  if (r == 0)
    r = (x->seed > y->seed) - (x->seed < y->seed);
  if (r == 0)
    r = (x->point > y->point) - (x->point < y->point);
  return r;
}

static GPtrArray *
load_cells (const char *out_dir)
{
  g_autofree char *dir = g_build_filename (out_dir, "figures", "data", NULL);
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  GPtrArray *cells = g_ptr_array_new_with_free_func (cell_fig_free);
  const char *name;
  if (d == NULL)
    return cells;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autoptr (GError) local = NULL;
      CellFig *c;
      if (!g_str_has_suffix (name, ".json"))
        continue;
      path = g_build_filename (dir, name, NULL);
      c = cell_fig_load (path, &local);
      if (c == NULL)
        g_message ("figure: skipping %s", local->message);
      else
        g_ptr_array_add (cells, c);
    }
  g_ptr_array_sort (cells, cmp_cells);
  return cells;
}

/* ============================================================================================ */
/* Rendering                                                                                      */
/* ============================================================================================ */


#define PNG_DPI 150.0
#define SVG_RASTER 2.0  /* pixels per point of the region rasters embedded in SVGs */
#define PANEL 170.0     /* panel side, points */
#define FONT "DejaVu Sans"

typedef struct {
  double r, g, b;
} Rgb;

/* Class colours: matplotlib's tab10 without its blue, which marks unlabeled points. */
static const Rgb palette[] = {
  { 1.000, 0.498, 0.055 }, /* orange */
  { 0.173, 0.627, 0.173 }, /* green */
  { 0.839, 0.153, 0.157 }, /* red */
  { 0.580, 0.404, 0.741 }, /* purple */
  { 0.549, 0.337, 0.294 }, /* brown */
  { 0.890, 0.467, 0.761 }, /* pink */
  { 0.737, 0.741, 0.133 }, /* olive */
  { 0.090, 0.745, 0.812 }, /* cyan */
  { 0.498, 0.498, 0.498 }, /* grey */
};
static const Rgb unlabeled_blue = { 0.122, 0.467, 0.706 };

static Rgb
class_colour (guint k)
{
  Rgb c;
  double h, s = 0.65, v = 0.85, f;
  int i;
  if (k < G_N_ELEMENTS (palette))
    return palette[k];
  /* More classes: golden-angle hues. */
  h = fmod (k * 0.618033988749895, 1.0) * 6.0;
  i = (int) h;
  f = h - i;
  {
    double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch (i)
      {
      case 0: c = (Rgb){ v, t, p }; break;
      case 1: c = (Rgb){ q, v, p }; break;
      case 2: c = (Rgb){ p, v, t }; break;
      case 3: c = (Rgb){ p, q, v }; break;
      case 4: c = (Rgb){ t, p, v }; break;
      default: c = (Rgb){ v, p, q }; break;
      }
  }
  return c;
}

/* The light tint of a class colour used for its region. */
static Rgb
class_tint (guint k)
{
  Rgb c = class_colour (k);
  const double a = 0.30;
  return (Rgb){ 1 - a + a * c.r, 1 - a + a * c.g, 1 - a + a * c.b };
}

/* A scalar field per class on a grid of nodes over a box: the data panel's probabilities or
 * the latent panel's Gaussian log-scores.  The region of a point is the arg max of the values
 * interpolated bilinearly. */
typedef struct {
  guint  G, K;
  double box[4];
  float *v; /* G·G·K, row j (y) major, then column i (x), then class */
} Field;

static void
field_from_proba (const CellFig *c, Field *f)
{
  gsize n = (gsize) c->G * c->G * c->K;
  f->G = c->G;
  f->K = c->K;
  memcpy (f->box, c->box, sizeof f->box);
  f->v = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    f->v[i] = c->proba[i] / 255.0f;
}

/* log N(z; μ_k, v_k I) for the fitted latent Gaussians (up to a shared constant). */
static void
field_from_fit (const CellFig *c, Field *f)
{
  const guint G = 160;
  g_autofree double *vars = g_new (double, c->K);
  double lo = INFINITY, hi = 0.0, mean = 0.0;

  memcpy (vars, c->vars, c->K * sizeof (double));
  /* Variances equal up to sampling noise (FlowGMM's shared σ) are pooled, so that the drawn
   * boundaries are the straight lines of the model's nearest-mean rule rather than the slight
   * curves of noisy estimates. */
  for (guint k = 0; k < c->K; k++)
    lo = MIN (lo, vars[k]), hi = MAX (hi, vars[k]), mean += vars[k] / c->K;
  if (hi < 1.2 * lo)
    for (guint k = 0; k < c->K; k++)
      vars[k] = mean;
  f->G = G;
  f->K = c->K;
  memcpy (f->box, c->lbox, sizeof f->box);
  f->v = g_new (float, (gsize) G * G * c->K);
  for (guint j = 0; j < G; j++)
    for (guint i = 0; i < G; i++)
      {
        double x = f->box[0] + (f->box[1] - f->box[0]) * i / (G - 1);
        double y = f->box[2] + (f->box[3] - f->box[2]) * j / (G - 1);
        for (guint k = 0; k < c->K; k++)
          {
            double d2 = pow (x - c->means[2 * k], 2) + pow (y - c->means[2 * k + 1], 2);
            f->v[((gsize) j * G + i) * c->K + k] = (float) (-0.5 * d2 / vars[k]
                                                            - log (vars[k]));
          }
      }
}

/* margin_k = v_k − max_{j≠k} v_j at node (i, j). */
static double
margin (const Field *f, guint i, guint j, guint k)
{
  const float *v = f->v + ((gsize) j * f->G + i) * f->K;
  double other = -INFINITY;
  for (guint l = 0; l < f->K; l++)
    if (l != k)
      other = MAX (other, v[l]);
  return v[k] - other;
}

/* The panel's region raster: W × W pixels over the field's box. */
static cairo_surface_t *
field_raster (const Field *f, int W)
{
  cairo_surface_t *img = cairo_image_surface_create (CAIRO_FORMAT_RGB24, W, W);
  unsigned char *data = cairo_image_surface_get_data (img);
  int stride = cairo_image_surface_get_stride (img);
  g_autofree double *acc = g_new (double, f->K);
  g_autofree guint32 *tints = g_new (guint32, f->K);

  for (guint k = 0; k < f->K; k++)
    {
      Rgb t = class_tint (k);
      tints[k] = ((guint32) lround (t.r * 255) << 16) | ((guint32) lround (t.g * 255) << 8)
                 | (guint32) lround (t.b * 255);
    }
  cairo_surface_flush (img);
  for (int v = 0; v < W; v++)
    {
      guint32 *row = (guint32 *) (data + (gsize) v * stride);
      /* pixel centres; row 0 is the top (largest y) */
      double gy = (1.0 - (v + 0.5) / W) * (f->G - 1);
      guint j0 = (guint) CLAMP (floor (gy), 0, f->G - 2);
      double ty = gy - j0;
      for (int u = 0; u < W; u++)
        {
          double gx = (u + 0.5) / W * (f->G - 1);
          guint i0 = (guint) CLAMP (floor (gx), 0, f->G - 2);
          double tx = gx - i0, best = -INFINITY;
          const float *p00 = f->v + ((gsize) j0 * f->G + i0) * f->K;
          const float *p10 = p00 + f->K;
          const float *p01 = p00 + (gsize) f->G * f->K;
          const float *p11 = p01 + f->K;
          guint arg = 0;
          for (guint k = 0; k < f->K; k++)
            {
              acc[k] = (1 - ty) * ((1 - tx) * p00[k] + tx * p10[k])
                       + ty * ((1 - tx) * p01[k] + tx * p11[k]);
              if (acc[k] > best)
                best = acc[k], arg = k;
            }
          row[u] = tints[arg];
        }
    }
  cairo_surface_mark_dirty (img);
  return img;
}

/* ---- marching squares: the zero set of margin_k as polylines ---- */

typedef struct {
  guint  e[2];  /* edge ids */
} Segment;

/* Edge ids: the horizontal edge from node (i, j) to (i+1, j) is 2(jG+i); the vertical one from
 * (i, j) to (i, j+1) is 2(jG+i)+1. */
static void
edge_point (const Field *f, guint id, guint k, double *x, double *y)
{
  guint node = id / 2, i = node % f->G, j = node / f->G;
  guint i2 = (id & 1) ? i : i + 1, j2 = (id & 1) ? j + 1 : j;
  double a = margin (f, i, j, k), b = margin (f, i2, j2, k);
  double t = CLAMP ((a - b) != 0.0 ? a / (a - b) : 0.5, 0.0, 1.0);
  double gx = i + t * ((double) i2 - i), gy = j + t * ((double) j2 - j);
  *x = f->box[0] + (f->box[1] - f->box[0]) * gx / (f->G - 1);
  *y = f->box[2] + (f->box[3] - f->box[2]) * gy / (f->G - 1);
}

/* Polylines (GArray of doubles x0 y0 x1 y1 ...) of the boundary of class k's region. */
static GPtrArray *
contour (const Field *f, guint k)
{
  g_autoptr (GArray) segs = g_array_new (FALSE, FALSE, sizeof (Segment));
  g_autoptr (GHashTable) at = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify) g_array_unref);
  g_autofree gboolean *used = NULL;
  GPtrArray *lines = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  const guint G = f->G;

  for (guint j = 0; j + 1 < G; j++)
    for (guint i = 0; i + 1 < G; i++)
      {
        double m[4] = { margin (f, i, j, k), margin (f, i + 1, j, k),
                        margin (f, i + 1, j + 1, k), margin (f, i, j + 1, k) };
        /* edges: 0 bottom (v0-v1), 1 right (v1-v2), 2 top (v3-v2), 3 left (v0-v3) */
        guint ids[4] = { 2 * (j * G + i), 2 * (j * G + i + 1) + 1, 2 * ((j + 1) * G + i),
                         2 * (j * G + i) + 1 };
        gboolean in[4];
        guint cross[4], nc = 0;
        for (int c = 0; c < 4; c++)
          in[c] = m[c] > 0;
        if (in[0] != in[1])
          cross[nc++] = 0;
        if (in[1] != in[2])
          cross[nc++] = 1;
        if (in[3] != in[2])
          cross[nc++] = 2;
        if (in[0] != in[3])
          cross[nc++] = 3;
        if (nc == 2)
          {
            Segment s = { { ids[cross[0]], ids[cross[1]] } };
            g_array_append_val (segs, s);
          }
        else if (nc == 4)
          {
            /* A saddle: the centre decides which corners are joined. */
            gboolean centre_in = (m[0] + m[1] + m[2] + m[3]) / 4 > 0;
            gboolean join_v0_v2 = in[0] ? centre_in : !centre_in;
            Segment s1, s2;
            if (join_v0_v2)
              {
                s1 = (Segment){ { ids[0], ids[1] } }; /* around v1 */
                s2 = (Segment){ { ids[2], ids[3] } }; /* around v3 */
              }
            else
              {
                s1 = (Segment){ { ids[0], ids[3] } }; /* around v0 */
                s2 = (Segment){ { ids[1], ids[2] } }; /* around v2 */
              }
            g_array_append_val (segs, s1);
            g_array_append_val (segs, s2);
          }
      }

  for (guint s = 0; s < segs->len; s++)
    for (int e = 0; e < 2; e++)
      {
        guint id = g_array_index (segs, Segment, s).e[e];
        GArray *list = g_hash_table_lookup (at, GUINT_TO_POINTER (id + 1));
        if (list == NULL)
          {
            list = g_array_new (FALSE, FALSE, sizeof (guint));
            g_hash_table_insert (at, GUINT_TO_POINTER (id + 1), list);
          }
        g_array_append_val (list, s);
      }

  /* Chain: start from open ends first (edges with one segment), then the closed loops. */
  used = g_new0 (gboolean, MAX (segs->len, 1));
  for (int pass = 0; pass < 2; pass++)
    for (guint s0 = 0; s0 < segs->len; s0++)
      {
        guint s = s0, from;
        GArray *line;
        double x, y;
        if (used[s0])
          continue;
        {
          const Segment *sg = &g_array_index (segs, Segment, s0);
          GArray *l0 = g_hash_table_lookup (at, GUINT_TO_POINTER (sg->e[0] + 1));
          GArray *l1 = g_hash_table_lookup (at, GUINT_TO_POINTER (sg->e[1] + 1));
          if (pass == 0 && l0->len != 1 && l1->len != 1)
            continue;
          from = (l0->len == 1 || pass == 1) ? sg->e[0] : sg->e[1];
        }
        line = g_array_new (FALSE, FALSE, sizeof (double));
        edge_point (f, from, k, &x, &y);
        g_array_append_val (line, x);
        g_array_append_val (line, y);
        while (TRUE)
          {
            const Segment *sg = &g_array_index (segs, Segment, s);
            guint to = sg->e[0] == from ? sg->e[1] : sg->e[0];
            GArray *next;
            guint ns = G_MAXUINT;
            used[s] = TRUE;
            edge_point (f, to, k, &x, &y);
            g_array_append_val (line, x);
            g_array_append_val (line, y);
            next = g_hash_table_lookup (at, GUINT_TO_POINTER (to + 1));
            for (guint q = 0; q < next->len; q++)
              if (!used[g_array_index (next, guint, q)])
                ns = g_array_index (next, guint, q);
            if (ns == G_MAXUINT)
              break;
            from = to;
            s = ns;
          }
        g_ptr_array_add (lines, line);
      }
  return lines;
}

/* ---- drawing helpers ---- */

typedef struct {
  double x0, y0, size; /* panel on the page, points */
  double box[4];       /* data box */
} Frame;

static double
fx (const Frame *fr, double x)
{
  return fr->x0 + (x - fr->box[0]) / (fr->box[1] - fr->box[0]) * fr->size;
}

static double
fy (const Frame *fr, double y)
{
  return fr->y0 + fr->size - (y - fr->box[2]) / (fr->box[3] - fr->box[2]) * fr->size;
}

static void
set_rgb (cairo_t *cr, Rgb c, double alpha)
{
  cairo_set_source_rgba (cr, c.r, c.g, c.b, alpha);
}

static void
text_at (cairo_t *cr, double x, double y, double size, gboolean bold, double align,
         const char *text)
{
  cairo_text_extents_t ext;
  cairo_select_font_face (cr, FONT, CAIRO_FONT_SLANT_NORMAL,
                          bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (cr, size);
  cairo_text_extents (cr, text, &ext);
  cairo_move_to (cr, x - align * (ext.width + ext.x_bearing), y);
  cairo_show_text (cr, text);
}

static void
draw_regions (cairo_t *cr, const Frame *fr, const Field *f, double raster, gboolean dashed)
{
  int W = (int) ceil (fr->size * raster);
  cairo_surface_t *img = field_raster (f, W);
  cairo_pattern_t *pat;

  cairo_save (cr);
  cairo_translate (cr, fr->x0, fr->y0);
  cairo_scale (cr, fr->size / W, fr->size / W);
  cairo_set_source_surface (cr, img, 0, 0);
  pat = cairo_get_source (cr);
  cairo_pattern_set_filter (pat, CAIRO_FILTER_GOOD);
  cairo_pattern_set_extend (pat, CAIRO_EXTEND_PAD);
  cairo_rectangle (cr, 0, 0, W, W);
  cairo_fill (cr);
  cairo_restore (cr);
  cairo_surface_destroy (img);

  /* Boundaries: for two classes one dashed line (both margins share it), else each region's
   * outline, solid. */
  cairo_save (cr);
  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);
  cairo_set_source_rgba (cr, 0.15, 0.15, 0.15, 0.9);
  cairo_set_line_width (cr, dashed ? 1.2 : 0.9);
  if (dashed)
    cairo_set_dash (cr, (const double[]){ 4.0, 2.5 }, 2, 0);
  for (guint k = 0; k < (f->K == 2 ? 1u : f->K); k++)
    {
      g_autoptr (GPtrArray) lines = contour (f, k);
      for (guint l = 0; l < lines->len; l++)
        {
          GArray *ln = g_ptr_array_index (lines, l);
          for (guint p = 0; p < ln->len / 2; p++)
            {
              double x = fx (fr, g_array_index (ln, double, 2 * p));
              double y = fy (fr, g_array_index (ln, double, 2 * p + 1));
              if (p == 0)
                cairo_move_to (cr, x, y);
              else
                cairo_line_to (cr, x, y);
            }
          cairo_stroke (cr);
        }
    }
  cairo_restore (cr);
}

static void
draw_unlabeled (cairo_t *cr, const Frame *fr, const float *xy, gsize n)
{
  set_rgb (cr, unlabeled_blue, 0.55);
  for (gsize i = 0; i < n; i++)
    if (isfinite (xy[2 * i]) && isfinite (xy[2 * i + 1]))
      {
        cairo_new_sub_path (cr);
        cairo_arc (cr, fx (fr, xy[2 * i]), fy (fr, xy[2 * i + 1]), 1.15, 0, 2 * G_PI);
      }
  cairo_fill (cr);
}

static void
draw_labeled (cairo_t *cr, const Frame *fr, const float *xy, const gint32 *y, gsize n)
{
  const double r = 4.4;
  cairo_save (cr);
  cairo_set_line_width (cr, 0.7);
  cairo_set_line_join (cr, CAIRO_LINE_JOIN_MITER);
  for (gsize i = 0; i < n; i++)
    {
      double px = fx (fr, xy[2 * i]), py = fy (fr, xy[2 * i + 1]);
      if (!isfinite (px) || !isfinite (py))
        continue;
      cairo_move_to (cr, px, py - r);
      cairo_line_to (cr, px + 0.866 * r, py + 0.5 * r);
      cairo_line_to (cr, px - 0.866 * r, py + 0.5 * r);
      cairo_close_path (cr);
      set_rgb (cr, class_colour ((guint) MAX (y[i], 0)), 1.0);
      cairo_fill_preserve (cr);
      cairo_set_source_rgb (cr, 0, 0, 0);
      cairo_stroke (cr);
    }
  cairo_restore (cr);
}

static void
draw_samples (cairo_t *cr, const Frame *fr, const float *xy, gsize m, guint K)
{
  for (guint k = 0; k < K; k++)
    {
      set_rgb (cr, class_colour (k), 0.7);
      for (gsize i = 0; i < m; i++)
        {
          const float *p = xy + ((gsize) k * m + i) * 2;
          if (isfinite (p[0]) && isfinite (p[1]))
            {
              cairo_new_sub_path (cr);
              cairo_arc (cr, fx (fr, p[0]), fy (fr, p[1]), 1.1, 0, 2 * G_PI);
            }
        }
      cairo_fill (cr);
    }
}

/* A "nice" tick step for a range: 1, 2 or 5 × 10^n, about 4 ticks. */
static double
nice_step (double range)
{
  double raw = range / 4.0, p = pow (10.0, floor (log10 (raw))), m = raw / p;
  return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

static void
draw_axes (cairo_t *cr, const Frame *fr)
{
  cairo_save (cr);
  cairo_set_source_rgb (cr, 0.35, 0.35, 0.35);
  cairo_set_line_width (cr, 0.6);
  cairo_rectangle (cr, fr->x0, fr->y0, fr->size, fr->size);
  cairo_stroke (cr);
  for (int axis = 0; axis < 2; axis++)
    {
      double lo = fr->box[2 * axis], hi = fr->box[2 * axis + 1], step = nice_step (hi - lo);
      for (double t = ceil (lo / step) * step; t <= hi + 1e-9 * step; t += step)
        {
          char buf[32];
          double v = fabs (t) < 1e-9 * step ? 0.0 : t;
          g_ascii_formatd (buf, sizeof buf, "%g", v);
          if (axis == 0)
            {
              double x = fx (fr, t), y = fr->y0 + fr->size;
              cairo_move_to (cr, x, y);
              cairo_line_to (cr, x, y + 2.5);
              cairo_stroke (cr);
              text_at (cr, x, y + 9.5, 6.5, FALSE, 0.5, buf);
            }
          else
            {
              double y = fy (fr, t);
              cairo_move_to (cr, fr->x0, y);
              cairo_line_to (cr, fr->x0 - 2.5, y);
              cairo_stroke (cr);
              text_at (cr, fr->x0 - 4, y + 2.3, 6.5, FALSE, 1.0, buf);
            }
        }
    }
  cairo_restore (cr);
}

static void
draw_note (cairo_t *cr, const Frame *fr, const char *text)
{
  cairo_set_source_rgb (cr, 0.97, 0.97, 0.97);
  cairo_rectangle (cr, fr->x0, fr->y0, fr->size, fr->size);
  cairo_fill (cr);
  cairo_set_source_rgb (cr, 0.45, 0.45, 0.45);
  text_at (cr, fr->x0 + fr->size / 2, fr->y0 + fr->size / 2, 7.5, FALSE, 0.5, text);
}

/* A small label in the panel's top-left corner on a white box. */
static void
draw_inset (cairo_t *cr, const Frame *fr, const char *text)
{
  cairo_text_extents_t ext;
  cairo_select_font_face (cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (cr, 6.8);
  cairo_text_extents (cr, text, &ext);
  cairo_set_source_rgba (cr, 1, 1, 1, 0.8);
  cairo_rectangle (cr, fr->x0 + 2, fr->y0 + 2, ext.x_advance + 5, 10);
  cairo_fill (cr);
  cairo_set_source_rgb (cr, 0.1, 0.1, 0.1);
  cairo_move_to (cr, fr->x0 + 4.5, fr->y0 + 9.5);
  cairo_show_text (cr, text);
}

typedef enum {
  PANEL_DECISION,
  PANEL_LATENT,
  PANEL_LATENT_SAMPLES,
  PANEL_SAMPLES,
} PanelKind;

static const char *const panel_titles[] = {
  "(a) data and decision regions",
  "(b) latent space: f(x)",
  "(c) latent mixture samples",
  "(d) class samples f\u207b\u00b9(z)",
};

static void
draw_panel (cairo_t *cr, double raster, double x0, double y0, PanelKind kind, const CellFig *c)
{
  Frame fr = { x0, y0, PANEL, { 0 } };
  gboolean latent = kind == PANEL_LATENT || kind == PANEL_LATENT_SAMPLES;

  memcpy (fr.box, latent ? c->lbox : c->box, sizeof fr.box);
  if ((kind == PANEL_LATENT && !c->have_latent) || (kind == PANEL_LATENT_SAMPLES && c->ls_m == 0)
      || (kind == PANEL_SAMPLES && c->s_m == 0))
    {
      draw_note (cr, &fr, kind == PANEL_LATENT ? "no latent space (method has no embed)"
                                               : "no samples (method has no sample)");
      cairo_set_source_rgb (cr, 0.35, 0.35, 0.35);
      cairo_set_line_width (cr, 0.6);
      cairo_rectangle (cr, fr.x0, fr.y0, fr.size, fr.size);
      cairo_stroke (cr);
      return;
    }
  cairo_save (cr);
  cairo_rectangle (cr, fr.x0, fr.y0, fr.size, fr.size);
  cairo_clip (cr);
  cairo_set_source_rgb (cr, 1, 1, 1);
  cairo_paint (cr);
  if (kind == PANEL_DECISION)
    {
      Field f = { 0 };
      field_from_proba (c, &f);
      draw_regions (cr, &fr, &f, raster, c->K == 2);
      g_free (f.v);
      draw_unlabeled (cr, &fr, c->unl_xy, c->n_unl);
      draw_labeled (cr, &fr, c->lab_xy, c->lab_y, c->n_lab);
    }
  else if (latent)
    {
      if (c->have_fit)
        {
          Field f = { 0 };
          field_from_fit (c, &f);
          draw_regions (cr, &fr, &f, raster, c->K == 2);
          g_free (f.v);
        }
      if (kind == PANEL_LATENT)
        {
          draw_unlabeled (cr, &fr, c->lat_unl, c->n_unl);
          draw_labeled (cr, &fr, c->lat_lab, c->lab_y, c->n_lab);
        }
      else
        draw_samples (cr, &fr, c->ls_xy, c->ls_m, c->K);
    }
  else
    draw_samples (cr, &fr, c->s_xy, c->s_m, c->K);
  cairo_restore (cr);
  if (kind == PANEL_DECISION && isfinite (c->test_accuracy))
    {
      char buf[64];
      g_snprintf (buf, sizeof buf, "test accuracy %.1f%%", 100.0 * c->test_accuracy);
      draw_inset (cr, &fr, buf);
    }
  draw_axes (cr, &fr);
}

/* ---- page layouts ---- */

#define GAP_X 28.0   /* between panels: room for the next panel's tick labels */
#define GAP_Y 26.0
#define MARGIN_L 40.0
#define MARGIN_R 10.0
#define TITLE_H 24.0
#define HEADER_H 14.0
#define MARGIN_B 16.0

typedef struct {
  const char *title;
  guint       n_rows, n_cols;
  const char *const *col_titles; /* n_cols */
  const char *const *row_titles; /* n_rows, or NULL */
  const CellFig *const *cells;   /* n_rows × n_cols, NULL = missing */
  const PanelKind *kinds;        /* n_rows × n_cols */
} Page;

static void
page_size (const Page *pg, double *w, double *h)
{
  *w = MARGIN_L + pg->n_cols * PANEL + (pg->n_cols - 1) * GAP_X + MARGIN_R;
  *h = TITLE_H + HEADER_H + pg->n_rows * PANEL + (pg->n_rows - 1) * GAP_Y + MARGIN_B;
}

static void
draw_page (cairo_t *cr, double raster, const Page *pg)
{
  double w, h;
  page_size (pg, &w, &h);
  cairo_set_source_rgb (cr, 1, 1, 1);
  cairo_paint (cr);
  cairo_set_source_rgb (cr, 0, 0, 0);
  text_at (cr, w / 2, 16, 10.5, TRUE, 0.5, pg->title);
  for (guint col = 0; col < pg->n_cols; col++)
    {
      double x = MARGIN_L + col * (PANEL + GAP_X);
      cairo_set_source_rgb (cr, 0.1, 0.1, 0.1);
      text_at (cr, x + PANEL / 2, TITLE_H + HEADER_H - 4, 8.5, FALSE, 0.5, pg->col_titles[col]);
    }
  for (guint row = 0; row < pg->n_rows; row++)
    {
      double y = TITLE_H + HEADER_H + row * (PANEL + GAP_Y);
      if (pg->row_titles != NULL)
        {
          cairo_save (cr);
          cairo_translate (cr, 11, y + PANEL / 2);
          cairo_rotate (cr, -G_PI / 2);
          cairo_set_source_rgb (cr, 0.1, 0.1, 0.1);
          text_at (cr, 0, 0, 9, TRUE, 0.5, pg->row_titles[row]);
          cairo_restore (cr);
        }
      for (guint col = 0; col < pg->n_cols; col++)
        {
          const CellFig *c = pg->cells[row * pg->n_cols + col];
          double x = MARGIN_L + col * (PANEL + GAP_X);
          if (c == NULL)
            {
              Frame fr = { x, y, PANEL, { 0, 1, 0, 1 } };
              draw_note (cr, &fr, "not captured");
              continue;
            }
          draw_panel (cr, raster, x, y, pg->kinds[row * pg->n_cols + col], c);
        }
    }
}

static gboolean
cairo_ok (cairo_status_t st, const char *path, GError **error)
{
  if (st == CAIRO_STATUS_SUCCESS)
    return TRUE;
  g_set_error (error, FG_ERROR, FG_ERROR_IO, "figure: %s: %s", path,
               cairo_status_to_string (st));
  return FALSE;
}

/* Write `base`.png and `base`.svg (temp files renamed into place). */
static gboolean
write_page (const char *base, const Page *pg, GPtrArray *written, GError **error)
{
  double w, h, s = PNG_DPI / 72.0;
  g_autofree char *png = g_strconcat (base, ".png", NULL), *svg = g_strconcat (base, ".svg", NULL);
  g_autofree char *png_tmp = g_strconcat (png, ".tmp", NULL), *svg_tmp = g_strconcat (svg, ".tmp", NULL);
  cairo_surface_t *surf;
  cairo_t *cr;
  cairo_status_t st;

  page_size (pg, &w, &h);
  surf = cairo_image_surface_create (CAIRO_FORMAT_RGB24, (int) ceil (w * s), (int) ceil (h * s));
  cr = cairo_create (surf);
  cairo_scale (cr, s, s);
  draw_page (cr, s, pg);
  st = cairo_status (cr);
  cairo_destroy (cr);
  if (st == CAIRO_STATUS_SUCCESS)
    st = cairo_surface_write_to_png (surf, png_tmp);
  cairo_surface_destroy (surf);
  if (!cairo_ok (st, png, error))
    {
      g_unlink (png_tmp);
      return FALSE;
    }

  surf = cairo_svg_surface_create (svg_tmp, w, h);
  cr = cairo_create (surf);
  draw_page (cr, SVG_RASTER, pg);
  st = cairo_status (cr);
  cairo_destroy (cr);
  cairo_surface_finish (surf);
  if (st == CAIRO_STATUS_SUCCESS)
    st = cairo_surface_status (surf);
  cairo_surface_destroy (surf);
  if (!cairo_ok (st, svg, error))
    {
      g_unlink (png_tmp);
      g_unlink (svg_tmp);
      return FALSE;
    }
  if (g_rename (png_tmp, png) != 0 || g_rename (svg_tmp, svg) != 0)
    {
      int errsv = errno;
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "figure: cannot write %s: %s", base,
                   g_strerror (errsv));
      return FALSE;
    }
  if (written != NULL)
    {
      g_ptr_array_add (written, g_steal_pointer (&png));
      g_ptr_array_add (written, g_steal_pointer (&svg));
    }
  return TRUE;
}

/* ---- choosing the cells of a figure ---- */

static const CellFig *
find_cell (GPtrArray *cells, const char *dataset, const char *method, guint64 seed)
{
  for (guint i = 0; i < cells->len; i++)
    {
      const CellFig *c = g_ptr_array_index (cells, i);
      if (strcmp (c->dataset, dataset) == 0 && strcmp (c->method, method) == 0
          && c->seed == seed)
        return c; /* sorted: the lowest grid point */
    }
  return NULL;
}

/* Distinct values of a string member over the cells, in sorted order. */
static char **
captured_names (GPtrArray *cells, gboolean methods)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new ();
  for (guint i = 0; i < cells->len; i++)
    {
      const CellFig *c = g_ptr_array_index (cells, i);
      const char *n = methods ? c->method : c->dataset;
      gboolean seen = FALSE;
      for (guint j = 0; j < out->len; j++)
        seen |= strcmp (g_ptr_array_index (out, j), n) == 0;
      if (!seen)
        g_ptr_array_add (out, g_strdup (n));
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&out), FALSE);
}

static int
cmp_str_ptr (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(char *const *) a, *(char *const *) b);
}

/* The figure's rows, its methods and its seed. */
static void
figure_selection (const FgFigureOptions *opts, const FigureItem *it, GPtrArray *cells,
                  char ***rows, char ***methods, guint64 *seed)
{
  char **r = it->datasets ? it->datasets : opts->datasets ? opts->datasets : opts->default_datasets;
  char **m = opts->methods ? opts->methods : opts->default_methods;
  *rows = r ? g_strdupv (r) : captured_names (cells, FALSE);
  *methods = m ? g_strdupv (m) : captured_names (cells, TRUE);
  if (r == NULL)
    qsort (*rows, g_strv_length (*rows), sizeof (char *), cmp_str_ptr);
  if (m == NULL)
    qsort (*methods, g_strv_length (*methods), sizeof (char *), cmp_str_ptr);
  if (opts->have_seed)
    *seed = opts->seed;
  else if (opts->have_default_seed)
    *seed = opts->default_seed;
  else
    {
      *seed = G_MAXUINT64;
      for (guint i = 0; i < cells->len; i++)
        *seed = MIN (*seed, ((const CellFig *) g_ptr_array_index (cells, i))->seed);
    }
}

static void
report_missing (const char *figure, const char *dataset, const char *method, guint64 seed)
{
  g_message ("figure %s: no captured cell for %s / %s / seed %" G_GUINT64_FORMAT " (run the "
             "experiment with this figure asked for, or with --retry to refit it)",
             figure, dataset, method, seed);
}

/* fig1 (first row only) and fig4: rows of (a)–(d) panels for the first method. */
static gboolean
render_rows (const char *dir, const char *name, const FgFigureOptions *opts,
             const FigureItem *it, GPtrArray *cells, GPtrArray *written, GError **error)
{
  g_auto (GStrv) rows = NULL, methods = NULL;
  g_autoptr (GPtrArray) row_cells = g_ptr_array_new ();
  g_autoptr (GPtrArray) row_titles = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) kinds = g_array_new (FALSE, FALSE, sizeof (PanelKind));
  g_autofree char *title = NULL, *base = NULL;
  const char *method = NULL;
  gboolean one_row = strcmp (name, "fig1") == 0;
  guint64 seed;
  Page pg = { 0 };

  figure_selection (opts, it, cells, &rows, &methods, &seed);
  /* The first method captured on any of the rows. */
  for (guint m = 0; methods[m] && method == NULL; m++)
    for (guint r = 0; rows[r] && method == NULL; r++)
      if (find_cell (cells, rows[r], methods[m], seed))
        method = methods[m];
  if (method == NULL)
    {
      g_message ("figure %s: nothing captured for seed %" G_GUINT64_FORMAT, name, seed);
      return TRUE;
    }
  for (guint r = 0; rows[r] && !(one_row && row_cells->len > 0); r++)
    {
      const CellFig *c = find_cell (cells, rows[r], method, seed);
      if (c == NULL)
        {
          report_missing (name, rows[r], method, seed);
          continue;
        }
      for (int k = 0; k < 4; k++)
        {
          PanelKind kind = (PanelKind) k;
          g_ptr_array_add (row_cells, (gpointer) c);
          g_array_append_val (kinds, kind);
        }
      g_ptr_array_add (row_titles, g_strdup (rows[r]));
    }
  if (row_cells->len == 0)
    return TRUE;
  if (one_row)
    {
      const CellFig *c = g_ptr_array_index (row_cells, 0);
      title = g_strdup_printf ("%s on %s (seed %" G_GUINT64_FORMAT ")", method, c->dataset, seed);
    }
  else
    title = g_strdup_printf ("%s (seed %" G_GUINT64_FORMAT ")", method, seed);
  pg.title = title;
  pg.n_rows = row_titles->len;
  pg.n_cols = 4;
  pg.col_titles = panel_titles;
  pg.row_titles = one_row ? NULL : (const char *const *) row_titles->pdata;
  pg.cells = (const CellFig *const *) row_cells->pdata;
  pg.kinds = (const PanelKind *) kinds->data;
  base = g_build_filename (dir, name, NULL);
  return write_page (base, &pg, written, error);
}

/* fig2: panel (a) per dataset (rows) and method (columns). */
static gboolean
render_fig2 (const char *dir, const FgFigureOptions *opts, const FigureItem *it,
             GPtrArray *cells, GPtrArray *written, GError **error)
{
  g_auto (GStrv) rows = NULL, methods = NULL;
  g_autoptr (GPtrArray) pcells = g_ptr_array_new ();
  g_autoptr (GPtrArray) row_titles = g_ptr_array_new ();
  g_autoptr (GArray) kinds = g_array_new (FALSE, FALSE, sizeof (PanelKind));
  g_autofree char *title = NULL, *base = NULL;
  guint64 seed;
  guint n_cols;
  Page pg = { 0 };

  figure_selection (opts, it, cells, &rows, &methods, &seed);
  n_cols = g_strv_length (methods);
  for (guint r = 0; rows[r]; r++)
    {
      gboolean any = FALSE;
      for (guint m = 0; m < n_cols; m++)
        any |= find_cell (cells, rows[r], methods[m], seed) != NULL;
      if (!any)
        {
          report_missing ("fig2", rows[r], "any method", seed);
          continue;
        }
      for (guint m = 0; m < n_cols; m++)
        {
          const CellFig *c = find_cell (cells, rows[r], methods[m], seed);
          PanelKind kind = PANEL_DECISION;
          if (c == NULL)
            report_missing ("fig2", rows[r], methods[m], seed);
          g_ptr_array_add (pcells, (gpointer) c);
          g_array_append_val (kinds, kind);
        }
      g_ptr_array_add (row_titles, rows[r]);
    }
  if (row_titles->len == 0 || n_cols == 0)
    return TRUE;
  title = g_strdup_printf ("Decision regions by method (seed %" G_GUINT64_FORMAT ")", seed);
  pg.title = title;
  pg.n_rows = row_titles->len;
  pg.n_cols = n_cols;
  pg.col_titles = (const char *const *) methods;
  pg.row_titles = (const char *const *) row_titles->pdata;
  pg.cells = (const CellFig *const *) pcells->pdata;
  pg.kinds = (const PanelKind *) kinds->data;
  base = g_build_filename (dir, "fig2", NULL);
  return write_page (base, &pg, written, error);
}

/* cells: one row of (a)–(d) per captured cell. */
static gboolean
render_cells (const char *dir, GPtrArray *cells, GPtrArray *written, GError **error)
{
  g_autofree char *sub = g_build_filename (dir, "cells", NULL);
  if (g_mkdir_with_parents (sub, 0777) != 0)
    {
      int errsv = errno;
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "figure: cannot create %s: %s", sub,
                   g_strerror (errsv));
      return FALSE;
    }
  for (guint i = 0; i < cells->len; i++)
    {
      const CellFig *c = g_ptr_array_index (cells, i);
      const CellFig *row[4] = { c, c, c, c };
      static const PanelKind kinds[4] = { PANEL_DECISION, PANEL_LATENT, PANEL_LATENT_SAMPLES,
                                          PANEL_SAMPLES };
      g_autofree char *title = g_strdup_printf ("%s \u2014 %s (seed %" G_GUINT64_FORMAT ")",
                                                c->dataset, c->method, c->seed);
      g_autofree char *name = _fg_figure_cell_file_base (c->dataset, c->method, c->seed,
                                                         c->point);
      g_autofree char *base = g_build_filename (sub, name, NULL);
      Page pg = { title, 1, 4, panel_titles, NULL, row, kinds };
      if (!write_page (base, &pg, written, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
render (const char *out_dir, const FgFigureOptions *opts, GPtrArray *written, GError **error)
{
  g_autoptr (GPtrArray) cells = load_cells (out_dir);
  g_autofree char *dir = g_build_filename (out_dir, "figures", NULL);
  if (cells->len == 0)
    {
      g_message ("figures: no captured cells in %s/figures/data (only 2-D data are drawn)",
                 out_dir);
      return TRUE;
    }
  for (guint i = 0; i < opts->items->len; i++)
    {
      const FigureItem *it = g_ptr_array_index (opts->items, i);
      gboolean ok;
      if (strcmp (it->name, "fig2") == 0)
        ok = render_fig2 (dir, opts, it, cells, written, error);
      else if (strcmp (it->name, "cells") == 0)
        ok = render_cells (dir, cells, written, error);
      else
        ok = render_rows (dir, it->name, opts, it, cells, written, error);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

static const FgFigureRenderer renderer = {
  sizeof (FgFigureRenderer),
  PACKAGE_VERSION,
  sizeof (FgFigureOptions),
  render,
};

/* The module's one exported symbol (see figure-private.h). */
__attribute__ ((visibility ("default"))) const FgFigureRenderer *fg_figure_renderer_query (void);

const FgFigureRenderer *
fg_figure_renderer_query (void)
{
  return &renderer;
}
