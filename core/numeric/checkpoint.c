/* SPDX-License-Identifier: MIT */
/* flowgmm — weight checkpoints: a versioned little-endian binary format with a SHA-256 trailer.
 *
 * Layout (doc/checkpoint.md):
 *   "FGWEIGHT"  u32 version (1)  u32 count
 *   count × { u32 name_len, name bytes, u32 ndim, u64 shape[ndim], f32 data[prod(shape)] }
 *   32-byte SHA-256 of every byte before it
 *
 * Loading validates the whole file (magic, version, checksum, every length against the bytes
 * that remain, every name and shape against the set) before it copies anything, so a failed
 * load leaves the set exactly as it was.
 */
#include "config.h"

#include <flowgmm/weights.h>

#include <string.h>

#define FG_CHECKPOINT_MAGIC "FGWEIGHT"
#define FG_CHECKPOINT_MAGIC_LEN 8
#define FG_CHECKPOINT_VERSION 1u
#define FG_CHECKPOINT_DIGEST_LEN 32
#define FG_CHECKPOINT_HEADER_LEN (FG_CHECKPOINT_MAGIC_LEN + 4 + 4)
/* Longest name accepted on load: far above any real name, far below what could hurt. */
#define FG_CHECKPOINT_MAX_NAME 65536u

/* ------------------------------------------------------------------------------ writing */

static guint8 *
put_u32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
  return p + 4;
}

static guint8 *
put_u64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, 8);
  return p + 8;
}

static guint8 *
put_floats (guint8 *p, const float *x, gsize n)
{
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  memcpy (p, x, n * sizeof (float));
  return p + n * sizeof (float);
#else
  for (gsize i = 0; i < n; i++)
    {
      guint32 bits;
      memcpy (&bits, &x[i], 4);
      p = put_u32 (p, bits);
    }
  return p;
#endif
}

static void
sha256 (const guint8 *data, gsize len, guint8 digest[FG_CHECKPOINT_DIGEST_LEN])
{
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  gsize digest_len = FG_CHECKPOINT_DIGEST_LEN;

  /* g_checksum_update takes a gssize: feed very large buffers in pieces. */
  while (len > 0)
    {
      gsize chunk = MIN (len, (gsize) G_MAXINT32);
      g_checksum_update (sum, data, (gssize) chunk);
      data += chunk;
      len -= chunk;
    }
  g_checksum_get_digest (sum, digest, &digest_len);
  g_assert (digest_len == FG_CHECKPOINT_DIGEST_LEN);
  g_checksum_free (sum);
}

/**
 * fg_weight_set_save:
 * @set: a weight set
 * @path: the file to write
 * @error: return location for a #GError
 *
 * Writes every weight of @set (trainable or not), in set order, to @path in the format of
 * doc/checkpoint.md.  The file is replaced atomically (written to a temporary file, then
 * renamed), so a crash never leaves a half-written checkpoint under @path.
 *
 * Returns: %TRUE on success; %FALSE with @error set (%FG_ERROR_IO, %FG_ERROR_MEMORY).
 */
gboolean
fg_weight_set_save (const FgWeightSet *set, const char *path, GError **error)
{
  guint n_weights;
  gsize total = FG_CHECKPOINT_HEADER_LEN + FG_CHECKPOINT_DIGEST_LEN;
  g_autofree guint8 *buf = NULL;
  guint8 *p;
  g_autoptr (GError) local_error = NULL;

  g_return_val_if_fail (set != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  n_weights = fg_weight_set_len (set);
  for (guint i = 0; i < n_weights; i++)
    {
      const FgWeight *w = fg_weight_set_get (set, i);
      gsize name_len = strlen (w->name);
      gsize entry;

      g_return_val_if_fail (name_len <= FG_CHECKPOINT_MAX_NAME, FALSE);
      g_return_val_if_fail (fg_tensor_is_contiguous (&w->value), FALSE);
      entry = 4 + name_len + 4 + 8 * (gsize) w->value.ndim;
      if (!g_size_checked_add (&total, total, entry)
          || fg_tensor_numel (&w->value) > (G_MAXSIZE - total) / sizeof (float))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                       "checkpoint '%s': the weights are too large to save", path);
          return FALSE;
        }
      total += fg_tensor_numel (&w->value) * sizeof (float);
    }

  buf = g_try_malloc (total);
  if (buf == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                   "checkpoint '%s': cannot allocate %" G_GSIZE_FORMAT " bytes", path, total);
      return FALSE;
    }

  p = buf;
  memcpy (p, FG_CHECKPOINT_MAGIC, FG_CHECKPOINT_MAGIC_LEN);
  p += FG_CHECKPOINT_MAGIC_LEN;
  p = put_u32 (p, FG_CHECKPOINT_VERSION);
  p = put_u32 (p, n_weights);
  for (guint i = 0; i < n_weights; i++)
    {
      const FgWeight *w = fg_weight_set_get (set, i);
      gsize name_len = strlen (w->name);

      p = put_u32 (p, (guint32) name_len);
      memcpy (p, w->name, name_len);
      p += name_len;
      p = put_u32 (p, w->value.ndim);
      for (guint d = 0; d < w->value.ndim; d++)
        p = put_u64 (p, w->value.shape[d]);
      p = put_floats (p, w->value.data, fg_tensor_numel (&w->value));
    }
  sha256 (buf, (gsize) (p - buf), p);
  p += FG_CHECKPOINT_DIGEST_LEN;
  g_assert ((gsize) (p - buf) == total);

  if (total > G_MAXSSIZE)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                   "checkpoint '%s': the weights are too large to save", path);
      return FALSE;
    }
  if (!g_file_set_contents (path, (const gchar *) buf, (gssize) total, &local_error))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot write checkpoint '%s': %s", path,
                   local_error->message);
      return FALSE;
    }
  return TRUE;
}

