/* SPDX-License-Identifier: MIT */
/* flowgmm — dataset plugin "npy" with two components:
 *
 *   npy  NumPy .npy files: a features array (N×D, N×H×W or N×C×H×W) and a labels array (N), or
 *        a label column of the features; plain or gzip-compressed (.npy.gz)
 *   npz  a NumPy .npz archive (ZIP, read with libzip) with named members, e.g. the FlowGMM
 *        authors' text data (`encodings` N×768, `labels`) or their toy sets (`data`, `labels`)
 *
 * Arrays are C-order and little-endian as numpy writes them (format versions 1.0, 2.0, 3.0):
 * float32/float64, signed and unsigned integers of 1 to 8 bytes, and bool.  A big-endian or
 * Fortran-order array is refused with a message saying how to convert it.  Every header field
 * is checked against the data: the exact number of bytes, overflow-checked; labels must be
 * integral and -1 (unknown) or above.
 *
 * Memory: when the size of the data is known in advance (a plain file, a stored npz member),
 * the data stream straight into the float tensor (peak ~1x); otherwise (gzip, a deflated
 * member) the raw bytes are read first into a buffer that grows with the data, then converted.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>
#include <zip.h>

#include "datasets-private.h"

#define NPY_COMMON_PARAMS                                                                       \
  FG_PARAM_SPEC_STRING ("class_names", NULL,                                                   \
                        "names of classes 0, 1, ... separated by commas; labels must then be " \
                        "below their number"),                                                  \
  FG_PARAM_SPEC_STRING ("image_shape", NULL,                                                   \
                        "C,H,W: the rows of a 2-D features array are images of this shape "    \
                        "(3-D and 4-D arrays are images already)"),                             \
  FG_PARAM_SPEC_DOUBLE ("divide_by", "1", 1e-30, INFINITY,                                      \
                        "divide every feature value by this (e.g. 255 for uint8 images)"),     \
  FG_PARAM_SPEC_INT ("max_test_rows", "0", 0, INFINITY,                                         \
                     "keep only the first N rows of the test part (0: all; the authors cut "   \
                     "Yahoo Answers' test set to 10,000)")

static const FgParamSpec npy_params[] = {
  FG_PARAM_SPEC_REQUIRED_PATH ("path",
                               "features .npy file of the training part (or of the whole data "
                               "set, split by the runner); may be gzip-compressed"),
  FG_PARAM_SPEC_PATH ("labels", NULL,
                      "labels .npy file (N integers or integral floats; -1 = unknown); without "
                      "it, set label_column"),
  FG_PARAM_SPEC_FULL ("label_column", FG_PARAM_INT, NULL, -1e6, 1e6, NULL,
                      "take the labels from this column of a 2-D features array (negative "
                      "counts from the end) instead of a labels file",
                      0),
  FG_PARAM_SPEC_PATH ("validation_path", NULL, "features .npy of a separate validation part"),
  FG_PARAM_SPEC_PATH ("validation_labels", NULL, "labels .npy of the validation part"),
  FG_PARAM_SPEC_PATH ("test_path", NULL,
                      "features .npy of the test part; without it, set the split key test = N"),
  FG_PARAM_SPEC_PATH ("test_labels", NULL, "labels .npy of the test part"),
  NPY_COMMON_PARAMS,
  FG_PARAM_SPEC_END,
};

static const FgParamSpec npz_params[] = {
  FG_PARAM_SPEC_REQUIRED_PATH ("path",
                               ".npz archive of the training part (or of the whole data set, "
                               "split by the runner)"),
  FG_PARAM_SPEC_STRING ("features", NULL,
                        "member holding the features; default: 'encodings', 'data', 'x' or "
                        "'X', whichever is present"),
  FG_PARAM_SPEC_STRING ("labels", "labels", "member holding the labels (-1 = unknown)"),
  FG_PARAM_SPEC_PATH ("validation_path", NULL, ".npz archive of a separate validation part"),
  FG_PARAM_SPEC_PATH ("test_path", NULL,
                      ".npz archive of the test part (e.g. ag_news_test.npz); without it, set "
                      "the split key test = N"),
  NPY_COMMON_PARAMS,
  FG_PARAM_SPEC_END,
};

/* ---- The .npy format ----------------------------------------------------------------------- */

typedef enum { DT_F4, DT_F8, DT_I1, DT_I2, DT_I4, DT_I8, DT_U1, DT_U2, DT_U4, DT_U8, DT_B1 } DType;

#define NPY_MAX_DIMS 8
#define NPY_MAX_HEADER (1u << 20)

typedef struct {
  DType    type;
  gsize    itemsize;
  char     descr[16];
  guint    ndim;
  gsize    shape[NPY_MAX_DIMS];
  gsize    count;       /* product of the shape */
  gsize    data_bytes;  /* count × itemsize */
  guint64  data_offset; /* where the data start */
} NpyHeader;

/* A tiny reader of the Python literal numpy writes as the header:
 * {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } */
typedef struct {
  const char *p, *start, *end;
} Lit;

static void
lit_ws (Lit *l)
{
  while (l->p < l->end && g_ascii_isspace (*l->p))
    l->p++;
}

