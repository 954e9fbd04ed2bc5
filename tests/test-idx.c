/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the "idx" dataset plugin (MNIST family), through the registry. */
#include "datasets-common.h"

static void
put_u32 (GByteArray *b, guint32 v)
{
  guint8 be[4] = { (guint8) (v >> 24), (guint8) (v >> 16), (guint8) (v >> 8), (guint8) v };
  g_byte_array_append (b, be, 4);
}

/* IDX images n×h×w with pixel (i, r, c) = (i + 3r + 5c) % 256, and labels i % K. */
static GByteArray *
make_images (guint32 n, guint32 h, guint32 w)
{
  GByteArray *b = g_byte_array_new ();
  put_u32 (b, 0x00000803);
  put_u32 (b, n);
  put_u32 (b, h);
  put_u32 (b, w);
  for (guint32 i = 0; i < n; i++)
    for (guint32 r = 0; r < h; r++)
      for (guint32 c = 0; c < w; c++)
        {
          guint8 v = (guint8) ((i + 3 * r + 5 * c) % 256);
          g_byte_array_append (b, &v, 1);
        }
  return b;
}

static GByteArray *
make_labels (guint32 n, guint K)
{
  GByteArray *b = g_byte_array_new ();
  put_u32 (b, 0x00000801);
  put_u32 (b, n);
  for (guint32 i = 0; i < n; i++)
    {
      guint8 v = (guint8) (i % K);
      g_byte_array_append (b, &v, 1);
    }
  return b;
}

static char *
write_bytes (const char *name, GByteArray *b)
{
  return ds_write (name, b->data, b->len);
}

static void
test_basic (void)
{
  g_autoptr (GByteArray) img = make_images (30, 4, 5);
  g_autoptr (GByteArray) lab = make_labels (30, 3);
  g_autoptr (GByteArray) timg = make_images (6, 4, 5);
  g_autoptr (GByteArray) tlab = make_labels (6, 3);
  g_autofree char *ip = write_bytes ("train-images", img);
  g_autofree char *lp = write_bytes ("train-labels", lab);
  g_autofree char *tip = write_bytes ("t10k-images", timg);
  g_autofree char *tlp = write_bytes ("t10k-labels", tlab);
  g_autofree char *ipz = ds_gzip (ip), *lpz = ds_gzip (lp);
  g_autoptr (GError) error = NULL;

  for (int gz = 0; gz < 2; gz++)
    {
      g_autoptr (FgDataset) ds = ds_load ("idx", &error, "images", gz ? ipz : ip, "labels",
                                          gz ? lpz : lp, "test_images", tip, "test_labels", tlp,
                                          "class_names", "a, b,c", NULL);
      const FgDataPart *train, *test;
      const FgSampleShape *s;
      g_assert_no_error (error);
      train = fg_dataset_get_part (ds, FG_PART_TRAIN);
      test = fg_dataset_get_part (ds, FG_PART_TEST);
      g_assert_cmpuint (train->n, ==, 30);
      g_assert_cmpuint (test->n, ==, 6);
      g_assert_null (fg_dataset_get_part (ds, FG_PART_VAL));
      s = fg_dataset_get_sample_shape (ds);
      g_assert_cmpuint (s->ndim, ==, 3);
      g_assert_cmpuint (s->dims[0], ==, 1);
      g_assert_cmpuint (s->dims[1], ==, 4);
      g_assert_cmpuint (s->dims[2], ==, 5);
      g_assert_cmpuint (train->x.ndim, ==, 4);
      for (guint32 i = 0; i < 30; i++)
        {
          const float *row = fg_tensor_row (&train->x, i);
          g_assert_cmpint (train->y[i], ==, (gint32) (i % 3));
          for (guint32 r = 0; r < 4; r++)
            for (guint32 c = 0; c < 5; c++)
              g_assert_cmpfloat (row[r * 5 + c], ==, (float) ((i + 3 * r + 5 * c) % 256) / 255.0f);
        }
      g_assert_cmpstr (fg_dataset_get_class_name (ds, 2), ==, "c");
      g_assert_cmpstr (fg_dataset_get_note (ds), ==, "classes: 0=a 1=b 2=c");
    }
}

static FgDataset *
load_pair (const char *images, const char *labels, GError **error)
{
  return ds_load ("idx", error, "images", images, "labels", labels, NULL);
}

