/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the "npy" plugin's components npy and npz, through the registry. */
#include "datasets-common.h"

#include <zip.h>

/* The bytes of a .npy file: version 1.0 (or 2.0), header padded to 64 bytes as numpy does. */
static GByteArray *
npy_bytes (const char *descr, gboolean fortran, const char *shape, const void *data, gsize len,
           int version)
{
  GByteArray *b = g_byte_array_new ();
  g_autoptr (GString) dict = g_string_new (NULL);
  gsize pre = version == 1 ? 10 : 12, total;
  g_string_printf (dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                   fortran ? "True" : "False", shape);
  total = (pre + dict->len + 1 + 63) / 64 * 64;
  while (pre + dict->len + 1 < total)
    g_string_append_c (dict, ' ');
  g_string_append_c (dict, '\n');
  g_byte_array_append (b, (const guint8 *) "\x93NUMPY", 6);
  {
    guint8 v[2] = { (guint8) version, 0 };
    g_byte_array_append (b, v, 2);
  }
  if (version == 1)
    {
      guint8 l[2] = { (guint8) dict->len, (guint8) (dict->len >> 8) };
      g_byte_array_append (b, l, 2);
    }
  else
    {
      guint8 l[4] = { (guint8) dict->len, (guint8) (dict->len >> 8), 0, 0 };
      g_byte_array_append (b, l, 4);
    }
  g_byte_array_append (b, (const guint8 *) dict->str, (guint) dict->len);
  g_byte_array_append (b, data, (guint) len);
  return b;
}

static char *
write_npy (const char *name, const char *descr, const char *shape, const void *data, gsize len)
{
  g_autoptr (GByteArray) b = npy_bytes (descr, FALSE, shape, data, len, 1);
  return ds_write (name, b->data, b->len);
}

/* features n×3: x[i][j] = i + j/4; labels i % 3 (int64) */
static char *feat_path, *lab_path;

static void
make_basic (gsize n)
{
  g_autofree float *x = g_new (float, n * 3);
  g_autofree gint64 *y = g_new (gint64, n);
  for (gsize i = 0; i < n; i++)
    {
      for (int j = 0; j < 3; j++)
        x[i * 3 + j] = (float) i + (float) j / 4.0f;
      y[i] = (gint64) (i % 3);
    }
  {
    g_autofree char *shape = g_strdup_printf ("(%" G_GSIZE_FORMAT ", 3)", n);
    g_autofree char *yshape = g_strdup_printf ("(%" G_GSIZE_FORMAT ",)", n);
    g_free (feat_path);
    g_free (lab_path);
    feat_path = write_npy ("feat.npy", "<f4", shape, x, n * 3 * sizeof (float));
    lab_path = write_npy ("lab.npy", "<i8", yshape, y, n * sizeof (gint64));
  }
}

