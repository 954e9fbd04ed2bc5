/* SPDX-License-Identifier: MIT */
/* flowgmm — file input helpers shared by the core and dataset plugins. */
#pragma once

#include <gio/gio.h>
#include <flowgmm/error.h>

G_BEGIN_DECLS

/* Read a whole file, transparently decompressing gzip (detected by its magic bytes, not the
 * name).  *contents is g_malloc'ed with a NUL appended (not counted in *length).  Errors are
 * FG_ERROR_IO (cannot open/read) or FG_ERROR_CORRUPT (bad or truncated gzip stream), prefixed
 * with the path.  max_bytes > 0 refuses larger outputs with FG_ERROR_MEMORY. */
FG_API gboolean fg_file_read_all (const char *path, gsize max_bytes, char **contents,
                                  gsize *length, GError **error);

/* Open a file for streaming reads, decompressing gzip transparently.  NULL on error. */
FG_API GInputStream *fg_file_open_stream (const char *path, GError **error);

/* Parse 0-based row indices separated by whitespace or commas; '#' starts a comment.  Each must
 * be < limit.  Errors (FG_ERROR_DATA) name `what` (e.g. the file) and the line. */
/* A copy of path with every "{seed}" replaced by the seed in decimal (per-seed split files,
 * checkpoints).  Free with g_free. */
FG_API char *fg_path_expand_seed (const char *path, guint64 seed);

/* Row indices (whitespace or commas between them, # comments) below `limit`; errors name
 * `what` and the line.  Never NULL on success, even for no indices (*n_out = 0). */
FG_API guint32 *fg_parse_indices (const char *text, gsize length, guint32 limit,
                                  const char *what, gsize *n_out, GError **error);

G_END_DECLS