/**
 * fg_weight_set_add_bytes:
 * @set: a weight set
 * @name: a new, unique name
 * @data: @n bytes
 * @n: how many (≥ 1)
 *
 * Keeps raw bytes (a counter, a generator's state, a permutation) as a non-trainable weight of
 * ⌈@n/4⌉ floats holding them bit for bit (zero-padded), so that a training-state checkpoint
 * can carry them through fg_weight_set_save (), which stores values bit for bit.
 *
 * Returns: (transfer none): the new weight.
 */
FgWeight *
fg_weight_set_add_bytes (FgWeightSet *set, const char *name, const void *data, gsize n)
{
  gsize numel = (MAX (n, 1) + sizeof (float) - 1) / sizeof (float);
  FgWeight *w;
  g_return_val_if_fail (set != NULL && (data != NULL || n == 0), NULL);
  w = fg_weight_set_add (set, name, 1, &numel, FALSE);
  w->trainable = FALSE;
  memset (w->value.data, 0, numel * sizeof (float));
  if (n > 0)
    memcpy (w->value.data, data, n);
  return w;
}

/**
 * fg_weight_get_bytes:
 * @w: a weight made by fg_weight_set_add_bytes () (or loaded into one)
 * @out: (out caller-allocates): @n bytes
 * @n: how many, at most 4 × numel
 *
 * Copies the first @n bytes of @w's values into @out.
 */
void
fg_weight_get_bytes (const FgWeight *w, void *out, gsize n)
{
  g_return_if_fail (w != NULL && (out != NULL || n == 0));
  g_return_if_fail (n <= fg_tensor_numel (&w->value) * sizeof (float));
  if (n > 0)
    memcpy (out, w->value.data, n);
}

/* ------------------------------------------------------------------------------ reading */

typedef struct
{
  const guint8 *p;   /* next unread byte */
  gsize         left; /* bytes before the checksum trailer */
} Reader;

static gboolean
take (Reader *r, gsize n, const guint8 **out)
{
  if (n > r->left)
    return FALSE;
  *out = r->p;
  r->p += n;
  r->left -= n;
  return TRUE;
}

static gboolean
get_u32 (Reader *r, guint32 *v)
{
  const guint8 *p;
  if (!take (r, 4, &p))
    return FALSE;
  memcpy (v, p, 4);
  *v = GUINT32_FROM_LE (*v);
  return TRUE;
}

static gboolean
get_u64 (Reader *r, guint64 *v)
{
  const guint8 *p;
  if (!take (r, 8, &p))
    return FALSE;
  memcpy (v, p, 8);
  *v = GUINT64_FROM_LE (*v);
  return TRUE;
}

static void
get_floats (const guint8 *p, float *x, gsize n)
{
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  memcpy (x, p, n * sizeof (float));
#else
  for (gsize i = 0; i < n; i++)
    {
      guint32 bits;
      memcpy (&bits, p + 4 * i, 4);
      bits = GUINT32_FROM_LE (bits);
      memcpy (&x[i], &bits, 4);
    }
#endif
}

/* One structurally valid entry of the file. */
typedef struct
{
  const char   *name;     /* not NUL-terminated in the file: see name_len */
  guint32       name_len;
  guint32       ndim;
  gsize         shape[FG_TENSOR_MAX_DIMS];
  gsize         numel;
  const guint8 *data;     /* numel little-endian floats */
  FgWeight     *weight;   /* the weight it restores, set by match_entries () */
} Entry;

