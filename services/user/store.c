/* store.c - picks the user store adapter from the store URL's scheme. */
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/sqlite.h"
#include "store.h"

int user_store_url_ok(const char *url) {
  return ps_sqlite_url_path(url) != NULL || strncmp(url, "mongodb://", 10) == 0;
}

int user_store_open(const char *url, user_store_t **out) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return user_store_sqlite_open(path, out);
  if (strncmp(url, "mongodb://", 10) == 0) return user_store_mongo_open(url, out);
  return PS_ECONFIG;
}
