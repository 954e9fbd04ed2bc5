/* SPDX-License-Identifier: MIT */
/* flowgmm — helpers shared by the dataset plugins (see datasets-private.h). */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "datasets-private.h"

/* ---- Reading with positions ---------------------------------------------------------------- */

void
_fg_ds_set_read_error (GError **error, const GError *gio_error, const char *name, guint64 offset)
{
  if (g_error_matches (gio_error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA))
    g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                 "%s: corrupt compressed data near byte offset %" G_GUINT64_FORMAT
                 " of the uncompressed stream (%s)",
                 name, offset, gio_error->message);
  else if (g_error_matches (gio_error, G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT))
    g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                 "%s: truncated compressed file: the gzip stream ends after %" G_GUINT64_FORMAT
                 " uncompressed bytes",
                 name, offset);
  else
    g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s: read error at byte offset %" G_GUINT64_FORMAT
                 ": %s", name, offset, gio_error->message);
}

static gssize
stream_read (gpointer source, void *buf, gsize count, GError **error)
{
  GInputStream *in = source;
  return g_input_stream_read (in, buf, MIN (count, (gsize) G_MAXSSIZE), NULL, error);
}

void
_fg_ds_reader_init_stream (FgDsReader *r, GInputStream *in, const char *name)
{
  r->read = stream_read;
  r->source = in;
  r->name = name;
  r->offset = 0;
}

gssize
_fg_ds_reader_read_some (FgDsReader *r, void *buf, gsize count, GError **error)
{
  gsize done = 0;
  while (done < count)
    {
      g_autoptr (GError) local = NULL;
      gssize got = r->read (r->source, (char *) buf + done, count - done, &local);
      if (got < 0)
        {
          if (local != NULL && local->domain == FG_ERROR)
            g_propagate_error (error, g_steal_pointer (&local));
          else if (local != NULL)
            _fg_ds_set_read_error (error, local, r->name, r->offset + done);
          else
            g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s: read error at byte offset %"
                         G_GUINT64_FORMAT, r->name, r->offset + done);
          return -1;
        }
      if (got == 0)
        break;
      done += (gsize) got;
    }
  r->offset += done;
  return (gssize) done;
}

gboolean
_fg_ds_reader_read (FgDsReader *r, void *buf, gsize count, const char *what, GError **error)
{
  guint64 start = r->offset;
  gssize got = _fg_ds_reader_read_some (r, buf, count, error);
  if (got < 0)
    return FALSE;
  if ((gsize) got < count)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                   "%s: truncated: the data end at byte offset %" G_GUINT64_FORMAT
                   " while reading %s (%" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                   " bytes from offset %" G_GUINT64_FORMAT ")",
                   r->name, r->offset, what, (gsize) got, count, start);
      return FALSE;
    }
  return TRUE;
}

guint8 *
_fg_ds_reader_read_alloc (FgDsReader *r, gsize count, const char *what, GError **error)
{
  g_autofree guint8 *buf = NULL;
  gsize cap = MIN (count, (gsize) 1 << 20), done = 0;
  guint64 start = r->offset;

  buf = g_malloc (MAX (cap, 1));
  while (done < count)
    {
      gssize got;
      if (done == cap)
        {
          cap = cap > count / 2 ? count : cap * 2;
          buf = g_realloc (buf, cap);
        }
      got = _fg_ds_reader_read_some (r, buf + done, cap - done, error);
      if (got < 0)
        return NULL;
      if (got == 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                       "%s: truncated: the data end at byte offset %" G_GUINT64_FORMAT
                       " while reading %s (%" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                       " bytes from offset %" G_GUINT64_FORMAT ")",
                       r->name, r->offset, what, done, count, start);
          return NULL;
        }
      done += (gsize) got;
    }
  return g_steal_pointer (&buf);
}

gboolean
_fg_ds_reader_expect_end (FgDsReader *r, const char *what, GError **error)
{
  char buf[4096];
  guint64 at = r->offset, extra = 0;
  for (;;)
    {
      gssize got = _fg_ds_reader_read_some (r, buf, sizeof buf, error);
      if (got < 0)
        return FALSE;
      if (got == 0)
        break;
      extra += (guint64) got;
      if (extra > (1u << 20))
        break; /* enough to say there is more */
    }
  if (extra > 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT,
                   "%s: %s%" G_GUINT64_FORMAT " unexpected bytes after %s, from byte offset %"
                   G_GUINT64_FORMAT " (is the header's size wrong?)",
                   r->name, extra > (1u << 20) ? "more than " : "", extra, what, at);
      return FALSE;
    }
  return TRUE;
}

void
_fg_ds_append_error (GError **error, const char *format, ...)
{
  va_list ap;
  g_autofree char *extra = NULL;
  char *msg;
  if (error == NULL || *error == NULL)
    return;
  va_start (ap, format);
  extra = g_strdup_vprintf (format, ap);
  va_end (ap);
  msg = g_strconcat ((*error)->message, extra, NULL);
  g_free ((*error)->message);
  (*error)->message = msg;
}

