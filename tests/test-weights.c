/* SPDX-License-Identifier: MIT */
/* Tests for weight sets, gradient clipping and checkpoints (core/numeric/weights.c, core/numeric/checkpoint.c). */
#include "config.h"

#include <flowgmm/weights.h>

#include <glib/gstdio.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------ helpers */

/* A scratch directory per test, removed with its files. */
typedef struct
{
  char *dir;
} Scratch;

static void
scratch_setup (Scratch *s, gconstpointer data)
{
  GError *error = NULL;
  s->dir = g_dir_make_tmp ("fg-test-weights-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
scratch_teardown (Scratch *s, gconstpointer data)
{
  GDir *d = g_dir_open (s->dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (s->dir, name, NULL);
      g_unlink (path);
    }
  if (d != NULL)
    g_dir_close (d);
  g_rmdir (s->dir);
  g_free (s->dir);
}

static char *
scratch_path (Scratch *s, const char *name)
{
  return g_build_filename (s->dir, name, NULL);
}

/* The model used by the checkpoint tests: a vector, a matrix, an image-shaped kernel and a
 * frozen weight, with values that exercise every bit pattern class. */
static FgWeightSet *
make_model (guint64 seed)
{
  FgWeightSet *set = fg_weight_set_new ();
  FgWeight *bias, *kernel, *conv, *means;
  FgRng rng;

  fg_rng_init (&rng, seed, 0);
  bias = fg_weight_set_add (set, "layer0.bias", 1, (const gsize[]){ 7 }, FALSE);
  kernel = fg_weight_set_add_2d (set, "layer0.weight", 3, 5, TRUE);
  conv = fg_weight_set_add (set, "conv.weight", 4, (const gsize[]){ 2, 3, 3, 3 }, TRUE);
  means = fg_weight_set_add_2d (set, "gmm.means", 2, 4, FALSE);
  means->trainable = FALSE;

  fg_weight_init_normal (bias, &rng, 1.0f);
  fg_weight_init_uniform (kernel, &rng, 0.5f);
  fg_weight_init_normal (conv, &rng, 3.0f);
  fg_weight_init_normal (means, &rng, 2.0f);
  /* Special values must survive bit for bit. */
  bias->value.data[0] = -0.0f;
  bias->value.data[1] = FLT_MIN / 8;  /* subnormal */
  bias->value.data[2] = -FLT_MAX;
  bias->value.data[3] = INFINITY;
  return set;
}

/* The same names and shapes, added in another order, with other values. */
static FgWeightSet *
make_model_shuffled (void)
{
  FgWeightSet *set = fg_weight_set_new ();
  FgWeight *w;

  w = fg_weight_set_add_2d (set, "gmm.means", 2, 4, FALSE);
  w->trainable = FALSE;
  fg_weight_init_const (w, 11.0f);
  w = fg_weight_set_add (set, "conv.weight", 4, (const gsize[]){ 2, 3, 3, 3 }, TRUE);
  fg_weight_init_const (w, 12.0f);
  w = fg_weight_set_add_2d (set, "layer0.weight", 3, 5, TRUE);
  fg_weight_init_const (w, 13.0f);
  w = fg_weight_set_add (set, "layer0.bias", 1, (const gsize[]){ 7 }, FALSE);
  fg_weight_init_const (w, 14.0f);
  return set;
}

/* Bitwise equality of the values of two sets with the same names. */
static gboolean
same_values (FgWeightSet *a, FgWeightSet *b)
{
  if (fg_weight_set_len (a) != fg_weight_set_len (b))
    return FALSE;
  for (guint i = 0; i < fg_weight_set_len (a); i++)
    {
      FgWeight *wa = fg_weight_set_get (a, i);
      FgWeight *wb = fg_weight_set_lookup (b, wa->name);
      if (wb == NULL || !fg_tensor_same_shape (&wa->value, &wb->value)
          || memcmp (wa->value.data, wb->value.data,
                     fg_tensor_numel (&wa->value) * sizeof (float)) != 0)
        return FALSE;
    }
  return TRUE;
}

/* A deep copy of a set's values (names, shapes, flags), to check that a failed load left it
 * untouched. */
static FgWeightSet *
snapshot (FgWeightSet *set)
{
  FgWeightSet *copy = fg_weight_set_new ();
  for (guint i = 0; i < fg_weight_set_len (set); i++)
    {
      FgWeight *w = fg_weight_set_get (set, i);
      FgWeight *c = fg_weight_set_add (copy, w->name, w->value.ndim, w->value.shape, w->decay);
      c->trainable = w->trainable;
      fg_tensor_copy_into (&c->value, &w->value);
      fg_tensor_copy_into (&c->grad, &w->grad);
    }
  return copy;
}

static void
write_bytes (const char *path, const void *data, gsize len)
{
  GError *error = NULL;
  g_file_set_contents (path, data, (gssize) len, &error);
  g_assert_no_error (error);
}

static guint8 *
dup_bytes (const void *data, gsize len)
{
  guint8 *copy = g_malloc (len);
  memcpy (copy, data, len);
  return copy;
}

static void
put_le32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
}

static void
put_le64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, 8);
}

