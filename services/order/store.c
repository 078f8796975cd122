/* store.c - picks the order store adapter from the store URL. */
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/sqlite.h"
#include "store.h"

int order_store_is_pg(const char *url) {
  return url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
}

int order_store_open(const char *url, const char *pg_schema, order_store_t **out) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return order_store_sqlite_open(path, out);
#ifdef ORDER_HAVE_PG
  if (order_store_is_pg(url)) return order_store_pg_open(url, pg_schema, out);
#else
  (void)pg_schema;
#endif
  return PS_ECONFIG;
}