static void
test_npy_basic (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  const FgDataPart *p;

  make_basic (30);
  ds = ds_load ("npy", &error, "path", feat_path, "labels", lab_path, NULL);
  g_assert_no_error (error);
  p = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (p->n, ==, 30);
  g_assert_cmpuint (fg_dataset_get_dim (ds), ==, 3);
  g_assert_cmpfloat (fg_tensor_row (&p->x, 7)[2], ==, 7.5f);
  g_assert_cmpint (p->y[7], ==, 1);
  g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, 3);
  g_clear_pointer (&ds, fg_dataset_unref);

  /* gzip, and a float64 array whose last column holds the labels (-1 unknown) */
  {
    double xy[5 * 3] = { 0.5, -1.25, 0, 1, 2, 1, 3, 4, -1, 5, 6e10, 1, 7, 8, 2 };
    g_autofree char *path = write_npy ("xy.npy", "<f8", "(5, 3)", xy, sizeof xy);
    g_autofree char *gz = ds_gzip (path);
    ds = ds_load ("npy", &error, "path", gz, "label_column", "-1", "max_test_rows", "2",
                  "test_path", path, NULL);
    g_assert_no_error (error);
    p = fg_dataset_get_part (ds, FG_PART_TRAIN);
    g_assert_cmpuint (p->n, ==, 5);
    g_assert_cmpuint (fg_dataset_get_dim (ds), ==, 2);
    g_assert_cmpfloat (fg_tensor_row (&p->x, 0)[1], ==, -1.25f);
    g_assert_cmpfloat (fg_tensor_row (&p->x, 3)[1], ==, 6e10f);
    g_assert_cmpint (p->y[2], ==, -1);
    g_assert_cmpint (p->y[4], ==, 2);
    /* max_test_rows keeps the first rows of the test part */
    g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TEST)->n, ==, 2);
    g_clear_pointer (&ds, fg_dataset_unref);
  }
  /* uint8 images N×H×W divided by 255, uint8 labels, format version 2.0 */
  {
    guint8 img[6 * 2 * 2];
    guint8 lab[6] = { 0, 1, 0, 1, 1, 0 };
    g_autoptr (GByteArray) b = NULL;
    g_autofree char *ip = NULL, *lp = NULL;
    for (guint i = 0; i < sizeof img; i++)
      img[i] = (guint8) (i * 10);
    b = npy_bytes ("|u1", FALSE, "(6, 2, 2)", img, sizeof img, 2);
    ip = ds_write ("img.npy", b->data, b->len);
    lp = write_npy ("img-lab.npy", "|u1", "(6,)", lab, sizeof lab);
    ds = ds_load ("npy", &error, "path", ip, "labels", lp, "divide_by", "255", "class_names",
                  "zero,one", NULL);
    g_assert_no_error (error);
    p = fg_dataset_get_part (ds, FG_PART_TRAIN);
    g_assert_cmpuint (fg_dataset_get_sample_shape (ds)->ndim, ==, 3);
    g_assert_cmpuint (fg_dataset_get_sample_shape (ds)->dims[1], ==, 2);
    g_assert_cmpuint (p->x.ndim, ==, 4);
    g_assert_cmpfloat (p->x.data[5], ==, 50.0f / 255.0f);
    g_assert_cmpstr (fg_dataset_get_note (ds), ==, "classes: 0=zero 1=one");
    g_clear_pointer (&ds, fg_dataset_unref);
    /* a 2-D array with image_shape */
    b = (g_byte_array_unref (b), npy_bytes ("|u1", FALSE, "(6, 4)", img, sizeof img, 1));
    g_free (ip);
    ip = ds_write ("img2d.npy", b->data, b->len);
    ds = ds_load ("npy", &error, "path", ip, "labels", lp, "image_shape", "1,2,2", NULL);
    g_assert_no_error (error);
    g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TRAIN)->x.ndim, ==, 4);
    g_assert_cmpfloat (fg_dataset_get_part (ds, FG_PART_TRAIN)->x.data[5], ==, 50.0f);
  }
}