static gboolean
lit_char (Lit *l, char c)
{
  lit_ws (l);
  if (l->p < l->end && *l->p == c)
    {
      l->p++;
      return TRUE;
    }
  return FALSE;
}

static char *
lit_string (Lit *l)
{
  char q;
  const char *s;
  lit_ws (l);
  if (l->p >= l->end || (*l->p != '\'' && *l->p != '"'))
    return NULL;
  q = *l->p++;
  s = l->p;
  while (l->p < l->end && *l->p != q)
    l->p++;
  if (l->p >= l->end)
    return NULL;
  return g_strndup (s, (gsize) (l->p++ - s));
}

static gboolean
lit_word (Lit *l, const char *w)
{
  gsize n = strlen (w);
  lit_ws (l);
  if ((gsize) (l->end - l->p) >= n && memcmp (l->p, w, n) == 0)
    {
      l->p += n;
      return TRUE;
    }
  return FALSE;
}

/* Skip a value of a key this reader does not use. */
static gboolean
lit_skip (Lit *l)
{
  int depth = 0;
  lit_ws (l);
  while (l->p < l->end)
    {
      char c = *l->p;
      if (c == '\'' || c == '"')
        {
          g_autofree char *s = lit_string (l);
          if (s == NULL)
            return FALSE;
          continue;
        }
      if (c == '(' || c == '[' || c == '{')
        depth++;
      else if (c == ')' || c == ']' || c == '}')
        {
          if (depth == 0)
            return TRUE;
          depth--;
        }
      else if (c == ',' && depth == 0)
        return TRUE;
      l->p++;
    }
  return FALSE;
}

static gboolean
parse_descr (const char *d, NpyHeader *h, const char *name, GError **error)
{
  char order, kind;
  guint64 size;
  g_autofree char *shown = _fg_ds_printable (d, -1, 32);
  static const struct {
    char kind;
    gsize size;
    DType type;
  } types[] = {
    { 'f', 4, DT_F4 }, { 'f', 8, DT_F8 }, { 'i', 1, DT_I1 }, { 'i', 2, DT_I2 },
    { 'i', 4, DT_I4 }, { 'i', 8, DT_I8 }, { 'u', 1, DT_U1 }, { 'u', 2, DT_U2 },
    { 'u', 4, DT_U4 }, { 'u', 8, DT_U8 }, { 'b', 1, DT_B1 },
  };
  if (strlen (d) < 3 || strlen (d) >= sizeof h->descr
      || !g_ascii_string_to_unsigned (d + 2, 10, 1, 64, &size, NULL))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "%s: array type '%s' is not supported (only plain numbers: float32/64, "
                   "integers, bool)",
                   name, shown);
      return FALSE;
    }
  order = d[0];
  kind = d[1];
  g_strlcpy (h->descr, shown, sizeof h->descr);
  if (order == '>' && size > 1)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "%s: big-endian array ('%s'): save it little-endian, e.g. "
                   "np.save(f, a.astype('<%s'))",
                   name, shown, shown + 1);
      return FALSE;
    }
  if (order != '<' && order != '|' && order != '>' && !(order == '=' && size == 1))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "%s: array type '%s' has an unknown byte order", name, shown);
      return FALSE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    if (types[i].kind == kind && types[i].size == size)
      {
        h->type = types[i].type;
        h->itemsize = types[i].size;
        return TRUE;
      }
  g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
               "%s: array type '%s' is not supported (only float32 '<f4', float64 '<f8', "
               "integers '<i1'..'<i8', '<u1'..'<u8' and bool '|b1')",
               name, shown);
  return FALSE;
}

