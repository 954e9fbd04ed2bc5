/* flowgmm — the preprocessing of a split: uniform dequantisation + logit for images,
 * standardisation, PCA (LAPACK's dsyevr through OpenBLAS) and L2 normalisation, fitted on the
 * training sets (labeled + unlabeled) only and applied to every set.
 *
 * Every step reports its log-determinant, so that a density method can state NLLs in the space
 * of the data as loaded (see FgPreprocessing in dataset.h).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include <flowgmm/rng.h>
#include <flowgmm/tensor.h>

#include "data/preprocess-private.h"

static const char *const set_names[FG_PP_N_SETS] = { "labeled", "unlabeled", "validation",
                                                     "test", "extra" };

/* Rows processed at once by the projection (a chunk of 256 rows of width 784 fits in L2), and
 * by the covariance (larger: each chunk's D×D result is added to the double sum). */
#define CHUNK_ROWS 256
#define COV_CHUNK_ROWS 4096

#ifdef HAVE_DSYEVR_
/* LAPACK's symmetric eigensolver (Fortran, from OpenBLAS; there is no lapacke.h).  The trailing
 * arguments are the lengths of the three character arguments, as gfortran passes them. */
extern void dsyevr_ (const char *jobz, const char *range, const char *uplo, const int *n,
                     double *a, const int *lda, const double *vl, const double *vu, const int *il,
                     const int *iu, const double *abstol, int *m, double *w, double *z,
                     const int *ldz, int *isuppz, double *work, const int *lwork, int *iwork,
                     const int *liwork, int *info, size_t jobz_len, size_t range_len,
                     size_t uplo_len);
#endif

static gsize
n_rows (FgTensor *const x[FG_PP_N_SETS], int s)
{
  return x[s] != NULL ? fg_tensor_rows (x[s]) : 0;
}

/* ---- dequantize_logit ------------------------------------------------------------------------ */

static gboolean
dequantize_logit (FgTensor *x[FG_PP_N_SETS], guint64 seed, double c,
                  double *logdet[FG_PP_N_SETS], GError **error)
{
  const double log_c = log (c);
  for (int s = 0; s < FG_PP_N_SETS; s++)
    {
      gsize cols;
      if (x[s] == NULL)
        continue;
      cols = fg_tensor_cols (x[s]);
      for (gsize i = 0; i < fg_tensor_rows (x[s]); i++)
        {
          const float *row = fg_tensor_row (x[s], i);
          for (gsize j = 0; j < cols; j++)
            if (!(row[j] >= 0.0f && row[j] <= 1.0f))
              {
                g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                             "split key 'dequantize_logit': row %" G_GSIZE_FORMAT " of the %s "
                             "set holds %g at column %" G_GSIZE_FORMAT ", outside [0, 1] (the "
                             "transform expects pixels scaled to [0, 1])",
                             i, set_names[s], (double) row[j], j);
                return FALSE;
              }
        }
    }
  for (int s = 0; s < FG_PP_N_SETS; s++)
    {
      g_autofree char *stream = NULL;
      gsize cols;
      FgRng rng;
      if (x[s] == NULL)
        continue;
      /* Each set draws from its own stream, so that one set's size leaves the others' noise
       * unchanged. */
      stream = g_strdup_printf ("split/dequantize/%s", set_names[s]);
      fg_rng_init (&rng, seed, fg_rng_stream_id (stream));
      cols = fg_tensor_cols (x[s]);
      for (gsize i = 0; i < fg_tensor_rows (x[s]); i++)
        {
          float *row = fg_tensor_row (x[s], i);
          double ld = 0.0;
          for (gsize j = 0; j < cols; j++)
            {
              /* u = (255x + U[0,1))/256;  p = 0.5 + c (u - 0.5);  y = log p - log (1 - p);
               * dy/du = c / (p (1 - p)) */
              double u = (255.0 * row[j] + fg_rng_uniform (&rng)) / 256.0;
              double p = 0.5 + c * (u - 0.5);
              double lp = log (p), lq = log1p (-p);
              row[j] = (float) (lp - lq);
              ld += log_c - lp - lq;
            }
          if (logdet[s] != NULL)
            logdet[s][i] += ld;
        }
    }
  return TRUE;
}

/* ---- standardize ----------------------------------------------------------------------------- */

