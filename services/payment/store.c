/* store.c - picks the payment store adapter from the store URL (see store.h). */
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/sqlite.h"
#include "store.h"

int payment_store_open(const char *url, payment_store_t **out) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return payment_store_sqlite_open(path, out);
  if (url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0))
    return payment_store_pg_open(url, out);
  return PS_ECONFIG;
}

int payment_store_open_lazy(const char *url, payment_store_t **out) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return payment_store_sqlite_open(path, out);
  if (url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0))
    return payment_store_pg_open_lazy(url, out);
  return PS_ECONFIG;
}
