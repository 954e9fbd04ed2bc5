/* SPDX-License-Identifier: MIT */
/* flowgmm — 2-D convolution, stride 1, zero padding: Winograd F(4×4, 3×3) for 3×3 kernels with
 * padding 1 (below), im2col + sgemm for every other shape.
 *
 * Per image n: col_n [Cin·kh·kw, Ho·Wo] (im2col into arena scratch) and
 * out_n [Cout, Ho·Wo] = W [Cout, Cin·kh·kw] · col_n, with the bias written first (beta = 1).
 * The images of a batch are split over the core's pool (each task with its own scratch and
 * single-threaded sgemm).
 * Backward per image: dW += dY_n · col_nᵀ (col_n rebuilt rather than kept: memory over time),
 * dcol = Wᵀ · dY_n scattered back by col2im, and db = Σ dY.  A 1×1 kernel without padding
 * needs no im2col: x_n itself is [Cin, H·W].
 */
#include "config.h"

/* The Winograd transforms are compiled for several vector widths (FG_CLONES): without
 * contraction every clone computes the same values. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("fp-contract=off")
#endif

#include <flowgmm/vecmath.h>

#include "numeric/numeric-private.h"

typedef struct {
  gsize cin, h, w;      /* input image */
  gsize cout, kh, kw;   /* kernel */
  gsize pad, ho, wo;    /* output image */
} ConvGeom;

static inline gboolean
conv_is_pointwise (const ConvGeom *g)
{
  return g->kh == 1 && g->kw == 1 && g->pad == 0;
}

/* col[(ci·kh + ki)·kw + kj, oy·wo + ox] = x[ci, oy + ki − pad, ox + kj − pad] or 0 outside. */
static void
im2col (const ConvGeom *g, const float *x, float *col)
{
  const gsize P = g->ho * g->wo;
  for (gsize ci = 0; ci < g->cin; ci++)
    for (gsize ki = 0; ki < g->kh; ki++)
      for (gsize kj = 0; kj < g->kw; kj++)
        {
          float *row = col + ((ci * g->kh + ki) * g->kw + kj) * P;
          /* Valid ox: 0 <= ox + kj − pad < w. */
          const gsize ox0 = kj < g->pad ? MIN (g->pad - kj, g->wo) : 0;
          const gsize ox1 = MIN (g->wo, g->w + g->pad > kj ? g->w + g->pad - kj : 0);
          for (gsize oy = 0; oy < g->ho; oy++)
            {
              float *dst = row + oy * g->wo;
              const gsize iy = oy + ki; /* + pad offset: iy − pad is the input row */
              if (iy < g->pad || iy - g->pad >= g->h || ox1 <= ox0)
                {
                  memset (dst, 0, g->wo * sizeof (float));
                  continue;
                }
              const float *src = x + (ci * g->h + (iy - g->pad)) * g->w;
              memset (dst, 0, ox0 * sizeof (float));
              memcpy (dst + ox0, src + ox0 + kj - g->pad, (ox1 - ox0) * sizeof (float));
              memset (dst + ox1, 0, (g->wo - ox1) * sizeof (float));
            }
        }
}

/* The adjoint of im2col: dx[ci, iy, ix] += Σ over the col entries that read it. */
static void
col2im_add (const ConvGeom *g, const float *col, float *dx)
{
  const gsize P = g->ho * g->wo;
  for (gsize ci = 0; ci < g->cin; ci++)
    for (gsize ki = 0; ki < g->kh; ki++)
      for (gsize kj = 0; kj < g->kw; kj++)
        {
          const float *row = col + ((ci * g->kh + ki) * g->kw + kj) * P;
          const gsize ox0 = kj < g->pad ? MIN (g->pad - kj, g->wo) : 0;
          const gsize ox1 = MIN (g->wo, g->w + g->pad > kj ? g->w + g->pad - kj : 0);
          if (ox1 <= ox0)
            continue;
          for (gsize oy = 0; oy < g->ho; oy++)
            {
              const gsize iy = oy + ki;
              if (iy < g->pad || iy - g->pad >= g->h)
                continue;
              const float *restrict src = row + oy * g->wo + ox0;
              float *restrict dst = dx + (ci * g->h + (iy - g->pad)) * g->w + ox0 + kj - g->pad;
              FG_SIMD_FOR (j, ox1 - ox0, dst[j] += src[j]);
            }
        }
}

/* n floats rounded up to whole 64-byte lines. */
static inline gsize
round_up_floats (gsize n)
{
  return (n + 15) / 16 * 16;
}

/* ---- Winograd F(4×4, 3×3): the 3×3 kernels with padding 1 ---------------------------------
 *
 * Lavin & Gray (2016).  Per 4×4 tile of the output, with d the 6×6 input tile around it (zeros
 * outside the image) and g a 3×3 kernel,  Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A:  36 products per
 * tile and (input, output) channel pair where the direct convolution needs 144, i.e. a quarter
 * of the multiplications, at the price of the transforms (linear maps with small integer
 * coefficients, O(1) per tile and channel).  With U[ξ] = G g Gᵀ and V[ξ] = Bᵀ d B laid out as
 * [ξ][channel][tile], the sum over input channels is, for each of the 36 positions ξ, one sgemm
 * M[ξ] [Cout, T] = U[ξ] [Cout, Cin] · V[ξ] [Cin, T] over the T tiles of a chunk of images.
 *
 * Backward is the adjoint of the same linear maps (the exact gradient of the exact convolution
 * it computes): dM[ξ] = A dY Aᵀ per tile; dU[ξ] = Σ_tiles dM[ξ] · V[ξ]ᵀ and dW = Gᵀ dU G;
 * dV[ξ] = U[ξ]ᵀ · dM[ξ] and dX = Σ_tiles B dV Bᵀ (overlapping tiles add up).  V is recomputed
 * from X rather than kept from the forward pass, and every transformed buffer lives in the
 * tape's workspace: the op's memory is its output, as with im2col.
 *
 * The transforms are vector code over the images of a chunk: a channel plane of the chunk's
 * nc images is first copied image-innermost ([y][x][n], zero-padded), so every tile of every
 * image is transformed by loops over n, and a chunk's tile index is t = tile · nc + n.
 *
 * Tiles whose rows or columns fall beyond the image (a side that is not a multiple of 4) see
 * zeros there, and their extra outputs are dropped.  Float rounding: the transforms scale
 * values by up to ~100 and cancel them again, which costs about 1e-6 relative (rms) against
 * the direct sum (tests/test-tape.c compares both with a double reference). */

