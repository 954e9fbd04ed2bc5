/* SPDX-License-Identifier: MIT */
/* flowgmm — dataset plugin "idx": the MNIST family of IDX files (MNIST, Fashion-MNIST,
 * notMNIST, KMNIST, EMNIST ...), plain or gzip-compressed.
 *
 * An IDX file is a big-endian header — two zero bytes, a type byte (0x08 = unsigned byte), a
 * dimension count — then one uint32 per dimension and the values in row-major order.  Images
 * (N×H×W, or N×C×H×W) become N×C×H×W floats k/255 in [0, 1]; labels (N) become class indices.
 * Every header field is checked against the file: the magic, the dimensions, the image and label
 * counts, and the exact length of the data (a truncated file, or one with bytes left over, is
 * FG_ERROR_CORRUPT naming the file and byte offset).  Files are streamed: the only full-size
 * allocation is the float tensor itself.
 */
#include "config.h"

#include <string.h>

#include "datasets-private.h"

static const FgParamSpec idx_params[] = {
  FG_PARAM_SPEC_REQUIRED_PATH ("images",
                               "IDX file of the training images (idx3-ubyte N×H×W, idx4 "
                               "N×C×H×W or idx2 N×D), plain or gzip-compressed"),
  FG_PARAM_SPEC_REQUIRED_PATH ("labels", "IDX file of the training labels (idx1-ubyte, N values)"),
  FG_PARAM_SPEC_PATH ("validation_images", NULL,
                      "IDX images of a separate validation part (with validation_labels)"),
  FG_PARAM_SPEC_PATH ("validation_labels", NULL, "IDX labels of the validation part"),
  FG_PARAM_SPEC_PATH ("test_images", NULL,
                      "IDX images of the test part (e.g. t10k-images-idx3-ubyte.gz); without "
                      "it, set the split key test = N"),
  FG_PARAM_SPEC_PATH ("test_labels", NULL, "IDX labels of the test part"),
  FG_PARAM_SPEC_STRING ("class_names", NULL,
                        "names of classes 0, 1, ... separated by commas (e.g. A,B,C,D,E,F,G,H,"
                        "I,J for notMNIST); labels must then be below their number"),
  FG_PARAM_SPEC_END,
};

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAX_DIMS 4

typedef struct {
  guint   ndim;
  guint32 dims[IDX_MAX_DIMS];
} IdxHeader;

static const char *
idx_type_name (guint8 type)
{
  switch (type)
    {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown type";
    }
}

/* Read and check the magic and the dimensions: unsigned bytes, min_dims..max_dims dimensions,
 * none zero. */
static gboolean
read_header (FgDsReader *r, const char *what, guint min_dims, guint max_dims, IdxHeader *h,
             GError **error)
{
  guint8 magic[4];
  gssize got = _fg_ds_reader_read_some (r, magic, 4, error);
  if (got < 0)
    return FALSE;
  if (got == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: empty file (expected IDX %s)", r->name,
                   what);
      return FALSE;
    }
  if (got < 4)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                   "%s: truncated: %zd bytes, too short for an IDX magic number", r->name, got);
      return FALSE;
    }
  if (magic[0] != 0 || magic[1] != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: not an IDX file: magic number 0x%02x%02x%02x%02x at byte offset 0 "
                   "(expected 0x0000%02x%02x for %s: two zero bytes, the type 0x08 = unsigned "
                   "byte, then the number of dimensions)",
                   r->name, magic[0], magic[1], magic[2], magic[3], IDX_TYPE_UBYTE, max_dims,
                   what);
      return FALSE;
    }
  if (magic[3] < min_dims || magic[3] > max_dims)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: wrong IDX magic number 0x%02x%02x%02x%02x: %u dimensions, but %s have "
                   "%s (is this the %s file?)",
                   r->name, magic[0], magic[1], magic[2], magic[3], magic[3], what,
                   min_dims == max_dims ? "1 (magic 0x00000801)"
                                        : "2 to 4 (magic 0x00000803 for N×H×W)",
                   min_dims == max_dims ? "images" : "labels");
      return FALSE;
    }
  if (magic[2] != IDX_TYPE_UBYTE)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "%s: IDX data type 0x%02x (%s) at byte offset 2 is not supported; %s must be "
                   "unsigned bytes (0x08)",
                   r->name, magic[2], idx_type_name (magic[2]), what);
      return FALSE;
    }
  h->ndim = magic[3];
  for (guint d = 0; d < h->ndim; d++)
    {
      guint8 b[4];
      guint64 at = r->offset;
      if (!_fg_ds_reader_read (r, b, 4, "the IDX dimensions", error))
        return FALSE;
      h->dims[d] = ((guint32) b[0] << 24) | ((guint32) b[1] << 16) | ((guint32) b[2] << 8) | b[3];
      if (h->dims[d] == 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "%s: dimension %u of the IDX header (byte offset %" G_GUINT64_FORMAT
                       ") is 0: the file holds no %s",
                       r->name, d, at, what);
          return FALSE;
        }
    }
  return TRUE;
}

