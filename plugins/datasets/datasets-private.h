/* SPDX-License-Identifier: MIT */
/* flowgmm — helpers shared by the dataset plugins of this directory (csv, idx, npy, cifar).
 *
 * Compiled into each plugin (not exported: the plugins are built with -fvisibility=hidden and
 * export only fg_plugin_query), so that every format reads, bounds-checks and reports errors the
 * same way: one piece of code per idea.
 */
#pragma once

#include <gio/gio.h>
#include <flowgmm/flowgmm.h>

G_BEGIN_DECLS

/* ---- Reading with positions ---------------------------------------------------------------- */

/* Read up to `count` bytes; 0 at the end, -1 with *error set on failure. */
typedef gssize (*FgDsReadFunc) (gpointer source, void *buf, gsize count, GError **error);

typedef struct {
  FgDsReadFunc read;
  gpointer     source;
  const char  *name;   /* the file (and member) named in errors */
  guint64      offset; /* bytes consumed so far: the byte offset named in errors */
} FgDsReader;

/* A reader over a stream from fg_file_open_stream () (gunzipped when needed).  Read errors of
 * the gzip layer become FG_ERROR_CORRUPT naming the file and the (decompressed) offset. */
void     _fg_ds_reader_init_stream (FgDsReader *r, GInputStream *in, const char *name);
/* Exactly `count` bytes, or FG_ERROR_CORRUPT "NAME: truncated at byte offset N while reading
 * WHAT (M of K bytes present)". */
gboolean _fg_ds_reader_read (FgDsReader *r, void *buf, gsize count, const char *what,
                             GError **error);
/* Up to `count` bytes (fewer only at the end); -1 on error. */
gssize   _fg_ds_reader_read_some (FgDsReader *r, void *buf, gsize count, GError **error);
/* Exactly `count` bytes into a new buffer that grows only as data arrive, so that a header
 * claiming more than the file holds fails as truncated before anything of the claimed size is
 * allocated.  NULL on error (FG_ERROR_CORRUPT "truncated" as above). */
guint8  *_fg_ds_reader_read_alloc (FgDsReader *r, gsize count, const char *what, GError **error);
/* FG_ERROR_CORRUPT when any byte is left after `what`. */
gboolean _fg_ds_reader_expect_end (FgDsReader *r, const char *what, GError **error);

/* Map a GIO error from reading `name` to FG_ERROR (CORRUPT for bad or truncated gzip data,
 * IO otherwise), prefixed with the name and offset. */
void     _fg_ds_set_read_error (GError **error, const GError *gio_error, const char *name,
                                guint64 offset);

/* Append text to the message of an error that is set (GLib has only a prefix function). */
void     _fg_ds_append_error (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* ---- Values -------------------------------------------------------------------------------- */

/* Text from a file made safe for a message or a class name: at most `max` bytes of it (-1:
 * all), invalid UTF-8 replaced, control characters shown as '?'. */
char    *_fg_ds_printable (const char *text, gssize len, gsize max);
/* "a,b,c" (commas; spaces around names are dropped) -> NULL-terminated names; NULL for NULL or
 * empty text.  Experiment files reserve ';' for grids, so lists use commas. */
char   **_fg_ds_split_names (const char *text, guint *n);
/* "C,H,W", "CxHxW" or "HxW" (C = 1) -> shape; FG_ERROR_INVALID_PARAM naming `key`. */
gboolean _fg_ds_parse_image_shape (const char *text, const char *key, gsize shape[3],
                                   GError **error);
/* n bytes -> floats k / 255 (float arithmetic, as torchvision's ToTensor). */
void     _fg_ds_bytes_to_unit (const guint8 *src, float *dst, gsize n);
/* rows × cols floats, with an overflow check of the size and a check against the machine's
 * physical memory (FG_ERROR_MEMORY naming `what`) instead of an abort in the allocator. */
FgTensor *_fg_ds_tensor_new (gsize rows, gsize cols, const char *what, GError **error);

/* ---- Building the data set ----------------------------------------------------------------- */

/* fg_dataset_set_part, taking ownership of x and y in every case; errors prefixed with `path`. */
gboolean _fg_ds_add_part (FgDataset *ds, FgPart part, FgTensor *x, gint32 *y, const char *path,
                          GError **error);
/* Apply the `class_names` key (when the component has one and it is set) before the parts are
 * added, so that labels are checked against it.  FALSE (FG_ERROR_INVALID_PARAM) on an empty
 * name. */
gboolean _fg_ds_apply_class_names (FgDataset *ds, const FgParams *params, GError **error);
/* fg_dataset_finish, then a note "classes: 0=NAME 1=NAME ..." when the classes have names and
 * the plugin set no other note; errors prefixed with `path`. */
gboolean _fg_ds_finish (FgDataset *ds, const char *path, GError **error);

G_END_DECLS