#define WG_M 4   /* output tile side */
#define WG_A 6   /* input tile side */
#define WG_XI 36 /* WG_A² transformed positions */

typedef struct {
  gsize th, tw, tpi; /* tiles per image: rows, columns, total */
  gsize ph, pw;      /* the zero-padded plane the tiles are cut from: 4·th + 2, 4·tw + 2 */
  gsize nb;          /* images per chunk (T = nb · tpi tiles per sgemm) */
  gsize tmp;         /* floats of per-task scratch for the planes and a tile */
} WgGeom;

static inline gboolean
conv_is_winograd (const ConvGeom *g)
{
  /* With very few channels the transforms cost more than the products they save. */
  return g->kh == 3 && g->kw == 3 && g->pad == 1 && g->cin >= 4 && g->cout >= 4;
}

/* Images per chunk: enough for about WG_CHUNK_TILES tiles (the sgemms' width), but V and M of
 * a chunk within WG_CHUNK_FLOATS (the last-level cache), and a multiple of the vector width
 * above it.  Measured on the benchmark's two models (doc/performance.md): wider chunks spill
 * the caches with 16 channels, narrower ones starve sgemm with 64. */
#define WG_CHUNK_TILES 768
#define WG_CHUNK_FLOATS ((gsize) 3 << 20)
#define WG_LANES 16

static void
wg_geom (const ConvGeom *g, gsize n_images, WgGeom *wg)
{
  wg->th = (g->ho + WG_M - 1) / WG_M;
  wg->tw = (g->wo + WG_M - 1) / WG_M;
  wg->tpi = wg->th * wg->tw;
  wg->ph = WG_M * wg->th + 2;
  wg->pw = WG_M * wg->tw + 2;
  const gsize per_image = WG_XI * (g->cin + g->cout) * wg->tpi;
  gsize nb = MIN ((WG_CHUNK_TILES + wg->tpi - 1) / wg->tpi, MAX (WG_CHUNK_FLOATS / per_image, 1));
  if (nb > WG_LANES)
    nb = nb / WG_LANES * WG_LANES;
  wg->nb = MIN (nb, MAX (n_images, 1));
  wg->tmp = (wg->ph * wg->pw + MAX (2 * WG_XI, WG_A * wg->pw)) * wg->nb;
}

/* U[ξ][co][ci] = (G g Gᵀ)[ξ] for the kernel g = w[co, ci] (rows of w every ldw floats). */
static const double wg_G[WG_A][3] = {
  { 1.0 / 4, 0, 0 },
  { -1.0 / 6, -1.0 / 6, -1.0 / 6 },
  { -1.0 / 6, 1.0 / 6, -1.0 / 6 },
  { 1.0 / 24, 1.0 / 12, 1.0 / 6 },
  { 1.0 / 24, -1.0 / 12, 1.0 / 6 },
  { 0, 0, 1 },
};

/* Both run as loops over the input channels (vectorised), in double, with the same sums in
 * the same order for every channel; scratch holds 27·cin doubles. */
static void FG_CLONES
wg_weights (const float *w, gsize ldw, gsize cout, gsize cin, float *U, double *scratch)
{
  const gsize xs = cout * cin;
  double *restrict kt = scratch;         /* [9][cin]: the kernels, tap-major */
  double *restrict t = scratch + 9 * cin; /* [6][3][cin]: G g */
  for (gsize co = 0; co < cout; co++)
    {
      const float *wc = w + co * ldw;
      for (gsize ci = 0; ci < cin; ci++)
        for (int r = 0; r < 9; r++)
          kt[r * cin + ci] = wc[ci * 9 + r];
      for (int a = 0; a < WG_A; a++)
        for (int j = 0; j < 3; j++)
          {
            const double g0 = wg_G[a][0], g1 = wg_G[a][1], g2 = wg_G[a][2];
            const double *restrict k0 = kt + j * cin, *restrict k1 = kt + (3 + j) * cin;
            const double *restrict k2 = kt + (6 + j) * cin;
            double *restrict o = t + (a * 3 + j) * cin;
            for (gsize ci = 0; ci < cin; ci++)
              o[ci] = g0 * k0[ci] + g1 * k1[ci] + g2 * k2[ci];
          }
      for (int a = 0; a < WG_A; a++)
        for (int b = 0; b < WG_A; b++)
          {
            const double h0 = wg_G[b][0], h1 = wg_G[b][1], h2 = wg_G[b][2];
            const double *restrict t0 = t + a * 3 * cin, *restrict t1 = t0 + cin;
            const double *restrict t2 = t1 + cin;
            float *restrict u = U + (a * WG_A + b) * xs + co * cin;
            for (gsize ci = 0; ci < cin; ci++)
              u[ci] = (float) (t0[ci] * h0 + t1[ci] * h1 + t2[ci] * h2);
          }
    }
}