static void
test_npy_types (void)
{
  static const struct {
    const char *descr;
    guint8 bytes[16]; /* two little-endian values */
    gsize size;
    float v0, v1;
  } cases[] = {
    { "|i1", { 0xfb, 0x7f }, 1, -5, 127 },
    { "<i2", { 0x00, 0x80, 0x34, 0x12 }, 2, -32768, 0x1234 },
    { "<u2", { 0xff, 0xff, 0x01, 0x00 }, 2, 65535, 1 },
    { "<i4", { 0xfe, 0xff, 0xff, 0xff, 0x40, 0x42, 0x0f, 0x00 }, 4, -2, 1000000 },
    { "<u4", { 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0 }, 4, 4294967295.0f, 0 },
    { "<i8", { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0, 0, 0, 0, 0 }, 8, -1, 7 },
    { "<u8", { 0, 0, 0, 0, 0, 0, 0, 0x80, 3, 0, 0, 0, 0, 0, 0, 0 }, 8, 9223372036854775808.0f, 3 },
    { "|b1", { 1, 0 }, 1, 1, 0 },
    { "<f4", { 0, 0, 0xc0, 0x3f, 0, 0, 0x80, 0xff }, 4, 1.5f, 0 /* -inf: refused below */ },
    { "<f8", { 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0, 0, 0, 0, 0, 0, 0x10, 0xc0 }, 8, 1.5f, -4 },
  };
  static const gint32 labels[2] = { 0, 1 };
  g_autofree char *lp = write_npy ("two-labels.npy", "<i4", "(2,)", labels, sizeof labels);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *name = g_strdup_printf ("type%u.npy", i);
      g_autofree char *path = write_npy (name, cases[i].descr, "(2, 1)", cases[i].bytes,
                                         2 * cases[i].size);
      g_autoptr (FgDataset) ds = ds_load ("npy", &error, "path", path, "labels", lp, NULL);
      if (strcmp (cases[i].descr, "<f4") == 0)
        {
          ds_assert_error (error, FG_ERROR_DATA, "non-finite value", NULL);
          continue;
        }
      g_assert_no_error (error);
      g_assert_cmpfloat (fg_dataset_get_part (ds, FG_PART_TRAIN)->x.data[0], ==, cases[i].v0);
      g_assert_cmpfloat (fg_dataset_get_part (ds, FG_PART_TRAIN)->x.data[1], ==, cases[i].v1);
    }
}

