/* service.c - the common start of every service's main() (see service.h). */
#include "polyshop/service.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/log.h"

void ps_service_init(ps_config_t *cfg, const char *name) {
  ps_config_init(cfg);
  ps_log_level_t level = PS_LOG_INFO;
  if (ps_log_level_parse(ps_config_str(cfg, "POLYSHOP_LOG_LEVEL", "info"), &level))
    ps_config_error(cfg, "POLYSHOP_LOG_LEVEL must be debug, info, warn or error");
  ps_log_init(name, level);
  if (sodium_init() < 0) {
    ps_log_error("libsodium failed to start: no usable random source");
    exit(1);
  }
}

const char *ps_config_url(ps_config_t *cfg, const char *name, int required) {
  const char *v = required ? ps_config_required(cfg, name) : ps_config_str(cfg, name, NULL);
  if (v && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
    ps_config_error(cfg, "%s=\"%s\" must be an http:// or https:// URL", name, v);
  return v;
}
