/* SPDX-License-Identifier: MIT */
/* flowgmm tests — image training: augmentation, the second view of flowgmm-cons, the training
 * state (optimizer, raw bytes) and bit-identical resuming of a stopped run, and the bits/dim
 * metric.
 *
 * Tiny data only: a few hundred 1×6×6 "images" written as IDX files into a temporary
 * directory, the realnvp-mlp flow with a few units, a few dozen steps.
 */
#include "config.h"

#include <math.h>
#include <string.h>
#include <glib/gstdio.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include <flowgmm/flowgmm.h>
#include <flowgmm/loss.h>
#include <flowgmm/optim.h>

#include "registry-helpers.h"

#define IMG_H 6
#define IMG_W 6
#define N_TRAIN 240
#define N_TEST 60

/* ---- helpers --------------------------------------------------------------------------------- */

/* Delete a temporary directory tree (the test's own, under g_dir_make_tmp). */
static void
rm_rf (const char *path)
{
  const char *argv[] = { "rm", "-rf", path, NULL };
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL,
                               NULL, NULL, NULL));
}

static void
put_be32 (GString *s, guint32 v)
{
  guint8 b[4] = { v >> 24, v >> 16, v >> 8, v };
  g_string_append_len (s, (const char *) b, 4);
}

/* n images of IMG_H×IMG_W bytes and their labels (two classes: a bright left or right half,
 * with noise) as IDX files prefix-images.idx and prefix-labels.idx in dir. */
static void
write_idx_pair (const char *dir, const char *prefix, guint n, guint64 seed)
{
  g_autoptr (GString) img = g_string_new (NULL), lab = g_string_new (NULL);
  g_autofree char *ipath = g_strdup_printf ("%s/%s-images.idx", dir, prefix);
  g_autofree char *lpath = g_strdup_printf ("%s/%s-labels.idx", dir, prefix);
  FgRng rng;
  fg_rng_init (&rng, seed, 7);
  put_be32 (img, 0x00000803);
  put_be32 (img, n);
  put_be32 (img, IMG_H);
  put_be32 (img, IMG_W);
  put_be32 (lab, 0x00000801);
  put_be32 (lab, n);
  for (guint i = 0; i < n; i++)
    {
      guint8 y = (guint8) (i % 2);
      for (guint r = 0; r < IMG_H; r++)
        for (guint c = 0; c < IMG_W; c++)
          {
            gboolean bright = (c < IMG_W / 2) == (y == 0);
            double v = (bright ? 190.0 : 40.0) + 40.0 * fg_rng_normal (&rng);
            g_string_append_c (img, (char) (guint8) CLAMP (v, 0.0, 255.0));
          }
      g_string_append_c (lab, (char) y);
    }
  g_assert_true (g_file_set_contents (ipath, img->str, (gssize) img->len, NULL));
  g_assert_true (g_file_set_contents (lpath, lab->str, (gssize) lab->len, NULL));
}

/* A temporary directory with train-*.idx and test-*.idx. */
static char *
make_data_dir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("fg-resume-XXXXXX", &error);
  g_assert_no_error (error);
  write_idx_pair (dir, "train", N_TRAIN, 1);
  write_idx_pair (dir, "test", N_TEST, 2);
  return dir;
}

static const char *const dataset_group =
  "[dataset:tiny]\n"
  "plugin = idx\n"
  "images = train-images.idx\n"
  "labels = train-labels.idx\n"
  "test_images = test-images.idx\n"
  "test_labels = test-labels.idx\n"
  "labeled = 20\n"
  "validation = 20\n"
  "augment_crop_pad = 1\n"
  "augment_flip = true\n";

static const char *const method_group =
  "[method:cons]\n"
  "plugin = flowgmm\n"
  "loss = flowgmm-cons\n"
  "flow.layers = 2\n"
  "flow.hidden = 8\n"
  "iterations = 25\n"
  "labeled_batch = 8\n"
  "unlabeled_batch = 32\n"
  "unlabeled_order = shuffle\n"
  "lr = 1e-3\n"
  "checkpoint = final.fgw\n";

/* Runs `experiment_keys` + the groups above in `dir` (out: dir/out) in this process. */
static void
run_in (const char *dir, const char *experiment_keys, FgRunSummary *summary)
{
  g_autofree char *text = g_strdup_printf ("[experiment]\nseeds = 3\nmetrics = accuracy;bpd\n"
                                           "%s\n%s\n%s", experiment_keys, dataset_group,
                                           method_group);
  g_autofree char *out = g_build_filename (dir, "out", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgExperiment) exp = fg_experiment_load_data (text, -1, "resume.exp", dir,
                                                          th_registry (), &error);
  FgRunOptions options = { 0 };
  g_assert_no_error (error);
  options.out_dir = out;
  options.quiet = TRUE;
  options.no_isolate = TRUE;
  g_assert_true (fg_experiment_run (exp, &options, summary, &error));
  g_assert_no_error (error);
}