static void
test_npy_bad_input (void)
{
  static const float f6[6] = { 1, 2, 3, 4, 5, 6 };
  static const gint64 l3[3] = { 0, 1, 0 };
  static const double l3f[3] = { 0, 1.5, 0 };
  static const gint64 l3n[3] = { 0, -2, 1 };
  static const gint64 l3one[3] = { 1, 1, -1 };
  g_autofree char *good = write_npy ("good.npy", "<f4", "(3, 2)", f6, sizeof f6);
  g_autofree char *labels = write_npy ("good-labels.npy", "<i8", "(3,)", l3, sizeof l3);
  static const struct {
    const char *name, *descr, *shape;
    gboolean fortran;
    gsize len; /* bytes of f6 to write */
    gboolean as_labels;
    gint code;
    const char *expect;
  } cases[] = {
    { "big-endian.npy", ">f4", "(3, 2)", FALSE, 24, FALSE, FG_ERROR_UNSUPPORTED,
      "big-endian.npy: big-endian array ('>f4'): save it little-endian" },
    { "fortran.npy", "<f4", "(3, 2)", TRUE, 24, FALSE, FG_ERROR_UNSUPPORTED,
      "fortran.npy: a Fortran-order (column-major) array is not supported" },
    { "complex.npy", "<c8", "(3, 1)", FALSE, 24, FALSE, FG_ERROR_UNSUPPORTED,
      "complex.npy: array type '<c8' is not supported" },
    { "half.npy", "<f2", "(3, 4)", FALSE, 24, FALSE, FG_ERROR_UNSUPPORTED,
      "half.npy: array type '<f2' is not supported" },
    { "short.npy", "<f4", "(3, 2)", FALSE, 20, FALSE, FG_ERROR_CORRUPT,
      "short.npy: truncated: the header promises a (3, 2) array of '<f4' (24 bytes from byte "
      "offset 128) but the data end at byte offset 148" },
    { "long.npy", "<f4", "(2, 2)", FALSE, 24, FALSE, FG_ERROR_CORRUPT,
      "long.npy: 8 unexpected bytes after the array data, from byte offset 144" },
    { "scalar.npy", "<f4", "()", FALSE, 4, FALSE, FG_ERROR_DATA,
      "scalar.npy: features of shape (): expected N×D" },
    { "labels-count.npy", "<i8", "(2,)", FALSE, 16, TRUE, FG_ERROR_DATA,
      "labels-count.npy holds 2 labels but" },
    { "labels-2d.npy", "<i8", "(1, 3)", FALSE, 24, TRUE, FG_ERROR_DATA,
      "labels-2d.npy: labels of shape (1, 3): expected one label per example, (3,)" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GByteArray) b = npy_bytes (cases[i].descr, cases[i].fortran, cases[i].shape, f6,
                                            cases[i].len, 1);
      g_autofree char *path = ds_write (cases[i].name, b->data, b->len);
      g_autoptr (FgDataset) ds = NULL;
      if (cases[i].as_labels)
        ds = ds_load ("npy", &error, "path", good, "labels", path, NULL);
      else
        ds = ds_load ("npy", &error, "path", path, "labels", labels, NULL);
      g_assert_null (ds);
      ds_assert_error (error, cases[i].code, cases[i].expect, NULL);
    }
  {
#define RAW(n, t, c, e) { n, t, sizeof (t) - 1, c, e }
    static const struct {
      const char *name, *text;
      gsize len;
      gint code;
      const char *expect;
    } raw[] = {
      RAW ("empty.npy", "", FG_ERROR_DATA, "empty.npy: empty file"),
      RAW ("text.npy", "hello, world\n", FG_ERROR_DATA, "text.npy: not a .npy file"),
      RAW ("v9.npy", "\x93NUMPY\x09\x00\x10\x00{}", FG_ERROR_UNSUPPORTED,
           "v9.npy: .npy format version 9.0 is not supported"),
      RAW ("cut-header.npy", "\x93NUMPY\x01\x00\x40\x00{'descr': '<f4'", FG_ERROR_CORRUPT,
           "cut-header.npy: truncated: the data end at byte offset 25 while reading the .npy header"),
      RAW ("bad-dict.npy", "\x93NUMPY\x01\x00\x10\x00{'descr' '<f4'}  ", FG_ERROR_DATA,
           "bad-dict.npy: malformed .npy header at byte offset 19: expected ':'"),
      RAW ("struct.npy", "\x93NUMPY\x01\x00\x20\x00{'descr': [('a', '<f4')], }     ",
           FG_ERROR_UNSUPPORTED, "struct.npy: a structured array"),
      RAW ("no-shape.npy",
           "\x93NUMPY\x01\x00\x30\x00{'descr': '<f4', 'fortran_order': False}        ",
           FG_ERROR_DATA, "no-shape.npy: the .npy header lacks 'shape'"),
      RAW ("huge.npy",
           "\x93NUMPY\x01\x00\x50\x00{'descr': '<f8', 'fortran_order': False, 'shape': "
           "(4611686018427387904, 4), }   ",
           FG_ERROR_DATA, "huge.npy: the .npy shape overflows the address space"),
    };
    for (guint i = 0; i < G_N_ELEMENTS (raw); i++)
      {
        g_autoptr (GError) error = NULL;
        g_autofree char *path = ds_write (raw[i].name, raw[i].text, raw[i].len);
        g_autoptr (FgDataset) ds = ds_load ("npy", &error, "path", path, "labels", labels, NULL);
        g_assert_null (ds);
        ds_assert_error (error, raw[i].code, raw[i].expect, NULL);
      }
  }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (FgDataset) ds = NULL;
    g_autofree char *lf = write_npy ("frac-labels.npy", "<f8", "(3,)", l3f, sizeof l3f);
    g_autofree char *ln = write_npy ("neg-labels.npy", "<i8", "(3,)", l3n, sizeof l3n);
    g_autofree char *lo = write_npy ("one-labels.npy", "<i8", "(3,)", l3one, sizeof l3one);
    g_autofree char *gz = ds_gzip (good);
    g_autofree char *gzdata = NULL, *cut = NULL;
    gsize gzlen;
    ds = ds_load ("npy", &error, "path", good, "labels", lf, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "frac-labels.npy: label 1.5 of row 1 (byte offset 136) "
                     "is not a class index", NULL);
    g_clear_error (&error);
    ds = ds_load ("npy", &error, "path", good, "labels", ln, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "neg-labels.npy: label -2 of row 1", NULL);
    g_clear_error (&error);
    ds = ds_load ("npy", &error, "path", good, "labels", lo, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "good.npy: npy: the training labels hold only one class",
                     NULL);
    g_clear_error (&error);
    ds = ds_load ("npy", &error, "path", good, "labels", labels, "class_names", "a,b,c", "test_path",
                  good, "test_labels", labels, NULL);
    g_assert_no_error (error);
    g_clear_pointer (&ds, fg_dataset_unref);
    ds = ds_load ("npy", &error, "path", good, "labels", labels, "class_names", "a", NULL);
    ds_assert_error (error, FG_ERROR_INVALID_PARAM, "at least two classes", NULL);
    g_clear_error (&error);
    ds = ds_load ("npy", &error, "path", good, "labels", labels, "label_column", "0", NULL);
    ds_assert_error (error, FG_ERROR_INVALID_PARAM, "good.npy: give the labels either as a file",
                     "not both", NULL);
    g_clear_error (&error);
    ds = ds_load ("npy", &error, "path", good, "label_column", "2", NULL);
    ds_assert_error (error, FG_ERROR_INVALID_PARAM, "good.npy: key 'label_column' = 2: not a "
                     "column", NULL);
    g_clear_error (&error);
    ds = ds_load ("npy", &error, "path", good, NULL);
    ds_assert_error (error, FG_ERROR_INVALID_PARAM, "one of them", NULL);
    g_clear_error (&error);
    /* truncated gzip data: the gzip layer or the size check names the file */
    g_assert_true (g_file_get_contents (gz, &gzdata, &gzlen, NULL));
    cut = ds_write ("cut.npy.gz", gzdata, gzlen - 10);
    ds = ds_load ("npy", &error, "path", cut, "labels", labels, NULL);
    ds_assert_error (error, FG_ERROR_CORRUPT, "cut.npy.gz: truncated", NULL);
    g_clear_error (&error);
    /* NaN in the features */
    {
      float nanx[6] = { 1, 2, NAN, 4, 5, 6 };
      g_autofree char *np = write_npy ("nan.npy", "<f4", "(3, 2)", nanx, sizeof nanx);
      ds = ds_load ("npy", &error, "path", np, "labels", labels, NULL);
      ds_assert_error (error, FG_ERROR_DATA, "nan.npy: npy: train part: non-finite value (NaN or "
                       "Inf) at row 1, column 0", NULL);
    }
  }
}