static gboolean
parse_header_dict (const char *text, gsize len, NpyHeader *h, const char *name, GError **error)
{
  Lit l = { text, text, text + len };
  gboolean have_descr = FALSE, have_order = FALSE, have_shape = FALSE, fortran = FALSE;
  const char *what = "'{'";

  if (!lit_char (&l, '{'))
    goto bad;
  for (;;)
    {
      g_autofree char *key = NULL;
      if (lit_char (&l, '}'))
        break;
      what = "a quoted key";
      key = lit_string (&l);
      if (key == NULL)
        goto bad;
      what = "':'";
      if (!lit_char (&l, ':'))
        goto bad;
      if (strcmp (key, "descr") == 0)
        {
          g_autofree char *d = NULL;
          lit_ws (&l);
          if (l.p < l.end && *l.p == '[')
            {
              g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                           "%s: a structured array (record dtype) is not supported; save a "
                           "plain numeric array",
                           name);
              return FALSE;
            }
          what = "a quoted type such as '<f4'";
          d = lit_string (&l);
          if (d == NULL)
            goto bad;
          if (!parse_descr (d, h, name, error))
            return FALSE;
          have_descr = TRUE;
        }
      else if (strcmp (key, "fortran_order") == 0)
        {
          what = "True or False";
          if (lit_word (&l, "True"))
            fortran = TRUE;
          else if (!lit_word (&l, "False"))
            goto bad;
          have_order = TRUE;
        }
      else if (strcmp (key, "shape") == 0)
        {
          what = "a shape tuple such as (3, 4)";
          if (!lit_char (&l, '('))
            goto bad;
          h->ndim = 0;
          while (!lit_char (&l, ')'))
            {
              guint64 v = 0;
              gboolean digits = FALSE;
              lit_ws (&l);
              while (l.p < l.end && g_ascii_isdigit (*l.p))
                {
                  if (v > G_MAXUINT64 / 10 - 10)
                    goto bad;
                  v = v * 10 + (guint64) (*l.p++ - '0');
                  digits = TRUE;
                }
              if (l.p < l.end && *l.p == 'L')
                l.p++; /* Python 2's long */
              if (!digits || h->ndim == NPY_MAX_DIMS || v > G_MAXSIZE)
                {
                  what = digits ? "at most 8 dimensions" : "a dimension";
                  goto bad;
                }
              h->shape[h->ndim++] = (gsize) v;
              if (!lit_char (&l, ',') && !(lit_ws (&l), l.p < l.end && *l.p == ')'))
                goto bad;
            }
          have_shape = TRUE;
        }
      else if (!lit_skip (&l))
        goto bad;
      what = "',' or '}'";
      if (!lit_char (&l, ','))
        {
          if (lit_char (&l, '}'))
            break;
          goto bad;
        }
    }
  if (!have_descr || !have_order || !have_shape)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: the .npy header lacks '%s'", name,
                   !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
      return FALSE;
    }
  if (fortran)
    {
      guint big = 0;
      for (guint d = 0; d < h->ndim; d++)
        big += h->shape[d] > 1;
      if (big > 1)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                       "%s: a Fortran-order (column-major) array is not supported; save it in C "
                       "order, e.g. np.save(f, np.ascontiguousarray(a))",
                       name);
          return FALSE;
        }
    }
  return TRUE;

bad:
  {
    g_autofree char *shown = _fg_ds_printable (text, (gssize) len, 200);
    g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                 "%s: malformed .npy header at byte offset %" G_GSIZE_FORMAT ": expected %s in "
                 "'%s'",
                 name, (gsize) (l.p - l.start) + 10, what, shown);
  }
  return FALSE;
}

static gboolean
read_npy_header (FgDsReader *r, NpyHeader *h, GError **error)
{
  guint8 pre[10];
  guint8 len4[2];
  gsize hlen, pre_len;
  g_autofree char *text = NULL;
  gssize got;

  memset (h, 0, sizeof *h);
  got = _fg_ds_reader_read_some (r, pre, 8, error);
  if (got < 0)
    return FALSE;
  if (got == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: empty file (expected a .npy array)",
                   r->name);
      return FALSE;
    }
  if (got < 6 || memcmp (pre, "\x93NUMPY", 6) != 0)
    {
      g_set_error (error, FG_ERROR, got < 6 ? FG_ERROR_CORRUPT : FG_ERROR_DATA,
                   "%s: not a .npy file: it does not start with the magic \"\\x93NUMPY\"%s",
                   r->name, got < 6 ? " (truncated)" : "");
      return FALSE;
    }
  if (got < 8)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                   "%s: truncated: the data end at byte offset %zd in the .npy version", r->name,
                   got);
      return FALSE;
    }
  if (pre[6] == 1)
    {
      if (!_fg_ds_reader_read (r, len4, 2, "the .npy header length", error))
        return FALSE;
      hlen = (gsize) len4[0] | ((gsize) len4[1] << 8);
      pre_len = 10;
    }
  else if (pre[6] == 2 || pre[6] == 3)
    {
      guint8 b[4];
      if (!_fg_ds_reader_read (r, b, 4, "the .npy header length", error))
        return FALSE;
      hlen = (gsize) b[0] | ((gsize) b[1] << 8) | ((gsize) b[2] << 16) | ((gsize) b[3] << 24);
      pre_len = 12;
    }
  else
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "%s: .npy format version %u.%u is not supported (1.0, 2.0 and 3.0 are)",
                   r->name, pre[6], pre[7]);
      return FALSE;
    }
  if (hlen == 0 || hlen > NPY_MAX_HEADER)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                   "%s: implausible .npy header length %" G_GSIZE_FORMAT " at byte offset 8",
                   r->name, hlen);
      return FALSE;
    }
  text = g_malloc (hlen + 1);
  if (!_fg_ds_reader_read (r, text, hlen, "the .npy header", error))
    return FALSE;
  text[hlen] = '\0';
  if (!parse_header_dict (text, hlen, h, r->name, error))
    return FALSE;
  h->count = 1;
  for (guint d = 0; d < h->ndim; d++)
    if (!g_size_checked_mul (&h->count, h->count, h->shape[d]))
      goto overflow;
  if (!g_size_checked_mul (&h->data_bytes, h->count, h->itemsize))
    goto overflow;
  h->data_offset = pre_len + hlen;
  return TRUE;
overflow:
  g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: the .npy shape overflows the address space",
               r->name);
  return FALSE;
}

