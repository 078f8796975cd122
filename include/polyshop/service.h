/* service.h - what every service's main() does before its own settings: start the config
 * collector, the logs (POLYSHOP_LOG_LEVEL) and libsodium. */
#ifndef POLYSHOP_SERVICE_H
#define POLYSHOP_SERVICE_H

#include "polyshop/config.h"

/* Initialises cfg, reads POLYSHOP_LOG_LEVEL (recording a bad value in cfg), names the
 * service in every log line and starts libsodium. name must outlive the process (a literal).
 * Exits with 1 when libsodium cannot start (no usable random source). */
void ps_service_init(ps_config_t *cfg, const char *name);

/* Reads an optional base URL of another service (e.g. PRODUCT_URL); a value that is not
 * http:// or https:// is recorded as an error. Returns NULL when unset and not required. */
const char *ps_config_url(ps_config_t *cfg, const char *name, int required);

#endif