/* Recomputes the SHA-256 trailer of a checkpoint image (for files that are well formed at the
 * checksum level but wrong inside). */
static void
fix_checksum (guint8 *buf, gsize len)
{
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  gsize dlen = 32;
  g_checksum_update (sum, buf, (gssize) (len - 32));
  g_checksum_get_digest (sum, buf + len - 32, &dlen);
  g_assert_cmpuint (dlen, ==, 32);
  g_checksum_free (sum);
}

/* --------------------------------------------------------------------------- weight sets */

static void
test_set_basic (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *a, *b, *c;

  g_assert_cmpuint (fg_weight_set_len (set), ==, 0);
  g_assert_cmpuint (fg_weight_set_numel (set), ==, 0);
  g_assert_null (fg_weight_set_lookup (set, "a"));

  a = fg_weight_set_add_2d (set, "a", 3, 4, TRUE);
  b = fg_weight_set_add (set, "b", 1, (const gsize[]){ 5 }, FALSE);
  c = fg_weight_set_add (set, "c", 4, (const gsize[]){ 2, 1, 3, 3 }, TRUE);

  g_assert_cmpuint (fg_weight_set_len (set), ==, 3);
  g_assert_true (fg_weight_set_get (set, 0) == a);
  g_assert_true (fg_weight_set_get (set, 1) == b);
  g_assert_true (fg_weight_set_get (set, 2) == c);
  g_assert_true (fg_weight_set_lookup (set, "b") == b);
  g_assert_null (fg_weight_set_lookup (set, "B"));

  g_assert_cmpstr (a->name, ==, "a");
  g_assert_true (a->decay);
  g_assert_false (b->decay);
  g_assert_true (a->trainable && b->trainable && c->trainable);
  g_assert_cmpuint (a->value.ndim, ==, 2);
  g_assert_true (fg_tensor_same_shape (&a->value, &a->grad));
  g_assert_true (fg_tensor_same_shape (&c->value, &c->grad));
  g_assert_true (fg_tensor_is_contiguous (&c->value));
  g_assert_cmpuint ((guintptr) a->value.data % 64, ==, 0);
  g_assert_cmpuint ((guintptr) a->grad.data % 64, ==, 0);
  for (gsize i = 0; i < 12; i++)
    {
      g_assert_cmpfloat (a->value.data[i], ==, 0.0f);
      g_assert_cmpfloat (a->grad.data[i], ==, 0.0f);
    }

  g_assert_cmpuint (fg_weight_set_numel (set), ==, 12 + 5 + 18);
  b->trainable = FALSE;
  g_assert_cmpuint (fg_weight_set_numel (set), ==, 12 + 18);
}

static void
test_set_duplicate (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *w;

  fg_weight_set_add_2d (set, "w", 2, 2, TRUE);
  g_test_expect_message ("flowgmm", G_LOG_LEVEL_CRITICAL, "*g_hash_table_contains*");
  w = fg_weight_set_add_2d (set, "w", 3, 3, TRUE);
  g_test_assert_expected_messages ();
  g_assert_null (w);
  g_assert_cmpuint (fg_weight_set_len (set), ==, 1);
  g_assert_cmpuint (fg_weight_set_lookup (set, "w")->value.shape[0], ==, 2);

  /* Empty names cannot round-trip through a checkpoint: refused too. */
  g_test_expect_message ("flowgmm", G_LOG_LEVEL_CRITICAL, "*name*");
  w = fg_weight_set_add_2d (set, "", 3, 3, TRUE);
  g_test_assert_expected_messages ();
  g_assert_null (w);
}

static void
test_zero_grad_and_norm (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *a = fg_weight_set_add_2d (set, "a", 1, 2, TRUE);
  FgWeight *b = fg_weight_set_add_2d (set, "b", 1, 1, TRUE);
  FgWeight *frozen = fg_weight_set_add_2d (set, "frozen", 1, 1, TRUE);

  frozen->trainable = FALSE;
  a->grad.data[0] = 3.0f;
  a->grad.data[1] = 4.0f;
  b->grad.data[0] = 12.0f;
  frozen->grad.data[0] = 1000.0f;
  /* sqrt (9 + 16 + 144) = 13; frozen weights do not count. */
  g_assert_cmpfloat (fg_weight_set_grad_norm (set), ==, 13.0);

  fg_weight_set_zero_grad (set);
  g_assert_cmpfloat (a->grad.data[0], ==, 0.0f);
  g_assert_cmpfloat (a->grad.data[1], ==, 0.0f);
  g_assert_cmpfloat (b->grad.data[0], ==, 0.0f);
  g_assert_cmpfloat (fg_weight_set_grad_norm (set), ==, 0.0);
}

