/* SPDX-License-Identifier: MIT */
/* flowgmm — the command-line program: run experiment files, render their tables, list and
 * describe plugins.  See flowgmm(1).
 *
 * Exit status: 0 success, 1 error, 2 usage error, 3 `run` finished but cells run now failed,
 * 130 interrupted (SIGINT).
 */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <flowgmm/flowgmm.h>
#ifdef HAVE_MPI
#include <flowgmm/mpi.h>
#endif

#define EXIT_USAGE 2
#define EXIT_CELLS_FAILED 3
#define EXIT_INTERRUPTED 130

static const char usage_text[] =
  "Usage:\n"
  "  flowgmm COMMAND [OPTION…] [ARGUMENT]\n"
  "\n"
  "Semi-supervised classification with normalizing flows (FlowGMM), run side by side with\n"
  "baselines from declarative experiment files.\n"
  "\n"
  "Commands:\n"
  "  run FILE        run the cells of an experiment file not yet stored, then print its table\n"
  "  table DIR       render the table of a run's output directory again\n"
  "  list            list the plugins, their components and any rejected plugin files\n"
  "  describe NAME   show a component's parameters ('describe split': the split keys)\n"
  "  help [COMMAND]  show this help, or a command's\n"
  "\n"
  "Options:\n"
  "  -h, --help      show this help\n"
  "  --version       show the version\n"
  "\n"
  "'flowgmm COMMAND --help' lists a command's options.  See flowgmm(1) and\n"
  "flowgmm-experiment(5) for the experiment file format.\n";

/* ---- errors ---------------------------------------------------------------------------------- */

static int
fail (GError *error)
{
  g_printerr ("flowgmm: %s\n", error->message);
  g_error_free (error);
  return EXIT_FAILURE;
}

G_GNUC_PRINTF (2, 3)
static int
usage_error (const char *command, const char *format, ...)
{
  va_list args;
  g_autofree char *msg = NULL;
  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("flowgmm: %s\n", msg);
  if (command != NULL)
    g_printerr ("Try 'flowgmm %s --help'.\n", command);
  else
    g_printerr ("Try 'flowgmm --help'.\n");
  return EXIT_USAGE;
}

/* Warnings from the library (e.g. a damaged line in a results file) read like our errors. */
static void
log_handler (const char *domain, GLogLevelFlags level, const char *message, gpointer user_data)
{
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    g_printerr ("flowgmm: internal error: %s\n", message);
  else if (level & G_LOG_LEVEL_WARNING)
    g_printerr ("flowgmm: warning: %s\n", message);
  else if (level & G_LOG_LEVEL_MESSAGE)
    g_printerr ("flowgmm: %s\n", message);
  else
    g_log_default_handler (domain, level, message, user_data);
}

/* ---- SIGINT: finish the cells in flight, then exit 130 ---------------------------------------- */

static volatile gint cancel_requested = 0;

static void
on_sigint (int sig)
{
  static const char msg[] =
    "\nflowgmm: interrupted: finishing the cells in flight (Ctrl-C again to quit at once)\n";
  if (cancel_requested)
    _exit (EXIT_INTERRUPTED);
  cancel_requested = 1;
  if (write (STDERR_FILENO, msg, sizeof msg - 1) < 0)
    {
      /* nothing more can be done in a signal handler */
    }
}

static void
install_sigint_handler (void)
{
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction (SIGINT, &sa, NULL);
}

/* ---- plugins --------------------------------------------------------------------------------- */

static char **plugin_dirs = NULL;
static char **preferred = NULL;

#define PLUGIN_ENTRIES                                                                     \
  { "plugin-dir", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,                       \
    "Load plugins from DIR first (repeatable)", "DIR" },                                   \
  { "prefer", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &preferred,                               \
    "Where two plugins provide a component, the one in PATH (a file or directory) wins",   \
    "PATH" }

