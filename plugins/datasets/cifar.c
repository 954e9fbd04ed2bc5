/* SPDX-License-Identifier: MIT */
/* flowgmm — dataset plugin "cifar": the binary batches of CIFAR-10 and CIFAR-100.
 *
 * A batch is a sequence of records with no header: CIFAR-10 has a 1-byte label then 3,072 pixel
 * bytes (1,024 red, 1,024 green, 1,024 blue, each plane 32×32 row-major); CIFAR-100 has a coarse
 * and a fine label byte before the pixels.  Examples become N×3×32×32 floats k/255.  The file's
 * length must be a whole number of records and every label a valid class; a truncated file is
 * FG_ERROR_CORRUPT naming the record and byte offset.  Files may be gzip-compressed, and `path`
 * may name several batches with a pattern (data_batch_*.bin).
 */
#include "config.h"

#include <string.h>

#include "datasets-private.h"

static const FgParamSpec cifar_params[] = {
  FG_PARAM_SPEC_REQUIRED_PATH ("path",
                               "training batch file; '*' and '?' in the file name match several "
                               "(e.g. data_batch_*.bin, read in sorted order); plain or gzip"),
  FG_PARAM_SPEC_PATH ("validation_path", NULL, "batch file(s) of a separate validation part"),
  FG_PARAM_SPEC_PATH ("test_path", NULL,
                      "batch file(s) of the test part (test_batch.bin); without it, set the "
                      "split key test = N"),
  FG_PARAM_SPEC_CHOICE ("format", "cifar10", "cifar10|cifar100",
                        "record layout: cifar10 (1 label byte) or cifar100 (coarse and fine "
                        "label bytes)"),
  FG_PARAM_SPEC_CHOICE ("label", "fine", "fine|coarse",
                        "CIFAR-100 only: the 100 fine classes or the 20 coarse superclasses"),
  FG_PARAM_SPEC_STRING ("class_names", NULL,
                        "class names separated by commas; default for CIFAR-10: airplane,"
                        "automobile,bird,cat,deer,dog,frog,horse,ship,truck"),
  FG_PARAM_SPEC_END,
};

#define CIFAR_PIXELS 3072

static const char *const cifar10_names[] = { "airplane", "automobile", "bird", "cat", "deer",
                                             "dog",      "frog",       "horse", "ship", "truck" };

/* The files a path names: itself, or the matches of a pattern in its base name. */
static GPtrArray *
expand_path (const char *path, GError **error)
{
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *dir = NULL;
  g_autoptr (GDir) d = NULL;
  const char *name;

  if (strpbrk (base, "*?") == NULL)
    {
      g_ptr_array_add (files, g_strdup (path));
      return g_steal_pointer (&files);
    }
  dir = g_path_get_dirname (path);
  d = g_dir_open (dir, 0, NULL);
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    if (g_pattern_match_simple (base, name))
      g_ptr_array_add (files, g_build_filename (dir, name, NULL));
  if (files->len == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s: no file matches", path);
      return NULL;
    }
  return g_steal_pointer (&files);
}

static gint
compare_paths (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

typedef struct {
  char *path;
  guint8 *bytes;
  gsize n;
} Batch;

static void
batch_free (gpointer data)
{
  Batch *b = data;
  g_free (b->path);
  g_free (b->bytes);
  g_free (b);
}

/* Read and check one batch file. */
static Batch *
read_batch (const char *path, gsize label_bytes, guint label_index, guint K, const char *format,
            GError **error)
{
  const gsize rec = label_bytes + CIFAR_PIXELS;
  g_autoptr (GInputStream) in = fg_file_open_stream (path, error);
  g_autoptr (GByteArray) data = NULL;
  guint8 buf[65536];
  FgDsReader r;
  Batch *b;

  if (in == NULL)
    return NULL;
  _fg_ds_reader_init_stream (&r, in, path);
  data = g_byte_array_new ();
  for (;;)
    {
      gssize got = _fg_ds_reader_read_some (&r, buf, sizeof buf, error);
      if (got < 0)
        return NULL;
      if (got == 0)
        break;
      if (data->len + (gsize) got > G_MAXUINT)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_MEMORY, "%s: larger than 4 GiB", path);
          return NULL;
        }
      g_byte_array_append (data, buf, (guint) got);
    }
  if (data->len == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: empty file (expected %s records)", path,
                   format);
      return NULL;
    }
  if (data->len % rec != 0)
    {
      gsize n = data->len / rec;
      g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                   "%s: truncated or not a %s batch: %u bytes is not a whole number of %"
                   G_GSIZE_FORMAT "-byte records (record %" G_GSIZE_FORMAT " at byte offset %"
                   G_GSIZE_FORMAT " has only %" G_GSIZE_FORMAT " bytes)",
                   path, format, data->len, rec, n, n * rec, data->len - n * rec);
      return NULL;
    }
  for (gsize i = 0; i < data->len / rec; i++)
    {
      guint8 label = data->data[i * rec + label_index];
      if (label >= K)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "%s: record %" G_GSIZE_FORMAT " (byte offset %" G_GSIZE_FORMAT
                       "): label byte %u is not one of the %u classes (not a %s batch?)",
                       path, i, i * rec + label_index, label, K, format);
          return NULL;
        }
    }
  b = g_new0 (Batch, 1);
  b->path = g_strdup (path);
  b->n = data->len / rec;
  b->bytes = g_byte_array_free (g_steal_pointer (&data), FALSE);
  return b;
}