/* ---- npz ------------------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  GByteArray *bytes;
} Member;

static char *
write_npz (const char *name, const Member *members, guint n, gboolean deflate)
{
  char *path = ds_path (name);
  int err = 0;
  zip_t *za;
  g_unlink (path);
  za = zip_open (path, ZIP_CREATE | ZIP_TRUNCATE, &err);
  g_assert_nonnull (za);
  for (guint i = 0; i < n; i++)
    {
      zip_source_t *src = zip_source_buffer (za, members[i].bytes->data, members[i].bytes->len, 0);
      zip_int64_t idx = zip_file_add (za, members[i].name, src, ZIP_FL_OVERWRITE);
      g_assert_cmpint (idx, >=, 0);
      g_assert_cmpint (zip_set_file_compression (za, (zip_uint64_t) idx,
                                                 deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0),
                       ==, 0);
    }
  g_assert_cmpint (zip_close (za), ==, 0);
  return path;
}

static GByteArray *npz_x, *npz_y;

static void
make_npz_members (void)
{
  static float x[20 * 4];
  static double y[20];
  for (int i = 0; i < 20; i++)
    {
      for (int j = 0; j < 4; j++)
        x[i * 4 + j] = (float) (i * 10 + j);
      y[i] = i < 15 ? i % 4 : -1;
    }
  if (npz_x == NULL)
    {
      npz_x = npy_bytes ("<f4", FALSE, "(20, 4)", x, sizeof x, 1);
      npz_y = npy_bytes ("<f8", FALSE, "(20,)", y, sizeof y, 1);
    }
}

static void
test_npz_basic (void)
{
  g_autoptr (GError) error = NULL;
  make_npz_members ();
  for (int deflate = 0; deflate < 2; deflate++)
    {
      Member m[2] = { { "labels.npy", npz_y }, { deflate ? "encodings.npy" : "data.npy", npz_x } };
      g_autofree char *path = write_npz (deflate ? "deflated.npz" : "stored.npz", m, 2, deflate);
      g_autoptr (FgDataset) ds = ds_load ("npz", &error, "path", path, "test_path", path, NULL);
      const FgDataPart *p;
      gsize counts[4];
      g_assert_no_error (error);
      p = fg_dataset_get_part (ds, FG_PART_TRAIN);
      g_assert_cmpuint (p->n, ==, 20);
      g_assert_cmpuint (fg_dataset_get_dim (ds), ==, 4);
      g_assert_cmpfloat (fg_tensor_row (&p->x, 13)[2], ==, 132.0f);
      g_assert_cmpuint (ds_count_labels (p, 4, counts), ==, 5);
      g_assert_cmpuint (counts[3], ==, 3);
      g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TEST)->n, ==, 20);
    }
  /* named members */
  {
    Member m[2] = { { "y.npy", npz_y }, { "feats.npy", npz_x } };
    g_autofree char *path = write_npz ("named.npz", m, 2, FALSE);
    g_autoptr (FgDataset) ds = ds_load ("npz", &error, "path", path, "features", "feats",
                                        "labels", "y", NULL);
    g_assert_no_error (error);
    g_clear_pointer (&ds, fg_dataset_unref);
    ds = ds_load ("npz", &error, "path", path, "features", "feats", "labels", "targets", NULL);
    ds_assert_error (error, FG_ERROR_DATA, "named.npz: no member 'targets' (the archive holds: y, "
                     "feats)", NULL);
    g_clear_error (&error);
    ds = ds_load ("npz", &error, "path", path, "labels", "y", NULL);
    ds_assert_error (error, FG_ERROR_DATA, "named.npz: none of the members encodings, data, x, X",
                     "name the features member with the key 'features'", NULL);
  }
}