/* NULL (and a message) when a --plugin-dir is not a directory. */
static FgRegistry *
load_registry (void)
{
  FgRegistry *reg;
  for (guint i = 0; plugin_dirs && plugin_dirs[i]; i++)
    if (!g_file_test (plugin_dirs[i], G_FILE_TEST_IS_DIR))
      {
        g_printerr ("flowgmm: --plugin-dir %s: %s\n", plugin_dirs[i],
                    g_file_test (plugin_dirs[i], G_FILE_TEST_EXISTS)
                        ? "not a directory (it takes a directory of plugins)"
                        : "no such directory");
        return NULL;
      }
  for (guint i = 0; preferred && preferred[i]; i++)
    if (!g_file_test (preferred[i], G_FILE_TEST_EXISTS))
      {
        g_printerr ("flowgmm: --prefer %s: no such file or directory\n", preferred[i]);
        return NULL;
      }
  reg = fg_registry_new_with_builtins ();
  for (guint i = 0; preferred && preferred[i]; i++)
    fg_registry_prefer (reg, preferred[i]);
  fg_registry_load_default (reg, (const char *const *) plugin_dirs);
  return reg;
}

static guint
count_rejected (const FgRegistry *reg)
{
  guint n = 0;
  for (guint i = 0; i < fg_registry_get_n_records (reg); i++)
    n += fg_registry_get_record (reg, i)->error != NULL;
  return n;
}

/* Parses a command's options; argv[0] is the command. */
static int
parse_options (const char *command, const char *parameter, const char *summary,
               const GOptionEntry *entries, int *argc, char ***argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new (parameter);
  g_autoptr (GError) error = NULL;
  g_autofree char *prgname = g_strdup_printf ("flowgmm %s", command);

  g_set_prgname (prgname);
  g_option_context_set_summary (ctx, summary);
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, argc, argv, &error))
    return usage_error (command, "%s", error->message);
  g_set_prgname ("flowgmm");
  return 0;
}

/* ---- run ------------------------------------------------------------------------------------- */

static int
cmd_run (int argc, char **argv)
{
  g_autofree char *out_dir = NULL;
  gint jobs = 1;
  gboolean retry_failed = FALSE, quiet = FALSE, no_isolate = FALSE, rerun_stale = FALSE;
  GOptionEntry entries[] = {
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir,
      "Write results and tables to DIR (default: FILE without .exp, plus .out)", "DIR" },
    { "jobs", 'j', 0, G_OPTION_ARG_INT, &jobs,
      "Run N cells at once in N worker processes (0: one per processor; default 1)", "N" },
    PLUGIN_ENTRIES,
    { "retry-failed", 0, 0, G_OPTION_ARG_NONE, &retry_failed,
      "Run again the cells stored with an error", NULL },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress, table or summary on the terminal (failed cells are still reported; the table is still written to OUT)", NULL },
    { "rerun-stale", 0, 0, G_OPTION_ARG_NONE, &rerun_stale,
      "Run again the cells stored before a plugin file they used changed", NULL },
    { "no-isolate", 0, 0, G_OPTION_ARG_NONE, &no_isolate,
      "Run cells in this process (threads), e.g. under a debugger: a crash ends the run", NULL },
    { NULL }
  };
  g_autoptr (FgRegistry) reg = NULL;
  g_autoptr (FgExperiment) exp = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *table_path = NULL;
  g_autofree char *table = NULL;
  FgRunOptions options = { 0 };
  FgRunSummary summary = { 0 };
  int rc;

  if ((rc = parse_options ("run", "FILE", "Run the cells of an experiment file not yet stored "
                           "in its output directory, then print the comparison table.",
                           entries, &argc, &argv)) != 0)
    return rc;
  if (argc != 2)
    return usage_error ("run", argc < 2 ? "run needs an experiment FILE"
                                        : "run takes one experiment FILE");
  if (jobs < 0)
    return usage_error ("run", "--jobs must be 0 or more, not %d", jobs);
  if (jobs == 0)
    jobs = (gint) g_get_num_processors ();

  if ((reg = load_registry ()) == NULL)
    return EXIT_FAILURE;
  exp = fg_experiment_load (argv[1], reg, &error);
  if (exp == NULL)
    {
      guint rejected = count_rejected (reg);
      gboolean hint = g_error_matches (error, FG_EXPERIMENT_ERROR,
                                       FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN) && rejected > 0;
      rc = fail (g_steal_pointer (&error));
      if (hint)
        g_printerr ("flowgmm: note: %u plugin file%s could not be loaded (see 'flowgmm list')\n",
                    rejected, rejected == 1 ? "" : "s");
      return rc;
    }
  out = out_dir ? g_strdup (out_dir) : fg_experiment_default_out_dir (exp);
  options.out_dir = out;
  options.jobs = (guint) jobs;
  options.quiet = quiet;
  options.retry_failed = retry_failed;
  options.no_isolate = no_isolate;
  options.rerun_stale = rerun_stale;
  options.cancel = &cancel_requested;
  install_sigint_handler ();

