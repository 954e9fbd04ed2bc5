/* SPDX-License-Identifier: MIT */
/* flowgmm — drawing figures through the renderer module.
 *
 * The renderer (figure-render.c) needs cairo; it is a module of its own, built only where
 * configure found cairo and opened here on first use, so that libflowgmm itself does not
 * depend on cairo.  Without it, figures are skipped with FG_ERROR_UNSUPPORTED and the captured
 * data stay, to be drawn later by `flowgmm table OUT` where the module is installed.
 */
#include "config.h"

#include <dlfcn.h>
#include <string.h>

#include "experiment/figure-private.h"

G_LOCK_DEFINE_STATIC (renderer);
static gboolean renderer_tried;
static const FgFigureRenderer *renderer_found; /* the module stays loaded once opened */
static char *renderer_problem;                 /* why there is none */

static const char *
module_dir (void)
{
  const char *dir = g_getenv ("FLOWGMM_MODULE_DIR");
  return dir != NULL && *dir != '\0' ? dir : FG_MODULEDIR;
}

static const FgFigureRenderer *
open_renderer (char **problem)
{
  g_autofree char *path = g_build_filename (module_dir (), FG_FIGURE_RENDERER_MODULE, NULL);
  const FgFigureRenderer *r;
  FgFigureRendererQuery query;
  void *handle;

  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      *problem = g_strdup_printf ("there is no figure renderer %s: this flowgmm was built "
                                  "without cairo (configure found no cairo >= 1.14; Debian: "
                                  "apt-get install libcairo2-dev) or the renderer is not "
                                  "installed", path);
      return NULL;
    }
  dlerror ();
  handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL)
    {
      const char *msg = dlerror ();
      *problem = g_strdup_printf ("cannot load the figure renderer: %s (check its dependencies "
                                  "with ldd)", msg ? msg : path);
      return NULL;
    }
  *(void **) (&query) = dlsym (handle, FG_FIGURE_RENDERER_SYMBOL);
  r = query != NULL ? query () : NULL;
  if (r == NULL || r->struct_size != sizeof (FgFigureRenderer)
      || g_strcmp0 (r->version, PACKAGE_VERSION) != 0
      || r->options_size != sizeof (FgFigureOptions) || r->render == NULL)
    {
      *problem = g_strdup_printf ("the figure renderer %s is not the one of this flowgmm %s "
                                  "(reinstall them together)", path, PACKAGE_VERSION);
      dlclose (handle);
      return NULL;
    }
  return r;
}

static const FgFigureRenderer *
get_renderer (char **problem)
{
  const FgFigureRenderer *r;
  G_LOCK (renderer);
  if (!renderer_tried)
    {
      renderer_found = open_renderer (&renderer_problem);
      renderer_tried = TRUE;
    }
  r = renderer_found;
  if (r == NULL && problem != NULL)
    *problem = g_strdup (renderer_problem);
  G_UNLOCK (renderer);
  return r;
}

/**
 * fg_figure_can_render:
 *
 * Returns: whether figures can be drawn: the renderer module (built where configure found
 *   cairo) is in the module directory ($FLOWGMM_MODULE_DIR, else the installed one) and loads.
 */
gboolean
fg_figure_can_render (void)
{
  return get_renderer (NULL) != NULL;
}

/**
 * fg_figure_render:
 * @out_dir: the experiment's output directory
 * @opts: what to draw
 * @written: (nullable) (element-type utf8): receives the paths written (owned strings; give an
 *   array made with g_ptr_array_new_with_free_func (g_free))
 * @error: return location for a #GError
 *
 * Draws fig1, fig2, fig4 and the per-cell rows asked for by @opts from
 * `out_dir`/figures/data/ into `out_dir`/figures/ (NAME.png at 150 dpi and NAME.svg; per-cell
 * rows in figures/cells/).  Cells that were not captured are reported with g_message and left
 * out.
 *
 * Returns: %TRUE on success; %FALSE with %FG_ERROR_UNSUPPORTED when the renderer module is
 *   absent (a build without cairo) or does not load, or %FG_ERROR_IO when a file cannot be
 *   written.
 */
gboolean
fg_figure_render (const char *out_dir, const FgFigureOptions *opts, GPtrArray *written,
                  GError **error)
{
  g_autofree char *problem = NULL;
  const FgFigureRenderer *r;
  g_return_val_if_fail (out_dir != NULL && opts != NULL, FALSE);
  if (!fg_figure_options_enabled (opts))
    return TRUE;
  r = get_renderer (&problem);
  if (r == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "%s.  The captured data stay in %s/figures/data; run `flowgmm table %s` "
                   "where the renderer is installed to draw them",
                   problem, out_dir, out_dir);
      return FALSE;
    }
  return r->render (out_dir, opts, written, error);
}