static void
test_npz_bad_input (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  Member m[2];
  g_autofree char *stored = NULL, *deflated = NULL, *data = NULL;
  gsize len;

  make_npz_members ();
  m[0] = (Member){ "labels.npy", npz_y };
  m[1] = (Member){ "data.npy", npz_x };
  stored = write_npz ("ok.npz", m, 2, FALSE);
  deflated = write_npz ("ok-deflated.npz", m, 2, TRUE);
  {
    g_autofree char *p = ds_write ("empty.npz", "", 0);
    ds = ds_load ("npz", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "empty.npz: empty file", NULL);
    g_clear_error (&error);
  }
  {
    g_autofree char *p = ds_write_text ("text.npz", "this is not a zip archive at all\n");
    ds = ds_load ("npz", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "text.npz: not a .npz file", NULL);
    g_clear_error (&error);
  }
  {
    /* cut before the central directory */
    g_autofree char *p = NULL;
    g_assert_true (g_file_get_contents (stored, &data, &len, NULL));
    p = ds_write ("cut.npz", data, len - 30);
    ds = ds_load ("npz", &error, "path", p, NULL);
    ds_assert_error (error, -1, "cut.npz: ", NULL);
    g_clear_error (&error);
    g_clear_pointer (&data, g_free);
  }
  {
    /* a damaged byte inside the deflated data: zlib or CRC error naming the member */
    g_autofree char *p = NULL;
    g_assert_true (g_file_get_contents (deflated, &data, &len, NULL));
    data[120] ^= 0x5a;
    p = ds_write ("damaged.npz", data, len);
    ds = ds_load ("npz", &error, "path", p, NULL);
    ds_assert_error (error, -1, "damaged.npz", NULL);
    g_clear_error (&error);
    g_clear_pointer (&data, g_free);
  }
  {
    /* A deflated member whose header promises far more than the member holds: refused as
     * truncated before anything of the promised size is allocated. */
    g_autoptr (GByteArray) huge = npy_bytes ("<f4", FALSE, "(2000000000, 4)", npz_x->data,
                                             80 * sizeof (float), 1);
    Member mm[2] = { { "labels.npy", npz_y }, { "data.npy", huge } };
    g_autofree char *p = write_npz ("promise.npz", mm, 2, TRUE);
    ds = ds_load ("npz", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_CORRUPT, "promise.npz:data.npy: truncated: the header "
                     "promises a (2000000000, 4) array", NULL);
    g_clear_error (&error);
  }
  {
    /* Two members of the same name: the message names the file and says what is wrong. */
    Member mm[3] = { { "labels.npy", npz_y }, { "labelz.npy", npz_y }, { "data.npy", npz_x } };
    g_autofree char *p = write_npz ("twice.npz", mm, 3, FALSE);
    g_assert_true (g_file_get_contents (p, &data, &len, NULL));
    for (gsize i = 0; i + 10 <= len; i++)
      if (memcmp (data + i, "labelz.npy", 10) == 0)
        data[i + 5] = 's';
    g_assert_true (g_file_set_contents (p, data, (gssize) len, NULL));
    g_clear_pointer (&data, g_free);
    ds = ds_load ("npz", &error, "path", p, NULL);
    ds_assert_error (error, -1, "twice.npz: two members of the archive have the same name", NULL);
    g_clear_error (&error);
  }
  {
    /* labels and features of different lengths */
    static const double y5[5] = { 0, 1, 0, 1, 0 };
    g_autoptr (GByteArray) short_y = npy_bytes ("<f8", FALSE, "(5,)", y5, sizeof y5, 1);
    Member mm[2] = { { "labels.npy", short_y }, { "data.npy", npz_x } };
    g_autofree char *p = write_npz ("mismatch.npz", mm, 2, FALSE);
    ds = ds_load ("npz", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "mismatch.npz:labels.npy holds 5 labels but ",
                     "mismatch.npz:data.npy holds 20 examples", NULL);
    g_clear_error (&error);
  }
}