static void
test_bad_input (void)
{
  g_autoptr (GByteArray) img = make_images (10, 3, 3);
  g_autoptr (GByteArray) lab = make_labels (10, 2);
  g_autofree char *ip = write_bytes ("ok-images", img);
  g_autofree char *lp = write_bytes ("ok-labels", lab);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;

  {
    g_autofree char *p = ds_write ("empty-images", "", 0);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_DATA, "empty-images: empty file", NULL);
    g_clear_error (&error);
  }
  {
    /* truncated in the pixels, in the header, in the magic */
    g_autofree char *p = ds_write ("cut-images", img->data, img->len - 7);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_CORRUPT, "cut-images", "truncated",
                     "byte offset 99 while reading the pixels", "10 images of 9 bytes", NULL);
    g_clear_error (&error);
    g_free (p);
    p = ds_write ("cut-header", img->data, 10);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_CORRUPT, "cut-header: truncated",
                     "while reading the IDX dimensions", NULL);
    g_clear_error (&error);
    g_free (p);
    p = ds_write ("cut-magic", img->data, 3);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_CORRUPT, "cut-magic: truncated", NULL);
    g_clear_error (&error);
  }
  {
    /* the files swapped: magic 0x00000801 where images are expected */
    ds = load_pair (lp, ip, &error);
    ds_assert_error (error, FG_ERROR_DATA, "ok-images: wrong IDX magic number 0x00000803",
                     "is this the images file?", NULL);
    g_clear_error (&error);
  }
  {
    g_autoptr (GByteArray) b = make_images (10, 3, 3);
    g_autofree char *p = NULL;
    b->data[0] = 0x89;
    p = write_bytes ("png-images", b);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_DATA, "png-images: not an IDX file: magic number 0x89000803",
                     NULL);
    g_clear_error (&error);
    b->data[0] = 0;
    b->data[2] = 0x0D;
    g_free (p);
    p = write_bytes ("float-images", b);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_UNSUPPORTED, "float-images: IDX data type 0x0d (float32)",
                     NULL);
    g_clear_error (&error);
  }
  {
    g_autoptr (GByteArray) b = make_labels (9, 2);
    g_autofree char *p = write_bytes ("nine-labels", b);
    ds = load_pair (ip, p, &error);
    ds_assert_error (error, FG_ERROR_DATA, "ok-images holds 10 images but", "nine-labels holds 9 "
                     "labels", NULL);
    g_clear_error (&error);
  }
  {
    g_autoptr (GByteArray) b = make_images (10, 3, 3);
    g_autofree char *p = NULL;
    g_byte_array_append (b, (const guint8 *) "xyz", 3);
    p = write_bytes ("long-images", b);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_CORRUPT, "long-images: 3 unexpected bytes after the last "
                     "image, from byte offset 106", NULL);
    g_clear_error (&error);
  }
  {
    g_autoptr (GByteArray) b = make_images (10, 3, 3);
    g_autofree char *p = NULL;
    b->data[11] = 0; /* rows = 0 */
    p = write_bytes ("zero-images", b);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_DATA, "zero-images: dimension 1 of the IDX header (byte "
                     "offset 8) is 0", NULL);
    g_clear_error (&error);
  }
  {
    g_autoptr (GByteArray) b = make_labels (10, 1);
    g_autofree char *p = write_bytes ("one-class-labels", b);
    ds = load_pair (ip, p, &error);
    ds_assert_error (error, FG_ERROR_DATA, "ok-images: idx: the training labels hold only one "
                     "class", NULL);
    g_clear_error (&error);
    ds = ds_load ("idx", &error, "images", ip, "labels", lp, "class_names", "only,two", NULL);
    g_assert_no_error (error);
    g_clear_pointer (&ds, fg_dataset_unref);
  }
  {
    g_autoptr (GByteArray) b = make_labels (10, 5);
    g_autofree char *p = write_bytes ("five-labels", b);
    ds = ds_load ("idx", &error, "images", ip, "labels", p, "class_names", "x,y,z", NULL);
    ds_assert_error (error, FG_ERROR_DATA, "five-labels: label 3 of example 3 (byte offset 11) is "
                     "outside the 3 classes", NULL);
    g_clear_error (&error);
  }
  {
    g_autoptr (GByteArray) b = make_images (4, 9, 1);
    g_autoptr (GByteArray) l = make_labels (4, 2);
    g_autofree char *p = write_bytes ("tall-images", b);
    g_autofree char *q = write_bytes ("tall-labels", l);
    ds = ds_load ("idx", &error, "images", ip, "labels", lp, "test_images", p, "test_labels", q,
                  NULL);
    ds_assert_error (error, FG_ERROR_DATA, "tall-images: images of 1x9x1 differ from the train "
                     "part's 1x3x3", NULL);
    g_clear_error (&error);
    ds = ds_load ("idx", &error, "images", ip, "labels", lp, "test_images", p, NULL);
    ds_assert_error (error, FG_ERROR_INVALID_PARAM, "the test part needs both an images and a "
                     "labels file", NULL);
    g_clear_error (&error);
  }
  {
    /* a truncated gzip file */
    g_autofree char *gz = ds_gzip (ip);
    g_autofree char *data = NULL;
    g_autofree char *p = NULL;
    gsize len;
    g_assert_true (g_file_get_contents (gz, &data, &len, NULL));
    p = ds_write ("cut-images.gz", data, len - 12);
    ds = load_pair (p, lp, &error);
    ds_assert_error (error, FG_ERROR_CORRUPT, "cut-images.gz: truncated compressed file", NULL);
    g_clear_error (&error);
  }
}

