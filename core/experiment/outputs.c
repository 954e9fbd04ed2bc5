/* SPDX-License-Identifier: MIT */
/* flowgmm — what a run leaves in its output directory once its cells are done: the tables
 * and the figures.  The runner writes them at the end of a run and `flowgmm table OUT` writes
 * them again from OUT alone, through the same step, so both stay the same.
 */
#include "config.h"

#include "experiment/experiment-private.h"

/* Figures are drawn from data captured while the cells ran; a problem with them is a warning
 * (a build without the renderer: a message), never a failed run. */
static void
render_figures (const FgExperiment *exp, const char *out_dir)
{
  g_autoptr (GPtrArray) written = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  if (!fg_figure_options_enabled (exp->figures))
    return;
  if (!fg_figure_render (out_dir, exp->figures, written, &error))
    {
      if (g_error_matches (error, FG_ERROR, FG_ERROR_UNSUPPORTED))
        g_message ("figures skipped: %s", error->message);
      else
        g_warning ("figures: %s", error->message);
    }
  for (guint i = 0; i < written->len; i++)
    g_message ("wrote %s", (const char *) g_ptr_array_index (written, i));
}

/**
 * _fg_outputs_write:
 * @exp: an experiment
 * @store: its results
 * @out_dir: its output directory
 * @markdown: (out) (optional) (transfer full): the Markdown table
 * @error: return location for a #GError
 *
 * Writes the tables (_fg_table_render ()), the analysis report (_fg_analysis_render ()) and
 * then the figures.
 *
 * Returns: %TRUE when the tables were written.
 */
gboolean
_fg_outputs_write (const FgExperiment *exp, FgResultsStore *store, const char *out_dir,
                   char **markdown, GError **error)
{
  if (!_fg_table_render (exp, store, out_dir, markdown, error)
      || !_fg_analysis_render (exp, store, out_dir, error))
    return FALSE;
  render_figures (exp, out_dir);
  return TRUE;
}

/**
 * fg_table_render_dir:
 * @out_dir: the output directory of a run (holding experiment.exp and results.jsonl)
 * @error: return location for a #GError
 *
 * Selects per (dataset, method) by the experiment's rule from the stored results and writes
 * OUT/table.md, OUT/table.csv, OUT/table.tex and OUT/table.json, then draws the figures the
 * experiment asks for from their captured data.  Needs no plugins.
 *
 * Returns: (transfer full) (nullable): the Markdown table, or %NULL on error.
 */
char *
fg_table_render_dir (const char *out_dir, GError **error)
{
  g_autofree char *copy_path = NULL;
  g_autofree char *contents = NULL;
  g_autoptr (GError) local = NULL;
  g_autoptr (FgExperiment) exp = NULL;
  FgResultsStore *store;
  char *markdown = NULL;
  gsize length = 0;

  g_return_val_if_fail (out_dir != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  copy_path = g_build_filename (out_dir, "experiment.exp", NULL);
  if (!g_file_get_contents (copy_path, &contents, &length, &local))
    {
      g_set_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_RESULTS,
                   "%s is not the output directory of a run: %s", out_dir, local->message);
      return NULL;
    }
  exp = _fg_experiment_load_copy (contents, length, copy_path, out_dir, error);
  if (exp == NULL)
    return NULL;
  store = _fg_results_open (out_dir, FALSE, error);
  if (store == NULL)
    return NULL;
  if (!_fg_outputs_write (exp, store, out_dir, &markdown, error))
    markdown = NULL;
  _fg_results_close (store);
  return markdown;
}