static FgDataset *
fuzz_npy (const char *path, GError **error)
{
  return ds_load ("npy", error, "path", path, "labels", lab_path, NULL);
}

static FgDataset *
fuzz_npz (const char *path, GError **error)
{
  return ds_load ("npz", error, "path", path, NULL);
}

static void
test_fuzz (void)
{
  g_autofree char *npy = ds_path ("fuzz.npy");
  g_autofree char *npz = ds_path ("fuzz.npz");
  g_autofree char *data = NULL;
  gsize len;
  Member m[2];

  make_basic (12);
  g_assert_true (g_file_get_contents (feat_path, &data, &len, NULL));
  g_assert_cmpuint (ds_fuzz (npy, (const guint8 *) data, len, fuzz_npy, 1000, 500, 21), >, 0);
  g_clear_pointer (&data, g_free);

  make_npz_members ();
  m[0] = (Member){ "labels.npy", npz_y };
  m[1] = (Member){ "data.npy", npz_x };
  for (int deflate = 0; deflate < 2; deflate++)
    {
      g_autofree char *src = write_npz (deflate ? "fuzz-src-d.npz" : "fuzz-src.npz", m, 2, deflate);
      g_assert_true (g_file_get_contents (src, &data, &len, NULL));
      g_assert_cmpuint (ds_fuzz (npz, (const guint8 *) data, len, fuzz_npz, 400, 300,
                                 22 + (guint64) deflate),
                        >, 0);
      g_clear_pointer (&data, g_free);
    }
}

