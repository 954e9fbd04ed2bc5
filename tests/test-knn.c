/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the knn baseline plugin, loaded through the registry. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "baseline-helpers.h"

/* Labeled points on a line; index order chosen so that distance ties and vote ties differ. */
static float line_x[] = { 10, 0, /* 0: class 1 */
                          0, 0,  /* 1: class 0 */
                          1, 0,  /* 2: class 0 */
                          11, 0, /* 3: class 1 */
                          12, 0 /* 4: class 1 */ };
static gint32 line_y[] = { 1, 0, 0, 1, 1 };

static void
predict_one (const char *const *settings, const float *lx, const gint32 *ly, gsize n,
             const float q[2], gint32 *label, float proba[2])
{
  BtModel m;
  FgSplit split;
  g_autoptr (GError) error = NULL;
  FgTensor tl = fg_tensor_wrap_2d ((float *) lx, n, 2);
  FgTensor tq = fg_tensor_wrap_2d ((float *) q, 1, 2);
  g_assert_true (bt_model_init (&m, "knn", settings, 0, &error));
  g_assert_no_error (error);
  bt_split_init (&split, 2, &tl, ly, NULL, NULL, NULL);
  bt_fit (&m, &split);
  g_assert_true (m.vt->predict (m.self, &tq, label, proba, &error));
  g_assert_no_error (error);
  bt_model_clear (&m);
}

static void
test_known_answers (void)
{
  gint32 label;
  float proba[2];
  const float q2[2] = { 2, 0 }, mid[2] = { 5.5f, 0 };

  predict_one ((const char *[]){ "k=1", "metric=l2", NULL }, line_x, line_y, 5, q2, &label, proba);
  g_assert_cmpint (label, ==, 0);
  predict_one ((const char *[]){ "k=3", "metric=l2", NULL }, line_x, line_y, 5, q2, &label, proba);
  g_assert_cmpint (label, ==, 0);
  g_assert_cmpfloat_with_epsilon (proba[0], 2.0 / 3.0, 1e-6);
  predict_one ((const char *[]){ "k=5", "metric=l2", NULL }, line_x, line_y, 5, q2, &label, proba);
  g_assert_cmpint (label, ==, 1);
  g_assert_cmpfloat_with_epsilon (proba[1], 0.6, 1e-6);

  /* (5.5, 0) is 4.5 from rows 0 (class 1) and 2 (class 0): the distance tie goes to the
   * earlier row, the 1:1 vote tie to the smaller label */
  predict_one ((const char *[]){ "k=1", "metric=l2", NULL }, line_x, line_y, 5, mid, &label, proba);
  g_assert_cmpint (label, ==, 1);
  predict_one ((const char *[]){ "k=2", "metric=l2", NULL }, line_x, line_y, 5, mid, &label, proba);
  g_assert_cmpint (label, ==, 0);
  g_assert_cmpfloat_with_epsilon (proba[0], 0.5, 1e-6);
}

static void
test_cosine_differs_from_l2 (void)
{
  const float lx[] = { 1, 0, 10, 10 };
  const gint32 ly[] = { 0, 1 };
  const float q[2] = { 3, 2.5f }; /* near (1,0) in L2, near 45° in angle */
  gint32 label;
  float proba[2];
  predict_one ((const char *[]){ "k=1", "metric=l2", NULL }, lx, ly, 2, q, &label, proba);
  g_assert_cmpint (label, ==, 0);
  predict_one ((const char *[]){ "k=1", "metric=cosine", NULL }, lx, ly, 2, q, &label, proba);
  g_assert_cmpint (label, ==, 1);
}

static void
test_distance_weights (void)
{
  const float lx[] = { 0, 0, 1, 0, 1.1f, 0 };
  const gint32 ly[] = { 0, 1, 1 };
  const float q0[2] = { 0, 0 }, q1[2] = { 0.4f, 0 };
  gint32 label;
  float proba[2];
  predict_one ((const char *[]){ "k=3", "metric=l2", NULL }, lx, ly, 3, q0, &label, proba);
  g_assert_cmpint (label, ==, 1);
  /* an exact match takes the whole vote */
  predict_one ((const char *[]){ "k=3", "metric=l2", "weights=distance", NULL }, lx, ly, 3, q0,
               &label, proba);
  g_assert_cmpint (label, ==, 0);
  g_assert_cmpfloat (proba[0], ==, 1.0f);
  /* 1/0.4 = 2.5 against 1/0.6 + 1/0.7 = 3.095 */
  predict_one ((const char *[]){ "k=3", "metric=l2", "weights=distance", NULL }, lx, ly, 3, q1,
               &label, proba);
  g_assert_cmpint (label, ==, 1);
  g_assert_cmpfloat_with_epsilon (proba[0], 2.5 / (2.5 + 1 / 0.6 + 1 / 0.7), 1e-5);
}

static void
test_blobs (void)
{
  g_autoptr (FgTensor) x = NULL, xt = NULL;
  g_autofree gint32 *y = NULL, *yt = NULL;
  BtModel m;
  FgSplit split;
  g_autoptr (GError) error = NULL;

  bt_blobs (1, 90, 5, 3, 6.0, &x, &y);
  bt_blobs (1, 3000, 5, 3, 6.0, &xt, &yt); /* same centres (same seed), more points */
  g_assert_true (bt_model_init (&m, "knn", (const char *[]){ "k=5", NULL }, 0, &error));
  bt_split_init (&split, 3, x, y, NULL, NULL, NULL);
  bt_fit (&m, &split);
  g_assert_cmpfloat (bt_accuracy (&m, xt, yt, 3), >, 0.9);
  bt_model_clear (&m);
}

static void
test_param_validation (void)
{
  const char *bad[] = { "k=0", "k=1001", "k=2.5", "metric=manhattan", "weights=gaussian", NULL };
  for (guint i = 0; bad[i] != NULL; i++)
    {
      BtModel m;
      g_autoptr (GError) error = NULL;
      g_assert_false (bt_model_init (&m, "knn", (const char *[]){ bad[i], NULL }, 0, &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    }

  /* more neighbours than labeled points: a clear error at fit */
  {
    BtModel m;
    FgSplit split;
    g_autoptr (GError) error = NULL;
    FgTensor tl = fg_tensor_wrap_2d (line_x, 5, 2);
    g_assert_true (bt_model_init (&m, "knn", (const char *[]){ "k=6", NULL }, 0, &error));
    bt_split_init (&split, 2, &tl, line_y, NULL, NULL, NULL);
    g_assert_false (m.vt->fit (m.self, &split, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    g_assert_nonnull (strstr (error->message, "k = 6 exceeds the 5 labeled points"));
    bt_model_clear (&m);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/knn/known-answers", test_known_answers);
  g_test_add_func ("/knn/cosine-differs-from-l2", test_cosine_differs_from_l2);
  g_test_add_func ("/knn/distance-weights", test_distance_weights);
  g_test_add_func ("/knn/blobs", test_blobs);
  g_test_add_func ("/knn/param-validation", test_param_validation);
  return g_test_run ();
}