/* dw[co, ci] (+)= Gᵀ dU[·][co][ci] G: the adjoint of wg_weights. */
static void FG_CLONES
wg_weights_adjoint (const float *dU, gsize cout, gsize cin, float *dw, gsize lddw,
                    gboolean overwrite, double *scratch)
{
  const gsize xs = cout * cin;
  double *restrict t = scratch;            /* [3][6][cin]: Gᵀ dU */
  double *restrict kt = scratch + 18 * cin; /* [9][cin]: Gᵀ dU G, tap-major */
  for (gsize co = 0; co < cout; co++)
    {
      for (int i = 0; i < 3; i++)
        for (int b = 0; b < WG_A; b++)
          {
            double *restrict o = t + (i * WG_A + b) * cin;
            for (gsize ci = 0; ci < cin; ci++)
              o[ci] = 0.0;
            for (int a = 0; a < WG_A; a++)
              {
                const double g = wg_G[a][i];
                const float *restrict d = dU + (a * WG_A + b) * xs + co * cin;
                for (gsize ci = 0; ci < cin; ci++)
                  o[ci] += g * d[ci];
              }
          }
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
          {
            double *restrict o = kt + (i * 3 + j) * cin;
            for (gsize ci = 0; ci < cin; ci++)
              o[ci] = 0.0;
            for (int b = 0; b < WG_A; b++)
              {
                const double g = wg_G[b][j];
                const double *restrict r = t + (i * WG_A + b) * cin;
                for (gsize ci = 0; ci < cin; ci++)
                  o[ci] += r[ci] * g;
              }
          }
      float *k = dw + co * lddw;
      for (gsize ci = 0; ci < cin; ci++)
        for (int r = 0; r < 9; r++)
          k[ci * 9 + r] = (float) (overwrite ? kt[r * cin + ci] : k[ci * 9 + r] + kt[r * cin + ci]);
    }
}

/* The 1-D transforms, each on nc lanes: inputs i0.., outputs o0.. (distinct buffers). */
#define WG_R const float *restrict
#define WG_W float *restrict

static inline void
wg_bt (WG_R d0, WG_R d1, WG_R d2, WG_R d3, WG_R d4, WG_R d5, WG_W o0, WG_W o1, WG_W o2,
       WG_W o3, WG_W o4, WG_W o5, gsize nc)
{
  for (gsize n = 0; n < nc; n++)
    {
      o0[n] = 4.0f * d0[n] - 5.0f * d2[n] + d4[n];
      o1[n] = -4.0f * (d1[n] + d2[n]) + d3[n] + d4[n];
      o2[n] = 4.0f * (d1[n] - d2[n]) - d3[n] + d4[n];
      o3[n] = 2.0f * (d3[n] - d1[n]) - d2[n] + d4[n];
      o4[n] = 2.0f * (d1[n] - d3[n]) - d2[n] + d4[n];
      o5[n] = 4.0f * d1[n] - 5.0f * d3[n] + d5[n];
    }
}

/* Bᵀ's adjoint B, adding into o (tiles overlap) */
static inline void
wg_b_add (WG_R e0, WG_R e1, WG_R e2, WG_R e3, WG_R e4, WG_R e5, WG_W o0, WG_W o1, WG_W o2,
          WG_W o3, WG_W o4, WG_W o5, gsize nc)
{
  for (gsize n = 0; n < nc; n++)
    {
      o0[n] += 4.0f * e0[n];
      o1[n] += 4.0f * (e2[n] - e1[n] + e5[n]) + 2.0f * (e4[n] - e3[n]);
      o2[n] += -5.0f * e0[n] - 4.0f * (e1[n] + e2[n]) - e3[n] - e4[n];
      o3[n] += e1[n] - e2[n] + 2.0f * (e3[n] - e4[n]) - 5.0f * e5[n];
      o4[n] += e0[n] + e1[n] + e2[n] + e3[n] + e4[n];
      o5[n] += e5[n];
    }
}

static inline void
wg_b (WG_R e0, WG_R e1, WG_R e2, WG_R e3, WG_R e4, WG_R e5, WG_W o0, WG_W o1, WG_W o2,
      WG_W o3, WG_W o4, WG_W o5, gsize nc)
{
  for (gsize n = 0; n < nc; n++)
    {
      o0[n] = 4.0f * e0[n];
      o1[n] = 4.0f * (e2[n] - e1[n] + e5[n]) + 2.0f * (e4[n] - e3[n]);
      o2[n] = -5.0f * e0[n] - 4.0f * (e1[n] + e2[n]) - e3[n] - e4[n];
      o3[n] = e1[n] - e2[n] + 2.0f * (e3[n] - e4[n]) - 5.0f * e5[n];
      o4[n] = e0[n] + e1[n] + e2[n] + e3[n] + e4[n];
      o5[n] = e5[n];
    }
}

static inline void
wg_at (WG_R m0, WG_R m1, WG_R m2, WG_R m3, WG_R m4, WG_R m5, WG_W o0, WG_W o1, WG_W o2,
       WG_W o3, gsize nc)
{
  for (gsize n = 0; n < nc; n++)
    {
      const float p = m1[n] + m2[n], q = m1[n] - m2[n];
      const float u = m3[n] + m4[n], w = m3[n] - m4[n];
      o0[n] = m0[n] + p + u;
      o1[n] = q + 2.0f * w;
      o2[n] = p + 4.0f * u;
      o3[n] = q + 8.0f * w + m5[n];
    }
}

static inline void
wg_a (WG_R y0, WG_R y1, WG_R y2, WG_R y3, WG_W o0, WG_W o1, WG_W o2, WG_W o3, WG_W o4, WG_W o5,
      gsize nc)
{
  for (gsize n = 0; n < nc; n++)
    {
      const float e = y0[n] + y2[n], o = y1[n] + y3[n];
      const float f = y0[n] + 4.0f * y2[n], h = 2.0f * y1[n] + 8.0f * y3[n];
      o0[n] = y0[n];
      o1[n] = e + o;
      o2[n] = e - o;
      o3[n] = f + h;
      o4[n] = f - h;
      o5[n] = y3[n];
    }
}

