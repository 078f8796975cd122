/* mongo.c - the MongoDB driver library (polyshop_mongo, see mongo.h): libmongoc's set-up,
 * clients from URLs, its errors as PS_E* codes and the small operations every adapter uses. */
#include "polyshop/mongo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/url.h"

/* The driver's own messages go to our JSON log; FerretDB has no sessions, so the driver's
 * complaint that it could not end them is noise. */
static void log_cb(mongoc_log_level_t level, const char *domain, const char *message,
                   void *data) {
  if (level > MONGOC_LOG_LEVEL_WARNING || strstr(message, "endSessions")) return;
  ps_log(level <= MONGOC_LOG_LEVEL_CRITICAL ? PS_LOG_ERROR : PS_LOG_WARN, NULL, "mongoc %s: %s",
         domain, message);
}

static void global_init(void) {
  mongoc_log_set_handler(log_cb, NULL);
  mongoc_init();
  atexit(mongoc_cleanup); /* after main returns, when every client is closed */
}

int ps_mongo_open(ps_mongo_t *m, const char *url, const char *appname, const char *default_db) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, global_init);
  memset(m, 0, sizeof(*m));
  char shown[PS_URL_REDACT_MAX];
  bson_error_t err;
  mongoc_uri_t *uri = mongoc_uri_new_with_error(url, &err);
  if (!uri) {
    ps_log_error("mongodb: bad URL %s: %s", ps_url_redact(shown, sizeof(shown), url), err.message);
    return PS_ECONFIG;
  }
  if (!mongoc_uri_get_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 0))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 3000);
  m->client = mongoc_client_new_from_uri(uri);
  const char *dbname = mongoc_uri_get_database(uri);
  if (!dbname || !*dbname) dbname = default_db;
  if (m->client) {
    mongoc_client_set_appname(m->client, appname);
    m->db = mongoc_client_get_database(m->client, dbname);
  }
  mongoc_uri_destroy(uri);
  if (!m->client) {
    ps_log_error("mongodb: cannot make a client for %s", ps_url_redact(shown, sizeof(shown), url));
    return PS_ECONFIG;
  }
  return 0;
}

void ps_mongo_close(ps_mongo_t *m) {
  if (m->db) mongoc_database_destroy(m->db);
  if (m->client) mongoc_client_destroy(m->client);
  m->db = NULL;
  m->client = NULL;
}

mongoc_collection_t *ps_mongo_collection(ps_mongo_t *m, const char *name) {
  return mongoc_database_get_collection(m->db, name);
}

int ps_mongo_err(const bson_error_t *err) {
  if (err->code == 11000 || err->code == 11001) return PS_EEXISTS;
  if (err->domain == MONGOC_ERROR_STREAM || err->domain == MONGOC_ERROR_SERVER_SELECTION)
    return PS_EUNAVAIL;
  ps_log_warn("mongodb: %s (domain %u, code %u)", err->message, err->domain, err->code);
  return PS_ESTORE;
}

int ps_mongo_ping(ps_mongo_t *m) {
  bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
  bson_error_t err;
  bool ok = mongoc_database_command_simple(m->db, cmd, NULL, NULL, &err);
  bson_destroy(cmd);
  return ok ? 0 : ps_mongo_err(&err);
}

int ps_mongo_create_index(ps_mongo_t *m, const char *coll, const bson_t *keys, const char *name,
                          int unique) {
  bson_t *cmd = bson_new(), arr, ix;
  BSON_APPEND_UTF8(cmd, "createIndexes", coll);
  bson_append_array_begin(cmd, "indexes", -1, &arr);
  bson_append_document_begin(&arr, "0", -1, &ix);
  BSON_APPEND_DOCUMENT(&ix, "key", keys);
  BSON_APPEND_UTF8(&ix, "name", name);
  if (unique) BSON_APPEND_BOOL(&ix, "unique", true);
  bson_append_document_end(&arr, &ix);
  bson_append_array_end(cmd, &arr);
  bson_error_t err;
  int rc = 0;
  if (!mongoc_database_write_command_with_opts(m->db, cmd, NULL, NULL, &err)) {
    ps_log_error("mongodb: creating the index %s of %s: %s", name, coll, err.message);
    rc = ps_mongo_err(&err);
  }
  bson_destroy(cmd);
  return rc;
}

int ps_mongo_find_one(mongoc_collection_t *c, const bson_t *filter, bson_t **out) {
  bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
  const bson_t *doc;
  int rc = PS_ENOTFOUND;
  if (mongoc_cursor_next(cur, &doc)) {
    *out = bson_copy(doc);
    rc = 0;
  } else {
    bson_error_t err;
    if (mongoc_cursor_error(cur, &err)) rc = ps_mongo_err(&err);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  return rc;
}

int ps_mongo_find_id(mongoc_collection_t *c, const char *id, bson_t **out) {
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
  int rc = ps_mongo_find_one(c, filter, out);
  bson_destroy(filter);
  return rc;
}

int ps_mongo_insert(mongoc_collection_t *c, const bson_t *doc) {
  bson_error_t err;
  return mongoc_collection_insert_one(c, doc, NULL, NULL, &err) ? 0 : ps_mongo_err(&err);
}

const char *ps_mongo_str(ps_arena_t *a, const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it)) return NULL;
  uint32_t len;
  const char *s = bson_iter_utf8(&it, &len);
  return a ? ps_arena_strndup(a, s, len) : s;
}

int64_t ps_mongo_int(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
    return bson_iter_as_int64(&it);
  return 0;
}

void ps_mongo_append_json(bson_t *b, const char *key, const char *json) {
  bson_error_t err;
  bson_t *sub = json ? bson_new_from_json((const uint8_t *)json, -1, &err) : NULL;
  if (sub) {
    BSON_APPEND_DOCUMENT(b, key, sub);
    bson_destroy(sub);
  } else {
    bson_t empty = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(b, key, &empty);
  }
}