#ifdef HAVE_MPI
  /* Started by mpirun (or srun): the ranks share the cells; rank 0 stores and prints. */
  if (fg_mpi_launched ())
    {
      if (fg_mpi_get_rank () != 0)
        options.quiet = TRUE;
      if (!fg_experiment_run_mpi (exp, &options, &summary, &error))
        return fail (g_steal_pointer (&error));
      if (fg_mpi_get_rank () != 0)
        return EXIT_SUCCESS;
    }
  else
#endif
  if (!fg_experiment_run (exp, &options, &summary, &error))
    return fail (g_steal_pointer (&error));

  if (!quiet)
    {
      table_path = g_build_filename (out, "table.md", NULL);
      if (!g_file_get_contents (table_path, &table, NULL, &error))
        return fail (g_steal_pointer (&error));
      fputs (table, stdout);
      fflush (stdout);
      g_printerr ("flowgmm: %u cells: %u run now (%u ok, %u failed), %u already stored, "
                "%u cancelled; results in %s\n",
                summary.n_cells, summary.n_ok + summary.n_failed, summary.n_ok,
                summary.n_failed, summary.n_skipped, summary.n_cancelled, out);
    }
  if (summary.n_stale > 0 && !rerun_stale)
    g_printerr ("flowgmm: %u cell%s stale: stored before a plugin file %s used changed; "
                "--rerun-stale computes %s again (the table marks %s with †)\n",
                summary.n_stale, summary.n_stale == 1 ? " is" : "s are",
                summary.n_stale == 1 ? "it" : "they", summary.n_stale == 1 ? "it" : "them",
                summary.n_stale == 1 ? "it" : "them");
  else if (summary.n_stale > 0 && !quiet)
    g_printerr ("flowgmm: %u stale cell%s computed again\n", summary.n_stale,
                summary.n_stale == 1 ? "" : "s");
  if (g_atomic_int_get (&cancel_requested))
    return EXIT_INTERRUPTED;
  if (summary.n_failed > 0)
    {
      g_printerr ("flowgmm: %u cell%s failed (see the table and %s/results.jsonl)\n",
                  summary.n_failed, summary.n_failed == 1 ? "" : "s", out);
      return EXIT_CELLS_FAILED;
    }
  return EXIT_SUCCESS;
}

/* ---- table ----------------------------------------------------------------------------------- */

static int
cmd_table (int argc, char **argv)
{
  GOptionEntry entries[] = { { NULL } };
  g_autoptr (GError) error = NULL;
  g_autofree char *table = NULL;
  int rc;

  if ((rc = parse_options ("table", "DIR", "Render the comparison table of a run's output "
                           "directory again (table.md, table.csv, table.tex, table.json) and "
                           "print it.", entries, &argc, &argv)) != 0)
    return rc;
  if (argc != 2)
    return usage_error ("table", argc < 2 ? "table needs an output DIR" : "table takes one DIR");
  table = fg_table_render_dir (argv[1], &error);
  if (table == NULL)
    return fail (g_steal_pointer (&error));
  fputs (table, stdout);
  return EXIT_SUCCESS;
}

/* ---- list ------------------------------------------------------------------------------------ */

