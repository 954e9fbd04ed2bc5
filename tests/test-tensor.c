/* SPDX-License-Identifier: MIT */
/* Tests for tensors (core/numeric/tensor.c): storage, views, reshape and the checking helpers. */
#include "config.h"

#include <flowgmm/tensor.h>

#include <math.h>
#include <float.h>
#include <string.h>

/* Fills a tensor so that every element encodes its coordinates: a matrix element (i, j) holds
 * 100·i + j; an image element (n, c, h, w) holds 1000·n + 100·c + 10·h + w. */
static void
fill_coords (FgTensor *t)
{
  if (t->ndim == 4)
    {
      for (gsize n = 0; n < t->shape[0]; n++)
        for (gsize c = 0; c < t->shape[1]; c++)
          for (gsize h = 0; h < t->shape[2]; h++)
            for (gsize w = 0; w < t->shape[3]; w++)
              fg_tensor_row (t, n)[(c * t->shape[2] + h) * t->shape[3] + w] =
                (float) (1000 * n + 100 * c + 10 * h + w);
      return;
    }
  for (gsize i = 0; i < fg_tensor_rows (t); i++)
    for (gsize j = 0; j < fg_tensor_cols (t); j++)
      fg_tensor_row (t, i)[j] = (float) (100 * i + j);
}

static void
test_new (void)
{
  const gsize shape[4] = { 2, 3, 5, 7 };
  g_autoptr (FgTensor) t = fg_tensor_new (4, shape);
  g_autoptr (FgTensor) m = fg_tensor_new_2d (3, 5);
  g_autoptr (FgTensor) empty = fg_tensor_new_2d (0, 4);

  g_assert_nonnull (t);
  g_assert_cmpuint ((guintptr) t->data % 64, ==, 0);
  g_assert_cmpuint (t->ndim, ==, 4);
  g_assert_cmpuint (fg_tensor_rows (t), ==, 2);
  g_assert_cmpuint (fg_tensor_cols (t), ==, 105);
  g_assert_cmpuint (t->ld, ==, 105);
  g_assert_cmpuint (fg_tensor_numel (t), ==, 210);
  g_assert_true (fg_tensor_is_contiguous (t));
  for (gsize i = 0; i < fg_tensor_numel (t); i++)
    g_assert_cmpfloat (t->data[i], ==, 0.0f);

  g_assert_cmpuint ((guintptr) m->data % 64, ==, 0);
  g_assert_cmpuint (m->ndim, ==, 2);
  g_assert_cmpuint (m->shape[0], ==, 3);
  g_assert_cmpuint (m->shape[1], ==, 5);
  g_assert_cmpuint (m->shape[2], ==, 1);
  g_assert_cmpuint (m->shape[3], ==, 1);
  g_assert_cmpuint (m->ld, ==, 5);

  g_assert_nonnull (empty);
  g_assert_nonnull (empty->data);
  g_assert_cmpuint (fg_tensor_numel (empty), ==, 0);

  fg_tensor_free (NULL);

  {
    float *buf = fg_alloc_floats (17);
    g_assert_cmpuint ((guintptr) buf % 64, ==, 0);
    for (gsize i = 0; i < 17; i++)
      g_assert_cmpfloat (buf[i], ==, 0.0f);
    fg_free_aligned (buf);
    fg_free_aligned (NULL);
  }
}

