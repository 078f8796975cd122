/* store_pg_none.c - stands in for the PostgreSQL payment store when libpq is not installed:
 * a postgresql:// URL is then a configuration error. */
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "store.h"

int payment_store_pg_open(const char *url, payment_store_t **out) {
  ps_log_error("this build has no PostgreSQL support (libpq was not found)");
  return PS_ECONFIG;
}

int payment_store_pg_open_schema(const char *url, const char *schema, payment_store_t **out) {
  return payment_store_pg_open(url, out);
}

int payment_store_pg_open_lazy(const char *url, payment_store_t **out) {
  return payment_store_pg_open(url, out);
}