static gboolean G_GNUC_PRINTF (3, 4)
corrupt (GError **error, const char *path, const char *format, ...)
{
  va_list args;
  g_autofree char *msg = NULL;

  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, FG_ERROR, FG_ERROR_CORRUPT, "checkpoint '%s' is corrupt: %s", path, msg);
  return FALSE;
}

/* Pass 1, structure only: every length is checked against the bytes that remain before it is
 * used, and the entries must end exactly at the checksum.  Errors are FG_ERROR_CORRUPT. */
static gboolean
parse_entries (const char *path, Reader *r, guint32 count, Entry *entries, GError **error)
{
  for (guint32 i = 0; i < count; i++)
    {
      Entry *e = &entries[i];
      const guint8 *name_bytes;
      int nl;

      if (!get_u32 (r, &e->name_len))
        return corrupt (error, path, "entry %u: truncated before the name length", i);
      if (e->name_len == 0 || e->name_len > FG_CHECKPOINT_MAX_NAME)
        return corrupt (error, path, "entry %u: bad name length %u", i, e->name_len);
      if (!take (r, e->name_len, &name_bytes))
        return corrupt (error, path, "entry %u: truncated inside the name", i);
      e->name = (const char *) name_bytes;
      if (memchr (e->name, '\0', e->name_len) != NULL)
        return corrupt (error, path, "entry %u: name contains a NUL byte", i);
      if (!g_utf8_validate (e->name, e->name_len, NULL))
        return corrupt (error, path, "entry %u: name is not valid UTF-8", i);
      nl = (int) e->name_len;

      if (!get_u32 (r, &e->ndim))
        return corrupt (error, path, "weight '%.*s': truncated before the rank", nl, e->name);
      if (e->ndim < 1 || e->ndim > FG_TENSOR_MAX_DIMS)
        return corrupt (error, path, "weight '%.*s': bad rank %u", nl, e->name, e->ndim);
      e->numel = 1;
      for (guint d = 0; d < e->ndim; d++)
        {
          guint64 dim;
          if (!get_u64 (r, &dim))
            return corrupt (error, path, "weight '%.*s': truncated inside the shape", nl,
                            e->name);
          if (dim > G_MAXSIZE || !g_size_checked_mul (&e->numel, e->numel, (gsize) dim))
            return corrupt (error, path, "weight '%.*s': shape overflows", nl, e->name);
          e->shape[d] = (gsize) dim;
        }
      if (e->numel > r->left / sizeof (float) || !take (r, e->numel * sizeof (float), &e->data))
        return corrupt (error, path,
                        "weight '%.*s': %" G_GSIZE_FORMAT " values announced, only %" G_GSIZE_FORMAT
                        " bytes left", nl, e->name, e->numel, r->left);
    }

  if (r->left != 0)
    return corrupt (error, path, "%" G_GSIZE_FORMAT " unexpected bytes after the last weight",
                    r->left);
  return TRUE;
}

/* Pass 2, meaning: every entry names a distinct weight of the set with the same shape, and every
 * weight of the set is present.  A mismatch is FG_ERROR_DATA (a checkpoint of another model);
 * a repeated name is FG_ERROR_CORRUPT (no writer produces it). */
static gboolean
match_entries (FgWeightSet *set, const char *path, guint32 count, Entry *entries,
               gboolean subset, GError **error)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_direct_hash, g_direct_equal);
  guint n_set = fg_weight_set_len (set);

  for (guint32 i = 0; i < count; i++)
    {
      Entry *e = &entries[i];
      g_autofree char *name = g_strndup (e->name, e->name_len);
      FgWeight *w = fg_weight_set_lookup (set, name);
      FgTensor file_shape;

      if (w == NULL && subset)
        continue; /* another part of a training state: not ours */
      if (w == NULL)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "checkpoint '%s': weight '%s' does not exist in the model", path, name);
          return FALSE;
        }
      if (!g_hash_table_add (seen, w))
        return corrupt (error, path, "weight '%s' appears twice", name);

      file_shape = fg_tensor_wrap (NULL, e->ndim, e->shape);
      if (!fg_tensor_same_shape (&file_shape, &w->value))
        {
          char want[64], got[64];
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "checkpoint '%s': weight '%s' has shape %s, the model expects %s", path,
                       name, fg_tensor_shape_string (&file_shape, got, sizeof got),
                       fg_tensor_shape_string (&w->value, want, sizeof want));
          return FALSE;
        }
      e->weight = w;
    }

  /* Every weight of the model must be restored: a partial load would silently mix a
   * checkpoint with fresh initial values. */
  for (guint i = 0; i < n_set; i++)
    {
      FgWeight *w = fg_weight_set_get (set, i);
      if (!g_hash_table_contains (seen, w))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA, "checkpoint '%s' has no weight '%s'",
                       path, w->name);
          return FALSE;
        }
    }
  return TRUE;
}