static char *
shape_string (const NpyHeader *h)
{
  g_autoptr (GString) s = g_string_new ("(");
  for (guint d = 0; d < h->ndim; d++)
    g_string_append_printf (s, "%s%" G_GSIZE_FORMAT, d ? ", " : "", h->shape[d]);
  g_string_append (s, h->ndim == 1 ? ",)" : ")");
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/* ---- Values --------------------------------------------------------------------------------- */

static inline double
value_at (const guint8 *p, DType t)
{
  switch (t)
    {
    case DT_F4: { guint32 u; float f; memcpy (&u, p, 4); u = GUINT32_FROM_LE (u); memcpy (&f, &u, 4); return f; }
    case DT_F8: { guint64 u; double f; memcpy (&u, p, 8); u = GUINT64_FROM_LE (u); memcpy (&f, &u, 8); return f; }
    case DT_I1: return (gint8) p[0];
    case DT_I2: { guint16 u; memcpy (&u, p, 2); return (gint16) GUINT16_FROM_LE (u); }
    case DT_I4: { guint32 u; memcpy (&u, p, 4); return (gint32) GUINT32_FROM_LE (u); }
    case DT_I8: { guint64 u; memcpy (&u, p, 8); return (double) (gint64) GUINT64_FROM_LE (u); }
    case DT_U1: return p[0];
    case DT_U2: { guint16 u; memcpy (&u, p, 2); return GUINT16_FROM_LE (u); }
    case DT_U4: { guint32 u; memcpy (&u, p, 4); return GUINT32_FROM_LE (u); }
    case DT_U8: { guint64 u; memcpy (&u, p, 8); return (double) GUINT64_FROM_LE (u); }
    case DT_B1: return p[0] != 0;
    default: return NAN;
    }
}

/* Where the elements of an array go: features (with an optional label column taken out) or
 * labels. */
typedef struct {
  const NpyHeader *h;
  const char *name;
  float *x;          /* features, or NULL */
  gint32 *y;         /* labels, or NULL */
  gsize cols_in;     /* elements per row in the file */
  gssize label_col;  /* column of the features holding the labels, or -1 */
  float divide_by;
  gsize e;           /* elements consumed */
  gsize xi;          /* features written */
} Sink;

static gboolean
label_value (Sink *s, double v, gsize element, gint32 *out, GError **error)
{
  if (!(v == floor (v)) || v < -1.0 || v >= (double) G_MAXINT32)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: label %g of row %" G_GSIZE_FORMAT " (byte offset %" G_GUINT64_FORMAT
                   ") is not a class index (integers 0, 1, ..., or -1 for unknown)",
                   s->name, v, element / (s->label_col >= 0 ? s->cols_in : 1),
                   s->h->data_offset + (guint64) element * s->h->itemsize);
      return FALSE;
    }
  *out = (gint32) v;
  return TRUE;
}

/* Consume n elements. */
static gboolean
sink_put (Sink *s, const guint8 *raw, gsize n, GError **error)
{
  const DType t = s->h->type;
  const gsize size = s->h->itemsize;
  if (s->y != NULL && s->x == NULL)
    {
      for (gsize i = 0; i < n; i++, s->e++)
        if (!label_value (s, value_at (raw + i * size, t), s->e, &s->y[s->e], error))
          return FALSE;
      return TRUE;
    }
  if (s->label_col < 0)
    {
      float *dst = s->x + s->xi;
      if (t == DT_F4 && s->divide_by == 1.0f && G_BYTE_ORDER == G_LITTLE_ENDIAN)
        memcpy (dst, raw, n * 4);
      else if (t == DT_F8)
        for (gsize i = 0; i < n; i++)
          dst[i] = (float) value_at (raw + i * 8, DT_F8);
      else
        for (gsize i = 0; i < n; i++)
          dst[i] = (float) value_at (raw + i * size, t);
      if (s->divide_by != 1.0f)
        for (gsize i = 0; i < n; i++)
          dst[i] /= s->divide_by;
      s->xi += n;
      s->e += n;
      return TRUE;
    }
  for (gsize i = 0; i < n; i++, s->e++)
    {
      double v = value_at (raw + i * size, t);
      gsize col = s->e % s->cols_in;
      if ((gssize) col == s->label_col)
        {
          if (!label_value (s, v, s->e, &s->y[s->e / s->cols_in], error))
            return FALSE;
        }
      else
        s->x[s->xi++] = (float) v / s->divide_by;
    }
  return TRUE;
}

/* FALSE (truncated) when a source of `size` bytes (known, or only claimed by an archive's
 * directory; -1: unknown) cannot hold the data the header promises.  Checked before anything
 * of the promised size is allocated. */
static gboolean
data_fits (const char *name, const NpyHeader *h, gint64 size, GError **error)
{
  if (size >= 0 && (guint64) size < h->data_offset + h->data_bytes)
    {
      g_autofree char *shape = shape_string (h);
      g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                   "%s: truncated: the header promises a %s array of '%s' (%" G_GSIZE_FORMAT
                   " bytes from byte offset %" G_GUINT64_FORMAT ") but the data end at byte "
                   "offset %" G_GINT64_FORMAT,
                   name, shape, h->descr, h->data_bytes, h->data_offset, size);
      return FALSE;
    }
  return TRUE;
}

/* Read the data after the header into the sink.  `known_size` is the source's total size in
 * bytes when it is known and trustworthy (else -1). */
