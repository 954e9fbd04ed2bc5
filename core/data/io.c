/* flowgmm — file input helpers: whole-file and streaming reads with transparent gzip. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <flowgmm/io.h>

/**
 * fg_file_open_stream:
 * @path: a file
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (nullable): a stream of the file's bytes, gunzipped when the file
 *   starts with the gzip magic.
 */
GInputStream *
fg_file_open_stream (const char *path, GError **error)
{
  g_autoptr (GFile) file = NULL;
  g_autoptr (GFileInputStream) raw = NULL;
  g_autoptr (GBufferedInputStream) buffered = NULL;
  g_autoptr (GError) local = NULL;
  const guint8 *peek;
  gsize avail = 0;

  g_return_val_if_fail (path != NULL, NULL);
  file = g_file_new_for_path (path);
  raw = g_file_read (file, NULL, &local);
  if (raw == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s: %s", path, local->message);
      return NULL;
    }
  buffered = G_BUFFERED_INPUT_STREAM (g_buffered_input_stream_new_sized (G_INPUT_STREAM (raw), 1 << 16));
  if (g_buffered_input_stream_fill (buffered, 2, NULL, &local) < 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "%s: %s", path, local->message);
      return NULL;
    }
  peek = g_buffered_input_stream_peek_buffer (buffered, &avail);
  if (avail >= 2 && peek[0] == 0x1f && peek[1] == 0x8b)
    {
      g_autoptr (GZlibDecompressor) dec = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
      return g_converter_input_stream_new (G_INPUT_STREAM (buffered), G_CONVERTER (dec));
    }
  return G_INPUT_STREAM (g_steal_pointer (&buffered));
}

/**
 * fg_path_expand_seed:
 * @path: a file name, possibly with "{seed}" in it
 * @seed: the cell's seed
 *
 * Returns: (transfer full): @path with every "{seed}" replaced by @seed in decimal.
 */
char *
fg_path_expand_seed (const char *path, guint64 seed)
{
  g_autofree char *s = g_strdup_printf ("%" G_GUINT64_FORMAT, seed);
  g_auto (GStrv) parts = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  parts = g_strsplit (path, "{seed}", -1);
  return g_strjoinv (s, parts);
}

/**
 * fg_file_read_all:
 * @path: a file, plain or gzip-compressed
 * @max_bytes: refuse more than this many (decompressed) bytes; 0 for no limit
 * @contents: (out) (transfer full): the bytes, NUL-terminated
 * @length: (out): the number of bytes
 * @error: return location for a #GError
 *
 * Returns: %TRUE on success.
 */
gboolean
fg_file_read_all (const char *path, gsize max_bytes, char **contents, gsize *length,
                  GError **error)
{
  g_autoptr (GInputStream) in = NULL;
  g_autoptr (GError) local = NULL;
  gsize cap = 1 << 16, len = 0;
  char *buf;

  g_return_val_if_fail (path != NULL && contents != NULL && length != NULL, FALSE);
  in = fg_file_open_stream (path, error);
  if (in == NULL)
    return FALSE;
  buf = g_malloc (cap + 1);
  for (;;)
    {
      gssize got;
      if (len == cap)
        {
          if (max_bytes > 0 && cap >= max_bytes + 1)
            {
              g_free (buf);
              g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                           "%s: larger than the limit of %" G_GSIZE_FORMAT " bytes", path,
                           max_bytes);
              return FALSE;
            }
          cap *= 2;
          buf = g_realloc (buf, cap + 1);
        }
      got = g_input_stream_read (in, buf + len, cap - len, NULL, &local);
      if (got < 0)
        {
          g_free (buf);
          /* a damaged gzip stream is INVALID_DATA, a truncated one PARTIAL_INPUT */
          g_set_error (error, FG_ERROR,
                       g_error_matches (local, G_IO_ERROR, G_IO_ERROR_INVALID_DATA)
                               || g_error_matches (local, G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT)
                           ? FG_ERROR_CORRUPT
                           : FG_ERROR_IO,
                       "%s: %s%s", path,
                       g_error_matches (local, G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT)
                           ? "truncated compressed file: "
                           : "",
                       local->message);
          return FALSE;
        }
      if (got == 0)
        break;
      len += (gsize) got;
    }
  if (max_bytes > 0 && len > max_bytes)
    {
      g_free (buf);
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                   "%s: larger than the limit of %" G_GSIZE_FORMAT " bytes", path, max_bytes);
      return FALSE;
    }
  buf[len] = '\0';
  *contents = buf;
  *length = len;
  return TRUE;
}

/**
 * fg_parse_indices:
 * @text: the text
 * @length: its length
 * @limit: every index must be below this
 * @what: names the source in errors (a file name)
 * @n_out: (out): the number of indices
 * @error: return location for a #GError (%FG_ERROR_DATA)
 *
 * Returns: (transfer full) (nullable): the indices in file order.
 */
guint32 *
fg_parse_indices (const char *text, gsize length, guint32 limit, const char *what, gsize *n_out,
                  GError **error)
{
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (guint32));
  const char *p = text, *end = text + length;
  gsize line = 1;

  g_return_val_if_fail (text != NULL && n_out != NULL, NULL);
  while (p < end)
    {
      if (*p == '\n')
        {
          line++;
          p++;
        }
      else if (g_ascii_isspace (*p) || *p == ',')
        p++;
      else if (*p == '#')
        {
          while (p < end && *p != '\n')
            p++;
        }
      else
        {
          const char *start = p;
          guint64 v = 0;
          guint32 v32;
          while (p < end && g_ascii_isdigit (*p))
            {
              v = v * 10 + (guint64) (*p - '0');
              if (v > G_MAXUINT32)
                break;
              p++;
            }
          if (p == start || (p < end && !g_ascii_isspace (*p) && *p != ',' && *p != '#'))
            {
              const char *tok_end = start;
              while (tok_end < end && !g_ascii_isspace (*tok_end) && *tok_end != ',')
                tok_end++;
              g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                           "%s:%" G_GSIZE_FORMAT ": '%.*s' is not a non-negative row index",
                           what, line, (int) MIN (tok_end - start, 40), start);
              return NULL;
            }
          if (v >= limit)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                           "%s:%" G_GSIZE_FORMAT ": index %" G_GUINT64_FORMAT
                           " is out of range (the data have %u rows)",
                           what, line, v, limit);
              return NULL;
            }
          v32 = (guint32) v;
          g_array_append_val (out, v32);
        }
    }
  *n_out = out->len;
  /* An empty GArray's data is NULL, which the caller would take for a failure. */
  if (out->len == 0)
    return g_new0 (guint32, 1);
  return (guint32 *) g_array_free (g_steal_pointer (&out), FALSE);
}
