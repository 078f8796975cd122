/* config.h - configuration from environment variables only.
 *
 * A service reads all its settings through one ps_config_t, which collects every bad value
 * instead of stopping at the first, so one start tells the operator everything to fix:
 *
 *   ps_config_t cfg;
 *   ps_config_init(&cfg);
 *   long long threads = ps_config_int(&cfg, "POLYSHOP_THREADS", 2, 1, 256);
 *   const char *store = ps_config_str(&cfg, "USER_STORE", "sqlite://./data/user.db");
 *   ps_config_exit_on_error(&cfg);   // prints each problem, exits with 78 (EX_CONFIG)
 */
#ifndef POLYSHOP_CONFIG_H
#define POLYSHOP_CONFIG_H
#include <stddef.h>

enum { PS_CONFIG_EXIT_CODE = 78 }; /* sysexits.h EX_CONFIG */

typedef struct ps_config {
  int nerrors;
  char errors[8][256]; /* the first eight problems, each a full sentence */
} ps_config_t;

void ps_config_init(ps_config_t *cfg);

/* Returns the value, or def when the variable is unset or empty. The string is the
 * environment's (do not free). def may be NULL. */
const char *ps_config_str(ps_config_t *cfg, const char *name, const char *def);

/* Like ps_config_str, but an unset or empty variable is an error. */
const char *ps_config_required(ps_config_t *cfg, const char *name);

/* A decimal integer in [min, max]; anything else (letters, overflow, out of range) is
 * recorded as an error and def is returned. */
long long ps_config_int(ps_config_t *cfg, const char *name, long long def, long long min,
                        long long max);

/* "1/true/yes/on" or "0/false/no/off". */
int ps_config_bool(ps_config_t *cfg, const char *name, int def);

/* "host:port" (IPv4 name or address, port 1..65535); host is copied into host[hostlen]. */
void ps_config_listen(ps_config_t *cfg, const char *name, const char *def, char *host,
                      size_t hostlen, int *port);

/* Records a custom error (for checks across several variables). */
void ps_config_error(ps_config_t *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Returns 0, or PS_ECONFIG when any error was recorded. */
int ps_config_check(const ps_config_t *cfg);

/* Logs every recorded error and exits with PS_CONFIG_EXIT_CODE when there is one. */
void ps_config_exit_on_error(const ps_config_t *cfg);

#endif
