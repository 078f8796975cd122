/* store.c - picks the order store adapter from the store URL. */
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/sqlite.h"
#include "store.h"

int order_store_is_pg(const char *url) {
  return url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
}

int order_store_pg_schema_ok(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 48 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
  return 1;
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
