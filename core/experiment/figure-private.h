/* SPDX-License-Identifier: MIT */
/* flowgmm — what the figure files share: figure-options.c, figure-capture.c, figure-module.c
 * (in libflowgmm) and figure-render.c (the cairo renderer, a module of its own).
 *
 * The renderer is built as a loadable module (figure-render.so in the module directory) only
 * where configure found cairo, so that libflowgmm and its users do not depend on cairo; the
 * core opens it when figures are drawn (fg_figure_render ()).  It reads FgFigureOptions and the
 * captured files directly, so it must come from the same build: the core checks its version and
 * the size of the options it was built with.
 */
#pragma once

#include <glib.h>
#include <flowgmm/figure.h>

G_BEGIN_DECLS

/* The captured data of one cell: OUT/figures/data/<base>.json (doc/figures.md). */
#define FG_FIGURE_FORMAT "flowgmm-figure-data"
#define FG_FIGURE_FORMAT_VERSION 1

typedef struct {
  char  *name;     /* "fig1", "fig2", "fig4", "cells" */
  char **datasets; /* its own rows, or NULL */
} FigureItem;

struct _FgFigureOptions {
  GPtrArray *items;         /* FigureItem */
  char     **methods;       /* figure_methods, or NULL */
  char     **datasets;      /* figure_datasets, or NULL */
  gboolean   have_seed, all_seeds;
  guint64    seed;
  char     **default_datasets, **default_methods;
  gboolean   have_default_seed;
  guint64    default_seed;
  guint      grid, samples;
  double     temperature;
};

/* figure-options.c: FALSE with the key and the name when a figure key names a data set or
 * method the experiment lacks. */
gboolean _fg_figure_options_check_names (const FgFigureOptions *opts,
                                         const char *const *datasets,
                                         const char *const *methods, const char **key,
                                         const char **name);

/* "<dataset>__<method>__s<seed>__p<point>": the name of a cell's data file and row figure. */
static inline char *
_fg_figure_cell_file_base (const char *dataset, const char *method, guint64 seed, guint point)
{
  return g_strdup_printf ("%s__%s__s%" G_GUINT64_FORMAT "__p%u", dataset, method, seed, point);
}

/* ---- the renderer module ---- */

/* File name in the module directory ($FLOWGMM_MODULE_DIR, else the installed one). */
#define FG_FIGURE_RENDERER_MODULE "figure-render.so"
/* Its one exported symbol: a FgFigureRendererQuery. */
#define FG_FIGURE_RENDERER_SYMBOL "fg_figure_renderer_query"

typedef struct {
  gsize       struct_size;  /* sizeof (FgFigureRenderer) in the module's build */
  const char *version;      /* PACKAGE_VERSION of the module's build */
  gsize       options_size; /* sizeof (FgFigureOptions) in the module's build */
  /* Draw what `opts` asks for (opts->items non-empty); see fg_figure_render (). */
  gboolean  (*render) (const char *out_dir, const FgFigureOptions *opts, GPtrArray *written,
                       GError **error);
} FgFigureRenderer;

typedef const FgFigureRenderer *(*FgFigureRendererQuery) (void);

G_END_DECLS