/* p[y][x][n] = plane n at (y − off, x − off), 0 outside; p is rows × cols (× nc). */
static void FG_CLONES
wg_gather (const FgTensor *X, gsize n0, gsize nc, gsize plane, gsize h, gsize w, gsize off,
           gsize rows, gsize cols, float *p)
{
  /* zeros only around the planes */
  memset (p, 0, off * cols * nc * sizeof (float));
  memset (p + (off + h) * cols * nc, 0, (rows - off - h) * cols * nc * sizeof (float));
  for (gsize y = off; y < off + h; y++)
    {
      memset (p + y * cols * nc, 0, off * nc * sizeof (float));
      memset (p + (y * cols + off + w) * nc, 0, (cols - off - w) * nc * sizeof (float));
    }
  /* images innermost: the stores run through p in order, the loads take one value of each
   * image (nc lines, reused for the next x) */
  const float *base = fg_tensor_row (X, n0) + plane;
  const gsize ld = X->ld;
  for (gsize y = 0; y < h; y++)
    for (gsize x = 0; x < w; x++)
      {
        float *restrict d = p + ((y + off) * cols + off + x) * nc;
        const float *restrict s = base + y * w + x;
        for (gsize n = 0; n < nc; n++)
          d[n] = s[n * ld];
      }
}

/* Plane n of Y (at `plane` in each row, h × w) (+)= p[y + off][x + off][n] (+ bias). */
static void FG_CLONES
wg_scatter (const float *p, gsize nc, gsize off, gsize cols, FgTensor *Y, gsize n0, gsize plane,
            gsize h, gsize w, float bias, gboolean overwrite)
{
  for (gsize n = 0; n < nc; n++)
    {
      float *dst = fg_tensor_row (Y, n0 + n) + plane;
      for (gsize y = 0; y < h; y++)
        {
          float *restrict d = dst + y * w;
          const float *restrict s = p + ((y + off) * cols + off) * nc + n;
          if (overwrite)
            for (gsize x = 0; x < w; x++)
              d[x] = bias + s[x * nc];
          else
            for (gsize x = 0; x < w; x++)
              d[x] += s[x * nc];
        }
    }
}

/* V[ξ][t] (stride xs between ξ) = Bᵀ d B for every tile of the padded planes p. */
static void FG_CLONES
wg_input (const WgGeom *wg, gsize nc, const float *p, float *restrict tmp, float *v, gsize xs)
{
  const gsize rs = wg->pw * nc; /* row stride of p */
  for (gsize ty = 0; ty < wg->th; ty++)
    {
      /* Bᵀ down the columns of the tile row's six input rows at once: tmp[a][x][n] */
      const float *d = p + WG_M * ty * rs;
      wg_bt (d, d + rs, d + 2 * rs, d + 3 * rs, d + 4 * rs, d + 5 * rs, tmp, tmp + rs,
             tmp + 2 * rs, tmp + 3 * rs, tmp + 4 * rs, tmp + 5 * rs, rs);
      for (gsize tx = 0; tx < wg->tw; tx++)
        {
          float *o = v + (ty * wg->tw + tx) * nc;
          for (int a = 0; a < WG_A; a++) /* B along row a of the tile */
            {
              const float *r = tmp + a * rs + WG_M * tx * nc;
              float *q = o + 6 * a * xs;
              wg_bt (r, r + nc, r + 2 * nc, r + 3 * nc, r + 4 * nc, r + 5 * nc, q, q + xs,
                     q + 2 * xs, q + 3 * xs, q + 4 * xs, q + 5 * xs, nc);
            }
        }
    }
}

/* p[4ty + r][4tx + c][n] = (Aᵀ M A)[r][c] for every tile, M[ξ][t] with stride xs. */
static void FG_CLONES
wg_output (const WgGeom *wg, gsize nc, const float *m, gsize xs, float *restrict tmp, float *p)
{
  const gsize cols = WG_M * wg->tw, rs = cols * nc;
  for (gsize ty = 0; ty < wg->th; ty++)
    for (gsize tx = 0; tx < wg->tw; tx++)
      {
        const float *s = m + (ty * wg->tw + tx) * nc;
        for (int a = 0; a < WG_A; a++) /* Aᵀ along row a: tmp[a][c] */
          {
            const float *q = s + 6 * a * xs;
            float *o = tmp + 4 * a * nc;
            wg_at (q, q + xs, q + 2 * xs, q + 3 * xs, q + 4 * xs, q + 5 * xs, o, o + nc,
                   o + 2 * nc, o + 3 * nc, nc);
          }
        float *d = p + (WG_M * ty * cols + WG_M * tx) * nc;
        for (int c = 0; c < WG_M; c++) /* Aᵀ down column c */
          {
            const float *q = tmp + c * nc;
            float *o = d + c * nc;
            wg_at (q, q + 4 * nc, q + 8 * nc, q + 12 * nc, q + 16 * nc, q + 20 * nc, o, o + rs,
                   o + 2 * rs, o + 3 * rs, nc);
          }
      }
}