static int
cmd_list (int argc, char **argv)
{
  GOptionEntry entries[] = { PLUGIN_ENTRIES, { NULL } };
  g_autoptr (FgRegistry) reg = NULL;
  guint n_rejected = 0;
  int rc;

  if ((rc = parse_options ("list", NULL, "List the loaded plugins with their components, and "
                           "every plugin file that was rejected with the reason.", entries, &argc,
                           &argv)) != 0)
    return rc;
  if (argc != 1)
    return usage_error ("list", "list takes no arguments");
  if ((reg = load_registry ()) == NULL)
    return EXIT_FAILURE;

  printf ("Plugins:\n");
  for (guint i = 0; i < fg_registry_get_n_records (reg); i++)
    {
      const FgPluginRecord *rec = fg_registry_get_record (reg, i);
      const FgPluginInfo *info = rec->info;
      if (info == NULL || rec->error != NULL)
        {
          n_rejected++;
          continue;
        }
      printf ("  %s %s (%s)  %s\n", info->name, info->version, info->license, rec->path);
      if (info->description != NULL && *info->description != '\0')
        printf ("      %s\n", info->description);
      for (int kind = FG_KIND_FIRST; kind <= FG_KIND_LAST; kind++)
        for (const FgComponent *c = info->components; c && c->kind != 0; c++)
          if ((int) c->kind == kind)
            printf ("    %-9s %-24s %s\n", fg_kind_to_string (c->kind), c->name,
                    c->summary ? c->summary : "");
    }
  if (n_rejected > 0)
    {
      printf ("\nRejected plugin files:\n");
      for (guint i = 0; i < fg_registry_get_n_records (reg); i++)
        {
          const FgPluginRecord *rec = fg_registry_get_record (reg, i);
          const char *why = rec->error ? rec->error->message : "rejected";
          if (rec->info != NULL && rec->error == NULL)
            continue;
          /* Loader messages usually start with the path already. */
          if (g_str_has_prefix (why, rec->path))
            printf ("  %s\n", why);
          else
            printf ("  %s: %s\n", rec->path, why);
        }
    }
  return EXIT_SUCCESS;
}

/* ---- describe -------------------------------------------------------------------------------- */

static void
print_params (const FgParamSpec *specs)
{
  guint wn = 4, wt = 4, wd = 7;
  if (specs == NULL || specs->name == NULL)
    {
      printf ("No parameters.\n");
      return;
    }
  for (const FgParamSpec *sp = specs; sp->name; sp++)
    {
      g_autofree char *type = fg_param_spec_describe_type (sp);
      const char *def = sp->default_value
                            ? sp->default_value
                            : (sp->flags & FG_PARAM_FLAG_REQUIRED) ? "(required)" : "(unset)";
      wn = MAX (wn, (guint) strlen (sp->name));
      wt = MAX (wt, (guint) g_utf8_strlen (type, -1));
      wd = MAX (wd, (guint) strlen (def));
    }
  printf ("Parameters:\n  %-*s  %-*s  %-*s  %s\n", wn, "NAME", wt, "TYPE", wd, "DEFAULT",
          "DESCRIPTION");
  for (const FgParamSpec *sp = specs; sp->name; sp++)
    {
      g_autofree char *type = fg_param_spec_describe_type (sp);
      const char *def = sp->default_value
                            ? sp->default_value
                            : (sp->flags & FG_PARAM_FLAG_REQUIRED) ? "(required)" : "(unset)";
      /* printf pads by bytes: pad the UTF-8 type by characters. */
      guint pad = wt - (guint) g_utf8_strlen (type, -1);
      printf ("  %-*s  %s%*s  %-*s  %s\n", wn, sp->name, type, pad, "", wd, def,
              sp->doc ? sp->doc : "");
    }
  for (const FgParamSpec *sp = specs; sp->name; sp++)
    if (sp->type == FG_PARAM_COMPONENT)
      printf ("\nKeys '%s.NAME' set the parameters of the chosen %s "
              "('flowgmm describe COMPONENT' lists them).\n", sp->name, sp->choices);
}