/* ---- real files ------------------------------------------------------------------------------ */

static void
test_real_toy (void)
{
  g_autofree char *gauss = ds_shared ("flowgmm-toy/8gauss.npz");
  g_autofree char *pinwheel = ds_shared ("flowgmm-toy/pinwheel.npz");
  g_autofree char *csv = ds_shared ("flowgmm-toy/8gauss.csv");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL, dc = NULL;
  gsize counts[5];
  const FgDataPart *p;

  if (gauss == NULL || pinwheel == NULL || csv == NULL)
    return;
  ds = ds_load ("npz", &error, "path", gauss, NULL);
  g_assert_no_error (error);
  p = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (p->n, ==, 1000);
  g_assert_cmpuint (ds_count_labels (p, 3, counts), ==, 981);
  g_assert_cmpuint (counts[0], ==, 6);
  g_assert_cmpuint (counts[2], ==, 7);
  g_assert_cmpfloat (p->x.data[0], ==, -1.6701913f);
  /* the CSV copy holds the same float32 values */
  dc = ds_load ("csv", &error, "path", csv, "label", "label", NULL);
  g_assert_no_error (error);
  g_assert_cmpmem (p->x.data, 2000 * sizeof (float),
                   fg_dataset_get_part (dc, FG_PART_TRAIN)->x.data, 2000 * sizeof (float));
  g_assert_cmpmem (p->y, 1000 * sizeof (gint32), fg_dataset_get_part (dc, FG_PART_TRAIN)->y,
                   1000 * sizeof (gint32));
  g_clear_pointer (&ds, fg_dataset_unref);

  ds = ds_load ("npz", &error, "path", pinwheel, NULL);
  g_assert_no_error (error);
  p = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (ds_count_labels (p, 5, counts), ==, 987);
  g_assert_cmpfloat (p->x.data[0], ==, (float) 1.45623145);
}

static void
test_real_miniboone (void)
{
  g_autofree char *val = ds_shared ("miniboone-maf/val.npy.gz");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  g_autofree gint8 *y = g_new (gint8, 3284);
  g_autofree char *lp = NULL;
  const FgDataPart *p;
  if (val == NULL)
    return;
  /* MAF's MiniBooNE has no labels: give it alternating ones to load the features */
  for (int i = 0; i < 3284; i++)
    y[i] = (gint8) (i & 1);
  lp = write_npy ("mb-labels.npy", "|i1", "(3284,)", y, 3284);
  ds = ds_load ("npy", &error, "path", val, "labels", lp, NULL);
  g_assert_no_error (error);
  p = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (p->n, ==, 3284);
  g_assert_cmpuint (fg_dataset_get_dim (ds), ==, 43);
  g_assert_cmpfloat (p->x.data[0], ==, (float) -1.2124626);
  g_assert_cmpfloat (p->x.data[1], ==, (float) -0.82070859);
  g_assert_cmpfloat (fg_tensor_row (&p->x, 3283)[42], ==, (float) -1.4248889859989249);
}

int
main (int argc, char **argv)
{
  int rc;
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/npy/basic", test_npy_basic);
  g_test_add_func ("/npy/types", test_npy_types);
  g_test_add_func ("/npy/bad-input", test_npy_bad_input);
  g_test_add_func ("/npy/npz-basic", test_npz_basic);
  g_test_add_func ("/npy/npz-bad-input", test_npz_bad_input);
  g_test_add_func ("/npy/fuzz", test_fuzz);
  g_test_add_func ("/npy/real/toy", test_real_toy);
  g_test_add_func ("/npy/real/miniboone", test_real_miniboone);
  rc = g_test_run ();
  g_clear_pointer (&npz_x, g_byte_array_unref);
  g_clear_pointer (&npz_y, g_byte_array_unref);
  g_clear_pointer (&feat_path, g_free);
  g_clear_pointer (&lab_path, g_free);
  ds_cleanup ();
  return rc;
}