static void
test_wrap (void)
{
  float buf[24];
  FgTensor v = fg_tensor_wrap (buf, 1, (const gsize[]){ 24 });
  FgTensor m = fg_tensor_wrap_2d (buf, 4, 6);
  FgTensor img = fg_tensor_wrap_4d (buf, 2, 3, 2, 2);

  g_assert_true (v.data == buf);
  g_assert_cmpuint (fg_tensor_rows (&v), ==, 24);
  g_assert_cmpuint (fg_tensor_cols (&v), ==, 1);
  g_assert_cmpuint (v.ld, ==, 1);
  g_assert_true (fg_tensor_is_contiguous (&v));

  g_assert_cmpuint (fg_tensor_rows (&m), ==, 4);
  g_assert_cmpuint (fg_tensor_cols (&m), ==, 6);
  g_assert_cmpuint (m.ld, ==, 6);

  g_assert_cmpuint (img.ndim, ==, 4);
  g_assert_cmpuint (fg_tensor_cols (&img), ==, 12);
  g_assert_cmpuint (img.ld, ==, 12);
  g_assert_true (fg_tensor_row (&img, 1) == buf + 12);

  g_assert_false (fg_tensor_same_shape (&v, &m));
  {
    FgTensor m2 = fg_tensor_wrap_2d (buf, 4, 6);
    FgTensor m3 = fg_tensor_wrap_2d (buf, 6, 4);
    g_assert_true (fg_tensor_same_shape (&m, &m2));
    g_assert_false (fg_tensor_same_shape (&m, &m3));
  }
}

static void
test_view_rows (void)
{
  g_autoptr (FgTensor) t = fg_tensor_new_2d (6, 4);
  FgTensor v;

  fill_coords (t);
  v = fg_tensor_view_rows (t, 2, 3);
  g_assert_cmpuint (fg_tensor_rows (&v), ==, 3);
  g_assert_cmpuint (fg_tensor_cols (&v), ==, 4);
  g_assert_cmpuint (v.ld, ==, 4);
  g_assert_true (fg_tensor_is_contiguous (&v));
  for (gsize i = 0; i < 3; i++)
    for (gsize j = 0; j < 4; j++)
      g_assert_cmpfloat (fg_tensor_row (&v, i)[j], ==, (float) (100 * (i + 2) + j));

  /* Writing through the view changes exactly those rows. */
  fg_tensor_fill (&v, -1.0f);
  for (gsize i = 0; i < 6; i++)
    for (gsize j = 0; j < 4; j++)
      g_assert_cmpfloat (fg_tensor_row (t, i)[j], ==,
                         (i >= 2 && i < 5) ? -1.0f : (float) (100 * i + j));

  /* Empty view at the end, and views of a 4-D tensor. */
  v = fg_tensor_view_rows (t, 6, 0);
  g_assert_cmpuint (fg_tensor_numel (&v), ==, 0);
  {
    g_autoptr (FgTensor) img = fg_tensor_new (4, (const gsize[]){ 3, 2, 2, 2 });
    FgTensor iv;
    fill_coords (img);
    iv = fg_tensor_view_rows (img, 1, 2);
    g_assert_cmpuint (iv.ndim, ==, 4);
    g_assert_cmpfloat (fg_tensor_row (&iv, 1)[7], ==, 2000.0f + 100 + 10 + 1);
  }
}