static JsonObject *
read_record (const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "out", "results.jsonl", NULL);
  g_autofree char *text = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_assert_nonnull (strchr (text, '\n'));
  *strchr (text, '\n') = '\0'; /* the first record */
  g_assert_true (json_parser_load_from_data (p, text, -1, &error));
  return json_object_ref (json_node_get_object (json_parser_get_root (p)));
}

static gsize
count_files (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  gsize n = 0;
  if (d == NULL)
    return 0;
  while (g_dir_read_name (d) != NULL)
    n++;
  return n;
}

/* ---- augmentation ---------------------------------------------------------------------------- */

/* The naive reference: pad explicitly, crop, then mirror. */
static void
augment_naive (const float *src, float *dst, gsize C, gsize H, gsize W, gsize pad, gsize dy,
               gsize dx, gboolean mirror)
{
  const gsize PH = H + 2 * pad, PW = W + 2 * pad;
  g_autofree float *padded = g_new0 (float, C * PH * PW);
  g_autofree float *crop = g_new (float, C * H * W);
  for (gsize c = 0; c < C; c++)
    for (gsize y = 0; y < H; y++)
      for (gsize x = 0; x < W; x++)
        padded[(c * PH + y + pad) * PW + x + pad] = src[(c * H + y) * W + x];
  for (gsize c = 0; c < C; c++)
    for (gsize y = 0; y < H; y++)
      for (gsize x = 0; x < W; x++)
        crop[(c * H + y) * W + x] = padded[(c * PH + y + dy) * PW + x + dx];
  for (gsize c = 0; c < C; c++)
    for (gsize y = 0; y < H; y++)
      for (gsize x = 0; x < W; x++)
        dst[(c * H + y) * W + x] = crop[(c * H + y) * W + (mirror ? W - 1 - x : x)];
}

static void
test_augment_reference (void)
{
  const gsize C = 2, H = 5, W = 7;
  FgSampleShape shape = { 3, { C, H, W } };
  float src[2 * 5 * 7], got[2 * 5 * 7], want[2 * 5 * 7];
  guint n_mirrored = 0, corner_hits = 0;
  for (gsize i = 0; i < G_N_ELEMENTS (src); i++)
    src[i] = (float) (i + 1);

  for (guint pad = 0; pad <= 3; pad++)
    for (guint flip = 0; flip <= 1; flip++)
      {
        FgAugment aug = { pad, flip, { 0 } };
        FgRng rng, replay;
        if (!fg_augment_active (&aug))
          continue;
        fg_rng_init (&rng, 42 + pad, flip);
        replay = rng;
        for (guint trial = 0; trial < 200; trial++)
          {
            gsize dy = 0, dx = 0;
            gboolean mirror = FALSE;
            fg_augment_apply (&aug, &shape, src, got, &rng);
            /* The documented draws, in order, from the same stream. */
            if (pad > 0)
              {
                dy = (gsize) fg_rng_below (&replay, 2 * pad + 1);
                dx = (gsize) fg_rng_below (&replay, 2 * pad + 1);
                corner_hits += dy == 0 && dx == 2 * pad;
              }
            if (flip)
              mirror = fg_rng_below (&replay, 2) == 1;
            n_mirrored += mirror;
            augment_naive (src, want, C, H, W, pad, dy, dx, mirror);
            g_assert_cmpmem (got, sizeof got, want, sizeof want);
          }
        g_assert_cmpuint (fg_rng_next_u64 (&rng), ==, fg_rng_next_u64 (&replay));
      }
  /* Both sides of the coin and the extreme offsets occur. */
  g_assert_cmpuint (n_mirrored, >, 100);
  g_assert_cmpuint (n_mirrored, <, 500);
  g_assert_cmpuint (corner_hits, >, 0);
}