static gboolean
read_data (FgDsReader *r, const NpyHeader *h, gint64 known_size, Sink *s, GError **error)
{
  const gsize chunk = (gsize) 1 << 20;
  g_autofree guint8 *buf = NULL;
  gsize done = 0;

  if (known_size >= 0)
    {
      guint64 want = h->data_offset + h->data_bytes;
      if (!data_fits (r->name, h, known_size, error))
        return FALSE;
      if ((guint64) known_size > want)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                       "%s: %" G_GUINT64_FORMAT " unexpected bytes after the array data, from "
                       "byte offset %" G_GUINT64_FORMAT " (is the header's shape wrong?)",
                       r->name, (guint64) known_size - want, want);
          return FALSE;
        }
      buf = g_malloc (MIN (chunk, MAX (h->data_bytes, 1)));
      while (done < h->data_bytes)
        {
          gsize want_now = MIN (chunk, h->data_bytes - done);
          want_now -= want_now % h->itemsize;
          if (want_now == 0)
            want_now = h->itemsize;
          if (!_fg_ds_reader_read (r, buf, want_now, "the array data", error)
              || !sink_put (s, buf, want_now / h->itemsize, error))
            return FALSE;
          done += want_now;
        }
    }
  else
    {
      buf = _fg_ds_reader_read_alloc (r, h->data_bytes, "the array data", error);
      if (buf == NULL)
        {
          g_autofree char *shape = shape_string (h);
          _fg_ds_append_error (error, "; the header promises a %s array of '%s'", shape,
                               h->descr);
          return FALSE;
        }
      if (!sink_put (s, buf, h->count, error))
        return FALSE;
    }
  return _fg_ds_reader_expect_end (r, "the array data", error);
}

/* ---- Arrays from files or archive members ----------------------------------------------------- */

typedef struct {
  FgDsReader reader;
  gint64 known_size;
  gint64 claimed_size;  /* a deflated member's size in the archive's directory, or -1 */
  GInputStream *stream; /* owned, for files */
  zip_file_t *zf;       /* owned, for members */
  char *name;           /* owned: "path" or "path:member.npy" */
} Source;

static void
source_close (Source *src)
{
  g_clear_object (&src->stream);
  if (src->zf != NULL)
    zip_fclose (src->zf);
  src->zf = NULL;
  g_clear_pointer (&src->name, g_free);
}

static gboolean
source_open_file (Source *src, const char *path, GError **error)
{
  guint8 magic[2] = { 0, 0 };
  GStatBuf st;
  FILE *f;
  memset (src, 0, sizeof *src);
  src->stream = fg_file_open_stream (path, error);
  if (src->stream == NULL)
    return FALSE;
  src->name = g_strdup (path);
  _fg_ds_reader_init_stream (&src->reader, src->stream, src->name);
  src->known_size = -1;
  src->claimed_size = -1;
  /* a plain (not gzip) file has a known size */
  f = g_fopen (path, "rb");
  if (f != NULL)
    {
      gsize n = fread (magic, 1, 2, f);
      fclose (f);
      if (!(n == 2 && magic[0] == 0x1f && magic[1] == 0x8b) && g_stat (path, &st) == 0)
        src->known_size = (gint64) st.st_size;
    }
  return TRUE;
}

static gssize
zip_read_func (gpointer source, void *buf, gsize count, GError **error)
{
  Source *src = source;
  zip_int64_t got = zip_fread (src->zf, buf, count);
  if (got < 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                   "%s: corrupt archive member near byte offset %" G_GUINT64_FORMAT ": %s",
                   src->name, src->reader.offset, zip_error_strerror (zip_file_get_error (src->zf)));
      return -1;
    }
  return (gssize) got;
}

/* ---- Loading one array ---------------------------------------------------------------------- */

typedef struct {
  FgTensor *x;
  gint32 *y;
  gsize shape[3]; /* image C, H, W or 0 */
} Loaded;

static void
loaded_clear (Loaded *l)
{
  g_clear_pointer (&l->x, fg_tensor_free);
  g_clear_pointer (&l->y, g_free);
}

/* Read a features array into l->x (and l->y from `label_col` when >= 0 after normalising a
 * negative index). */