static void
test_view_cols (void)
{
  g_autoptr (FgTensor) t = fg_tensor_new_2d (5, 6);
  g_autoptr (FgTensor) compact = NULL;
  FgTensor v, vv;

  fill_coords (t);
  v = fg_tensor_view_cols (t, 1, 3);
  g_assert_cmpuint (fg_tensor_rows (&v), ==, 5);
  g_assert_cmpuint (fg_tensor_cols (&v), ==, 3);
  g_assert_cmpuint (v.ld, ==, 6);
  g_assert_false (fg_tensor_is_contiguous (&v));
  for (gsize i = 0; i < 5; i++)
    for (gsize j = 0; j < 3; j++)
      g_assert_cmpfloat (fg_tensor_row (&v, i)[j], ==, (float) (100 * i + j + 1));

  /* A view of a view composes offsets. */
  vv = fg_tensor_view_rows (&v, 3, 2);
  vv = fg_tensor_view_cols (&vv, 1, 2);
  g_assert_cmpfloat (fg_tensor_row (&vv, 0)[0], ==, 302.0f);
  g_assert_cmpfloat (fg_tensor_row (&vv, 1)[1], ==, 403.0f);

  /* A compact copy of the strided view. */
  compact = fg_tensor_copy (&v);
  g_assert_cmpuint (compact->ld, ==, 3);
  g_assert_cmpuint ((guintptr) compact->data % 64, ==, 0);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (compact, &v), ==, 0.0);
  g_assert_cmpfloat (compact->data[3 * 4 + 2], ==, 403.0f);

  /* Filling and copying into the strided view touch only its columns. */
  fg_tensor_fill (&v, 7.0f);
  for (gsize i = 0; i < 5; i++)
    for (gsize j = 0; j < 6; j++)
      g_assert_cmpfloat (fg_tensor_row (t, i)[j], ==,
                         (j >= 1 && j < 4) ? 7.0f : (float) (100 * i + j));
  fg_tensor_copy_into (&v, compact);
  for (gsize i = 0; i < 5; i++)
    for (gsize j = 0; j < 6; j++)
      g_assert_cmpfloat (fg_tensor_row (t, i)[j], ==, (float) (100 * i + j));

  /* A single-column view (a strided column vector). */
  v = fg_tensor_view_cols (t, 5, 1);
  for (gsize i = 0; i < 5; i++)
    g_assert_cmpfloat (fg_tensor_row (&v, i)[0], ==, (float) (100 * i + 5));
}

static void
test_view_channels (void)
{
  g_autoptr (FgTensor) t = fg_tensor_new (4, (const gsize[]){ 2, 4, 3, 2 });
  FgTensor v;

  fill_coords (t);
  v = fg_tensor_view_channels (t, 1, 2);
  g_assert_cmpuint (v.ndim, ==, 4);
  g_assert_cmpuint (v.shape[0], ==, 2);
  g_assert_cmpuint (v.shape[1], ==, 2);
  g_assert_cmpuint (v.shape[2], ==, 3);
  g_assert_cmpuint (v.shape[3], ==, 2);
  g_assert_cmpuint (fg_tensor_cols (&v), ==, 12);
  g_assert_cmpuint (v.ld, ==, 24);
  g_assert_false (fg_tensor_is_contiguous (&v));
  for (gsize n = 0; n < 2; n++)
    for (gsize c = 0; c < 2; c++)
      for (gsize h = 0; h < 3; h++)
        for (gsize w = 0; w < 2; w++)
          g_assert_cmpfloat (fg_tensor_row (&v, n)[(c * 3 + h) * 2 + w], ==,
                             (float) (1000 * n + 100 * (c + 1) + 10 * h + w));

  /* Writing through the channel view leaves channels 0 and 3 alone. */
  fg_tensor_fill (&v, 0.5f);
  for (gsize n = 0; n < 2; n++)
    for (gsize c = 0; c < 4; c++)
      for (gsize k = 0; k < 6; k++)
        {
          float x = fg_tensor_row (t, n)[c * 6 + k];
          if (c == 1 || c == 2)
            g_assert_cmpfloat (x, ==, 0.5f);
          else
            g_assert_cmpfloat (x, ==, (float) (1000 * n + 100 * c + 10 * (k / 2) + k % 2));
        }

  /* The last channel alone. */
  v = fg_tensor_view_channels (t, 3, 1);
  g_assert_cmpfloat (fg_tensor_row (&v, 1)[5], ==, 1000.0f + 300 + 21);
}