static gint32 *
read_labels (const char *path, guint K, gsize *n_out, GError **error)
{
  g_autoptr (GInputStream) in = fg_file_open_stream (path, error);
  g_autofree guint8 *bytes = NULL;
  g_autofree gint32 *y = NULL;
  FgDsReader r;
  IdxHeader h;

  if (in == NULL)
    return NULL;
  _fg_ds_reader_init_stream (&r, in, path);
  if (!read_header (&r, "labels", 1, 1, &h, error))
    return NULL;
  bytes = _fg_ds_reader_read_alloc (&r, h.dims[0], "the labels", error);
  if (bytes == NULL || !_fg_ds_reader_expect_end (&r, "the labels", error))
    return NULL;
  y = g_new (gint32, h.dims[0]);
  for (gsize i = 0; i < h.dims[0]; i++)
    {
      if (K > 0 && bytes[i] >= K)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "%s: label %u of example %" G_GSIZE_FORMAT " (byte offset %" G_GSIZE_FORMAT
                       ") is outside the %u classes named by class_names",
                       path, bytes[i], i, 8 + i, K);
          return NULL;
        }
      y[i] = bytes[i];
    }
  *n_out = h.dims[0];
  return g_steal_pointer (&y);
}

/* The images as an N × (C·H·W) tensor; shape[] gets C, H, W (C = 0 for plain N×D data).  The
 * pixel bytes are read first (into a buffer that grows with the data, never with the header's
 * claim), so a header promising more than the file holds fails before the float tensor is
 * allocated; the peak is then 1.25 times the tensor. */
static FgTensor *
read_images (const char *path, gsize *shape, GError **error)
{
  g_autoptr (GInputStream) in = fg_file_open_stream (path, error);
  g_autoptr (FgTensor) x = NULL;
  g_autofree guint8 *pixels = NULL;
  gsize n, cols = 1, total;
  FgDsReader r;
  IdxHeader h;

  if (in == NULL)
    return NULL;
  _fg_ds_reader_init_stream (&r, in, path);
  if (!read_header (&r, "images", 2, 4, &h, error))
    return NULL;
  n = h.dims[0];
  for (guint d = 1; d < h.ndim; d++)
    if (!g_size_checked_mul (&cols, cols, h.dims[d]))
      cols = G_MAXSIZE;
  if (cols == G_MAXSIZE || !g_size_checked_mul (&total, n, cols))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s: the IDX header's dimensions (%u x %u ...) overflow the address space",
                   path, h.dims[0], h.dims[1]);
      return NULL;
    }
  shape[0] = h.ndim == 4 ? h.dims[1] : h.ndim == 3 ? 1 : 0;
  shape[1] = h.ndim >= 3 ? h.dims[h.ndim - 2] : 0;
  shape[2] = h.ndim >= 3 ? h.dims[h.ndim - 1] : 0;
  pixels = _fg_ds_reader_read_alloc (&r, total, "the pixels", error);
  if (pixels == NULL)
    {
      _fg_ds_append_error (error, "; the header promises %" G_GSIZE_FORMAT " images of %"
                           G_GSIZE_FORMAT " bytes", n, cols);
      return NULL;
    }
  if (!_fg_ds_reader_expect_end (&r, "the last image", error))
    return NULL;
  x = _fg_ds_tensor_new (n, cols, path, error);
  if (x == NULL)
    return NULL;
  _fg_ds_bytes_to_unit (pixels, x->data, total);
  return g_steal_pointer (&x);
}

