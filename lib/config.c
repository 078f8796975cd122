/* config.c - environment variables parsed with every error collected (see config.h). */
#include "polyshop/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "polyshop/error.h"
#include "polyshop/log.h"

void ps_config_init(ps_config_t *cfg) { memset(cfg, 0, sizeof(*cfg)); }

void ps_config_error(ps_config_t *cfg, const char *fmt, ...) {
  if (cfg->nerrors < (int)(sizeof(cfg->errors) / sizeof(cfg->errors[0]))) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->errors[cfg->nerrors], sizeof(cfg->errors[0]), fmt, ap);
    va_end(ap);
  }
  cfg->nerrors++;
}

const char *ps_config_str(ps_config_t *cfg, const char *name, const char *def) {
  (void)cfg;
  const char *v = getenv(name);
  return v && *v ? v : def;
}

const char *ps_config_required(ps_config_t *cfg, const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) {
    ps_config_error(cfg, "%s is required but not set", name);
    return NULL;
  }
  return v;
}

long long ps_config_int(ps_config_t *cfg, const char *name, long long def, long long min,
                        long long max) {
  const char *v = getenv(name);
  if (!v || !*v) return def;
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || *end || end == v || n < min || n > max) {
    ps_config_error(cfg, "%s=\"%s\" is not a whole number between %lld and %lld", name, v, min,
                    max);
    return def;
  }
  return n;
}

int ps_config_bool(ps_config_t *cfg, const char *name, int def) {
  const char *v = getenv(name);
  if (!v || !*v) return def;
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0) return 1;
    if (strcasecmp(v, no[i]) == 0) return 0;
  }
  ps_config_error(cfg, "%s=\"%s\" is not a boolean (use true or false)", name, v);
  return def;
}

void ps_config_listen(ps_config_t *cfg, const char *name, const char *def, char *host,
                      size_t hostlen, int *port) {
  const char *v = ps_config_str(cfg, name, def);
  const char *colon = v ? strrchr(v, ':') : NULL;
  char *end;
  long p = colon ? strtol(colon + 1, &end, 10) : 0;
  if (!colon || colon == v || (size_t)(colon - v) >= hostlen || colon[1] == '\0' || *end ||
      p < 1 || p > 65535) {
    ps_config_error(cfg, "%s=\"%s\" is not host:port (for example 127.0.0.1:8080)", name,
                    v ? v : "");
    snprintf(host, hostlen, "127.0.0.1");
    *port = 0;
    return;
  }
  memcpy(host, v, (size_t)(colon - v));
  host[colon - v] = '\0';
  *port = (int)p;
}

int ps_config_check(const ps_config_t *cfg) { return cfg->nerrors ? PS_ECONFIG : 0; }

void ps_config_exit_on_error(const ps_config_t *cfg) {
  if (!cfg->nerrors) return;
  int shown = cfg->nerrors < 8 ? cfg->nerrors : 8;
  for (int i = 0; i < shown; i++) ps_log(PS_LOG_FATAL, NULL, "configuration: %s", cfg->errors[i]);
  if (cfg->nerrors > shown) ps_log(PS_LOG_FATAL, NULL, "configuration: %d more errors", cfg->nerrors - shown);
  exit(PS_CONFIG_EXIT_CODE);
}