static void
test_augment_inactive (void)
{
  FgSampleShape img = { 3, { 1, 3, 3 } }, vec = { 1, { 9 } };
  FgAugment none = { 0, FALSE, { 0 } }, crop = { 2, TRUE, { 0 } };
  float src[9], dst[9];
  FgRng rng, before;
  for (int i = 0; i < 9; i++)
    src[i] = (float) i;
  fg_rng_init (&rng, 1, 2);
  before = rng;
  g_assert_false (fg_augment_active (NULL));
  g_assert_false (fg_augment_active (&none));
  g_assert_true (fg_augment_active (&crop));
  fg_augment_apply (NULL, &img, src, dst, &rng);
  g_assert_cmpmem (src, sizeof src, dst, sizeof dst);
  fg_augment_apply (&none, &img, src, dst, &rng);
  fg_augment_apply (&crop, &vec, src, dst, &rng); /* not an image: copied */
  g_assert_cmpmem (src, sizeof src, dst, sizeof dst);
  g_assert_cmpuint (fg_rng_next_u64 (&rng), ==, fg_rng_next_u64 (&before)); /* no draw */
}

static FgParams *
split_params (const char *const *settings)
{
  FgParams *p = fg_params_new (fg_split_param_specs ());
  g_autoptr (GError) error = NULL;
  th_params_set_all (p, settings, &error);
  g_assert_no_error (error);
  return p;
}

static void
test_augment_split_keys (void)
{
  g_autoptr (FgDataset) img = fg_dataset_new ("img");
  g_autoptr (FgDataset) vec = fg_dataset_new ("vec");
  g_autoptr (GError) error = NULL;
  const char *const crop[] = { "labeled=4", "test=4", "augment_crop_pad=2", NULL };
  const char *const flip_deq[] = { "labeled=4", "test=4", "augment_flip=true", "dequantize_logit=true",
                                   NULL };
  g_autoptr (FgParams) p1 = split_params (crop);
  g_autoptr (FgParams) p2 = split_params (flip_deq);
  FgDataset *sets[2] = { img, vec };

  for (int s = 0; s < 2; s++)
    {
      FgTensor *x = fg_tensor_new_2d (20, 16);
      gint32 *y = g_new (gint32, 20);
      for (gsize i = 0; i < 20 * 16; i++)
        x->data[i] = (float) (i % 7) / 7.0f;
      for (int i = 0; i < 20; i++)
        y[i] = i % 2;
      g_assert_true (fg_dataset_set_part (sets[s], FG_PART_TRAIN, x, y, &error));
      g_assert_no_error (error);
      if (s == 0)
        g_assert_true (fg_dataset_set_image_shape (img, 1, 4, 4, &error));
      g_assert_true (fg_dataset_finish (sets[s], &error));
    }

  {
    g_autoptr (FgSplitData) sd = fg_split_data_new (img, p1, 0, &error);
    const FgSplit *split;
    g_assert_no_error (error);
    split = fg_split_data_get_split (sd);
    g_assert_nonnull (split->augment);
    g_assert_cmpuint (split->augment->crop_pad, ==, 2);
    g_assert_false (split->augment->flip);
    g_assert_null (split->resume);
  }
  {
    g_autoptr (FgSplitData) sd = fg_split_data_new (vec, p1, 0, &error);
    g_assert_null (sd);
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    g_assert_nonnull (strstr (error->message, "augment_crop_pad"));
    g_assert_nonnull (strstr (error->message, "C×H×W"));
    g_clear_error (&error);
  }
  {
    g_autoptr (FgSplitData) sd = fg_split_data_new (img, p2, 0, &error);
    g_assert_null (sd);
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    g_assert_nonnull (strstr (error->message, "augment_flip"));
    g_assert_nonnull (strstr (error->message, "dequantize_logit"));
  }
}

/* ---- the second view of a loss batch ---------------------------------------------------------- */