static gboolean
load_features (Source *src, gint64 label_col, float divide_by, Loaded *l, GError **error)
{
  NpyHeader h;
  Sink s = { 0 };
  gsize rows, cols = 1;
  FgDsReader *r = &src->reader;

  if (!read_npy_header (r, &h, error))
    return FALSE;
  if (h.ndim == 0 || h.ndim > 4)
    {
      g_autofree char *shape = shape_string (&h);
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: features of shape %s: expected N×D, N×H×W or N×C×H×W", r->name, shape);
      return FALSE;
    }
  rows = h.shape[0];
  for (guint d = 1; d < h.ndim; d++)
    cols *= h.shape[d]; /* cannot overflow: count did not */
  if (rows == 0 || cols == 0)
    {
      g_autofree char *shape = shape_string (&h);
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: empty features array of shape %s",
                   r->name, shape);
      return FALSE;
    }
  s.h = &h;
  s.name = r->name;
  s.cols_in = cols;
  s.label_col = -1;
  s.divide_by = divide_by;
  if (label_col != G_MININT64)
    {
      if (h.ndim != 2 || label_col >= (gint64) cols || label_col < -(gint64) cols || cols < 2)
        {
          g_autofree char *shape = shape_string (&h);
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "%s: key 'label_column' = %" G_GINT64_FORMAT ": not a column of the "
                       "features array of shape %s",
                       r->name, label_col, shape);
          return FALSE;
        }
      s.label_col = (gssize) (label_col < 0 ? (gint64) cols + label_col : label_col);
      cols--;
    }
  if (!data_fits (r->name, &h, src->known_size >= 0 ? src->known_size : src->claimed_size, error))
    return FALSE;
  l->x = _fg_ds_tensor_new (rows, cols, r->name, error);
  if (l->x == NULL)
    return FALSE;
  if (s.label_col >= 0)
    l->y = g_new (gint32, rows);
  s.x = l->x->data;
  s.y = l->y;
  if (h.ndim >= 3)
    {
      l->shape[0] = h.ndim == 4 ? h.shape[1] : 1;
      l->shape[1] = h.shape[h.ndim - 2];
      l->shape[2] = h.shape[h.ndim - 1];
    }
  return read_data (r, &h, src->known_size, &s, error);
}

static gboolean
load_labels (Source *src, gsize rows, const char *features_name, Loaded *l, GError **error)
{
  NpyHeader h;
  Sink s = { 0 };
  FgDsReader *r = &src->reader;

  if (!read_npy_header (r, &h, error))
    return FALSE;
  if (h.ndim == 0 || h.ndim > 2 || (h.ndim == 2 && h.shape[1] != 1) || h.shape[0] != rows)
    {
      g_autofree char *shape = shape_string (&h);
      if (h.ndim >= 1 && h.ndim <= 2 && (h.ndim == 1 || h.shape[1] == 1))
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "%s holds %" G_GSIZE_FORMAT " labels but %s holds %" G_GSIZE_FORMAT
                     " examples",
                     r->name, h.shape[0], features_name, rows);
      else
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "%s: labels of shape %s: expected one label per example, (%" G_GSIZE_FORMAT
                     ",)",
                     r->name, shape, rows);
      return FALSE;
    }
  l->y = g_new (gint32, MAX (rows, 1));
  s.h = &h;
  s.name = r->name;
  s.y = l->y;
  s.cols_in = 1;
  s.label_col = -1;
  return read_data (r, &h, src->known_size, &s, error);
}

/* Check the labels against class_names (set on ds) with the place of the first bad one. */
static gboolean
check_label_range (FgDataset *ds, const Loaded *l, const char *name, GError **error)
{
  guint K = fg_dataset_get_n_classes (ds);
  if (K == 0)
    return TRUE;
  for (gsize i = 0; i < fg_tensor_rows (l->x); i++)
    if (l->y[i] >= (gint32) K)
      {
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "%s: label %d of row %" G_GSIZE_FORMAT " is outside the %u classes named by "
                     "class_names",
                     name, l->y[i], i, K);
        return FALSE;
      }
  return TRUE;
}

/* Common end of both components: the max_test_rows cut, image shapes, finishing. */
static gboolean
add_loaded (FgDataset *ds, const FgParams *params, FgPart part, Loaded *l, const char *name,
            gsize shape_first[3], gboolean *have_first, GError **error)
{
  gint64 max_test = fg_params_get_int (params, "max_test_rows");
  if (!check_label_range (ds, l, name, error))
    return FALSE;
  if (part == FG_PART_TEST && max_test > 0 && (gsize) max_test < fg_tensor_rows (l->x))
    l->x->shape[0] = (gsize) max_test; /* the first rows; the tail stays allocated, unused */
  if (*have_first && memcmp (shape_first, l->shape, sizeof l->shape) != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: images of %" G_GSIZE_FORMAT "x%" G_GSIZE_FORMAT "x%" G_GSIZE_FORMAT
                   " differ from the training part's %" G_GSIZE_FORMAT "x%" G_GSIZE_FORMAT
                   "x%" G_GSIZE_FORMAT,
                   name, l->shape[0], l->shape[1], l->shape[2], shape_first[0], shape_first[1],
                   shape_first[2]);
      return FALSE;
    }
  if (!*have_first)
    {
      memcpy (shape_first, l->shape, sizeof l->shape);
      *have_first = TRUE;
    }
  return _fg_ds_add_part (ds, part, g_steal_pointer (&l->x), g_steal_pointer (&l->y), name,
                          error);
}

static gboolean
apply_image_shape (FgDataset *ds, const FgParams *params, const gsize shape[3], GError **error)
{
  const char *text = fg_params_get_string (params, "image_shape");
  gsize given[3];
  if (text != NULL)
    {
      if (!_fg_ds_parse_image_shape (text, "image_shape", given, error))
        return FALSE;
      if (!fg_dataset_set_image_shape (ds, given[0], given[1], given[2], error))
        {
          g_prefix_error (error, "key 'image_shape' = '%s': ", text);
          return FALSE;
        }
      return TRUE;
    }
  if (shape[0] > 0)
    return fg_dataset_set_image_shape (ds, shape[0], shape[1], shape[2], error);
  return TRUE;
}