/* dM[ξ][t] (stride xs) = A dY Aᵀ for every tile of the planes p (4·th × 4·tw, zero-padded). */
static void FG_CLONES
wg_grad_output (const WgGeom *wg, gsize nc, const float *p, float *restrict tmp, float *dm,
                gsize xs)
{
  const gsize cols = WG_M * wg->tw, rs = cols * nc;
  for (gsize ty = 0; ty < wg->th; ty++)
    for (gsize tx = 0; tx < wg->tw; tx++)
      {
        const float *d = p + (WG_M * ty * cols + WG_M * tx) * nc;
        float *o = dm + (ty * wg->tw + tx) * nc;
        for (int c = 0; c < WG_M; c++) /* A down column c: tmp[a][c] */
          {
            const float *q = d + c * nc;
            float *t = tmp + c * nc;
            wg_a (q, q + rs, q + 2 * rs, q + 3 * rs, t, t + 4 * nc, t + 8 * nc, t + 12 * nc,
                  t + 16 * nc, t + 20 * nc, nc);
          }
        for (int a = 0; a < WG_A; a++) /* Aᵀ's adjoint along row a */
          {
            const float *r = tmp + 4 * a * nc;
            float *q = o + 6 * a * xs;
            wg_a (r, r + nc, r + 2 * nc, r + 3 * nc, q, q + xs, q + 2 * xs, q + 3 * xs,
                  q + 4 * xs, q + 5 * xs, nc);
          }
      }
}

/* p (padded planes, zeroed by the caller) += Σ_tiles B dV Bᵀ, dV[ξ][t] with stride xs. */
static void FG_CLONES
wg_grad_input (const WgGeom *wg, gsize nc, const float *dv, gsize xs, float *restrict tmp,
               float *p)
{
  const gsize rs = wg->pw * nc;
  for (gsize ty = 0; ty < wg->th; ty++)
    for (gsize tx = 0; tx < wg->tw; tx++)
      {
        const float *s = dv + (ty * wg->tw + tx) * nc;
        for (int a = 0; a < WG_A; a++) /* B along row a: tmp[a][j] */
          {
            const float *q = s + 6 * a * xs;
            float *o = tmp + 6 * a * nc;
            wg_b (q, q + xs, q + 2 * xs, q + 3 * xs, q + 4 * xs, q + 5 * xs, o, o + nc,
                  o + 2 * nc, o + 3 * nc, o + 4 * nc, o + 5 * nc, nc);
          }
        float *d = p + (WG_M * ty * wg->pw + WG_M * tx) * nc;
        for (int j = 0; j < WG_A; j++) /* B down column j, into the overlapping tile */
          {
            const float *q = tmp + j * nc;
            float *o = d + j * nc;
            wg_b_add (q, q + 6 * nc, q + 12 * nc, q + 18 * nc, q + 24 * nc, q + 30 * nc, o,
                      o + rs, o + 2 * rs, o + 3 * rs, o + 4 * rs, o + 5 * rs, nc);
          }
      }
}

/* V of the chunk's images [c0, c0 + nc) of X: [ξ][ci][t], T = nc · tpi. */
static void
wg_chunk_input (const ConvGeom *g, const WgGeom *wg, const FgTensor *X, gsize c0, gsize nc,
                float *p, float *tmp, float *V)
{
  const gsize T = nc * wg->tpi;
  for (gsize ci = 0; ci < g->cin; ci++)
    {
      wg_gather (X, c0, nc, ci * g->h * g->w, g->h, g->w, 1, wg->ph, wg->pw, p);
      wg_input (wg, nc, p, tmp, V + ci * T, g->cin * T);
    }
}

/* Forward of a chunk of images: V, then 36 sgemms, then the output transform. */
typedef struct {
  const ConvGeom *g;
  const WgGeom *wg;
  const FgTensor *X;
  const float *U, *bias;
  FgTensor *Y;
  float *ws;    /* per task: V, M and tmp */
  gsize ws_task;
  gsize N;
} WgFwdJob;

static void
wg_fwd_task (gpointer data, guint t, guint n_tasks)
{
  const WgFwdJob *j = data;
  const ConvGeom *g = j->g;
  const WgGeom *wg = j->wg;
  const gsize tmax = wg->nb * wg->tpi, oplane = g->ho * g->wo;
  float *V = j->ws + t * j->ws_task, *M = V + WG_XI * g->cin * tmax;
  float *p = M + WG_XI * g->cout * tmax, *tmp = p + wg->ph * wg->pw * wg->nb;
  gsize n0, n1;
  _fg_pool_range (j->N, t, n_tasks, 1, &n0, &n1);
  for (gsize c0 = n0; c0 < n1; c0 += wg->nb)
    {
      const gsize nc = MIN (wg->nb, n1 - c0), T = nc * wg->tpi;
      const gsize xsv = g->cin * T, xsm = g->cout * T;
      wg_chunk_input (g, wg, j->X, c0, nc, p, tmp, V);
      for (gsize xi = 0; xi < WG_XI; xi++)
        _fg_sgemm (FALSE, FALSE, g->cout, T, g->cin, 1.0f, j->U + xi * g->cout * g->cin, g->cin,
                   V + xi * xsv, T, 0.0f, M + xi * xsm, T);
      for (gsize co = 0; co < g->cout; co++)
        {
          wg_output (wg, nc, M + co * T, xsm, tmp, p);
          wg_scatter (p, nc, 0, WG_M * wg->tw, j->Y, c0, co * oplane, g->ho, g->wo,
                      j->bias ? j->bias[co] : 0.0f, TRUE);
        }
    }
}

static void
wg_forward (FgTape *tape, const ConvGeom *g, const FgTensor *X, const FgTensor *W,
            const float *bias, FgTensor *Y, guint tasks)
{
  const gsize N = fg_tensor_rows (X), K = g->cin * 9;
  WgGeom wg;
  wg_geom (g, (N + tasks - 1) / tasks, &wg);
  const gsize tmax = wg.nb * wg.tpi;
  const gsize u_size = round_up_floats (WG_XI * g->cout * g->cin);
  const gsize ws_task = round_up_floats (MAX (WG_XI * (g->cin + g->cout) * tmax + wg.tmp,
                                              54 * g->cin)); /* wg_weights' scratch */
  float *ws = _fg_tape_workspace (tape, (u_size + tasks * ws_task) * sizeof (float));
  /* task 0's share of the workspace is free until the tasks start */
  wg_weights (W->data, MAX (W->ld, K), g->cout, g->cin, ws, (double *) (ws + u_size));
  WgFwdJob j = { g, &wg, X, ws, bias, Y, ws + u_size, ws_task, N };
  if (tasks > 1)
    _fg_pool_run (tasks, wg_fwd_task, &j);
  else
    wg_fwd_task (&j, 0, 1);
}