static void
test_loss_batch_second_view (void)
{
  g_autoptr (FgWeightSet) ws = fg_weight_set_new ();
  g_autoptr (FgGmm) gmm = fg_gmm_new (2, 4, 1.0, ws);
  g_autoptr (FgTape) tape = fg_tape_new ();
  const FgComponent *c = fg_registry_find (th_registry (), FG_KIND_FLOW, "realnvp-mlp", NULL);
  g_autoptr (FgLossBatch) batch = NULL;
  float xd[3 * 4], x2d[3 * 4];
  gint32 y[1] = { 1 };
  FgTensor x = fg_tensor_wrap_2d (xd, 3, 4), x2 = fg_tensor_wrap_2d (x2d, 3, 4);
  FgRng rng;
  FgVar *a, *b;
  g_assert_nonnull (c);
  fg_rng_init (&rng, 0, 0);
  for (int i = 0; i < 12; i++)
    {
      xd[i] = (float) i;
      x2d[i] = (float) (100 + i);
    }
  batch = fg_loss_batch_new (gmm, c->vtable, NULL, &rng);
  fg_loss_batch_begin (batch, tape, &x, 1, y);
  /* Without a second view: the very rows of get_x. */
  g_assert_true (fg_loss_batch_get_x_second (batch, FG_LOSS_SET_UNLABELED)
                 == fg_loss_batch_get_x (batch, FG_LOSS_SET_UNLABELED));
  g_assert_true (isnan (fg_loss_batch_get_mean_nll (batch)));

  fg_tape_reset (tape);
  fg_loss_batch_begin (batch, tape, &x, 1, y);
  fg_loss_batch_set_second_view (batch, &x2);
  a = fg_loss_batch_get_x (batch, FG_LOSS_SET_UNLABELED);
  b = fg_loss_batch_get_x_second (batch, FG_LOSS_SET_UNLABELED);
  g_assert_cmpuint (fg_tensor_rows (&b->value), ==, 2);
  g_assert_cmpfloat (fg_tensor_row (&a->value, 0)[0], ==, 4.0f);
  g_assert_cmpfloat (fg_tensor_row (&b->value, 0)[0], ==, 104.0f);
  g_assert_cmpfloat (fg_tensor_row (&b->value, 1)[3], ==, 111.0f);
  b = fg_loss_batch_get_x_second (batch, FG_LOSS_SET_LABELED);
  g_assert_cmpuint (fg_tensor_rows (&b->value), ==, 1);
  g_assert_cmpfloat (fg_tensor_row (&b->value, 0)[1], ==, 101.0f);
  /* A new step forgets the view. */
  fg_tape_reset (tape);
  fg_loss_batch_begin (batch, tape, &x, 1, y);
  g_assert_true (fg_loss_batch_get_x_second (batch, FG_LOSS_SET_ALL)
                 == fg_loss_batch_get_x (batch, FG_LOSS_SET_ALL));
}

/* ---- training state ---------------------------------------------------------------------------- */

