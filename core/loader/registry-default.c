/* SPDX-License-Identifier: MIT */
/* flowgmm — the process's default registry: deprecated, kept for ABI 1.  The core does not
 * consult it; components are bound to parameters when they are resolved
 * (fg_params_get_resolved_component ()). */
#include "config.h"

#include <flowgmm/registry.h>

#include "loader/registry-private.h"

static GMutex default_lock;
static FgRegistry *default_reg;  /* set by the owner of the plugins (borrowed) */
static FgRegistry *fallback_reg; /* made on first use when none is set; never freed */

/**
 * fg_registry_set_default:
 * @reg: (nullable): the registry built-in components should search, or %NULL to clear
 *
 * Makes @reg the process's default registry.  The caller keeps @reg alive while it is the
 * default and clears it (passing %NULL) before freeing it.
 *
 * Deprecated: nothing in the core reads the default registry; use
 * fg_registry_resolve_params () and fg_params_get_resolved_component ().
 */
void
fg_registry_set_default (FgRegistry *reg)
{
  g_mutex_lock (&default_lock);
  default_reg = reg;
  g_mutex_unlock (&default_lock);
}

/* Called by fg_registry_free (): a freed registry must not stay the default. */
void
_fg_registry_forget_default (FgRegistry *reg)
{
  g_mutex_lock (&default_lock);
  if (default_reg == reg)
    default_reg = NULL;
  g_mutex_unlock (&default_lock);
}

static FgRegistry *
get_locked (void)
{
  if (default_reg != NULL)
    return default_reg;
  if (fallback_reg == NULL)
    {
      fallback_reg = fg_registry_new_with_builtins ();
      fg_registry_load_default (fallback_reg, NULL);
      g_debug ("no default registry was set: loaded the standard plugin search path");
    }
  return fallback_reg;
}

/**
 * fg_registry_get_default:
 *
 * Returns: (transfer none): the registry set with fg_registry_set_default (), or else a
 * process-wide one made on first use from the built-ins and the standard plugin search path
 * ($FLOWGMM_PLUGIN_PATH, then the installed directory), never freed.
 */
FgRegistry *
fg_registry_get_default (void)
{
  FgRegistry *reg;
  g_mutex_lock (&default_lock);
  reg = get_locked ();
  g_mutex_unlock (&default_lock);
  return reg;
}

/**
 * fg_registry_default_find:
 * @kind: the component kind
 * @name: the component name
 * @error: return location for a #GError (%FG_LOADER_ERROR_NOT_FOUND)
 *
 * Looks @name up in the default registry while holding its lock.
 *
 * Returns: (nullable): the component, valid for the life of the process.
 */
const FgComponent *
fg_registry_default_find (FgKind kind, const char *name, GError **error)
{
  const FgComponent *c;
  g_mutex_lock (&default_lock);
  c = fg_registry_find (get_locked (), kind, name, error);
  g_mutex_unlock (&default_lock);
  return c;
}