/* The norm is accumulated in double: 1e4² + 100000·1² in float stays at 1e8 (its ulp is 8). */
static void
test_grad_norm_double (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  const gsize n = 100001;
  FgWeight *w = fg_weight_set_add (set, "big", 1, &n, TRUE);

  w->grad.data[0] = 1e4f;
  for (gsize i = 1; i < n; i++)
    w->grad.data[i] = 1.0f;
  g_assert_cmpfloat_with_epsilon (fg_weight_set_grad_norm (set), sqrt (1e8 + 1e5), 1e-9);
}

static void
test_clip_large (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *a = fg_weight_set_add_2d (set, "a", 1, 2, TRUE);
  FgWeight *b = fg_weight_set_add_2d (set, "b", 1, 1, FALSE);
  FgWeight *frozen = fg_weight_set_add_2d (set, "frozen", 1, 1, TRUE);
  double before;

  frozen->trainable = FALSE;
  a->grad.data[0] = 3.0f;
  a->grad.data[1] = -4.0f;
  b->grad.data[0] = 12.0f;
  frozen->grad.data[0] = 50.0f;

  before = fg_weight_set_clip_grad_norm (set, 1.0);
  g_assert_cmpfloat (before, ==, 13.0);
  /* Scaled to the target norm (within torch's 1e-6 guard), direction kept. */
  g_assert_cmpfloat_with_epsilon (fg_weight_set_grad_norm (set), 1.0, 1e-6);
  g_assert_cmpfloat_with_epsilon (a->grad.data[0], 3.0 / 13.0, 1e-6);
  g_assert_cmpfloat_with_epsilon (a->grad.data[1], -4.0 / 13.0, 1e-6);
  g_assert_cmpfloat_with_epsilon (b->grad.data[0], 12.0 / 13.0, 1e-6);
  /* A frozen weight is neither counted nor scaled. */
  g_assert_cmpfloat (frozen->grad.data[0], ==, 50.0f);

  /* The authors' setting: clip at 100. */
  a->grad.data[0] = 300.0f;
  a->grad.data[1] = 400.0f;
  b->grad.data[0] = 0.0f;
  before = fg_weight_set_clip_grad_norm (set, 100.0);
  g_assert_cmpfloat (before, ==, 500.0);
  g_assert_cmpfloat_with_epsilon (a->grad.data[0], 60.0, 1e-4);
  g_assert_cmpfloat_with_epsilon (a->grad.data[1], 80.0, 1e-4);
}

static void
test_clip_small (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *a = fg_weight_set_add_2d (set, "a", 1, 3, TRUE);
  const float g[3] = { 0.1f, -0.2f, 0.3f };

  memcpy (a->grad.data, g, sizeof g);
  g_assert_cmpfloat_with_epsilon (fg_weight_set_clip_grad_norm (set, 100.0), sqrt (0.14), 1e-7);
  /* Untouched, bit for bit. */
  g_assert_cmpmem (a->grad.data, sizeof g, g, sizeof g);

  /* Like torch, the factor is max_norm / (norm + 1e-6): a norm exactly at the limit is scaled
   * by 5 / (5 + 1e-6) (a no-op to 2e-7 relative), one just inside the guard is left alone. */
  a->grad.data[0] = 3.0f;
  a->grad.data[1] = 4.0f;
  a->grad.data[2] = 0.0f;
  g_assert_cmpfloat (fg_weight_set_clip_grad_norm (set, 5.0), ==, 5.0);
  g_assert_cmpfloat (a->grad.data[0], ==, (float) (3.0f * (float) (5.0 / (5.0 + 1e-6))));
  g_assert_cmpfloat (a->grad.data[1], ==, (float) (4.0f * (float) (5.0 / (5.0 + 1e-6))));
  a->grad.data[0] = 3.0f;
  a->grad.data[1] = 4.0f;
  g_assert_cmpfloat (fg_weight_set_clip_grad_norm (set, 5.0 + 2e-6), ==, 5.0);
  g_assert_cmpfloat (a->grad.data[0], ==, 3.0f);
  g_assert_cmpfloat (a->grad.data[1], ==, 4.0f);
}

static void
test_clip_nonfinite (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *a = fg_weight_set_add_2d (set, "a", 1, 2, TRUE);
  FgWeight *b = fg_weight_set_add_2d (set, "b", 1, 1, TRUE);

  a->grad.data[0] = 1e3f;
  a->grad.data[1] = NAN;
  b->grad.data[0] = 7.0f;
  g_assert_true (isnan (fg_weight_set_clip_grad_norm (set, 1.0)));
  g_assert_cmpfloat (a->grad.data[0], ==, 1e3f);
  g_assert_cmpfloat (b->grad.data[0], ==, 7.0f);

  a->grad.data[1] = INFINITY;
  g_assert_true (isinf (fg_weight_set_clip_grad_norm (set, 1.0)));
  g_assert_cmpfloat (a->grad.data[0], ==, 1e3f);
  g_assert_cmpfloat (b->grad.data[0], ==, 7.0f);

  /* Finite floats whose squares overflow float are fine in double. */
  a->grad.data[0] = 3e30f;
  a->grad.data[1] = 4e30f;
  b->grad.data[0] = 0.0f;
  g_assert_cmpfloat_with_epsilon (fg_weight_set_clip_grad_norm (set, 1.0), 5e30, 1e24);
  g_assert_cmpfloat_with_epsilon (a->grad.data[0], 0.6, 1e-6);
  g_assert_cmpfloat_with_epsilon (a->grad.data[1], 0.8, 1e-6);
}

