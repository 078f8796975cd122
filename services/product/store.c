/* store.c - picks the product store adapter from the store URL's scheme. */
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/sqlite.h"
#include "polyshop/url.h"
#include "store.h"

int product_store_url_ok(const char *url) {
  return ps_sqlite_url_path(url) != NULL || strncmp(url, "mongodb://", 10) == 0;
}

int product_store_migrate(const char *url) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return product_sqlite_migrate(path);
  if (strncmp(url, "mongodb://", 10) == 0) return product_mongo_migrate(url);
  char shown[PS_URL_REDACT_MAX];
  ps_log_error("PRODUCT_STORE=%s: use sqlite:// or mongodb://", ps_url_redact(shown, sizeof(shown), url));
  return PS_ECONFIG;
}

int product_store_open(const char *url, product_store_t **out) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return product_sqlite_open(path, out);
  if (strncmp(url, "mongodb://", 10) == 0) return product_mongo_open(url, out);
  return PS_ECONFIG;
}