static void
test_bytes_round_trip (void)
{
  g_autoptr (FgWeightSet) a = fg_weight_set_new ();
  g_autoptr (FgWeightSet) b = fg_weight_set_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("fg-bytes-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "s.fgw", NULL);
  const guint8 odd[7] = { 0xff, 0x80, 0x7f, 0x00, 0x01, 0xc0, 0x7f }; /* NaN-like patterns */
  guint8 back[7] = { 0 };
  guint64 big = G_GUINT64_CONSTANT (0xfff8000000000001), big_back = 0;
  FgWeight *w = fg_weight_set_add_bytes (a, "odd", odd, sizeof odd);
  g_assert_false (w->trainable);
  g_assert_cmpuint (fg_tensor_numel (&w->value), ==, 2);
  fg_weight_set_add_bytes (a, "big", &big, sizeof big);
  fg_weight_set_add_bytes (b, "odd", back, sizeof back);
  fg_weight_set_add_bytes (b, "big", &big_back, sizeof big_back);
  g_assert_true (fg_weight_set_save (a, path, &error));
  g_assert_no_error (error);
  g_assert_true (fg_weight_set_load (b, path, &error));
  g_assert_no_error (error);
  fg_weight_get_bytes (fg_weight_set_lookup (b, "odd"), back, sizeof back);
  fg_weight_get_bytes (fg_weight_set_lookup (b, "big"), &big_back, sizeof big_back);
  g_assert_cmpmem (back, sizeof back, odd, sizeof odd);
  g_assert_cmpuint (big_back, ==, big);
  g_unlink (path);
  g_rmdir (dir);
}

/* Two optimizers, one restored from the other's state, take identical steps. */
static void
test_optimizer_state (void)
{
  g_autoptr (FgWeightSet) w1 = fg_weight_set_new ();
  g_autoptr (FgWeightSet) w2 = fg_weight_set_new ();
  g_autoptr (FgWeightSet) state = fg_weight_set_new ();
  g_autoptr (FgOptimizer) o1 = NULL, o2 = NULL;
  g_autoptr (GError) error = NULL;
  FgOptimConfig cfg;
  FgRng rng;
  FgWeight *a1 = fg_weight_set_add_2d (w1, "a", 3, 2, TRUE);
  FgWeight *b1 = fg_weight_set_add_2d (w1, "b", 1, 5, FALSE);
  FgWeight *a2 = fg_weight_set_add_2d (w2, "a", 3, 2, TRUE);
  FgWeight *b2 = fg_weight_set_add_2d (w2, "b", 1, 5, FALSE);
  fg_rng_init (&rng, 5, 5);
  fg_optim_config_init (&cfg, FG_OPTIM_ADAMW);
  cfg.weight_decay = 0.1;
  o1 = fg_optimizer_new (&cfg, w1);
  o2 = fg_optimizer_new (&cfg, w2);
  fg_weight_init_normal (a1, &rng, 1.0f);
  fg_weight_init_normal (b1, &rng, 1.0f);
  for (int s = 0; s < 3; s++)
    {
      fg_rng_fill_normal (&rng, a1->grad.data, 6, 0.0f, 1.0f);
      fg_rng_fill_normal (&rng, b1->grad.data, 5, 0.0f, 1.0f);
      fg_optimizer_step (o1, 0.01);
    }
  /* A state with a missing entry is refused and changes nothing. */
  g_assert_false (fg_optimizer_load_state (o2, state, "opt/", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  g_clear_error (&error);
  g_assert_cmpuint (fg_optimizer_get_steps (o2), ==, 0);

  fg_optimizer_save_state (o1, state, "opt/");
  g_assert_nonnull (fg_weight_set_lookup (state, "opt/m/a"));
  g_assert_nonnull (fg_weight_set_lookup (state, "opt/v/b"));
  g_assert_true (fg_optimizer_load_state (o2, state, "opt/", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (fg_optimizer_get_steps (o2), ==, 3);
  fg_tensor_copy_into (&a2->value, &a1->value);
  fg_tensor_copy_into (&b2->value, &b1->value);
  for (int s = 0; s < 4; s++)
    {
      fg_rng_fill_normal (&rng, a1->grad.data, 6, 0.0f, 1.0f);
      fg_rng_fill_normal (&rng, b1->grad.data, 5, 0.0f, 1.0f);
      memcpy (a2->grad.data, a1->grad.data, 6 * sizeof (float));
      memcpy (b2->grad.data, b1->grad.data, 5 * sizeof (float));
      fg_optimizer_step (o1, 0.01);
      fg_optimizer_step (o2, 0.01);
    }
  g_assert_cmpmem (a1->value.data, 6 * sizeof (float), a2->value.data, 6 * sizeof (float));
  g_assert_cmpmem (b1->value.data, 5 * sizeof (float), b2->value.data, 5 * sizeof (float));
}

/* ---- resuming a stopped run -------------------------------------------------------------------- */

/* Stopped twice (run_steps) and resumed, a run ends with the very weights, metrics and
 * bits/dim of the uninterrupted one; its state is gone once the cell is stored. */
static void
test_resume_bit_identical (void)
{
  g_autofree char *once = make_data_dir ();
  g_autofree char *sliced = make_data_dir ();
  g_autofree char *resume = g_build_filename (sliced, "out", "resume", NULL);
  g_autofree char *w_once = g_build_filename (once, "final.fgw", NULL);
  g_autofree char *w_sliced = g_build_filename (sliced, "final.fgw", NULL);
  g_autofree char *a = NULL, *b = NULL;
  gsize la = 0, lb = 0;
  FgRunSummary sum;
  g_autoptr (JsonObject) r1 = NULL, r2 = NULL;

  run_in (once, "", &sum);
  g_assert_cmpuint (sum.n_ok, ==, 1);

  /* 25 steps, 10 per run: stopped at 10 and 20, finished by the third run. */
  run_in (sliced, "checkpoint_every = 4\nrun_steps = 10", &sum);
  g_assert_cmpuint (sum.n_ok, ==, 0);
  g_assert_cmpuint (sum.n_cancelled, ==, 1);
  g_assert_false (g_file_test (w_sliced, G_FILE_TEST_EXISTS));
  {
    g_autoptr (GDir) d = g_dir_open (resume, 0, NULL);
    const char *cell;
    g_assert_nonnull (d);
    cell = g_dir_read_name (d);
    g_assert_nonnull (cell);
    {
      g_autofree char *state = g_build_filename (resume, cell, "flowgmm-state.fgw", NULL);
      g_assert_true (g_file_test (state, G_FILE_TEST_IS_REGULAR));
    }
  }
  run_in (sliced, "checkpoint_every = 4\nrun_steps = 10", &sum);
  g_assert_cmpuint (sum.n_cancelled, ==, 1);
  run_in (sliced, "checkpoint_every = 4\nrun_steps = 10", &sum);
  g_assert_cmpuint (sum.n_ok, ==, 1);
  g_assert_cmpuint (count_files (resume), ==, 0); /* the finished cell's state is deleted */

  g_assert_true (g_file_get_contents (w_once, &a, &la, NULL));
  g_assert_true (g_file_get_contents (w_sliced, &b, &lb, NULL));
  g_assert_cmpmem (a, la, b, lb);

  r1 = read_record (once);
  r2 = read_record (sliced);
  for (const char *const *f = (const char *const[]){ "val_accuracy", "test_accuracy", "val_bpd",
                                                     "test_bpd", "train_bpd", NULL };
       *f; f++)
    {
      double v1 = json_object_get_double_member (r1, *f);
      double v2 = json_object_get_double_member (r2, *f);
      g_test_message ("%s: %.17g", *f, v1);
      g_assert_true (isfinite (v1));
      g_assert_cmpfloat (v1, ==, v2);
    }
  /* A finished cell is not run again. */
  run_in (sliced, "checkpoint_every = 4\nrun_steps = 10", &sum);
  g_assert_cmpuint (sum.n_skipped, ==, 1);
  rm_rf (once);
  rm_rf (sliced);
}

/* A damaged state is an error naming the file, stored as the cell's result. */
static void
test_resume_damaged_state (void)
{
  g_autofree char *dir = make_data_dir ();
  g_autofree char *resume = g_build_filename (dir, "out", "resume", NULL);
  g_autoptr (JsonObject) rec = NULL;
  FgRunSummary sum;
  run_in (dir, "run_steps = 5", &sum);
  g_assert_cmpuint (sum.n_cancelled, ==, 1);
  {
    g_autoptr (GDir) d = g_dir_open (resume, 0, NULL);
    g_autofree char *state = g_build_filename (resume, g_dir_read_name (d), "flowgmm-state.fgw",
                                               NULL);
    g_autofree char *text = NULL;
    gsize len;
    g_assert_true (g_file_get_contents (state, &text, &len, NULL));
    text[len / 2] ^= 1;
    g_assert_true (g_file_set_contents (state, text, (gssize) len, NULL));
  }
  run_in (dir, "run_steps = 5", &sum);
  g_assert_cmpuint (sum.n_failed, ==, 1);
  rec = read_record (dir);
  g_assert_cmpstr (json_object_get_string_member (rec, "status"), ==, "error");
  g_assert_nonnull (strstr (json_object_get_string_member (rec, "error"), "flowgmm-state.fgw"));
  g_assert_nonnull (strstr (json_object_get_string_member (rec, "error"), "checksum"));
  rm_rf (dir);
}

/* The training state of a stopped run is also a weights checkpoint for init_checkpoint (the
 * extra entries are skipped), so a long run's model can be evaluated while it trains; a weight
 * file without a model weight is still refused. */
static void
test_state_as_init_checkpoint (void)
{
  g_autofree char *dir = make_data_dir ();
  g_autofree char *resume = g_build_filename (dir, "out", "resume", NULL);
  g_autofree char *state = NULL, *ckpt = NULL;
  const FgComponent *c = fg_registry_find (th_registry (), FG_KIND_BASELINE, "flowgmm", NULL);
  g_autoptr (FgParams) params = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree float *x = g_new0 (float, 4 * IMG_H * IMG_W);
  gint32 y[4] = { 0, 1, 0, 1 }, labels[4];
  FgSplit split = { 0 };
  FgRunSummary s;
  gpointer self;
  run_in (dir, "run_steps = 5", &s);
  g_assert_cmpuint (s.n_cancelled, ==, 1);
  {
    g_autoptr (GDir) d = g_dir_open (resume, 0, NULL);
    state = g_build_filename (resume, g_dir_read_name (d), "flowgmm-state.fgw", NULL);
  }
  ckpt = g_strdup_printf ("init_checkpoint=%s", state);
  {
    const char *const settings[] = { "flow.layers=2", "flow.hidden=8", "epochs=0", ckpt, NULL };
    params = fg_params_new (c->params);
    g_assert_true (fg_registry_resolve_params (th_registry (), params, NULL));
    g_assert_true (th_params_set_all (params, settings, &error));
    g_assert_no_error (error);
  }
  self = ((const FgBaselineVTable *) c->vtable)->create (params, NULL, &error);
  g_assert_no_error (error);
  split.n_classes = 2;
  split.shape.ndim = 3;
  split.shape.dims[0] = 1;
  split.shape.dims[1] = IMG_H;
  split.shape.dims[2] = IMG_W;
  split.dim = IMG_H * IMG_W;
  split.labeled.x = fg_tensor_wrap_4d (x, 4, 1, IMG_H, IMG_W);
  split.labeled.y = y;
  split.labeled.n = 4;
  g_assert_true (((const FgBaselineVTable *) c->vtable)->fit (self, &split, &error));
  g_assert_no_error (error);
  g_assert_true (((const FgBaselineVTable *) c->vtable)->predict (self, &split.labeled.x, labels,
                                                                  NULL, &error));
  g_assert_no_error (error);
  ((const FgBaselineVTable *) c->vtable)->destroy (self);

  /* A file that lacks a weight of the set is refused, subset or not. */
  {
    g_autoptr (FgWeightSet) set = fg_weight_set_new ();
    fg_weight_set_add_2d (set, "no-such-weight", 1, 1, FALSE);
    g_assert_false (fg_weight_set_load_subset (set, state, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  }
  rm_rf (dir);
}

/* ---- bits/dim ---------------------------------------------------------------------------------- */

/* The stored test_bpd is (−mean log p(x) + D log 256)/(D log 2) with the method's own
 * log-density of the test images (no preprocessing), recomputed here from the saved weights. */
static void
test_bpd_metric (void)
{
  g_autofree char *dir = make_data_dir ();
  g_autofree char *weights = g_build_filename (dir, "final.fgw", NULL);
  g_autoptr (JsonObject) rec = NULL;
  const FgComponent *c = fg_registry_find (th_registry (), FG_KIND_BASELINE, "flowgmm", NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *ckpt = g_strdup_printf ("init_checkpoint=%s", weights);
  const char *const settings[] = { "flow.layers=2", "flow.hidden=8", "epochs=0", ckpt, NULL };
  g_autoptr (FgParams) params = NULL;
  g_autofree char *ipath = g_build_filename (dir, "test-images.idx", NULL);
  const FgBaselineVTable *vt;
  FgSplit split = { 0 };
  gpointer self;
  double sum = 0.0, lp[N_TEST], want;
  const double D = IMG_H * IMG_W;
  FgRunSummary s;
  g_autofree float *x = g_new (float, N_TEST * IMG_H * IMG_W);
  g_autofree gint32 *y = g_new0 (gint32, 2);
  g_autofree char *raw = NULL;
  gsize len;

  run_in (dir, "", &s);
  g_assert_cmpuint (s.n_ok, ==, 1);
  rec = read_record (dir);

  g_assert_nonnull (c);
  params = fg_params_new (c->params);
  g_assert_true (fg_registry_resolve_params (th_registry (), params, NULL));
  g_assert_true (th_params_set_all (params, settings, &error));
  g_assert_no_error (error);
  vt = c->vtable;
  g_assert_true (FG_VTABLE_HAS (vt, FgBaselineVTable, log_density));
  g_assert_true (g_file_get_contents (ipath, &raw, &len, NULL));
  g_assert_cmpuint (len, ==, 16 + N_TEST * IMG_H * IMG_W);
  for (gsize i = 0; i < N_TEST * IMG_H * IMG_W; i++)
    x[i] = (float) (guint8) raw[16 + i] / 255.0f;

  /* A model with the saved weights: fit with epochs = 0 only loads them. */
  self = vt->create (params, NULL, &error);
  g_assert_no_error (error);
  split.n_classes = 2;
  split.shape.ndim = 3;
  split.shape.dims[0] = 1;
  split.shape.dims[1] = IMG_H;
  split.shape.dims[2] = IMG_W;
  split.dim = IMG_H * IMG_W;
  split.labeled.x = fg_tensor_wrap_4d (x, 2, 1, IMG_H, IMG_W);
  split.labeled.y = y;
  split.labeled.n = 2;
  g_assert_true (vt->fit (self, &split, &error));
  g_assert_no_error (error);
  {
    FgTensor xt = fg_tensor_wrap_4d (x, N_TEST, 1, IMG_H, IMG_W);
    g_assert_true (vt->log_density (self, &xt, lp, &error));
    g_assert_no_error (error);
  }
  vt->destroy (self);
  for (int i = 0; i < N_TEST; i++)
    sum -= lp[i];
  want = (sum / N_TEST + D * log (256.0)) / (D * log (2.0));
  g_test_message ("test bits/dim %.6f", want);
  g_assert_cmpfloat_with_epsilon (json_object_get_double_member (rec, "test_bpd"), want,
                                  1e-9 * fabs (want));
  rm_rf (dir);
}

/* image_figures = fig6;fig3 writes the four grids of a fitted cell as PNG (checked by
 * gdk-pixbuf-free means: its signature, size and CRC-checked chunks are read back here) and
 * SVG. */
static void
test_image_figures (void)
{
  g_autofree char *dir = make_data_dir ();
  const char *const names[] = { "fig6a", "fig6b", "fig3a", "fig3b", NULL };
  FgRunSummary s;
  run_in (dir, "image_figures = fig6;fig3", &s);
  g_assert_cmpuint (s.n_ok, ==, 1);
  for (guint i = 0; names[i]; i++)
    {
      const char *const ext[] = { "png", "svg", NULL };
      for (guint e = 0; ext[e]; e++)
        {
          g_autofree char *name = g_strdup_printf ("tiny-cons-seed3-%s.%s", names[i], ext[e]);
          g_autofree char *path = g_build_filename (dir, "out", "figures", name, NULL);
          GStatBuf st;
          g_assert_cmpint (g_stat (path, &st), ==, 0);
          g_assert_cmpint (st.st_size, >, 100);
        }
    }
  /* fig6a: one row of K = 2 images of 6×6 with 1-pixel borders, each pixel 2×2. */
  {
    g_autofree char *path = g_build_filename (dir, "out", "figures", "tiny-cons-seed3-fig6a.png",
                                              NULL);
    g_autofree guint8 *png = NULL;
    gsize len, w, h, idat_len;
    g_autoptr (GZlibDecompressor) z = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_ZLIB);
    g_autofree guint8 *raw = NULL;
    gsize rd = 0, wr = 0;
    g_assert_true (g_file_get_contents (path, (char **) &png, &len, NULL));
    g_assert_cmpmem (png, 8, "\x89PNG\r\n\x1a\n", 8);
    g_assert_cmpmem (png + 12, 4, "IHDR", 4);
    w = ((gsize) png[16] << 24) | ((gsize) png[17] << 16) | ((gsize) png[18] << 8) | png[19];
    h = ((gsize) png[20] << 24) | ((gsize) png[21] << 16) | ((gsize) png[22] << 8) | png[23];
    g_assert_cmpuint (w, ==, (2 * (IMG_W + 1) + 1) * 2);
    g_assert_cmpuint (h, ==, (IMG_H + 2) * 2);
    g_assert_cmpmem (png + 37, 4, "IDAT", 4);
    idat_len = ((gsize) png[33] << 24) | ((gsize) png[34] << 16) | ((gsize) png[35] << 8) | png[36];
    raw = g_malloc (h * (1 + 3 * w) + 1);
    g_assert_cmpint (g_converter_convert (G_CONVERTER (z), png + 41, idat_len, raw,
                                          h * (1 + 3 * w) + 1, G_CONVERTER_INPUT_AT_END, &rd, &wr,
                                          NULL), ==, G_CONVERTER_FINISHED);
    g_assert_cmpuint (wr, ==, h * (1 + 3 * w)); /* a filter byte and w RGB pixels per row */
    g_assert_cmpuint (raw[1], ==, 255);         /* the white border */
  }
  rm_rf (dir);
}

/* The paper's image experiment files load against the plugins: every key is valid, the rows
 * shared by the CPU-sized and the authors' groups are consistent, and the references name
 * methods and data sets of the file. */
static void
test_paper_files (void)
{
  const char *const files[] = { "table2-mnist.exp", "table3-mnist.exp", "cifar10-smoke.exp",
                                NULL };
  for (guint i = 0; files[i]; i++)
    {
      g_autofree char *path = g_test_build_filename (G_TEST_DIST, "..", "experiments", "paper",
                                                     files[i], NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (FgExperiment) exp = fg_experiment_load (path, th_registry (), &error);
      g_assert_no_error (error);
      g_assert_cmpuint (fg_experiment_get_n_cells (exp), >, 0);
      g_test_message ("%s: %u cells", files[i], fg_experiment_get_n_cells (exp));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/augment/reference", test_augment_reference);
  g_test_add_func ("/augment/inactive", test_augment_inactive);
  g_test_add_func ("/augment/split-keys", test_augment_split_keys);
  g_test_add_func ("/loss-batch/second-view", test_loss_batch_second_view);
  g_test_add_func ("/state/bytes", test_bytes_round_trip);
  g_test_add_func ("/state/optimizer", test_optimizer_state);
  g_test_add_func ("/resume/bit-identical", test_resume_bit_identical);
  g_test_add_func ("/resume/damaged-state", test_resume_damaged_state);
  g_test_add_func ("/resume/state-as-init-checkpoint", test_state_as_init_checkpoint);
  g_test_add_func ("/bpd/metric", test_bpd_metric);
  g_test_add_func ("/experiments/paper-files", test_paper_files);
  g_test_add_func ("/figures/image-grids", test_image_figures);
  return g_test_run ();
}