static void
test_reshape (void)
{
  g_autoptr (FgTensor) t = fg_tensor_new_2d (2, 12);
  FgTensor r, v;

  fill_coords (t);

  /* Same rows, new trailing shape: ld kept. */
  g_assert_true (fg_tensor_reshape (t, 4, (const gsize[]){ 2, 3, 2, 2 }, &r));
  g_assert_true (r.data == t->data);
  g_assert_cmpuint (r.ndim, ==, 4);
  g_assert_cmpuint (r.ld, ==, 12);
  g_assert_cmpfloat (fg_tensor_row (&r, 1)[(2 * 2 + 1) * 2 + 0], ==, 110.0f);

  /* Flatten to a vector and to another matrix: contiguous, ld follows. */
  g_assert_true (fg_tensor_reshape (t, 1, (const gsize[]){ 24 }, &r));
  g_assert_cmpuint (r.ld, ==, 1);
  g_assert_cmpfloat (fg_tensor_row (&r, 13)[0], ==, 101.0f);
  g_assert_true (fg_tensor_reshape (t, 2, (const gsize[]){ 4, 6 }, &r));
  g_assert_cmpuint (r.ld, ==, 6);
  g_assert_cmpfloat (fg_tensor_row (&r, 3)[0], ==, 106.0f);

  /* Wrong element count: refused, out untouched. */
  r.ld = 12345;
  g_assert_false (fg_tensor_reshape (t, 2, (const gsize[]){ 5, 5 }, &r));
  g_assert_cmpuint (r.ld, ==, 12345);

  /* A strided column view can change its trailing shape, but not its rows. */
  v = fg_tensor_view_cols (t, 0, 6);
  g_assert_true (fg_tensor_reshape (&v, 3, (const gsize[]){ 2, 2, 3 }, &r));
  g_assert_cmpuint (r.ld, ==, 12);
  g_assert_cmpfloat (fg_tensor_row (&r, 1)[5], ==, 105.0f);
  g_assert_false (fg_tensor_reshape (&v, 2, (const gsize[]){ 4, 3 }, &r));
  g_assert_false (fg_tensor_reshape (&v, 1, (const gsize[]){ 12 }, &r));
}

static void
test_shape_string (void)
{
  char buf[64], small[4];
  FgTensor t = fg_tensor_wrap (NULL, 3, (const gsize[]){ 2, 3, 4 });
  FgTensor v = fg_tensor_wrap (NULL, 1, (const gsize[]){ 17 });
  FgTensor big = fg_tensor_wrap (NULL, 4, (const gsize[]){ G_MAXSIZE, G_MAXSIZE, G_MAXSIZE, 9 });

  g_assert_cmpstr (fg_tensor_shape_string (&t, buf, sizeof buf), ==, "2x3x4");
  g_assert_true (fg_tensor_shape_string (&t, buf, sizeof buf) == buf);
  g_assert_cmpstr (fg_tensor_shape_string (&v, buf, sizeof buf), ==, "17");
  /* Truncated, still terminated. */
  g_assert_cmpstr (fg_tensor_shape_string (&t, small, sizeof small), ==, "2x3");
  fg_tensor_shape_string (&big, buf, sizeof buf);
  g_assert_cmpuint (strlen (buf), ==, 63);
}

static void
test_all_finite (void)
{
  g_autoptr (FgTensor) t = fg_tensor_new_2d (4, 5);
  gsize index = 999;
  FgTensor v;

  fill_coords (t);
  g_assert_true (fg_tensor_all_finite (t, &index));
  g_assert_cmpuint (index, ==, 999);
  g_assert_true (fg_tensor_all_finite (t, NULL));

  fg_tensor_row (t, 2)[3] = NAN;
  g_assert_false (fg_tensor_all_finite (t, &index));
  g_assert_cmpuint (index, ==, 2 * 5 + 3);
  g_assert_false (fg_tensor_all_finite (t, NULL));

  /* The first one is reported. */
  fg_tensor_row (t, 3)[0] = INFINITY;
  fg_tensor_row (t, 1)[4] = -INFINITY;
  g_assert_false (fg_tensor_all_finite (t, &index));
  g_assert_cmpuint (index, ==, 1 * 5 + 4);

  /* In a strided view, the index counts the view's elements, and only the view is scanned. */
  v = fg_tensor_view_cols (t, 1, 3);
  g_assert_false (fg_tensor_all_finite (&v, &index));
  g_assert_cmpuint (index, ==, 2 * 3 + 2);
  v = fg_tensor_view_cols (t, 0, 3);
  g_assert_false (fg_tensor_all_finite (&v, &index));
  g_assert_cmpuint (index, ==, 3 * 3 + 0);
  v = fg_tensor_view_cols (t, 0, 1);
  v = fg_tensor_view_rows (&v, 0, 3);
  g_assert_true (fg_tensor_all_finite (&v, &index));

  /* Extreme finite values and negative zero are finite. */
  fg_tensor_fill (t, FLT_MAX);
  fg_tensor_row (t, 0)[0] = -0.0f;
  fg_tensor_row (t, 0)[1] = FLT_MIN / 4; /* subnormal */
  g_assert_true (fg_tensor_all_finite (t, NULL));
}