/* Backward of a chunk: dM from dY; dU_t += dM · Vᵀ (V recomputed from X); dV = Uᵀ · dM into V's
 * place; dX from dV. */
typedef struct {
  const ConvGeom *g;
  const WgGeom *wg;
  const FgTensor *X, *G;
  const float *U;
  FgTensor *dX;
  gboolean dx_fresh;
  float *dU;    /* [tasks][du_stride], NULL without dW */
  gsize du_stride;
  float *ws;
  gsize ws_task;
  gsize N;
} WgBwdJob;

static void
wg_bwd_task (gpointer data, guint t, guint n_tasks)
{
  const WgBwdJob *j = data;
  const ConvGeom *g = j->g;
  const WgGeom *wg = j->wg;
  const gsize tmax = wg->nb * wg->tpi, u_size = WG_XI * g->cout * g->cin;
  const gsize plane = g->h * g->w, oplane = g->ho * g->wo;
  float *V = j->ws + t * j->ws_task, *dM = V + WG_XI * g->cin * tmax;
  float *p = dM + WG_XI * g->cout * tmax, *tmp = p + wg->ph * wg->pw * wg->nb;
  float *dU = j->dU ? j->dU + t * j->du_stride : NULL;
  gboolean du_first = TRUE;
  gsize n0, n1;
  _fg_pool_range (j->N, t, n_tasks, 1, &n0, &n1);
  if (dU != NULL && n0 == n1)
    memset (dU, 0, u_size * sizeof (float));
  for (gsize c0 = n0; c0 < n1; c0 += wg->nb)
    {
      const gsize nc = MIN (wg->nb, n1 - c0), T = nc * wg->tpi;
      const gsize xsv = g->cin * T, xsm = g->cout * T;
      for (gsize co = 0; co < g->cout; co++)
        {
          wg_gather (j->G, c0, nc, co * oplane, g->ho, g->wo, 0, WG_M * wg->th, WG_M * wg->tw,
                     p);
          wg_grad_output (wg, nc, p, tmp, dM + co * T, xsm);
        }
      if (dU != NULL)
        {
          wg_chunk_input (g, wg, j->X, c0, nc, p, tmp, V);
          for (gsize xi = 0; xi < WG_XI; xi++) /* dU[ξ] [Cout, Cin] += dM[ξ] · V[ξ]ᵀ */
            _fg_sgemm (FALSE, TRUE, g->cout, g->cin, T, 1.0f, dM + xi * xsm, T, V + xi * xsv, T,
                       du_first ? 0.0f : 1.0f, dU + xi * g->cout * g->cin, g->cin);
          du_first = FALSE;
        }
      if (j->dX != NULL)
        {
          for (gsize xi = 0; xi < WG_XI; xi++) /* dV[ξ] [Cin, T] = U[ξ]ᵀ · dM[ξ] */
            _fg_sgemm (TRUE, FALSE, g->cin, T, g->cout, 1.0f, j->U + xi * g->cout * g->cin,
                       g->cin, dM + xi * xsm, T, 0.0f, V + xi * xsv, T);
          for (gsize ci = 0; ci < g->cin; ci++)
            {
              memset (p, 0, wg->ph * wg->pw * nc * sizeof (float));
              wg_grad_input (wg, nc, V + ci * T, xsv, tmp, p);
              wg_scatter (p, nc, 1, wg->pw, j->dX, c0, ci * plane, g->h, g->w, 0.0f,
                          j->dx_fresh);
            }
        }
    }
}

static void
wg_backward (FgTape *tape, const ConvGeom *g, const FgTensor *X, const FgTensor *W,
             const FgTensor *G, FgTensor *dX, gboolean dx_fresh, FgTensor *dW, gboolean dw_fresh,
             guint tasks)
{
  const gsize N = fg_tensor_rows (X), K = g->cin * 9;
  WgGeom wg;
  wg_geom (g, (N + tasks - 1) / tasks, &wg);
  const gsize tmax = wg.nb * wg.tpi;
  const gsize u_size = round_up_floats (WG_XI * g->cout * g->cin);
  const gsize ws_task = round_up_floats (MAX (WG_XI * (g->cin + g->cout) * tmax + wg.tmp,
                                              54 * g->cin)); /* wg_weights' scratch */
  const gsize n_du = dW != NULL ? tasks : 0;
  float *ws = _fg_tape_workspace (tape, ((1 + n_du) * u_size + tasks * ws_task) * sizeof (float));
  float *U = ws, *dU = n_du ? ws + u_size : NULL;
  float *task_ws = ws + (1 + n_du) * u_size; /* free before and after the tasks: scratch */
  if (dX != NULL)
    wg_weights (W->data, MAX (W->ld, K), g->cout, g->cin, U, (double *) task_ws);
  WgBwdJob j = { g, &wg, X, G, U, dX, dx_fresh, dU, u_size, task_ws, ws_task, N };
  if (tasks > 1)
    _fg_pool_run (tasks, wg_bwd_task, &j);
  else
    wg_bwd_task (&j, 0, 1);
  if (dW != NULL)
    {
      for (guint t = 1; t < tasks; t++) /* in task order: the sum depends on the task count only */
        {
          float *restrict d = dU;
          const float *restrict s = dU + t * u_size;
          FG_SIMD_FOR (k, WG_XI * g->cout * g->cin, d[k] += s[k]);
        }
      wg_weights_adjoint (dU, g->cout, g->cin, dW->data, MAX (dW->ld, K), dw_fresh,
                          (double *) task_ws);
    }
}