/* Column means over the training sets (labeled + unlabeled), in double. */
static void
training_mean (FgTensor *const x[FG_PP_N_SETS], gsize D, double *mean)
{
  gsize n = 0;
  memset (mean, 0, D * sizeof *mean);
  for (int s = FG_PP_LABELED; s <= FG_PP_UNLABELED; s++)
    for (gsize i = 0; i < n_rows (x, s); i++, n++)
      {
        const float *row = fg_tensor_row (x[s], i);
        for (gsize j = 0; j < D; j++)
          mean[j] += row[j];
      }
  if (n > 0)
    for (gsize j = 0; j < D; j++)
      mean[j] /= (double) n;
}

static void
standardize (FgTensor *x[FG_PP_N_SETS], double *logdet[FG_PP_N_SETS])
{
  gsize D = fg_tensor_cols (x[FG_PP_LABELED]), n = 0;
  g_autofree double *mean = g_new (double, D);
  g_autofree double *var = g_new0 (double, D);
  double log_scale = 0.0;

  training_mean (x, D, mean);
  for (int s = FG_PP_LABELED; s <= FG_PP_UNLABELED; s++)
    for (gsize i = 0; i < n_rows (x, s); i++, n++)
      {
        const float *row = fg_tensor_row (x[s], i);
        for (gsize j = 0; j < D; j++)
          var[j] += (row[j] - mean[j]) * (row[j] - mean[j]);
      }
  for (gsize j = 0; j < D; j++)
    {
      /* population standard deviation (ddof 0); a constant feature is only centred */
      double sd = n > 0 ? sqrt (var[j] / (double) n) : 0.0;
      var[j] = sd > 0.0 ? sd : 1.0;
      log_scale += log (var[j]);
    }
  for (int s = 0; s < FG_PP_N_SETS; s++)
    for (gsize i = 0; i < n_rows (x, s); i++)
      {
        float *row = fg_tensor_row (x[s], i);
        for (gsize j = 0; j < D; j++)
          row[j] = (float) ((row[j] - mean[j]) / var[j]);
        if (logdet[s] != NULL)
          logdet[s][i] -= log_scale;
      }
}

/* ---- pca ------------------------------------------------------------------------------------- */

#ifdef HAVE_DSYEVR_
/* cov (upper triangle) += chunkᵀ chunk for `filled` centred rows. */
static void
accumulate_chunk (const float *chunk, gsize filled, gsize D, float *part, double *cov)
{
  cblas_ssyrk (CblasRowMajor, CblasUpper, CblasTrans, (int) D, (int) filled, 1.0f, chunk,
               (int) D, 0.0f, part, (int) D);
  for (gsize a = 0; a < D; a++)
    for (gsize b = a; b < D; b++)
      cov[a * D + b] += part[a * D + b];
}

/* The training covariance (ddof 0), D×D in double, from chunks of centred rows through
 * cblas_ssyrk: float products within a chunk, double sums across chunks. */
static double *
training_covariance (FgTensor *const x[FG_PP_N_SETS], gsize D, const double *mean,
                     double scale)
{
  double *cov = g_new0 (double, D * D);
  g_autofree float *chunk = g_new (float, COV_CHUNK_ROWS * D);
  g_autofree float *part = g_new (float, D * D);
  gsize n = 0, filled = 0;

  for (int s = FG_PP_LABELED; s <= FG_PP_UNLABELED; s++)
    for (gsize i = 0; i < n_rows (x, s); i++, n++)
      {
        const float *row = fg_tensor_row (x[s], i);
        for (gsize j = 0; j < D; j++)
          chunk[filled * D + j] = (float) ((row[j] - mean[j]) * scale);
        if (++filled == COV_CHUNK_ROWS)
          {
            accumulate_chunk (chunk, filled, D, part, cov);
            filled = 0;
          }
      }
  if (filled > 0)
    accumulate_chunk (chunk, filled, D, part, cov);
  for (gsize a = 0; a < D; a++)
    for (gsize b = a; b < D; b++)
      {
        double v = n > 0 ? cov[a * D + b] / (double) n / (scale * scale) : 0.0;
        cov[a * D + b] = v;
        cov[b * D + a] = v;
      }
  return cov;
}
#endif

