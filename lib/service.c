/* service.c - the common start of every service's main() (see service.h). */
#include "polyshop/service.h"

#include <malloc.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/log.h"

/* glibc gives freed memory at the top of the heap back to the kernel past 128 KiB, and moves
 * its mmap threshold as large blocks come and go: a request arena or SQLite's page cache
 * that grows and shrinks then costs a brk and fresh page faults each time. Measured with the
 * order store's two checkout transactions (20,000 orders, one thread): 204-219 us of CPU
 * per order with the defaults, 167-201 us with these (brk and page faults were 14% of it).
 * At most 4 MiB per malloc arena stays mapped after a burst. */
static void tune_malloc(void) {
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
}

void ps_service_init(ps_config_t *cfg, const char *name) {
  tune_malloc();
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
