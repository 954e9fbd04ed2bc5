/* SPDX-License-Identifier: MIT */
/* flowgmm tests — shared helpers of the dataset plugin tests (test-csv, test-idx, test-npy,
 * test-cifar): load a component through the registry as the runner does, write files into a
 * scratch directory, and the truncate/flip fuzz loop. */
#pragma once

#include "config.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

static FgRegistry *ds_registry;
static char *ds_tmpdir;

/* The registry with the plugins of $FLOWGMM_PLUGIN_PATH (set by make check). */
static G_GNUC_UNUSED const FgComponent *
ds_component (const char *name)
{
  const FgComponent *c;
  g_autoptr (GError) error = NULL;
  if (ds_registry == NULL)
    {
      if (g_getenv ("FLOWGMM_PLUGIN_PATH") == NULL)
        g_error ("FLOWGMM_PLUGIN_PATH is not set: run through 'make check', or export it as "
                 "$builddir/plugins/datasets/.libs");
      ds_registry = fg_registry_new ();
      fg_registry_load_default (ds_registry, NULL);
    }
  c = fg_registry_find (ds_registry, FG_KIND_DATASET, name, &error);
  g_assert_no_error (error);
  return c;
}

/* Load `component` with key/value pairs (NULL-terminated).  Key errors fail the test. */
static G_GNUC_UNUSED FgDataset *
ds_load_v (const char *component, GError **error, va_list ap)
{
  const FgComponent *c = ds_component (component);
  const FgDatasetVTable *vt = c->vtable;
  g_autoptr (FgParams) params = fg_params_new (c->params);
  FgLoadContext ctx = { ds_tmpdir, { 0 } };
  const char *key;
  FgDataset *ds;

  while ((key = va_arg (ap, const char *)) != NULL)
    {
      const char *value = va_arg (ap, const char *);
      g_autoptr (GError) local = NULL;
      if (!fg_params_set (params, key, value, &local))
        g_error ("%s: %s = %s: %s", component, key, value, local->message);
    }
  {
    g_autoptr (GError) local = NULL;
    if (!fg_params_check_complete (params, &local))
      g_error ("%s: %s", component, local->message);
  }
  ds = vt->load (params, &ctx, error);
  g_assert_true ((ds != NULL) == (error == NULL || *error == NULL));
  return ds;
}

static G_GNUC_UNUSED FgDataset *
ds_load (const char *component, GError **error, ...)
{
  va_list ap;
  FgDataset *ds;
  va_start (ap, error);
  ds = ds_load_v (component, error, ap);
  va_end (ap);
  return ds;
}

/* A path in the scratch directory. */
static G_GNUC_UNUSED char *
ds_path (const char *name)
{
  if (ds_tmpdir == NULL)
    {
      g_autoptr (GError) error = NULL;
      ds_tmpdir = g_dir_make_tmp ("fg-datasets-XXXXXX", &error);
      g_assert_no_error (error);
    }
  return g_build_filename (ds_tmpdir, name, NULL);
}

/* Write a file without the fsync of g_file_set_contents () (the fuzz loop writes thousands).
 * (g_file_set_contents_full's G_FILE_SET_CONTENTS_NONE does not truncate in GLib 2.74.) */
static G_GNUC_UNUSED void
ds_put (const char *path, const void *data, gsize len)
{
  FILE *f;
  g_unlink (path); /* a new file: ext4 flushes a truncated-and-rewritten one on close */
  f = g_fopen (path, "wb");
  g_assert_nonnull (f);
  g_assert_cmpuint (fwrite (data, 1, len, f), ==, len);
  g_assert_cmpint (fclose (f), ==, 0);
}

static G_GNUC_UNUSED char *
ds_write (const char *name, const void *data, gsize len)
{
  char *path = ds_path (name);
  ds_put (path, data, len);
  return path;
}

static G_GNUC_UNUSED char *
ds_write_text (const char *name, const char *text)
{
  return ds_write (name, text, strlen (text));
}

/* gzip a file with zlib's gzip format through GIO; returns the new path (name + ".gz"). */
static G_GNUC_UNUSED char *
ds_gzip (const char *path)
{
  g_autofree char *data = NULL;
  gsize len;
  g_autoptr (GError) error = NULL;
  g_autoptr (GZlibCompressor) comp = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, 6);
  g_autoptr (GOutputStream) mem = g_memory_output_stream_new_resizable ();
  g_autoptr (GOutputStream) out = g_converter_output_stream_new (mem, G_CONVERTER (comp));
  char *gz = g_strconcat (path, ".gz", NULL);
  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  g_assert_true (g_output_stream_write_all (out, data, len, NULL, NULL, &error));
  g_assert_true (g_output_stream_close (out, NULL, &error));
  g_assert_no_error (error);
  ds_put (gz, g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (mem)),
          g_memory_output_stream_get_data_size (G_MEMORY_OUTPUT_STREAM (mem)));
  return gz;
}