typedef struct {
  ConvGeom g;
  gboolean has_bias;
} ConvSaved;

/* Images are split over the core's pool: each task works on a contiguous range of images with
 * its own im2col buffers and single-threaded sgemm, and the weight gradient of task t goes to
 * partial buffer t (task 0 straight into dW), summed in task order afterwards, so the result
 * depends only on the number of tasks. */
typedef struct {
  const ConvGeom *g;
  const FgTensor *X, *W, *G;
  FgTensor *dX, *dW;
  gboolean dx_fresh, dw_fresh;
  float *scratch;   /* per task: col and dcol, K·P each */
  float *dw_part;   /* tasks 1 .. n-1: Cout·K each */
  gsize N;
} ConvBwdJob;

static void
conv_bwd_task (gpointer data, guint t, guint n_tasks)
{
  const ConvBwdJob *j = data;
  const ConvGeom *g = j->g;
  const gsize K = g->cin * g->kh * g->kw, P = g->ho * g->wo;
  const gsize ldw = MAX (j->W->ld, K);
  const gboolean pointwise = conv_is_pointwise (g);
  float *col = j->scratch + t * 2 * K * P, *dcol = col + K * P;
  gsize n0, n1;
  _fg_pool_range (j->N, t, n_tasks, 1, &n0, &n1);
  float *dw = NULL;
  gsize lddw = K;
  gboolean dw_first = TRUE; /* the first image of this task overwrites its buffer */
  if (j->dW != NULL)
    {
      if (t == 0)
        {
          dw = j->dW->data;
          lddw = MAX (j->dW->ld, K);
          dw_first = j->dw_fresh;
        }
      else
        dw = j->dw_part + (t - 1) * g->cout * K;
      if (n0 == n1 && dw_first)
        memset (dw, 0, g->cout * K * sizeof (float)); /* no image: a zero share */
    }
  for (gsize n = n0; n < n1; n++)
    {
      const float *xn = fg_tensor_row (j->X, n);
      const float *gn = fg_tensor_row (j->G, n);
      if (dw != NULL)
        {
          const float *cn = xn;
          if (!pointwise)
            {
              im2col (g, xn, col);
              cn = col;
            }
          /* dW [Cout, K] += dY_n [Cout, P] · col_nᵀ */
          _fg_sgemm (FALSE, TRUE, g->cout, K, P, 1.0f, gn, P, cn, P,
                     (dw_first && n == n0) ? 0.0f : 1.0f, dw, lddw);
        }
      if (j->dX != NULL)
        {
          float *dxn = fg_tensor_row (j->dX, n);
          if (pointwise) /* dx_n [Cin, P] (+)= Wᵀ · dY_n */
            _fg_sgemm (TRUE, FALSE, K, P, g->cout, 1.0f, j->W->data, ldw, gn, P,
                       j->dx_fresh ? 0.0f : 1.0f, dxn, P);
          else
            {
              if (j->dx_fresh) /* col2im accumulates: start from zero */
                memset (dxn, 0, fg_tensor_cols (j->dX) * sizeof (float));
              _fg_sgemm (TRUE, FALSE, K, P, g->cout, 1.0f, j->W->data, ldw, gn, P, 0.0f, dcol, P);
              col2im_add (g, dcol, dxn);
            }
        }
    }
}

static void
conv_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const ConvSaved *cs = saved;
  const ConvGeom *g = &cs->g;
  const FgTensor *X = &in[0]->value, *W = &in[1]->value, *G = &out->grad;
  const gsize N = fg_tensor_rows (X), K = g->cin * g->kh * g->kw, P = g->ho * g->wo;
  gboolean dx_fresh = FALSE, dw_fresh = FALSE, db_fresh = FALSE;

  FgTensor *dX = _fg_tape_grad_fresh (tape, in[0], &dx_fresh);
  FgTensor *dW = _fg_tape_grad_fresh (tape, in[1], &dw_fresh);
  FgTensor *db = cs->has_bias ? _fg_tape_grad_fresh (tape, in[2], &db_fresh) : NULL;

  if ((dX != NULL || dW != NULL) && conv_is_winograd (g))
    {
      const double flops = 2.0 * (double) N * g->cout * K * P * ((dX != NULL) + (dW != NULL));
      const guint tasks = MIN ((gsize) _fg_pool_tasks (flops * FG_POOL_NS_PER_FLOP), MAX (N, 1));
      wg_backward (tape, g, X, W, G, dX, dx_fresh, dW, dw_fresh, tasks);
    }
  else if (dX != NULL || dW != NULL)
    {
      const double flops = 2.0 * (double) N * g->cout * K * P * ((dX != NULL) + (dW != NULL));
      const guint tasks = MIN ((gsize) _fg_pool_tasks (flops * FG_POOL_NS_PER_FLOP), MAX (N, 1));
      ConvBwdJob j = { g, X, W, G, dX, dW, dx_fresh, dw_fresh, NULL, NULL, N };
      j.scratch = fg_tape_alloc_floats (tape, MAX (tasks * 2 * K * P, 1));
      if (dW != NULL && tasks > 1)
        j.dw_part = fg_tape_alloc_floats (tape, (tasks - 1) * g->cout * K);
      if (tasks > 1)
        _fg_pool_run (tasks, conv_bwd_task, &j);
      else
        conv_bwd_task (&j, 0, 1);
      if (dW != NULL)
        {
          const gsize lddw = MAX (dW->ld, K);
          if (N == 0 && dw_fresh) /* an empty batch still owes a zero gradient */
            for (gsize o = 0; o < g->cout; o++)
              memset (dW->data + o * lddw, 0, K * sizeof (float));
          for (guint t = 1; t < tasks; t++)
            for (gsize o = 0; o < g->cout; o++)
              {
                float *restrict d = dW->data + o * lddw;
                const float *restrict p = j.dw_part + ((t - 1) * g->cout + o) * K;
                FG_SIMD_FOR (k, K, d[k] += p[k]);
              }
        }
    }
  if (db != NULL)
    {
      double *acc = fg_tape_alloc (tape, g->cout * sizeof (double));
      memset (acc, 0, g->cout * sizeof (double));
      for (gsize n = 0; n < N; n++)
        for (gsize c = 0; c < g->cout; c++)
          acc[c] += fg_sum_f64 (fg_tensor_row (G, n) + c * P, P);
      for (gsize c = 0; c < g->cout; c++)
        db->data[c] = (float) ((db_fresh ? 0.0 : db->data[c]) + acc[c]);
    }
}