static FgDataset *
npy_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  static const struct {
    FgPart part;
    const char *x, *y;
  } parts[] = {
    { FG_PART_TRAIN, "path", "labels" },
    { FG_PART_VAL, "validation_path", "validation_labels" },
    { FG_PART_TEST, "test_path", "test_labels" },
  };
  g_autoptr (FgDataset) ds = fg_dataset_new ("npy");
  gboolean use_column = fg_params_has (params, "label_column");
  gint64 label_col = use_column ? fg_params_get_int (params, "label_column") : G_MININT64;
  float divide_by = (float) fg_params_get_double (params, "divide_by");
  gsize first_shape[3] = { 0, 0, 0 };
  gboolean have_first = FALSE;
  const char *train_path = fg_params_get_string (params, "path");

  if (!_fg_ds_apply_class_names (ds, params, error))
    return NULL;
  for (guint p = 0; p < G_N_ELEMENTS (parts); p++)
    {
      const char *xp = fg_params_get_string (params, parts[p].x);
      const char *yp = fg_params_get_string (params, parts[p].y);
      Loaded l = { 0 };
      Source src;
      gboolean ok;

      if (xp == NULL)
        {
          if (yp != NULL)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                           "key '%s' is set but '%s' is not", parts[p].y, parts[p].x);
              return NULL;
            }
          continue;
        }
      if ((yp == NULL) == !use_column)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "%s: give the labels either as a file ('%s') or as a column of the "
                       "features ('label_column'), %s",
                       xp, parts[p].y, use_column ? "not both" : "one of them");
          return NULL;
        }
      if (!source_open_file (&src, xp, error))
        return NULL;
      ok = load_features (&src, label_col, divide_by, &l, error);
      source_close (&src);
      if (ok && yp != NULL)
        {
          ok = source_open_file (&src, yp, error);
          if (ok)
            {
              ok = load_labels (&src, fg_tensor_rows (l.x), xp, &l, error);
              source_close (&src);
            }
        }
      if (!ok || !add_loaded (ds, params, parts[p].part, &l, xp, first_shape, &have_first, error))
        {
          loaded_clear (&l);
          return NULL;
        }
    }
  if (!apply_image_shape (ds, params, first_shape, error) || !_fg_ds_finish (ds, train_path, error))
    return NULL;
  return g_steal_pointer (&ds);
}

/* ---- npz --------------------------------------------------------------------------------------- */

static void
set_zip_error (GError **error, int code, const char *path)
{
  zip_error_t ze;
  zip_error_init_with_code (&ze, code);
  g_set_error (error, FG_ERROR,
               code == ZIP_ER_NOENT || code == ZIP_ER_OPEN || code == ZIP_ER_READ
                       || code == ZIP_ER_SEEK
                   ? FG_ERROR_IO
                   : code == ZIP_ER_NOZIP ? FG_ERROR_DATA : FG_ERROR_CORRUPT,
               "%s: %s%s", path,
               code == ZIP_ER_NOZIP   ? "not a .npz file: "
               : code == ZIP_ER_EXISTS ? "two members of the archive have the same name: "
                                       : "",
               zip_error_strerror (&ze));
  zip_error_fini (&ze);
}

/* Member names without ".npy", in archive order. */
static GPtrArray *
member_names (zip_t *za)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  zip_int64_t n = zip_get_num_entries (za, 0);
  for (zip_int64_t i = 0; i < n; i++)
    {
      const char *name = zip_get_name (za, (zip_uint64_t) i, 0);
      if (name == NULL)
        continue;
      g_ptr_array_add (names, _fg_ds_printable (name, g_str_has_suffix (name, ".npy")
                                                          ? (gssize) strlen (name) - 4
                                                          : -1,
                                                 200));
    }
  return names;
}

static gboolean
open_member (Source *src, zip_t *za, const char *path, const char *member, GError **error)
{
  g_autofree char *entry = g_strconcat (member, ".npy", NULL);
  zip_int64_t idx = zip_name_locate (za, entry, 0);
  zip_stat_t st;

  memset (src, 0, sizeof *src);
  if (idx < 0)
    idx = zip_name_locate (za, member, 0);
  if (idx < 0)
    {
      g_autoptr (GPtrArray) names = member_names (za);
      g_autofree char *list = NULL;
      g_ptr_array_add (names, NULL);
      list = g_strjoinv (", ", (char **) names->pdata);
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: no member '%s' (the archive holds: %s)",
                   path, member, list);
      return FALSE;
    }
  zip_stat_init (&st);
  if (zip_stat_index (za, (zip_uint64_t) idx, 0, &st) != 0)
    {
      set_zip_error (error, zip_error_code_zip (zip_get_error (za)), path);
      return FALSE;
    }
  src->zf = zip_fopen_index (za, (zip_uint64_t) idx, 0);
  if (src->zf == NULL)
    {
      set_zip_error (error, zip_error_code_zip (zip_get_error (za)), path);
      g_prefix_error (error, "member '%s': ", entry);
      return FALSE;
    }
  src->name = g_strdup_printf ("%s:%s", path, entry);
  src->reader.read = zip_read_func;
  src->reader.source = src;
  src->reader.name = src->name;
  src->reader.offset = 0;
  /* A stored member's size is its size in the archive (checked by ZIP_CHECKCONS); a deflated
   * one's is a claim, so its bytes are read before anything of that size is allocated. */
  src->known_size = (st.valid & ZIP_STAT_SIZE) && (st.valid & ZIP_STAT_COMP_METHOD)
                            && st.comp_method == ZIP_CM_STORE && st.size <= G_MAXINT64
                        ? (gint64) st.size
                        : -1;
  /* A deflated one's size in the directory is a claim: enough to refuse data it cannot hold
   * before allocating for them (the bytes read are checked again). */
  src->claimed_size = (st.valid & ZIP_STAT_SIZE) && st.size <= G_MAXINT64 ? (gint64) st.size : -1;
  return TRUE;
}