static void
test_max_abs_diff (void)
{
  g_autoptr (FgTensor) a = fg_tensor_new_2d (3, 3);
  g_autoptr (FgTensor) b = fg_tensor_new_2d (3, 3);

  fill_coords (a);
  fill_coords (b);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (a, b), ==, 0.0);

  fg_tensor_row (b, 1)[2] += 0.25f;
  fg_tensor_row (b, 2)[0] -= 1.5f;
  g_assert_cmpfloat (fg_tensor_max_abs_diff (a, b), ==, 1.5);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (b, a), ==, 1.5);

  /* Computed in double: the difference of two large floats is exact. */
  fg_tensor_fill (a, 16777216.0f);
  fg_tensor_fill (b, 16777218.0f);
  fg_tensor_row (a, 0)[0] = -FLT_MAX;
  fg_tensor_row (b, 0)[0] = FLT_MAX;
  g_assert_cmpfloat (fg_tensor_max_abs_diff (a, b), ==, 2.0 * (double) FLT_MAX);

  /* Equal infinities agree; a NaN never does. */
  fill_coords (a);
  fill_coords (b);
  fg_tensor_row (a, 0)[1] = INFINITY;
  fg_tensor_row (b, 0)[1] = INFINITY;
  g_assert_cmpfloat (fg_tensor_max_abs_diff (a, b), ==, 0.0);
  fg_tensor_row (a, 2)[2] = NAN;
  g_assert_true (isnan (fg_tensor_max_abs_diff (a, b)));
  fg_tensor_row (b, 2)[2] = NAN;
  g_assert_true (isnan (fg_tensor_max_abs_diff (a, b)));
}

static void
test_copy_fill (void)
{
  g_autoptr (FgTensor) a = fg_tensor_new (3, (const gsize[]){ 3, 2, 5 });
  g_autoptr (FgTensor) b = NULL;

  fill_coords (a);
  b = fg_tensor_copy (a);
  g_assert_true (b->data != a->data);
  g_assert_true (fg_tensor_same_shape (a, b));
  g_assert_cmpmem (a->data, 30 * sizeof (float), b->data, 30 * sizeof (float));

  fg_tensor_fill (b, 2.5f);
  for (gsize i = 0; i < 30; i++)
    g_assert_cmpfloat (b->data[i], ==, 2.5f);
  fg_tensor_copy_into (b, a);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (a, b), ==, 0.0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/tensor/new", test_new);
  g_test_add_func ("/tensor/wrap", test_wrap);
  g_test_add_func ("/tensor/view-rows", test_view_rows);
  g_test_add_func ("/tensor/view-cols", test_view_cols);
  g_test_add_func ("/tensor/view-channels", test_view_channels);
  g_test_add_func ("/tensor/reshape", test_reshape);
  g_test_add_func ("/tensor/shape-string", test_shape_string);
  g_test_add_func ("/tensor/all-finite", test_all_finite);
  g_test_add_func ("/tensor/max-abs-diff", test_max_abs_diff);
  g_test_add_func ("/tensor/copy-fill", test_copy_fill);

  return g_test_run ();
}