/**
 * fg_weight_set_load:
 * @set: a weight set
 * @path: a file written by fg_weight_set_save ()
 * @error: return location for a #GError
 *
 * Restores the values of @set from @path.  The file must hold exactly the weights of @set (same
 * names, same shapes, in any order).  The whole file is validated before anything is copied;
 * on any error @set is left untouched.  Gradients and flags are not changed.
 *
 * Returns: %TRUE on success; %FALSE with @error set: %FG_ERROR_IO (unreadable file),
 * %FG_ERROR_CORRUPT (not a checkpoint, truncated, checksum mismatch, malformed structure),
 * %FG_ERROR_UNSUPPORTED (another format version), %FG_ERROR_DATA (names or shapes that do not
 * match @set).
 */
static gboolean
load_impl (FgWeightSet *set, const char *path, gboolean subset, GError **error)
{
  g_autofree gchar *contents = NULL;
  gsize len = 0;
  g_autoptr (GError) local_error = NULL;
  const guint8 *bytes;
  guint8 digest[FG_CHECKPOINT_DIGEST_LEN];
  guint32 version, count;
  Reader r;
  g_autofree Entry *entries = NULL;

  g_return_val_if_fail (set != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!g_file_get_contents (path, &contents, &len, &local_error))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_IO, "cannot read checkpoint '%s': %s", path,
                   local_error->message);
      return FALSE;
    }
  bytes = (const guint8 *) contents;

  if (memcmp (bytes, FG_CHECKPOINT_MAGIC, MIN (len, FG_CHECKPOINT_MAGIC_LEN)) != 0)
    return corrupt (error, path, "not a flowgmm weight checkpoint (bad magic)");
  if (len < FG_CHECKPOINT_HEADER_LEN + FG_CHECKPOINT_DIGEST_LEN)
    return corrupt (error, path, "truncated to %" G_GSIZE_FORMAT " bytes", len);

  r.p = bytes + FG_CHECKPOINT_MAGIC_LEN;
  r.left = len - FG_CHECKPOINT_MAGIC_LEN - FG_CHECKPOINT_DIGEST_LEN;
  get_u32 (&r, &version);
  if (version != FG_CHECKPOINT_VERSION)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "checkpoint '%s' has format version %u; this build reads version %u", path,
                   version, FG_CHECKPOINT_VERSION);
      return FALSE;
    }

  sha256 (bytes, len - FG_CHECKPOINT_DIGEST_LEN, digest);
  if (memcmp (digest, bytes + len - FG_CHECKPOINT_DIGEST_LEN, FG_CHECKPOINT_DIGEST_LEN) != 0)
    return corrupt (error, path, "SHA-256 checksum mismatch (damaged or truncated file)");

  get_u32 (&r, &count);
  /* Each entry takes at least 4 + 1 + 4 + 8 bytes: reject absurd counts before allocating. */
  if (count > r.left / 17)
    return corrupt (error, path, "%u weights announced in %" G_GSIZE_FORMAT " bytes", count,
                    r.left);
  entries = g_new0 (Entry, MAX (count, 1));

  if (!parse_entries (path, &r, count, entries, error)
      || !match_entries (set, path, count, entries, subset, error))
    return FALSE;

  /* Everything is valid: only now touch the set. */
  for (guint32 i = 0; i < count; i++)
    if (entries[i].weight != NULL)
      get_floats (entries[i].data, entries[i].weight->value.data,
                fg_tensor_numel (&entries[i].weight->value));
  return TRUE;
}

gboolean
fg_weight_set_load (FgWeightSet *set, const char *path, GError **error)
{
  return load_impl (set, path, FALSE, error);
}

/**
 * fg_weight_set_load_subset:
 * @set: a weight set
 * @path: a file written by fg_weight_set_save (), e.g. a training state
 * @error: return location for a #GError
 *
 * As fg_weight_set_load (), with the same checks, except that entries naming no weight of @set
 * are skipped: restores a model's weights from a file that holds more (a training state with
 * its optimizer moments and counters).  Every weight of @set must still be in the file.
 *
 * Returns: %TRUE on success; %FALSE with @error set as fg_weight_set_load ().
 */
gboolean
fg_weight_set_load_subset (FgWeightSet *set, const char *path, GError **error)
{
  g_return_val_if_fail (set != NULL && path != NULL, FALSE);
  return load_impl (set, path, TRUE, error);
}