/* Assert an error of FG_ERROR whose message contains every NULL-terminated fragment. */
static G_GNUC_UNUSED void
ds_assert_error (const GError *error, gint code, ...)
{
  va_list ap;
  const char *frag;
  if (error == NULL)
    g_error ("expected an error, got none");
  if (error->domain != FG_ERROR || (code >= 0 && error->code != code))
    g_error ("expected FG_ERROR code %d, got %s code %d: %s", code,
             g_quark_to_string (error->domain), error->code, error->message);
  va_start (ap, code);
  while ((frag = va_arg (ap, const char *)) != NULL)
    if (strstr (error->message, frag) == NULL)
      g_error ("error message '%s' lacks '%s'", error->message, frag);
  va_end (ap);
}

/* Path of a file in the shared data directory ($FG_SHARED_DATA), or NULL (test skipped) when
 * it is absent. */
static G_GNUC_UNUSED char *
ds_shared (const char *relative)
{
  const char *dir = g_getenv ("FG_SHARED_DATA");
  char *path;
  if (dir == NULL)
    {
      g_test_skip ("FG_SHARED_DATA is not set (make check sets it to ../shared/data)");
      return NULL;
    }
  path = g_build_filename (dir, relative, NULL);
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      g_autofree char *msg = g_strdup_printf ("%s is absent: real-data test skipped", path);
      g_test_skip (msg);
      g_free (path);
      return NULL;
    }
  return path;
}

/* The fuzz loop: for a valid file `bytes`, load the data set from every truncation (every
 * length when the file is short, else `max_cuts` evenly spread lengths) and from `n_flips`
 * copies with 1..4 random bytes replaced (seeded), through `load`, which writes the bytes to
 * `path` and loads.  Each attempt must fail cleanly (an FG_ERROR with a message naming the
 * file) or succeed; it must never crash (run under ASan to catch memory errors).  Returns the
 * number of attempts that loaded.  $FG_FUZZ_SCALE (default 1) multiplies the number of flips,
 * for a longer run by hand: FG_FUZZ_SCALE=50 ./tests/test-csv -p /csv/fuzz. */
typedef FgDataset *(*DsFuzzLoad) (const char *path, GError **error);

static G_GNUC_UNUSED guint
ds_fuzz (const char *path, const guint8 *bytes, gsize len, DsFuzzLoad load, guint max_cuts,
         guint n_flips, guint64 seed)
{
  g_autofree guint8 *copy = g_malloc (len + 1);
  g_autofree char *base = g_path_get_basename (path);
  FgRng rng;
  guint loaded = 0;
  gsize step = len <= max_cuts ? 1 : len / max_cuts;
  const char *scale = g_getenv ("FG_FUZZ_SCALE");

  if (scale != NULL && atoi (scale) > 1)
    n_flips *= (guint) atoi (scale);

  for (gsize cut = 0; cut < len; cut += step)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (FgDataset) ds = NULL;
      ds_put (path, bytes, cut);
      ds = load (path, &error);
      if (ds == NULL)
        {
          g_assert_nonnull (error);
          g_assert_true (error->domain == FG_ERROR);
          if (strstr (error->message, base) == NULL)
            g_error ("truncated at %" G_GSIZE_FORMAT ": message '%s' does not name the file",
                     cut, error->message);
        }
      else
        loaded++;
    }
  fg_rng_init (&rng, seed, 0);
  for (guint t = 0; t < n_flips; t++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (FgDataset) ds = NULL;
      guint n = 1 + (guint) fg_rng_below (&rng, 4);
      memcpy (copy, bytes, len);
      for (guint k = 0; k < n; k++)
        copy[fg_rng_below (&rng, len)] = (guint8) fg_rng_below (&rng, 256);
      ds_put (path, copy, len);
      ds = load (path, &error);
      if (ds == NULL)
        {
          g_assert_nonnull (error);
          g_assert_true (error->domain == FG_ERROR);
        }
      else
        loaded++;
    }
  return loaded;
}

/* Remove the scratch directory (files first). */
static G_GNUC_UNUSED void
ds_cleanup (void)
{
  g_autoptr (GDir) dir = NULL;
  const char *name;
  if (ds_tmpdir == NULL)
    return;
  dir = g_dir_open (ds_tmpdir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *p = g_build_filename (ds_tmpdir, name, NULL);
      g_unlink (p);
    }
  g_rmdir (ds_tmpdir);
  g_clear_pointer (&ds_tmpdir, g_free);
}

/* Label counts of a part: counts[k] for k < K; returns the number of -1 labels. */
static G_GNUC_UNUSED gsize
ds_count_labels (const FgDataPart *part, guint K, gsize *counts)
{
  gsize unknown = 0;
  memset (counts, 0, K * sizeof *counts);
  for (gsize i = 0; i < part->n; i++)
    {
      if (part->y[i] < 0)
        unknown++;
      else
        {
          g_assert_cmpint (part->y[i], <, (gint32) K);
          counts[part->y[i]]++;
        }
    }
  return unknown;
}
