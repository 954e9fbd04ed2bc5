/* SPDX-License-Identifier: MIT */
/* flowgmm — error domains.  Only libflowgmm defines quarks; plugins reuse these. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#if defined(FG_COMPILATION) || defined(FG_PLUGIN_COMPILATION)
#define FG_API __attribute__ ((visibility ("default")))
#else
#define FG_API
#endif

/* General runtime errors: bad values, bad data, numeric failure, I/O. */
#define FG_ERROR (fg_error_quark ())
typedef enum {
  FG_ERROR_FAILED,
  FG_ERROR_INVALID_PARAM, /* a parameter value out of type or range */
  FG_ERROR_DATA,          /* malformed or inconsistent input data */
  FG_ERROR_NUMERIC,       /* NaN/Inf, divergence, singular matrix */
  FG_ERROR_IO,            /* reading or writing a file */
  FG_ERROR_UNSUPPORTED,   /* a valid request this build cannot serve */
  FG_ERROR_MEMORY,        /* a request larger than the limit it would need */
  FG_ERROR_CORRUPT,       /* a file whose checksum or structure is wrong */
  FG_ERROR_INTERRUPTED,   /* a fit that stopped early on purpose with its state saved (it resumes
                           * on the next run); not a result. */
} FgError;

/* Plugin loading: each rejection path has its own code. */
#define FG_LOADER_ERROR (fg_loader_error_quark ())
typedef enum {
  FG_LOADER_ERROR_OPEN,           /* dlopen failed: not a shared object, missing dependency */
  FG_LOADER_ERROR_NO_ENTRY,       /* no fg_plugin_query symbol */
  FG_LOADER_ERROR_ABI_VERSION,    /* descriptor's abi_version != FG_PLUGIN_ABI_VERSION */
  FG_LOADER_ERROR_STRUCT_SIZE,    /* descriptor or vtable smaller than the ABI minimum */
  FG_LOADER_ERROR_BAD_DESCRIPTOR, /* NULL strings, name != file basename, no components */
  FG_LOADER_ERROR_UNKNOWN_KIND,   /* component kind not known to this host */
  FG_LOADER_ERROR_MISSING_METHOD, /* a required vtable method is NULL */
  FG_LOADER_ERROR_BAD_PARAMS,     /* a declared parameter spec is inconsistent */
  FG_LOADER_ERROR_DUPLICATE,      /* plugin or kind/name registered twice */
  FG_LOADER_ERROR_NOT_FOUND,      /* lookup of an unknown component */
} FgLoaderError;

/* Experiment files: every error names file, group and key. */
#define FG_EXPERIMENT_ERROR (fg_experiment_error_quark ())
typedef enum {
  FG_EXPERIMENT_ERROR_PARSE,          /* not a key file */
  FG_EXPERIMENT_ERROR_UNKNOWN_GROUP,
  FG_EXPERIMENT_ERROR_UNKNOWN_KEY,
  FG_EXPERIMENT_ERROR_MISSING_KEY,
  FG_EXPERIMENT_ERROR_BAD_TYPE,
  FG_EXPERIMENT_ERROR_BAD_RANGE,
  FG_EXPERIMENT_ERROR_UNKNOWN_PLUGIN,
  FG_EXPERIMENT_ERROR_BAD_VALUE,
  FG_EXPERIMENT_ERROR_RESULTS,        /* results store unreadable or from another experiment */
} FgExperimentError;

FG_API GQuark fg_error_quark (void);
FG_API GQuark fg_loader_error_quark (void);
FG_API GQuark fg_experiment_error_quark (void);

/* The library version, e.g. "0.1.0". */
FG_API const char *fg_version (void);

G_END_DECLS