/* ---- Values -------------------------------------------------------------------------------- */

char *
_fg_ds_printable (const char *text, gssize len, gsize max)
{
  gsize n = len < 0 ? strlen (text) : (gsize) len;
  char *out = g_utf8_make_valid (text, (gssize) MIN (n, max));
  for (char *p = out; *p != '\0'; p++)
    if ((guchar) *p < 0x20 || *p == 0x7f)
      *p = '?';
  return out;
}

char **
_fg_ds_split_names (const char *text, guint *n)
{
  char **names;
  if (text == NULL || *text == '\0')
    {
      *n = 0;
      return NULL;
    }
  names = g_strsplit (text, ",", -1);
  for (guint i = 0; names[i] != NULL; i++)
    g_strstrip (names[i]);
  *n = g_strv_length (names);
  return names;
}

gboolean
_fg_ds_parse_image_shape (const char *text, const char *key, gsize shape[3], GError **error)
{
  g_auto (GStrv) parts = NULL;
  guint n;
  gsize dims[3] = { 1, 1, 1 };

  parts = g_strsplit_set (text, ",x", -1);
  n = g_strv_length (parts);
  if (n != 2 && n != 3)
    goto bad;
  for (guint i = 0; i < n; i++)
    {
      guint64 v;
      g_strstrip (parts[i]);
      if (!g_ascii_string_to_unsigned (parts[i], 10, 1, G_MAXUINT32, &v, NULL))
        goto bad;
      dims[3 - n + i] = (gsize) v;
    }
  memcpy (shape, dims, sizeof dims);
  return TRUE;
bad:
  g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
               "key '%s' = '%s': expected an image shape C,H,W (or H,W for one channel), "
               "each a positive integer",
               key, text);
  return FALSE;
}

void
_fg_ds_bytes_to_unit (const guint8 *src, float *dst, gsize n)
{
  float table[256];
  for (int k = 0; k < 256; k++)
    table[k] = (float) k / 255.0f;
  for (gsize i = 0; i < n; i++)
    dst[i] = table[src[i]];
}

FgTensor *
_fg_ds_tensor_new (gsize rows, gsize cols, const char *what, GError **error)
{
  gsize n, bytes;
  long pages = sysconf (_SC_PHYS_PAGES), page_size = sysconf (_SC_PAGESIZE);
  double physical = pages > 0 && page_size > 0 ? (double) pages * (double) page_size : 0.0;

  if (!g_size_checked_mul (&n, rows, cols) || !g_size_checked_mul (&bytes, n, sizeof (float))
      || bytes > G_MAXSSIZE / 2 || (physical > 0.0 && (double) bytes > physical))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                   "%s: %" G_GSIZE_FORMAT " x %" G_GSIZE_FORMAT " float values would need more "
                   "memory than this machine has (%.1f GiB)",
                   what, rows, cols, physical / (1024.0 * 1024.0 * 1024.0));
      return NULL;
    }
  return fg_tensor_new_2d (rows, cols);
}

/* ---- Building the data set ----------------------------------------------------------------- */

gboolean
_fg_ds_add_part (FgDataset *ds, FgPart part, FgTensor *x, gint32 *y, const char *path,
                 GError **error)
{
  if (!fg_dataset_set_part (ds, part, x, y, error))
    {
      fg_tensor_free (x);
      g_free (y);
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  return TRUE;
}

gboolean
_fg_ds_apply_class_names (FgDataset *ds, const FgParams *params, GError **error)
{
  const char *text;
  g_auto (GStrv) names = NULL;
  guint n = 0;

  if (fg_param_spec_lookup (fg_params_get_specs (params), "class_names") == NULL)
    return TRUE;
  text = fg_params_get_string (params, "class_names");
  names = _fg_ds_split_names (text, &n);
  if (names == NULL)
    return TRUE;
  for (guint k = 0; k < n; k++)
    if (names[k][0] == '\0')
      {
        g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                     "key 'class_names' = '%s': name %u is empty (names are separated by "
                     "commas)",
                     text, k);
        return FALSE;
      }
  if (n < 2)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "key 'class_names' = '%s': a classifier needs at least two classes", text);
      return FALSE;
    }
  fg_dataset_set_classes (ds, n, (const char *const *) names);
  return TRUE;
}

gboolean
_fg_ds_finish (FgDataset *ds, const char *path, GError **error)
{
  guint K;
  if (!fg_dataset_finish (ds, error))
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  K = fg_dataset_get_n_classes (ds);
  if (fg_dataset_get_note (ds) == NULL && K > 0 && fg_dataset_get_class_name (ds, 0) != NULL)
    {
      g_autoptr (GString) note = g_string_new ("classes:");
      for (guint k = 0; k < K; k++)
        g_string_append_printf (note, " %u=%s", k, fg_dataset_get_class_name (ds, k));
      fg_dataset_set_note (ds, note->str);
    }
  return TRUE;
}