typedef struct {
  const ConvGeom *g;
  const FgTensor *X, *W;
  const float *bias;
  FgTensor *Y;
  float *scratch; /* per task: K·P (im2col), NULL for a pointwise kernel */
  gsize N;
} ConvFwdJob;

static void
conv_fwd_task (gpointer data, guint t, guint n_tasks)
{
  const ConvFwdJob *j = data;
  const ConvGeom *g = j->g;
  const gsize K = g->cin * g->kh * g->kw, P = g->ho * g->wo;
  float *col = j->scratch ? j->scratch + t * K * P : NULL;
  gsize n0, n1;
  _fg_pool_range (j->N, t, n_tasks, 1, &n0, &n1);
  for (gsize n = n0; n < n1; n++)
    {
      const float *xn = fg_tensor_row (j->X, n);
      float *yn = fg_tensor_row (j->Y, n);
      if (col != NULL)
        im2col (g, xn, col);
      if (j->bias != NULL)
        for (gsize c = 0; c < g->cout; c++)
          {
            float *restrict yc = yn + c * P;
            const float v = j->bias[c];
            FG_SIMD_FOR (i, P, yc[i] = v);
          }
      _fg_sgemm (FALSE, FALSE, g->cout, P, K, 1.0f, j->W->data, MAX (j->W->ld, K),
                 col ? col : xn, P, j->bias ? 1.0f : 0.0f, yn, P);
    }
}

/**
 * fg_op_conv2d:
 * @tape: a tape
 * @x: (nullable): N×Cin×H×W (a channel slice, strided over rows, is fine)
 * @w: (nullable): [Cout, Cin, kh, kw]
 * @bias: (nullable): [1, Cout], or NULL for no bias
 * @pad: zero padding on every side
 *
 * Stride-1 cross-correlation (as in PyTorch's Conv2d).
 *
 * Returns: (transfer none) (nullable): N×Cout×(H+2pad−kh+1)×(W+2pad−kw+1).
 */
FgVar *
fg_op_conv2d (FgTape *tape, FgVar *x, FgVar *w, FgVar *bias, guint pad)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (x == NULL || w == NULL)
    return NULL;
  const FgTensor *X = &x->value, *W = &w->value;
  ConvGeom g = { 0 };
  gboolean ok = X->ndim == 4 && W->ndim == 4 && W->shape[1] == X->shape[1]
                && X->shape[2] + 2 * pad >= W->shape[2] && X->shape[3] + 2 * pad >= W->shape[3]
                && W->shape[2] > 0 && W->shape[3] > 0;
  if (ok)
    {
      g.cin = X->shape[1];
      g.h = X->shape[2];
      g.w = X->shape[3];
      g.cout = W->shape[0];
      g.kh = W->shape[2];
      g.kw = W->shape[3];
      g.pad = pad;
      g.ho = g.h + 2 * pad - g.kh + 1;
      g.wo = g.w + 2 * pad - g.kw + 1;
      ok = bias == NULL
           || (fg_tensor_rows (&bias->value) == 1 && fg_tensor_cols (&bias->value) == g.cout);
    }
  if (!ok)
    {
      char b1[64], b2[64], b3[64];
      g_critical ("fg_op_conv2d: x %s, w %s, bias %s and pad %u do not fit x N×Cin×H×W, "
                  "w [Cout, Cin, kh, kw], bias [1, Cout]",
                  _fg_tape_shape_str (X, b1, sizeof b1), _fg_tape_shape_str (W, b2, sizeof b2),
                  bias ? _fg_tape_shape_str (&bias->value, b3, sizeof b3) : "(none)", pad);
      return NULL;
    }

  const gsize N = fg_tensor_rows (X), K = g.cin * g.kh * g.kw, P = g.ho * g.wo;
  gsize shape[4] = { N, g.cout, g.ho, g.wo };
  FgVar *inputs[3] = { x, w, bias };
  ConvSaved *cs;
  FgVar *out = fg_tape_op_new (tape, 4, shape, inputs, bias ? 3 : 2, conv_backward, sizeof *cs,
                               (gpointer *) &cs);
  cs->g = g;
  cs->has_bias = bias != NULL;

  const double flops = 2.0 * (double) N * g.cout * K * P;
  const guint tasks = MIN ((gsize) _fg_pool_tasks (flops * FG_POOL_NS_PER_FLOP), MAX (N, 1));
  if (conv_is_winograd (&g))
    {
      wg_forward (tape, &g, X, W, bias ? bias->value.data : NULL, &out->value, tasks);
      return out;
    }
  ConvFwdJob j = { &g, X, W, bias ? bias->value.data : NULL, &out->value, NULL, N };
  if (!conv_is_pointwise (&g))
    j.scratch = fg_tape_alloc_floats (tape, tasks * K * P);
  if (tasks > 1)
    _fg_pool_run (tasks, conv_fwd_task, &j);
  else
    conv_fwd_task (&j, 0, 1);
  return out;
}
