/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the "cifar" dataset plugin (CIFAR-10/100 binary batches), through the
 * registry. */
#include "datasets-common.h"

/* n CIFAR records: label (i % K), pixel j of record i = (i + j) % 256. */
static GByteArray *
make_batch (gsize n, guint K, gboolean cifar100)
{
  GByteArray *b = g_byte_array_new ();
  for (gsize i = 0; i < n; i++)
    {
      guint8 rec[3074];
      gsize off = cifar100 ? 2 : 1;
      rec[0] = (guint8) (i % K);
      if (cifar100)
        {
          rec[0] = (guint8) (i % 20);
          rec[1] = (guint8) (i % K);
        }
      for (gsize j = 0; j < 3072; j++)
        rec[off + j] = (guint8) ((i + j) % 256);
      g_byte_array_append (b, rec, (guint) (off + 3072));
    }
  return b;
}

static void
test_basic (void)
{
  g_autoptr (GByteArray) b1 = make_batch (7, 10, FALSE);
  g_autoptr (GByteArray) b2 = make_batch (5, 10, FALSE);
  g_autofree char *p1 = ds_write ("data_batch_1.bin", b1->data, b1->len);
  g_autofree char *p2 = ds_write ("data_batch_2.bin", b2->data, b2->len);
  g_autofree char *pattern = ds_path ("data_batch_*.bin");
  g_autofree char *gz = ds_gzip (p2);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = ds_load ("cifar", &error, "path", pattern, "test_path", gz, NULL);
  const FgDataPart *train;

  g_assert_no_error (error);
  train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (train->n, ==, 12);
  g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TEST)->n, ==, 5);
  g_assert_cmpuint (train->x.ndim, ==, 4);
  g_assert_cmpuint (train->x.shape[1], ==, 3);
  g_assert_cmpuint (train->x.shape[3], ==, 32);
  /* batch 2 follows batch 1: its record 0 is row 7 */
  g_assert_cmpint (train->y[7], ==, 0);
  g_assert_cmpint (train->y[6], ==, 6);
  g_assert_cmpfloat (fg_tensor_row (&train->x, 7)[1024], ==, 0.0f);         /* green plane */
  g_assert_cmpfloat (fg_tensor_row (&train->x, 3)[1025], ==, 4.0f / 255.0f); /* (3 + 1025) % 256 */
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 9), ==, "truck");
  g_assert_nonnull (strstr (fg_dataset_get_note (ds), "6=frog"));

  /* CIFAR-100: fine and coarse labels */
  {
    g_autoptr (GByteArray) c = make_batch (25, 100, TRUE);
    g_autofree char *pc = ds_write ("cifar100.bin", c->data, c->len);
    g_autoptr (FgDataset) fine = ds_load ("cifar", &error, "path", pc, "format", "cifar100", NULL);
    g_autoptr (FgDataset) coarse = NULL;
    g_assert_no_error (error);
    g_assert_cmpuint (fg_dataset_get_n_classes (fine), ==, 100);
    g_assert_cmpint (fg_dataset_get_part (fine, FG_PART_TRAIN)->y[24], ==, 24);
    coarse = ds_load ("cifar", &error, "path", pc, "format", "cifar100", "label", "coarse", NULL);
    g_assert_no_error (error);
    g_assert_cmpuint (fg_dataset_get_n_classes (coarse), ==, 20);
    g_assert_cmpint (fg_dataset_get_part (coarse, FG_PART_TRAIN)->y[24], ==, 4);
    g_assert_cmpfloat (fg_dataset_get_part (coarse, FG_PART_TRAIN)->x.data[0], ==, 0.0f);
  }
}

static void
test_bad_input (void)
{
  g_autoptr (GByteArray) b = make_batch (4, 10, FALSE);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  {
    g_autofree char *p = ds_write ("empty.bin", "", 0);
    ds = ds_load ("cifar", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "empty.bin: empty file", NULL);
    g_clear_error (&error);
  }
  {
    g_autofree char *p = ds_write ("cut.bin", b->data, b->len - 100);
    ds = ds_load ("cifar", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_CORRUPT, "cut.bin: truncated or not a CIFAR-10 batch",
                     "12192 bytes is not a whole number of 3073-byte records (record 3 at byte "
                     "offset 9219 has only 2973 bytes)", NULL);
    g_clear_error (&error);
  }
  {
    g_autoptr (GByteArray) c = make_batch (4, 10, FALSE);
    g_autofree char *p = NULL;
    c->data[2 * 3073] = 200;
    p = ds_write ("label.bin", c->data, c->len);
    ds = ds_load ("cifar", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "label.bin: record 2 (byte offset 6146): label byte 200 "
                     "is not one of the 10 classes", NULL);
    g_clear_error (&error);
  }
  {
    /* a CIFAR-10 file read as CIFAR-100 */
    g_autoptr (GByteArray) c = make_batch (3074, 10, FALSE);
    g_autofree char *p = ds_write ("ten.bin", c->data, c->len);
    ds = ds_load ("cifar", &error, "path", p, "format", "cifar100", NULL);
    g_assert_null (ds);
    ds_assert_error (error, FG_ERROR_DATA, "ten.bin: record", "not a CIFAR-100 batch?", NULL);
    g_clear_error (&error);
  }
  {
    g_autoptr (GByteArray) c = make_batch (4, 1, FALSE);
    g_autofree char *p = ds_write ("one.bin", c->data, c->len);
    ds = ds_load ("cifar", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_DATA, "one.bin: cifar: the training labels hold only one class",
                     NULL);
    g_clear_error (&error);
  }
  {
    g_autofree char *p = ds_path ("nothing_*.bin");
    ds = ds_load ("cifar", &error, "path", p, NULL);
    ds_assert_error (error, FG_ERROR_IO, "nothing_*.bin: no file matches", NULL);
    g_clear_error (&error);
    ds = ds_load ("cifar", &error, "path", p, "class_names", "a,b,c", NULL);
    ds_assert_error (error, FG_ERROR_INVALID_PARAM, "3 names, but the format has 10 classes", NULL);
    g_clear_error (&error);
  }
}