static gboolean
load_part (FgDataset *ds, FgPart part, const char *path, gboolean cifar100, gboolean coarse,
           guint K, GError **error)
{
  const gsize label_bytes = cifar100 ? 2 : 1, rec = label_bytes + CIFAR_PIXELS;
  const guint label_index = cifar100 && !coarse ? 1 : 0;
  const char *format = cifar100 ? "CIFAR-100" : "CIFAR-10";
  g_autoptr (GPtrArray) files = expand_path (path, error);
  g_autoptr (GPtrArray) batches = g_ptr_array_new_with_free_func (batch_free);
  g_autoptr (FgTensor) x = NULL;
  g_autofree gint32 *y = NULL;
  gsize n = 0, row = 0;

  if (files == NULL)
    return FALSE;
  g_ptr_array_sort (files, compare_paths);
  for (guint f = 0; f < files->len; f++)
    {
      Batch *b = read_batch (g_ptr_array_index (files, f), label_bytes, label_index, K, format,
                             error);
      if (b == NULL)
        return FALSE;
      g_ptr_array_add (batches, b);
      n += b->n;
    }
  x = _fg_ds_tensor_new (n, CIFAR_PIXELS, path, error);
  if (x == NULL)
    return FALSE;
  y = g_new (gint32, n);
  for (guint f = 0; f < batches->len; f++)
    {
      Batch *b = g_ptr_array_index (batches, f);
      for (gsize i = 0; i < b->n; i++, row++)
        {
          const guint8 *r = b->bytes + i * rec;
          y[row] = r[label_index];
          _fg_ds_bytes_to_unit (r + label_bytes, fg_tensor_row (x, row), CIFAR_PIXELS);
        }
      g_clear_pointer (&b->bytes, g_free);
    }
  return _fg_ds_add_part (ds, part, g_steal_pointer (&x), g_steal_pointer (&y), path, error);
}

static FgDataset *
cifar_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  static const struct {
    FgPart part;
    const char *key;
  } parts[] = {
    { FG_PART_TRAIN, "path" },
    { FG_PART_VAL, "validation_path" },
    { FG_PART_TEST, "test_path" },
  };
  gboolean cifar100 = g_strcmp0 (fg_params_get_string (params, "format"), "cifar100") == 0;
  gboolean coarse = g_strcmp0 (fg_params_get_string (params, "label"), "coarse") == 0;
  guint K = cifar100 ? (coarse ? 20 : 100) : 10;
  g_autoptr (FgDataset) ds = fg_dataset_new ("cifar");

  if (fg_params_get_string (params, "class_names") != NULL)
    {
      if (!_fg_ds_apply_class_names (ds, params, error))
        return NULL;
      if (fg_dataset_get_n_classes (ds) != K)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "key 'class_names': %u names, but the format has %u classes",
                       fg_dataset_get_n_classes (ds), K);
          return NULL;
        }
    }
  else if (!cifar100)
    fg_dataset_set_classes (ds, 10, cifar10_names);
  else
    fg_dataset_set_classes (ds, K, NULL);
  for (guint p = 0; p < G_N_ELEMENTS (parts); p++)
    {
      const char *path = fg_params_get_string (params, parts[p].key);
      if (path != NULL && !load_part (ds, parts[p].part, path, cifar100, coarse, K, error))
        return NULL;
    }
  if (!fg_dataset_set_image_shape (ds, 3, 32, 32, error)
      || !_fg_ds_finish (ds, fg_params_get_string (params, "path"), error))
    return NULL;
  return g_steal_pointer (&ds);
}

static const FgDatasetVTable cifar_vtable = {
  .struct_size = sizeof (FgDatasetVTable),
  .load = cifar_load,
};

static const FgComponent cifar_components[] = {
  { FG_KIND_DATASET, "cifar", "CIFAR-10/100 binary batches (N×3×32×32), plain or gzip",
    cifar_params, &cifar_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo cifar_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "cifar",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "CIFAR-10 and CIFAR-100 in their binary format",
  .components = cifar_components,
};

FG_PLUGIN_DEFINE (cifar_info)