static const char *
choose_features (zip_t *za, const FgParams *params, const char *path, GError **error)
{
  static const char *const defaults[] = { "encodings", "data", "x", "X", NULL };
  const char *given = fg_params_get_string (params, "features");
  if (given != NULL)
    return given;
  for (guint i = 0; defaults[i] != NULL; i++)
    {
      g_autofree char *entry = g_strconcat (defaults[i], ".npy", NULL);
      if (zip_name_locate (za, entry, 0) >= 0)
        return defaults[i];
    }
  {
    g_autoptr (GPtrArray) names = member_names (za);
    g_autofree char *list = NULL;
    g_ptr_array_add (names, NULL);
    list = g_strjoinv (", ", (char **) names->pdata);
    g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                 "%s: none of the members encodings, data, x, X is present (the archive holds: "
                 "%s); name the features member with the key 'features'",
                 path, list);
  }
  return NULL;
}

static gboolean
load_npz_part (const char *path, const FgParams *params, Loaded *l, GError **error)
{
  zip_t *za;
  int code = 0;
  const char *features;
  Source src;
  gboolean ok;
  GStatBuf st;
  float divide_by = (float) fg_params_get_double (params, "divide_by");

  if (g_stat (path, &st) == 0 && st.st_size == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: empty file (expected a .npz archive)",
                   path);
      return FALSE;
    }
  za = zip_open (path, ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (za == NULL)
    {
      set_zip_error (error, code, path);
      return FALSE;
    }
  features = choose_features (za, params, path, error);
  ok = features != NULL && open_member (&src, za, path, features, error);
  if (ok)
    {
      ok = load_features (&src, G_MININT64, divide_by, l, error);
      source_close (&src);
    }
  if (ok)
    {
      ok = open_member (&src, za, path, fg_params_get_string (params, "labels"), error);
      if (ok)
        {
          g_autofree char *fname = g_strdup_printf ("%s:%s.npy", path, features);
          ok = load_labels (&src, fg_tensor_rows (l->x), fname, l, error);
          source_close (&src);
        }
    }
  zip_discard (za);
  return ok;
}

static FgDataset *
npz_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  static const struct {
    FgPart part;
    const char *key;
  } parts[] = {
    { FG_PART_TRAIN, "path" },
    { FG_PART_VAL, "validation_path" },
    { FG_PART_TEST, "test_path" },
  };
  g_autoptr (FgDataset) ds = fg_dataset_new ("npz");
  gsize first_shape[3] = { 0, 0, 0 };
  gboolean have_first = FALSE;
  const char *train_path = fg_params_get_string (params, "path");

  if (fg_params_get_string (params, "labels") == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "key 'labels': name the labels member");
      return NULL;
    }
  if (!_fg_ds_apply_class_names (ds, params, error))
    return NULL;
  for (guint p = 0; p < G_N_ELEMENTS (parts); p++)
    {
      const char *path = fg_params_get_string (params, parts[p].key);
      Loaded l = { 0 };
      if (path == NULL)
        continue;
      if (!load_npz_part (path, params, &l, error)
          || !add_loaded (ds, params, parts[p].part, &l, path, first_shape, &have_first, error))
        {
          loaded_clear (&l);
          return NULL;
        }
    }
  if (!apply_image_shape (ds, params, first_shape, error) || !_fg_ds_finish (ds, train_path, error))
    return NULL;
  return g_steal_pointer (&ds);
}

static const FgDatasetVTable npy_vtable = {
  .struct_size = sizeof (FgDatasetVTable),
  .load = npy_load,
};

static const FgDatasetVTable npz_vtable = {
  .struct_size = sizeof (FgDatasetVTable),
  .load = npz_load,
};

static const FgComponent npy_components[] = {
  { FG_KIND_DATASET, "npy",
    "NumPy .npy arrays (features + labels files, or a label column), plain or gzip",
    npy_params, &npy_vtable, { 0 } },
  { FG_KIND_DATASET, "npz",
    "a NumPy .npz archive with named members (e.g. encodings + labels)", npz_params,
    &npz_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo npy_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "npy",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "NumPy .npy and .npz data sets",
  .components = npy_components,
};

FG_PLUGIN_DEFINE (npy_info)