static FgDataset *
fuzz_load (const char *path, GError **error)
{
  return ds_load ("cifar", error, "path", path, NULL);
}

static void
test_fuzz (void)
{
  g_autoptr (GByteArray) b = make_batch (3, 10, FALSE);
  g_autofree char *path = ds_path ("fuzz.bin");
  g_autofree char *src = ds_write ("fuzz-src.bin", b->data, b->len);
  g_autofree char *gz = ds_gzip (src);
  g_autofree char *gzdata = NULL, *gzpath = ds_path ("fuzz.bin.gz");
  gsize len;
  g_assert_cmpuint (ds_fuzz (path, b->data, b->len, fuzz_load, 500, 300, 31), >, 0);
  g_assert_true (g_file_get_contents (gz, &gzdata, &len, NULL));
  ds_fuzz (gzpath, (const guint8 *) gzdata, len, fuzz_load, 500, 300, 32);
}

static void
test_real_subset (void)
{
  g_autofree char *path = ds_shared ("cifar10-subset/cifar10_train_first4000.bin.gz");
  g_autofree char *labels = ds_shared ("cifar10-subset/cifar10_train_labels_50000.txt.gz");
  static const gsize want_counts[10] = { 396, 366, 420, 384, 422, 393, 414, 385, 407, 413 };
  static const guint8 r0_head[] = { 59, 43, 50, 68, 98, 119, 139, 145, 149 };
  static const guint8 r0_tail[] = { 140, 84, 72 };
  static const guint8 r1_head[] = { 154, 126, 105 }, r1_tail[] = { 139, 142, 144 };
  static const guint8 r2_head[] = { 255, 253, 253 }, r2_tail[] = { 83, 83, 84 };
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  g_autofree char *text = NULL;
  g_autofree guint32 *listed = NULL;
  const FgDataPart *p;
  gsize counts[10], len, n_listed;

  if (path == NULL || labels == NULL)
    return;
  ds = ds_load ("cifar", &error, "path", path, NULL);
  g_assert_no_error (error);
  p = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (p->n, ==, 4000);
  ds_count_labels (p, 10, counts);
  g_assert_cmpmem (counts, sizeof counts, want_counts, sizeof want_counts);
  g_assert_cmpint (p->y[0], ==, 6);
  for (guint i = 0; i < G_N_ELEMENTS (r0_head); i++)
    g_assert_cmpfloat (fg_tensor_row (&p->x, 0)[i], ==, (float) r0_head[i] / 255.0f);
  for (guint i = 0; i < 3; i++)
    {
      g_assert_cmpfloat (fg_tensor_row (&p->x, 0)[3069 + i], ==, (float) r0_tail[i] / 255.0f);
      g_assert_cmpfloat (fg_tensor_row (&p->x, 1)[i], ==, (float) r1_head[i] / 255.0f);
      g_assert_cmpfloat (fg_tensor_row (&p->x, 1)[3069 + i], ==, (float) r1_tail[i] / 255.0f);
      g_assert_cmpfloat (fg_tensor_row (&p->x, 2)[i], ==, (float) r2_head[i] / 255.0f);
      g_assert_cmpfloat (fg_tensor_row (&p->x, 2)[3069 + i], ==, (float) r2_tail[i] / 255.0f);
    }
  /* the labels agree with the authors' list of all 50,000 training labels */
  g_assert_true (fg_file_read_all (labels, 0, &text, &len, &error));
  listed = fg_parse_indices (text, len, 10, "labels", &n_listed, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (n_listed, ==, 50000);
  for (gsize i = 0; i < 4000; i++)
    g_assert_cmpint (p->y[i], ==, (gint32) listed[i]);
}

int
main (int argc, char **argv)
{
  int rc;
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cifar/basic", test_basic);
  g_test_add_func ("/cifar/bad-input", test_bad_input);
  g_test_add_func ("/cifar/fuzz", test_fuzz);
  g_test_add_func ("/cifar/real/subset", test_real_subset);
  rc = g_test_run ();
  ds_cleanup ();
  return rc;
}