static char *fuzz_labels, *fuzz_images;

static FgDataset *
fuzz_load_images (const char *path, GError **error)
{
  return load_pair (path, fuzz_labels, error);
}

static FgDataset *
fuzz_load_labels (const char *path, GError **error)
{
  return load_pair (fuzz_images, path, error);
}

static void
test_fuzz (void)
{
  g_autoptr (GByteArray) img = make_images (12, 4, 4);
  g_autoptr (GByteArray) lab = make_labels (12, 3);
  g_autofree char *ip = ds_path ("fuzz-images");
  g_autofree char *lp = ds_path ("fuzz-labels");
  g_autofree char *gz = NULL, *gzdata = NULL, *gzpath = NULL;
  gsize gzlen;
  fuzz_images = write_bytes ("fuzz-images-ok", img);
  fuzz_labels = write_bytes ("fuzz-labels-ok", lab);
  g_assert_cmpuint (ds_fuzz (ip, img->data, img->len, fuzz_load_images, 1000, 500, 11), >, 0);
  g_assert_cmpuint (ds_fuzz (lp, lab->data, lab->len, fuzz_load_labels, 1000, 500, 12), >, 0);
  gz = ds_gzip (fuzz_images);
  g_assert_true (g_file_get_contents (gz, &gzdata, &gzlen, NULL));
  gzpath = ds_path ("fuzz-images.gz");
  ds_fuzz (gzpath, (const guint8 *) gzdata, gzlen, fuzz_load_images, 1000, 300, 13);
  g_clear_pointer (&fuzz_images, g_free);
  g_clear_pointer (&fuzz_labels, g_free);
}

/* ---- real files ------------------------------------------------------------------------------ */

static void
test_real_mnist (void)
{
  g_autofree char *images = ds_shared ("mnist/train-images-idx3-ubyte.gz");
  g_autofree char *labels = ds_shared ("mnist/train-labels-idx1-ubyte.gz");
  g_autofree char *timages = ds_shared ("mnist/t10k-images-idx3-ubyte.gz");
  g_autofree char *tlabels = ds_shared ("mnist/t10k-labels-idx1-ubyte.gz");
  static const gsize train_counts[10] = { 5923, 6742, 5958, 6131, 5842,
                                          5421, 5918, 6265, 5851, 5949 };
  static const gsize test_counts[10] = { 980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009 };
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  g_autoptr (GChecksum) md5 = NULL;
  static const guint8 header[16] = { 0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0, 0, 28, 0, 0, 0, 28 };
  g_autofree guint8 *bytes = NULL;
  const FgDataPart *train;
  gsize counts[10];
  double sum0 = 0.0;

  if (images == NULL || labels == NULL || timages == NULL || tlabels == NULL)
    return;
  ds = ds_load ("idx", &error, "images", images, "labels", labels, "test_images", timages,
                "test_labels", tlabels, NULL);
  g_assert_no_error (error);
  train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (train->n, ==, 60000);
  g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TEST)->n, ==, 10000);
  g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, 10);
  g_assert_cmpuint (train->x.shape[1], ==, 1);
  g_assert_cmpuint (train->x.shape[2], ==, 28);
  g_assert_cmpuint (train->x.shape[3], ==, 28);
  g_assert_cmpint (train->y[0], ==, 5);
  ds_count_labels (train, 10, counts);
  g_assert_cmpmem (counts, sizeof counts, train_counts, sizeof train_counts);
  ds_count_labels (fg_dataset_get_part (ds, FG_PART_TEST), 10, counts);
  g_assert_cmpmem (counts, sizeof counts, test_counts, sizeof test_counts);
  /* the floats are exactly k/255: rebuilding the bytes gives the official file's MD5 */
  bytes = g_malloc (60000 * 784);
  for (gsize i = 0; i < 60000 * 784; i++)
    {
      float v = train->x.data[i] * 255.0f;
      bytes[i] = (guint8) lrintf (v);
      g_assert_cmpfloat (train->x.data[i], ==, (float) bytes[i] / 255.0f);
    }
  for (gsize j = 0; j < 784; j++)
    sum0 += bytes[j];
  g_assert_cmpfloat (sum0, ==, 27525.0);
  md5 = g_checksum_new (G_CHECKSUM_MD5);
  g_checksum_update (md5, header, sizeof header);
  g_checksum_update (md5, bytes, 60000 * 784);
  g_assert_cmpstr (g_checksum_get_string (md5), ==, "6bbc9ace898e44ae57da46a324031adb");
}

