/* SPDX-License-Identifier: MIT */
/* flowgmm — progress of a run on stderr.
 *
 * On a terminal: one status line redrawn in place (a bar, cells done, rate, ETA and what the
 * latest fit reports), with finished errors printed above it.  Otherwise (a log file, a pipe):
 * one plain line per finished cell, and a line per long fit at most every PLAIN_UPDATE_US.
 *
 * This file is the one place in libflowgmm that writes to stderr, as FgRunOptions.quiet
 * documents; it goes through g_printerr () so that an embedding program can redirect it with
 * g_set_printerr_handler ().
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "experiment/experiment-private.h"

#define BAR_WIDTH 24
#define TTY_REDRAW_US (G_USEC_PER_SEC / 10)
#define PLAIN_UPDATE_US (30 * G_USEC_PER_SEC)

struct _FgProgress {
  GMutex   lock;
  gboolean quiet;
  gboolean tty;
  guint    n_total;
  guint    n_done;
  guint    n_failed;
  gint64   start_us;
  gint64   last_draw_us;
  gboolean bar_shown;
  char    *status;   /* latest fit report, shown on the bar */
};

static guint
terminal_width (void)
{
  struct winsize ws;
  const char *cols = g_getenv ("COLUMNS");
  if (ioctl (STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
    return ws.ws_col;
  if (cols != NULL && atoi (cols) > 20)
    return (guint) atoi (cols);
  return 80;
}

FgProgress *
_fg_progress_new (guint n_total, gboolean quiet)
{
  FgProgress *p = g_new0 (FgProgress, 1);
  const char *term = g_getenv ("TERM");
  g_mutex_init (&p->lock);
  p->quiet = quiet;
  p->tty = isatty (STDERR_FILENO) && g_strcmp0 (term, "dumb") != 0;
  p->n_total = n_total;
  p->start_us = g_get_monotonic_time ();
  return p;
}

static void
format_duration (GString *s, double seconds)
{
  guint64 t = (guint64) MAX (seconds + 0.5, 0.0);
  if (t >= 3600)
    g_string_append_printf (s, "%" G_GUINT64_FORMAT ":%02u:%02u", t / 3600,
                            (guint) (t / 60 % 60), (guint) (t % 60));
  else
    g_string_append_printf (s, "%u:%02u", (guint) (t / 60), (guint) (t % 60));
}

/* The bar line, without a newline, cut to the terminal width (on a UTF-8 boundary). */
static void
draw_bar (FgProgress *p)
{
  g_autoptr (GString) s = g_string_new ("\r\033[K[");
  double elapsed = (double) (g_get_monotonic_time () - p->start_us) / 1e6;
  double frac = p->n_total ? (double) p->n_done / p->n_total : 1.0;
  guint filled = (guint) (frac * BAR_WIDTH);
  guint width = terminal_width ();
  gsize visible_start = strlen ("\r\033[K");

  for (guint i = 0; i < BAR_WIDTH; i++)
    g_string_append_c (s, i < filled ? '#' : '.');
  g_string_append_printf (s, "] %u/%u", p->n_done, p->n_total);
  if (p->n_failed > 0)
    g_string_append_printf (s, " (%u failed)", p->n_failed);
  if (p->n_done > 0 && elapsed > 0)
    {
      double rate = p->n_done / elapsed;
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      if (rate >= 1.0)
        g_string_append_printf (s, " %s cells/s", g_ascii_formatd (buf, sizeof buf, "%.1f", rate));
      else
        g_string_append_printf (s, " %s s/cell",
                                g_ascii_formatd (buf, sizeof buf, "%.1f", 1.0 / rate));
      g_string_append (s, " ETA ");
      format_duration (s, (p->n_total - p->n_done) / rate);
    }
  if (p->status != NULL)
    g_string_append_printf (s, "  %s", p->status);
  if (s->len - visible_start > width - 1)
    {
      const char *cut = s->str + visible_start;
      guint chars = 0;
      while (*cut && chars < width - 1)
        {
          cut = g_utf8_next_char (cut);
          chars++;
        }
      g_string_truncate (s, (gsize) (cut - s->str));
    }
  g_printerr ("%s", s->str);
  p->bar_shown = TRUE;
  p->last_draw_us = g_get_monotonic_time ();
}

static void
clear_bar (FgProgress *p)
{
  if (p->bar_shown)
    g_printerr ("\r\033[K");
  p->bar_shown = FALSE;
}

void
_fg_progress_free (FgProgress *p)
{
  if (p == NULL)
    return;
  g_mutex_clear (&p->lock);
  g_free (p->status);
  g_free (p);
}

void
_fg_progress_cell_started (FgProgress *p, const FgCell *cell)
{
  if (p->quiet || !p->tty)
    return;
  g_mutex_lock (&p->lock);
  g_free (p->status);
  p->status = g_strdup (cell->label);
  if (g_get_monotonic_time () - p->last_draw_us >= TTY_REDRAW_US)
    draw_bar (p);
  g_mutex_unlock (&p->lock);
}

void
_fg_progress_cell_update (FgProgress *p, const FgCell *cell, gint64 *last_us, double fraction,
                          const char *what)
{
  gint64 now = g_get_monotonic_time ();
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (p->quiet)
    return;
  g_mutex_lock (&p->lock);
  if (p->tty)
    {
      g_free (p->status);
      p->status = g_strdup_printf ("%s: %s%% %s", cell->label,
                                   g_ascii_formatd (buf, sizeof buf, "%.0f",
                                                    100.0 * CLAMP (fraction, 0.0, 1.0)),
                                   what ? what : "");
      if (now - p->last_draw_us >= TTY_REDRAW_US)
        draw_bar (p);
    }
  else if (*last_us == 0 || now - *last_us >= PLAIN_UPDATE_US)
    {
      g_printerr ("  %s: %s%% %s\n", cell->label,
                  g_ascii_formatd (buf, sizeof buf, "%.0f", 100.0 * CLAMP (fraction, 0.0, 1.0)),
                  what ? what : "");
      *last_us = now;
    }
  g_mutex_unlock (&p->lock);
}

static void
append_percent (GString *s, const char *label, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (isfinite (v))
    g_string_append_printf (s, " %s %s%%", label, g_ascii_formatd (buf, sizeof buf, "%.1f", 100 * v));
}

void
_fg_progress_cell_finished (FgProgress *p, const FgCell *cell, const char *status,
                            double val_accuracy, double test_accuracy, double seconds,
                            const char *message)
{
  gboolean failed = g_strcmp0 (status, "ok") != 0 && g_strcmp0 (status, "cancelled") != 0;
  g_autoptr (GString) line = g_string_new (NULL);
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  /* Quiet hides progress, never a failure. */
  if (p->quiet && !failed)
    return;
  g_mutex_lock (&p->lock);
  p->n_done++;
  p->n_failed += failed;
  g_string_append_printf (line, "[%u/%u] %s: %s", p->n_done, p->n_total, cell->label, status);
  append_percent (line, "val", val_accuracy);
  append_percent (line, "test", test_accuracy);
  if (message != NULL)
    g_string_append_printf (line, ": %s", message);
  g_string_append_printf (line, " (%s s)", g_ascii_formatd (buf, sizeof buf, "%.1f", seconds));
  if (p->tty)
    {
      /* On a terminal only failures scroll past; the bar says the rest, redrawn at most every
       * TTY_REDRAW_US when cells are quick. */
      g_clear_pointer (&p->status, g_free);
      if (failed)
        {
          clear_bar (p);
          g_printerr ("%s\n", line->str);
        }
      if (!p->quiet && (failed || g_get_monotonic_time () - p->last_draw_us >= TTY_REDRAW_US))
        draw_bar (p);
    }
  else
    g_printerr ("%s\n", line->str);
  g_mutex_unlock (&p->lock);
}

void
_fg_progress_done (FgProgress *p)
{
  if (p->quiet)
    return;
  g_mutex_lock (&p->lock);
  if (p->bar_shown)
    {
      g_clear_pointer (&p->status, g_free);
      draw_bar (p);
      g_printerr ("\n");
      p->bar_shown = FALSE;
    }
  g_mutex_unlock (&p->lock);
}