static int
cmd_describe (int argc, char **argv)
{
  GOptionEntry entries[] = { PLUGIN_ENTRIES, { NULL } };
  g_autoptr (FgRegistry) reg = NULL;
  const FgComponent *c;
  const FgPluginRecord *provider;
  int rc;

  if ((rc = parse_options ("describe", "NAME", "Show a component's summary and parameters (name, "
                           "type and range, default, description).  'describe split' shows the "
                           "split keys every [dataset:NAME] group accepts.", entries, &argc,
                           &argv)) != 0)
    return rc;
  if (argc != 2)
    return usage_error ("describe", argc < 2 ? "describe needs a component NAME"
                                             : "describe takes one NAME");
  if ((reg = load_registry ()) == NULL)
    return EXIT_FAILURE;
  c = fg_registry_lookup_any (reg, argv[1]);
  if (c == NULL && strcmp (argv[1], "split") == 0)
    {
      printf ("split — the core's split of every data set into labeled, unlabeled, validation "
              "and test parts; these keys are valid in every [dataset:NAME] group.\n\n");
      print_params (fg_split_param_specs ());
      return EXIT_SUCCESS;
    }
  if (c == NULL)
    {
      /* A plugin's name: list what it provides. */
      for (guint i = 0; i < fg_registry_get_n_records (reg); i++)
        {
          const FgPluginRecord *rec = fg_registry_get_record (reg, i);
          if (rec->info == NULL || rec->error != NULL || strcmp (rec->info->name, argv[1]) != 0)
            continue;
          printf ("%s %s (plugin, %s) — %s\n%s\n\nComponents ('flowgmm describe COMPONENT' "
                  "shows one's parameters):\n", rec->info->name, rec->info->version,
                  rec->info->license, rec->info->description ? rec->info->description : "",
                  rec->path);
          for (const FgComponent *pc = rec->info->components; pc && pc->kind != 0; pc++)
            printf ("  %-9s %-24s %s\n", fg_kind_to_string (pc->kind), pc->name,
                    pc->summary ? pc->summary : "");
          return EXIT_SUCCESS;
        }
      g_printerr ("flowgmm: no component or plugin named '%s' (see 'flowgmm list')\n", argv[1]);
      return EXIT_FAILURE;
    }
  printf ("%s (%s) — %s\n", c->name, fg_kind_to_string (c->kind), c->summary ? c->summary : "");
  provider = fg_registry_get_provider (reg, c);
  if (provider != NULL && provider->info != NULL)
    printf ("Plugin: %s %s (%s)\n", provider->info->name, provider->info->version,
            provider->path);
  printf ("\n");
  print_params (c->params);
  return EXIT_SUCCESS;
}

/* ---- main ------------------------------------------------------------------------------------ */

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
} Command;

static const Command commands[] = {
  { "run", cmd_run },
  { "table", cmd_table },
  { "list", cmd_list },
  { "describe", cmd_describe },
};

static const Command *
find_command (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (name, commands[i].name) == 0)
      return &commands[i];
  return NULL;
}

int
main (int argc, char **argv)
{
  const Command *cmd;

  setlocale (LC_ALL, "");
  g_set_prgname ("flowgmm");
  g_log_set_default_handler (log_handler, NULL);

  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "-?") == 0)
    {
      fputs (usage_text, stdout);
      return EXIT_SUCCESS;
    }
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "version") == 0)
    {
      printf ("flowgmm %s\n", fg_version ());
      return EXIT_SUCCESS;
    }
  if (strcmp (argv[1], "help") == 0)
    {
      if (argc > 2)
        {
          char *help_argv[] = { argv[2], "--help", NULL };
          if ((cmd = find_command (argv[2])) == NULL)
            return usage_error (NULL, "unknown command '%s'", argv[2]);
          return cmd->run (2, help_argv);
        }
      fputs (usage_text, stdout);
      return EXIT_SUCCESS;
    }
  if (argv[1][0] == '-')
    return usage_error (NULL, "unknown option '%s' (options follow the command)", argv[1]);
  cmd = find_command (argv[1]);
  if (cmd == NULL)
    return usage_error (NULL, "unknown command '%s'", argv[1]);
#ifdef HAVE_MPI
  if (cmd->run == cmd_run && fg_mpi_init (&argc, &argv))
    {
      int rc = cmd->run (argc - 1, argv + 1);
      fg_mpi_finalize ();
      return rc;
    }
#endif
  return cmd->run (argc - 1, argv + 1);
}