static void
test_init (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *u = fg_weight_set_add_2d (set, "u", 100, 100, TRUE);
  FgWeight *n = fg_weight_set_add_2d (set, "n", 100, 100, TRUE);
  FgWeight *c = fg_weight_set_add_2d (set, "c", 3, 3, TRUE);
  FgRng rng, rng2;
  double sum = 0.0, sum2 = 0.0;
  float minv = INFINITY, maxv = -INFINITY;

  fg_rng_init (&rng, 3, 1);
  fg_weight_init_uniform (u, &rng, 0.25f);
  for (gsize i = 0; i < 10000; i++)
    {
      minv = MIN (minv, u->value.data[i]);
      maxv = MAX (maxv, u->value.data[i]);
    }
  g_assert_cmpfloat (minv, >=, -0.25f);
  g_assert_cmpfloat (maxv, <, 0.25f);
  g_assert_cmpfloat (minv, <, -0.24f);
  g_assert_cmpfloat (maxv, >, 0.24f);

  fg_weight_init_normal (n, &rng, 0.5f);
  for (gsize i = 0; i < 10000; i++)
    {
      sum += n->value.data[i];
      sum2 += (double) n->value.data[i] * n->value.data[i];
    }
  g_assert_cmpfloat_with_epsilon (sum / 10000, 0.0, 0.03);
  g_assert_cmpfloat_with_epsilon (sqrt (sum2 / 10000), 0.5, 0.03);

  fg_weight_init_const (c, 1.5f);
  for (gsize i = 0; i < 9; i++)
    g_assert_cmpfloat (c->value.data[i], ==, 1.5f);

  /* Same generator state, same values. */
  fg_rng_init (&rng2, 3, 1);
  fg_weight_init_uniform (c, &rng2, 0.25f);
  g_assert_cmpmem (c->value.data, 9 * sizeof (float), u->value.data, 9 * sizeof (float));
}

/* --------------------------------------------------------------------------- checkpoints */