static gboolean
load_part (FgDataset *ds, FgPart part, const char *images, const char *labels, guint K,
           gsize shape_out[3], GError **error)
{
  g_autofree gint32 *y = NULL;
  g_autoptr (FgTensor) x = NULL;
  gsize n_labels = 0;

  if ((images == NULL) != (labels == NULL))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "the %s part needs both an images and a labels file (only %s is given)",
                   fg_part_to_string (part), images ? images : labels);
      return FALSE;
    }
  if (images == NULL)
    return TRUE;
  y = read_labels (labels, K, &n_labels, error);
  if (y == NULL)
    return FALSE;
  x = read_images (images, shape_out, error);
  if (x == NULL)
    return FALSE;
  if (fg_tensor_rows (x) != n_labels)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "%s holds %" G_GSIZE_FORMAT " images but %s holds %" G_GSIZE_FORMAT " labels",
                   images, fg_tensor_rows (x), labels, n_labels);
      return FALSE;
    }
  return _fg_ds_add_part (ds, part, g_steal_pointer (&x), g_steal_pointer (&y), images, error);
}

static FgDataset *
idx_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  static const struct {
    FgPart part;
    const char *images, *labels;
  } parts[] = {
    { FG_PART_TRAIN, "images", "labels" },
    { FG_PART_VAL, "validation_images", "validation_labels" },
    { FG_PART_TEST, "test_images", "test_labels" },
  };
  g_autoptr (FgDataset) ds = fg_dataset_new ("idx");
  const char *train_path = fg_params_get_string (params, "images");
  gsize shapes[G_N_ELEMENTS (parts)][3];
  int first = -1;

  if (!_fg_ds_apply_class_names (ds, params, error))
    return NULL;
  for (guint p = 0; p < G_N_ELEMENTS (parts); p++)
    {
      const char *images = fg_params_get_string (params, parts[p].images);
      if (!load_part (ds, parts[p].part, images, fg_params_get_string (params, parts[p].labels),
                      fg_dataset_get_n_classes (ds), shapes[p], error))
        return NULL;
      if (images == NULL)
        continue;
      if (first < 0)
        first = (int) p;
      else if (memcmp (shapes[p], shapes[first], sizeof shapes[p]) != 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "%s: images of %" G_GSIZE_FORMAT "x%" G_GSIZE_FORMAT "x%" G_GSIZE_FORMAT
                       " differ from the %s part's %" G_GSIZE_FORMAT "x%" G_GSIZE_FORMAT
                       "x%" G_GSIZE_FORMAT,
                       images, shapes[p][0], shapes[p][1], shapes[p][2],
                       fg_part_to_string (parts[first].part), shapes[first][0],
                       shapes[first][1], shapes[first][2]);
          return NULL;
        }
    }
  if (shapes[0][0] > 0
      && !fg_dataset_set_image_shape (ds, shapes[0][0], shapes[0][1], shapes[0][2], error))
    return NULL;
  if (!_fg_ds_finish (ds, train_path, error))
    return NULL;
  return g_steal_pointer (&ds);
}

static const FgDatasetVTable idx_vtable = {
  .struct_size = sizeof (FgDatasetVTable),
  .load = idx_load,
};

static const FgComponent idx_components[] = {
  { FG_KIND_DATASET, "idx",
    "IDX image/label files of the MNIST family (MNIST, Fashion-MNIST, notMNIST), gzip or plain",
    idx_params, &idx_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo idx_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "idx",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "Datasets in the IDX format of MNIST and its relatives",
  .components = idx_components,
};

FG_PLUGIN_DEFINE (idx_info)