static gboolean
pca (FgTensor *x[FG_PP_N_SETS], gsize k, gboolean whiten, double *logdet[FG_PP_N_SETS],
     GError **error)
{
#ifdef HAVE_DSYEVR_
  gsize D = fg_tensor_cols (x[FG_PP_LABELED]);
  g_autofree double *mean = g_new (double, D);
  g_autofree double *cov = NULL;
  g_autofree double *w = g_new (double, D);
  g_autofree double *z = g_new (double, D * k);
  g_autofree int *isuppz = g_new (int, 2 * k);
  g_autofree double *work = NULL;
  g_autofree int *iwork = NULL;
  g_autofree float *W = g_new (float, D * k);
  g_autofree float *chunk = g_new (float, CHUNK_ROWS * D);
  int n = (int) D, lda = (int) D, il = (int) (D - k + 1), iu = (int) D, m = 0, ldz = (int) D;
  int info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  double vl = 0.0, vu = 0.0, abstol = 0.0, work_query = 0.0, log_scale = 0.0;

  if (D > G_MAXINT / 2)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "split key 'pca': %" G_GSIZE_FORMAT " features are too many for LAPACK", D);
      return FALSE;
    }
  training_mean (x, D, mean);
  {
    /* Features of a huge (or tiny) scale would overflow (or underflow) the float products of
     * the covariance: scale the centred rows by a power of two first, which changes nothing
     * else (and is not done at all for ordinary scales, so their results stay bit-identical). */
    double amp = 0.0, scale = 1.0;
    for (int s = FG_PP_LABELED; s <= FG_PP_UNLABELED; s++)
      for (gsize i = 0; i < n_rows (x, s); i++)
        {
          const float *row = fg_tensor_row (x[s], i);
          for (gsize j = 0; j < D; j++)
            amp = MAX (amp, fabs (row[j] - mean[j]));
        }
    if (amp > 0x1p40 || (amp > 0.0 && amp < 0x1p-40))
      scale = ldexp (1.0, -ilogb (amp));
    cov = training_covariance (x, D, mean, scale);
  }
  dsyevr_ ("V", "I", "U", &n, cov, &lda, &vl, &vu, &il, &iu, &abstol, &m, w, z, &ldz, isuppz,
           &work_query, &lwork, &iwork_query, &liwork, &info, 1, 1, 1);
  if (info == 0)
    {
      lwork = (int) work_query;
      liwork = iwork_query;
      work = g_new (double, MAX (lwork, 1));
      iwork = g_new (int, MAX (liwork, 1));
      dsyevr_ ("V", "I", "U", &n, cov, &lda, &vl, &vu, &il, &iu, &abstol, &m, w, z, &ldz,
               isuppz, work, &lwork, iwork, &liwork, &info, 1, 1, 1);
    }
  if (info != 0 || m != (int) k)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                   "split key 'pca': the eigendecomposition of the %" G_GSIZE_FORMAT "x%"
                   G_GSIZE_FORMAT " training covariance failed (LAPACK dsyevr info %d)",
                   D, D, info);
      return FALSE;
    }
  /* Components in decreasing order of variance; each signed so that its largest loading (the
   * first, on ties) is positive, which makes the projection deterministic. */
  for (gsize c = 0; c < k; c++)
    {
      const double *v = z + (k - 1 - c) * D;
      double lambda = MAX (w[k - 1 - c], 0.0), scale = 1.0, sign = 1.0, best = -1.0;
      for (gsize i = 0; i < D; i++)
        if (fabs (v[i]) > best)
          {
            best = fabs (v[i]);
            sign = v[i] < 0.0 ? -1.0 : 1.0;
          }
      if (whiten)
        {
          double top = MAX (w[k - 1], 0.0);
          if (!(lambda > 1e-12 * top) || lambda <= 0.0)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                           "split key 'pca_whiten': principal component %" G_GSIZE_FORMAT
                           " has no variance (%g) in the training rows; set pca to at most "
                           "their rank",
                           c + 1, lambda);
              return FALSE;
            }
          scale = 1.0 / sqrt (lambda);
          log_scale += 0.5 * log (lambda);
        }
      for (gsize i = 0; i < D; i++)
        W[i * k + c] = (float) (sign * scale * v[i]);
    }
  for (int s = 0; s < FG_PP_N_SETS; s++)
    {
      FgTensor *out;
      gsize rows;
      if (x[s] == NULL)
        continue;
      rows = fg_tensor_rows (x[s]);
      out = fg_tensor_new_2d (rows, k);
      for (gsize r0 = 0; r0 < rows; r0 += CHUNK_ROWS)
        {
          gsize nr = MIN ((gsize) CHUNK_ROWS, rows - r0);
          for (gsize i = 0; i < nr; i++)
            {
              const float *row = fg_tensor_row (x[s], r0 + i);
              for (gsize j = 0; j < D; j++)
                chunk[i * D + j] = (float) (row[j] - mean[j]);
            }
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nr, (int) k, (int) D,
                       1.0f, chunk, (int) D, W, (int) k, 0.0f, fg_tensor_row (out, r0), (int) k);
        }
      if (logdet[s] != NULL)
        for (gsize i = 0; i < rows; i++)
          logdet[s][i] -= log_scale;
      fg_tensor_free (x[s]);
      x[s] = out;
    }
  return TRUE;