static void
test_checkpoint_round_trip (Scratch *s, gconstpointer data)
{
  g_autoptr (FgWeightSet) model = make_model (1);
  g_autoptr (FgWeightSet) other = make_model_shuffled ();
  g_autofree char *path = scratch_path (s, "model.fgw");
  g_autofree char *path2 = scratch_path (s, "again.fgw");
  GError *error = NULL;
  FgWeight *w;

  /* A NaN with a payload must come back bit for bit too. */
  {
    guint32 bits = 0x7fc12345u;
    memcpy (&fg_weight_set_lookup (model, "layer0.bias")->value.data[4], &bits, 4);
  }

  g_assert_true (fg_weight_set_save (model, path, &error));
  g_assert_no_error (error);
  g_assert_false (same_values (model, other));

  /* Gradients and flags are not part of a checkpoint and are left alone. */
  w = fg_weight_set_lookup (other, "conv.weight");
  w->grad.data[0] = 42.0f;
  w->decay = FALSE;

  g_assert_true (fg_weight_set_load (other, path, &error));
  g_assert_no_error (error);
  g_assert_true (same_values (model, other));
  g_assert_cmpfloat (w->grad.data[0], ==, 42.0f);
  g_assert_false (w->decay);
  g_assert_false (fg_weight_set_lookup (other, "gmm.means")->trainable);

  /* Saving the restored set gives the same values (its order differs, so compare by loading). */
  g_assert_true (fg_weight_set_save (other, path2, &error));
  g_assert_no_error (error);
  {
    g_autoptr (FgWeightSet) third = make_model_shuffled ();
    g_assert_true (fg_weight_set_load (third, path2, &error));
    g_assert_no_error (error);
    g_assert_true (same_values (model, third));
  }

  /* Saving replaces an existing file. */
  fg_weight_init_const (fg_weight_set_lookup (model, "conv.weight"), -3.0f);
  g_assert_true (fg_weight_set_save (model, path, &error));
  g_assert_no_error (error);
  g_assert_true (fg_weight_set_load (other, path, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (fg_weight_set_lookup (other, "conv.weight")->value.data[53], ==, -3.0f);

  /* An empty set round-trips too. */
  {
    g_autoptr (FgWeightSet) e1 = fg_weight_set_new ();
    g_autoptr (FgWeightSet) e2 = fg_weight_set_new ();
    g_autofree char *epath = scratch_path (s, "empty.fgw");
    g_assert_true (fg_weight_set_save (e1, epath, &error));
    g_assert_no_error (error);
    g_assert_true (fg_weight_set_load (e2, epath, &error));
    g_assert_no_error (error);
  }
}

/* The byte layout documented in doc/checkpoint.md, checked field by field. */
static void
test_checkpoint_format (Scratch *s, gconstpointer data)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autofree char *path = scratch_path (s, "format.fgw");
  g_autofree gchar *contents = NULL;
  gsize len;
  GError *error = NULL;
  FgWeight *a = fg_weight_set_add_2d (set, "ab", 2, 3, TRUE);
  FgWeight *b = fg_weight_set_add (set, "c", 1, (const gsize[]){ 1 }, FALSE);
  const guint8 *p;

  for (gsize i = 0; i < 6; i++)
    a->value.data[i] = (float) i + 0.5f;
  b->value.data[0] = -2.0f;
  g_assert_true (fg_weight_set_save (set, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, &error));
  g_assert_no_error (error);

  /* 8 + 4 + 4, then (4 + 2 + 4 + 2·8 + 6·4) and (4 + 1 + 4 + 8 + 4), then 32. */
  g_assert_cmpuint (len, ==, 16 + 50 + 21 + 32);
  p = (const guint8 *) contents;
  g_assert_cmpmem (p, 8, "FGWEIGHT", 8);
  {
    static const guint8 expected_head[] = {
      1, 0, 0, 0,                          /* version 1, little-endian */
      2, 0, 0, 0,                          /* two weights */
      2, 0, 0, 0, 'a', 'b',                /* name */
      2, 0, 0, 0,                          /* ndim */
      2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,
      0x00, 0x00, 0x00, 0x3f,              /* 0.5f little-endian */
    };
    g_assert_cmpmem (p + 8, sizeof expected_head, expected_head, sizeof expected_head);
  }
  {
    static const guint8 expected_c[] = {
      1, 0, 0, 0, 'c', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
      0x00, 0x00, 0x00, 0xc0,              /* -2.0f */
    };
    g_assert_cmpmem (p + 66, sizeof expected_c, expected_c, sizeof expected_c);
  }
  /* The trailer is the SHA-256 of everything before it. */
  {
    g_autofree char *hex = g_compute_checksum_for_data (G_CHECKSUM_SHA256, p, len - 32);
    GString *trailer = g_string_new (NULL);
    for (gsize i = len - 32; i < len; i++)
      g_string_append_printf (trailer, "%02x", p[i]);
    g_assert_cmpstr (trailer->str, ==, hex);
    g_string_free (trailer, TRUE);
  }
}

static void
test_checkpoint_corrupt_byte (Scratch *s, gconstpointer data)
{
  g_autoptr (FgWeightSet) model = make_model (2);
  g_autoptr (FgWeightSet) target = make_model_shuffled ();
  g_autoptr (FgWeightSet) before = snapshot (target);
  g_autofree char *path = scratch_path (s, "model.fgw");
  g_autofree char *bad = scratch_path (s, "bad.fgw");
  g_autofree gchar *contents = NULL;
  gsize len;
  GError *error = NULL;

  g_assert_true (fg_weight_set_save (model, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, &error));
  g_assert_no_error (error);

  /* Every single flipped byte is detected; the version field gives UNSUPPORTED, every other
   * byte (magic, counts, names, shapes, data, checksum) CORRUPT. */
  for (gsize i = 0; i < len; i++)
    {
      contents[i] ^= 0x5a;
      write_bytes (bad, contents, len);
      contents[i] ^= 0x5a;

      g_assert_false (fg_weight_set_load (target, bad, &error));
      if (i >= 8 && i < 12)
        g_assert_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED);
      else
        g_assert_error (error, FG_ERROR, FG_ERROR_CORRUPT);
      g_assert_nonnull (strstr (error->message, bad));
      g_clear_error (&error);
      g_assert_true (same_values (target, before));
    }

  /* A single flipped bit in the float data. */
  contents[len - 40] ^= 0x01;
  write_bytes (bad, contents, len);
  g_assert_false (fg_weight_set_load (target, bad, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_CORRUPT);
  g_assert_nonnull (strstr (error->message, "checksum"));
  g_clear_error (&error);
  g_assert_true (same_values (target, before));

  /* Not a checkpoint at all. */
  write_bytes (bad, "hello, world\n", 13);
  g_assert_false (fg_weight_set_load (target, bad, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_CORRUPT);
  g_assert_nonnull (strstr (error->message, "magic"));
  g_clear_error (&error);
}

static void
test_checkpoint_truncated (Scratch *s, gconstpointer data)
{
  g_autoptr (FgWeightSet) model = make_model (3);
  g_autoptr (FgWeightSet) target = make_model_shuffled ();
  g_autoptr (FgWeightSet) before = snapshot (target);
  g_autofree char *path = scratch_path (s, "model.fgw");
  g_autofree char *cut = scratch_path (s, "cut.fgw");
  g_autofree gchar *contents = NULL;
  gsize len;
  GError *error = NULL;

  g_assert_true (fg_weight_set_save (model, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, &error));
  g_assert_no_error (error);

  for (gsize n = 0; n < len; n++)
    {
      write_bytes (cut, contents, n);
      g_assert_false (fg_weight_set_load (target, cut, &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_CORRUPT);
      g_assert_nonnull (strstr (error->message, cut));
      g_clear_error (&error);
      g_assert_true (same_values (target, before));
    }

  /* Extra bytes at the end are as wrong as missing ones. */
  {
    g_autofree guint8 *longer = g_malloc (len + 1);
    memcpy (longer, contents, len);
    longer[len] = 0;
    write_bytes (cut, longer, len + 1);
    g_assert_false (fg_weight_set_load (target, cut, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_CORRUPT);
    g_clear_error (&error);
    g_assert_true (same_values (target, before));
  }

  /* The untruncated file still loads. */
  write_bytes (cut, contents, len);
  g_assert_true (fg_weight_set_load (target, cut, &error));
  g_assert_no_error (error);
  g_assert_true (same_values (target, model));
}

/* Files whose checksum is right but whose structure is not (a buggy writer): every length is
 * still checked before it is used. */
static void
test_checkpoint_bad_structure (Scratch *s, gconstpointer data)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgWeightSet) before = NULL;
  g_autofree char *path = scratch_path (s, "model.fgw");
  g_autofree char *bad = scratch_path (s, "bad.fgw");
  g_autofree gchar *contents = NULL;
  gsize len;
  GError *error = NULL;
  FgWeight *a = fg_weight_set_add_2d (set, "ab", 2, 3, TRUE);
  FgWeight *b = fg_weight_set_add (set, "c", 1, (const gsize[]){ 1 }, FALSE);
  /* Offsets in the 119-byte file of test_checkpoint_format. */
  enum { COUNT = 12, NAME_LEN_A = 16, NAME_A = 20, NDIM_A = 22, SHAPE_A0 = 26, SHAPE_A1 = 34,
         NAME_LEN_C = 66, NAME_C = 70, NDIM_C = 71, SHAPE_C0 = 75 };
  static const struct
  {
    const char *what;
    gsize offset;
    guint width; /* 1, 4 or 8 */
    guint64 value;
    FgError code;
  } cases[] = {
    { "count too large", COUNT, 4, 3, FG_ERROR_CORRUPT },
    { "count absurd", COUNT, 4, G_MAXUINT32, FG_ERROR_CORRUPT },
    { "count too small", COUNT, 4, 1, FG_ERROR_CORRUPT },  /* leaves unexpected bytes */
    { "name length zero", NAME_LEN_A, 4, 0, FG_ERROR_CORRUPT },
    { "name length huge", NAME_LEN_A, 4, G_MAXUINT32, FG_ERROR_CORRUPT },
    { "name length past end", NAME_LEN_A, 4, 200, FG_ERROR_CORRUPT },
    { "name with NUL", NAME_A + 1, 1, 0, FG_ERROR_CORRUPT },
    { "name not UTF-8", NAME_A, 1, 0xff, FG_ERROR_CORRUPT },
    { "rank zero", NDIM_A, 4, 0, FG_ERROR_CORRUPT },
    { "rank five", NDIM_A, 4, 5, FG_ERROR_CORRUPT },
    { "rank huge", NDIM_A, 4, G_MAXUINT32, FG_ERROR_CORRUPT },
    { "dimension overflows", SHAPE_A0, 8, G_MAXUINT64, FG_ERROR_CORRUPT },
    { "dimensions overflow together", SHAPE_A1, 8, G_GUINT64_CONSTANT (1) << 63, FG_ERROR_CORRUPT },
    { "data past end", SHAPE_A1, 8, 1000, FG_ERROR_CORRUPT },
    { "data past end (last weight)", SHAPE_C0, 8, 2, FG_ERROR_CORRUPT },
    { "data short (bytes left over)", SHAPE_C0, 8, 0, FG_ERROR_CORRUPT },
    { "unknown name", NAME_C, 1, 'a', FG_ERROR_DATA }, /* "a" is not in the set */
    { "second name length", NAME_LEN_C, 4, 2, FG_ERROR_CORRUPT },
  };

  for (gsize i = 0; i < 6; i++)
    a->value.data[i] = 100.0f + (float) i;
  b->value.data[0] = 7.0f;
  before = snapshot (set);
  g_assert_true (fg_weight_set_save (set, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (len, ==, 119);

  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autofree guint8 *buf = dup_bytes (contents, len);
      g_test_message ("case: %s", cases[c].what);
      if (cases[c].width == 1)
        buf[cases[c].offset] = (guint8) cases[c].value;
      else if (cases[c].width == 4)
        put_le32 (buf + cases[c].offset, (guint32) cases[c].value);
      else
        put_le64 (buf + cases[c].offset, cases[c].value);
      fix_checksum (buf, len);
      write_bytes (bad, buf, len);

      g_assert_false (fg_weight_set_load (set, bad, &error));
      g_assert_error (error, FG_ERROR, (gint) cases[c].code);
      g_clear_error (&error);
      g_assert_true (same_values (set, before));
    }

  /* A repeated name: two same-shaped weights "xa" and "xb", the second renamed "xa". */
  {
    g_autoptr (FgWeightSet) two = fg_weight_set_new ();
    g_autofree char *dpath = scratch_path (s, "dup.fgw");
    g_autofree gchar *dcontents = NULL;
    gsize dlen;
    fg_weight_set_add_2d (two, "xa", 1, 2, TRUE);
    fg_weight_set_add_2d (two, "xb", 1, 2, TRUE);
    g_assert_true (fg_weight_set_save (two, dpath, &error));
    g_assert_no_error (error);
    g_assert_true (g_file_get_contents (dpath, &dcontents, &dlen, &error));
    g_assert_no_error (error);
    /* Second name starts at 16 + (4 + 2 + 4 + 16 + 8) + 4 = 54. */
    g_assert_cmpint (dcontents[55], ==, 'b');
    dcontents[55] = 'a';
    fix_checksum ((guint8 *) dcontents, dlen);
    write_bytes (bad, dcontents, dlen);
    g_assert_false (fg_weight_set_load (two, bad, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_CORRUPT);
    g_assert_nonnull (strstr (error->message, "twice"));
    g_clear_error (&error);
  }

  /* Another format version: a clear UNSUPPORTED error, even with a valid checksum. */
  {
    g_autofree guint8 *buf = dup_bytes (contents, len);
    put_le32 (buf + 8, 2);
    fix_checksum (buf, len);
    write_bytes (bad, buf, len);
    g_assert_false (fg_weight_set_load (set, bad, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED);
    g_assert_nonnull (strstr (error->message, "version 2"));
    g_clear_error (&error);
    g_assert_true (same_values (set, before));
  }
}

/* Random damage behind a valid checksum never crashes and never half-loads. */
static void
test_checkpoint_fuzz (Scratch *s, gconstpointer data)
{
  g_autoptr (FgWeightSet) model = make_model (4);
  g_autoptr (FgWeightSet) target = make_model_shuffled ();
  g_autofree char *path = scratch_path (s, "model.fgw");
  g_autofree char *bad = scratch_path (s, "bad.fgw");
  g_autofree gchar *contents = NULL;
  gsize len;
  GError *error = NULL;
  FgRng rng;
  guint loaded = 0;

  g_assert_true (fg_weight_set_save (model, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, &error));
  g_assert_no_error (error);

  fg_rng_init (&rng, 99, 0);
  for (guint iter = 0; iter < 2000; iter++)
    {
      g_autoptr (FgWeightSet) before = snapshot (target);
      g_autofree guint8 *buf = dup_bytes (contents, len);
      gsize blen = len;
      guint n_mut = 1 + (guint) fg_rng_below (&rng, 4);

      for (guint k = 0; k < n_mut; k++)
        {
          /* Mutate only header and structure bytes (not the version, which is checked first),
           * mostly near the start where the lengths live. */
          gsize at = 12 + (gsize) fg_rng_below (&rng, MIN (blen - 44, 120));
          buf[at] = (guint8) fg_rng_below (&rng, 256);
        }
      if (fg_rng_below (&rng, 4) == 0)
        {
          /* ... or drop bytes from the body, keeping a trailer. */
          gsize drop = 1 + (gsize) fg_rng_below (&rng, 16);
          memmove (buf + blen - 32 - drop, buf + blen - 32, 32);
          blen -= drop;
        }
      fix_checksum (buf, blen);
      write_bytes (bad, buf, blen);

      if (fg_weight_set_load (target, bad, &error))
        {
          g_assert_no_error (error);
          loaded++;
        }
      else
        {
          g_assert_nonnull (error);
          g_assert_true (error->domain == FG_ERROR);
          g_assert_true (error->code == FG_ERROR_CORRUPT || error->code == FG_ERROR_DATA);
          g_clear_error (&error);
          g_assert_true (same_values (target, before));
        }
    }
  g_test_message ("%u of 2000 mutated files loaded (mutations that hit only float data)", loaded);
}

static void
test_checkpoint_mismatch (Scratch *s, gconstpointer data)
{
  g_autoptr (FgWeightSet) model = make_model (5);
  g_autofree char *path = scratch_path (s, "model.fgw");
  GError *error = NULL;

  g_assert_true (fg_weight_set_save (model, path, &error));
  g_assert_no_error (error);

  /* A weight of the file that the model lacks. */
  {
    g_autoptr (FgWeightSet) target = fg_weight_set_new ();
    g_autoptr (FgWeightSet) before = NULL;
    FgWeight *w;
    fg_weight_set_add (target, "layer0.bias", 1, (const gsize[]){ 7 }, FALSE);
    fg_weight_set_add_2d (target, "layer0.weight", 3, 5, TRUE);
    w = fg_weight_set_add_2d (target, "gmm.means", 2, 4, FALSE);
    fg_weight_init_const (w, 9.0f);
    before = snapshot (target);
    g_assert_false (fg_weight_set_load (target, path, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
    g_assert_nonnull (strstr (error->message, "'conv.weight'"));
    g_assert_nonnull (strstr (error->message, path));
    g_clear_error (&error);
    g_assert_true (same_values (target, before));
  }

  /* A weight with another shape (same element count: only the shape check can catch it). */
  {
    g_autoptr (FgWeightSet) target = make_model_shuffled ();
    g_autoptr (FgWeightSet) before = NULL;
    g_autoptr (FgWeightSet) wrong = fg_weight_set_new ();
    FgWeight *w;
    for (guint i = 0; i < fg_weight_set_len (target); i++)
      {
        FgWeight *t = fg_weight_set_get (target, i);
        if (strcmp (t->name, "layer0.weight") == 0)
          w = fg_weight_set_add_2d (wrong, t->name, 5, 3, TRUE);
        else
          w = fg_weight_set_add (wrong, t->name, t->value.ndim, t->value.shape, TRUE);
        fg_weight_init_const (w, -1.0f);
      }
    before = snapshot (wrong);
    g_assert_false (fg_weight_set_load (wrong, path, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
    g_assert_nonnull (strstr (error->message, "'layer0.weight'"));
    g_assert_nonnull (strstr (error->message, "3x5"));
    g_assert_nonnull (strstr (error->message, "5x3"));
    g_clear_error (&error);
    g_assert_true (same_values (wrong, before));
  }

  /* A weight of the model that the file lacks. */
  {
    g_autoptr (FgWeightSet) target = make_model_shuffled ();
    g_autoptr (FgWeightSet) before = NULL;
    fg_weight_set_add_2d (target, "extra", 2, 2, TRUE);
    before = snapshot (target);
    g_assert_false (fg_weight_set_load (target, path, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
    g_assert_nonnull (strstr (error->message, "'extra'"));
    g_clear_error (&error);
    g_assert_true (same_values (target, before));
  }
}

static void
test_checkpoint_io_errors (Scratch *s, gconstpointer data)
{
  g_autoptr (FgWeightSet) model = make_model (6);
  g_autoptr (FgWeightSet) before = snapshot (model);
  g_autofree char *missing = scratch_path (s, "does-not-exist.fgw");
  g_autofree char *nodir = g_build_filename (s->dir, "no", "such", "dir", "x.fgw", NULL);
  GError *error = NULL;

  g_assert_false (fg_weight_set_load (model, missing, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "does-not-exist.fgw"));
  g_clear_error (&error);
  g_assert_true (same_values (model, before));

  /* A directory is not a checkpoint. */
  g_assert_false (fg_weight_set_load (model, s->dir, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_IO);
  g_clear_error (&error);

  g_assert_false (fg_weight_set_save (model, nodir, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "x.fgw"));
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/weights/set-basic", test_set_basic);
  g_test_add_func ("/weights/set-duplicate", test_set_duplicate);
  g_test_add_func ("/weights/zero-grad-and-norm", test_zero_grad_and_norm);
  g_test_add_func ("/weights/grad-norm-double", test_grad_norm_double);
  g_test_add_func ("/weights/clip-large", test_clip_large);
  g_test_add_func ("/weights/clip-small", test_clip_small);
  g_test_add_func ("/weights/clip-nonfinite", test_clip_nonfinite);
  g_test_add_func ("/weights/init", test_init);

#define ADD_CHECKPOINT_TEST(path, fn) \
  g_test_add (path, Scratch, NULL, scratch_setup, fn, scratch_teardown)
  ADD_CHECKPOINT_TEST ("/checkpoint/round-trip", test_checkpoint_round_trip);
  ADD_CHECKPOINT_TEST ("/checkpoint/format", test_checkpoint_format);
  ADD_CHECKPOINT_TEST ("/checkpoint/corrupt-byte", test_checkpoint_corrupt_byte);
  ADD_CHECKPOINT_TEST ("/checkpoint/truncated", test_checkpoint_truncated);
  ADD_CHECKPOINT_TEST ("/checkpoint/bad-structure", test_checkpoint_bad_structure);
  ADD_CHECKPOINT_TEST ("/checkpoint/fuzz", test_checkpoint_fuzz);
  ADD_CHECKPOINT_TEST ("/checkpoint/mismatch", test_checkpoint_mismatch);
  ADD_CHECKPOINT_TEST ("/checkpoint/io-errors", test_checkpoint_io_errors);
#undef ADD_CHECKPOINT_TEST

  return g_test_run ();
}