static void
test_real_mnist_authors_split (void)
{
  g_autofree char *images = ds_shared ("mnist/train-images-idx3-ubyte.gz");
  g_autofree char *labels = ds_shared ("mnist/train-labels-idx1-ubyte.gz");
  g_autofree char *timages = ds_shared ("mnist/t10k-images-idx3-ubyte.gz");
  g_autofree char *tlabels = ds_shared ("mnist/t10k-labels-idx1-ubyte.gz");
  g_autofree char *splits = ds_shared ("flowgmm-label-splits/mnist_100_labeled.txt.gz");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  g_autoptr (FgParams) sp = fg_params_new (fg_split_param_specs ());

  if (images == NULL || labels == NULL || splits == NULL || timages == NULL || tlabels == NULL)
    return;
  ds = ds_load ("idx", &error, "images", images, "labels", labels, "test_images", timages,
                "test_labels", tlabels, NULL);
  g_assert_no_error (error);
  g_assert_true (fg_params_set (sp, "labeled_indices", splits, &error));
  g_assert_true (fg_params_set (sp, "labeled_indices_format", "line-per-seed", &error));
  for (guint64 seed = 0; seed < 20; seed += 7)
    {
      g_autoptr (FgSplitData) d = fg_split_data_new (ds, sp, seed, &error);
      const FgSplit *s;
      gsize counts[10];
      g_assert_no_error (error);
      s = fg_split_data_get_split (d);
      g_assert_cmpuint (s->labeled.n, ==, 100);
      g_assert_cmpuint (s->unlabeled.n, ==, 59900);
      ds_count_labels (&s->labeled, 10, counts);
      for (int k = 0; k < 10; k++)
        g_assert_cmpuint (counts[k], ==, 10);
    }
}

static void
test_real_notmnist (void)
{
  g_autofree char *images = ds_shared ("notmnist/t10k-images-idx3-ubyte.gz");
  g_autofree char *labels = ds_shared ("notmnist/t10k-labels-idx1-ubyte.gz");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  gsize counts[10];
  if (images == NULL || labels == NULL)
    return;
  ds = ds_load ("idx", &error, "images", images, "labels", labels, "class_names",
                "A,B,C,D,E,F,G,H,I,J", NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TRAIN)->n, ==, 10000);
  ds_count_labels (fg_dataset_get_part (ds, FG_PART_TRAIN), 10, counts);
  for (int k = 0; k < 10; k++)
    g_assert_cmpuint (counts[k], ==, 1000);
  g_assert_cmpint (fg_dataset_get_part (ds, FG_PART_TRAIN)->y[0], ==, 3);
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 3), ==, "D");
}

static void
test_real_fashion (void)
{
  const char *dir = "/usr/share/datasets/fashion-mnist";
  g_autofree char *images = g_build_filename (dir, "train-images-idx3-ubyte.gz", NULL);
  g_autofree char *labels = g_build_filename (dir, "train-labels-idx1-ubyte.gz", NULL);
  g_autofree char *timages = g_build_filename (dir, "t10k-images-idx3-ubyte.gz", NULL);
  g_autofree char *tlabels = g_build_filename (dir, "t10k-labels-idx1-ubyte.gz", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  gsize counts[10];
  if (!g_file_test (images, G_FILE_TEST_IS_REGULAR))
    {
      g_test_skip ("Fashion-MNIST (Debian dataset-fashion-mnist) is not installed");
      return;
    }
  ds = ds_load ("idx", &error, "images", images, "labels", labels, "test_images", timages,
                "test_labels", tlabels, NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TRAIN)->n, ==, 60000);
  g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TEST)->n, ==, 10000);
  ds_count_labels (fg_dataset_get_part (ds, FG_PART_TRAIN), 10, counts);
  for (int k = 0; k < 10; k++)
    g_assert_cmpuint (counts[k], ==, 6000);
  g_assert_cmpint (fg_dataset_get_part (ds, FG_PART_TRAIN)->y[0], ==, 9);
}

int
main (int argc, char **argv)
{
  int rc;
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/idx/basic", test_basic);
  g_test_add_func ("/idx/bad-input", test_bad_input);
  g_test_add_func ("/idx/fuzz", test_fuzz);
  g_test_add_func ("/idx/real/mnist", test_real_mnist);
  g_test_add_func ("/idx/real/mnist-authors-split", test_real_mnist_authors_split);
  g_test_add_func ("/idx/real/notmnist", test_real_notmnist);
  g_test_add_func ("/idx/real/fashion-mnist", test_real_fashion);
  rc = g_test_run ();
  ds_cleanup ();
  return rc;
}