#else
  g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
               "split key 'pca': this build has no LAPACK (configure found no dsyevr_ in the "
               "BLAS library; Debian: libopenblas-dev provides it)");
  return FALSE;
#endif
}

/* ---- l2_normalize ---------------------------------------------------------------------------- */

static void
l2_normalize (FgTensor *x[FG_PP_N_SETS])
{
  for (int s = 0; s < FG_PP_N_SETS; s++)
    {
      gsize D;
      if (x[s] == NULL)
        continue;
      D = fg_tensor_cols (x[s]);
      for (gsize i = 0; i < fg_tensor_rows (x[s]); i++)
        {
          float *row = fg_tensor_row (x[s], i);
          double ss = 0.0;
          for (gsize j = 0; j < D; j++)
            ss += (double) row[j] * row[j];
          if (ss > 0.0)
            {
              double inv = 1.0 / sqrt (ss);
              for (gsize j = 0; j < D; j++)
                row[j] = (float) (row[j] * inv);
            }
        }
    }
}

/* ---- the pipeline ---------------------------------------------------------------------------- */

static void
drop_logdets (FgPreprocessState *state)
{
  for (int s = 0; s < FG_PP_N_SETS; s++)
    g_clear_pointer (&state->logdet[s], g_free);
  state->info.invertible = FALSE;
}

gboolean
_fg_preprocess_apply (const FgParams *split_params, guint64 seed, FgTensor *x[FG_PP_N_SETS],
                      FgPreprocessState *state, GError **error)
{
  gboolean deq = fg_params_get_bool (split_params, "dequantize_logit");
  double c = fg_params_get_double (split_params, "logit_constraint");
  gboolean stdz = fg_params_get_bool (split_params, "standardize");
  gsize k = (gsize) fg_params_get_int (split_params, "pca");
  gboolean whiten = fg_params_get_bool (split_params, "pca_whiten");
  gboolean l2 = fg_params_get_bool (split_params, "l2_normalize");
  g_autoptr (GString) desc = g_string_new (NULL);
  gsize D;

  g_return_val_if_fail (x[FG_PP_LABELED] != NULL, FALSE);
  memset (state, 0, sizeof *state);
  D = fg_tensor_cols (x[FG_PP_LABELED]);
  state->out_dim = D;
  state->info.invertible = TRUE;
  for (int s = 0; s < FG_PP_N_SETS; s++)
    if (x[s] != NULL)
      state->logdet[s] = g_new0 (double, MAX (fg_tensor_rows (x[s]), 1));

  if (whiten && k == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "split key 'pca_whiten' needs 'pca' = the number of components");
      return FALSE;
    }
  if (k > D)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "split key 'pca' = %" G_GSIZE_FORMAT ": the examples have only %"
                   G_GSIZE_FORMAT " features",
                   k, D);
      return FALSE;
    }
  if (deq)
    {
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      if (!dequantize_logit (x, seed, c, state->logdet, error))
        return FALSE;
      g_string_append_printf (desc, "dequantize_logit(%s) ",
                              g_ascii_formatd (buf, sizeof buf, "%g", c));
    }
  if (stdz)
    {
      standardize (x, state->logdet);
      g_string_append (desc, "standardize ");
    }
  if (k > 0)
    {
      if (k < D)
        drop_logdets (state);
      if (!pca (x, k, whiten, state->logdet, error))
        return FALSE;
      state->out_dim = k;
      state->reshaped = TRUE;
      g_string_append_printf (desc, "pca(%" G_GSIZE_FORMAT "%s) ", k, whiten ? ",whiten" : "");
    }
  if (l2)
    {
      drop_logdets (state);
      l2_normalize (x);
      g_string_append (desc, "l2_normalize ");
    }
  if (desc->len == 0)
    g_string_append (desc, "none");
  else
    g_string_truncate (desc, desc->len - 1);
  state->description = g_string_free (g_steal_pointer (&desc), FALSE);
  state->info.description = state->description;
  state->info.labeled_logdet = state->logdet[FG_PP_LABELED];
  state->info.unlabeled_logdet = state->logdet[FG_PP_UNLABELED];
  state->info.validation_logdet = state->logdet[FG_PP_VALIDATION];
  state->info.test_logdet = state->logdet[FG_PP_TEST];
  return TRUE;
}

void
_fg_preprocess_state_clear (FgPreprocessState *state)
{
  if (state == NULL)
    return;
  for (int s = 0; s < FG_PP_N_SETS; s++)
    g_clear_pointer (&state->logdet[s], g_free);
  g_clear_pointer (&state->description, g_free);
  memset (&state->info, 0, sizeof state->info);
}
