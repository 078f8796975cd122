/* store_mongo.c - the user store on MongoDB (libmongoc), see store.h. One mongoc client per
 * event-loop thread. Written to the subset that FerretDB also speaks (no transactions, no
 * aggregation): every multi-step change is a single-document atomic operation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/mongo.h"
#include "store.h"

typedef struct {
  user_store_t base;
  ps_mongo_t mongo; /* client and database: lib/drivers/mongo.c */
  mongoc_collection_t *users, *refresh, *reset, *outbox, *claims;
} mongo_store_t;

#define M(s) ((mongo_store_t *)(s))

/* A string field copied into the arena, "" when absent. */
static const char *str_field(ps_arena_t *a, const bson_t *doc, const char *key) {
  const char *v = ps_mongo_str(a, doc, key);
  return v ? v : "";
}

/* A sub-document field as JSON text in the arena ("{}" when absent). */
static const char *doc_field_json(ps_arena_t *a, const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_DOCUMENT(&it)) return "{}";
  uint32_t len;
  const uint8_t *data;
  bson_iter_document(&it, &len, &data);
  bson_t sub;
  if (!bson_init_static(&sub, data, len)) return "{}";
  char *json = bson_as_relaxed_extended_json(&sub, NULL);
  const char *out = ps_arena_strdup(a, json ? json : "{}");
  bson_free(json);
  return out;
}

static int m_create(user_store_t *s, const user_t *u) {
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&doc, "_id", u->id);
  BSON_APPEND_UTF8(&doc, "email", u->email);
  BSON_APPEND_UTF8(&doc, "password_hash", u->password_hash);
  BSON_APPEND_UTF8(&doc, "role", u->role);
  BSON_APPEND_UTF8(&doc, "name", u->name ? u->name : "");
  ps_mongo_append_json(&doc, "profile", u->profile ? u->profile : "{}");
  ps_mongo_append_json(&doc, "settings", u->settings ? u->settings : "{}");
  BSON_APPEND_INT64(&doc, "created_at", u->created_at);
  BSON_APPEND_INT64(&doc, "updated_at", u->updated_at);
  int rc = ps_mongo_insert(M(s)->users, &doc);
  bson_destroy(&doc);
  return rc;
}

static int find_user(user_store_t *s, ps_arena_t *a, const char *key, const char *value, user_t *out) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, key, value);
  bson_t *doc = NULL;
  int rc = ps_mongo_find_one(M(s)->users, &filter, &doc);
  bson_destroy(&filter);
  if (rc) return rc;
  out->id = str_field(a, doc, "_id");
  out->email = str_field(a, doc, "email");
  out->password_hash = str_field(a, doc, "password_hash");
  out->role = str_field(a, doc, "role");
  out->name = str_field(a, doc, "name");
  out->profile = doc_field_json(a, doc, "profile");
  out->settings = doc_field_json(a, doc, "settings");
  out->created_at = ps_mongo_int(doc, "created_at");
  out->updated_at = ps_mongo_int(doc, "updated_at");
  bson_destroy(doc);
  return 0;
}

static int m_get_by_id(user_store_t *s, ps_arena_t *a, const char *id, user_t *out) {
  return find_user(s, a, "_id", id, out);
}

static int m_get_by_email(user_store_t *s, ps_arena_t *a, const char *email, user_t *out) {
  return find_user(s, a, "email", email, out);
}

/* Runs update_one / update_many with {$set: set} on filter; PS_ENOTFOUND when require_match
 * and nothing matched. Takes ownership of neither. */
static int update(mongoc_collection_t *c, const bson_t *filter, const bson_t *set, int many,
                  int require_match) {
  bson_t upd = BSON_INITIALIZER;
  BSON_APPEND_DOCUMENT(&upd, "$set", set);
  bson_t reply;
  bson_error_t err;
  bool ok = many ? mongoc_collection_update_many(c, filter, &upd, NULL, &reply, &err)
                 : mongoc_collection_update_one(c, filter, &upd, NULL, &reply, &err);
  int rc = ok ? 0 : ps_mongo_err(&err);
  if (ok && require_match && ps_mongo_int(&reply, "matchedCount") == 0) rc = PS_ENOTFOUND;
  bson_destroy(&reply);
  bson_destroy(&upd);
  return rc;
}

static int update_user(user_store_t *s, const char *id, bson_t *set) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, "_id", id);
  int rc = update(M(s)->users, &filter, set, 0, 1);
  bson_destroy(&filter);
  bson_destroy(set);
  return rc;
}

static int m_update_profile(user_store_t *s, const user_t *u) {
  bson_t set = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&set, "name", u->name ? u->name : "");
  ps_mongo_append_json(&set, "profile", u->profile ? u->profile : "{}");
  BSON_APPEND_INT64(&set, "updated_at", u->updated_at);
  return update_user(s, u->id, &set);
}

static int m_update_settings(user_store_t *s, const char *id, const char *settings, int64_t now) {
  bson_t set = BSON_INITIALIZER;
  ps_mongo_append_json(&set, "settings", settings);
  BSON_APPEND_INT64(&set, "updated_at", now);
  return update_user(s, id, &set);
}

static int m_update_password(user_store_t *s, const char *id, const char *hash, int64_t now) {
  bson_t set = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&set, "password_hash", hash);
  BSON_APPEND_INT64(&set, "updated_at", now);
  return update_user(s, id, &set);
}

static int m_set_role(user_store_t *s, const char *id, const char *role) {
  bson_t set = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&set, "role", role);
  return update_user(s, id, &set);
}

static int m_refresh_add(user_store_t *s, const char *hash, const char *family,
                         const char *user_id, int64_t expires_at) {
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&doc, "_id", hash);
  BSON_APPEND_UTF8(&doc, "family", family);
  BSON_APPEND_UTF8(&doc, "user_id", user_id);
  BSON_APPEND_INT64(&doc, "expires_at", expires_at);
  BSON_APPEND_INT32(&doc, "used", 0);
  int rc = ps_mongo_insert(M(s)->refresh, &doc);
  bson_destroy(&doc);
  return rc;
}

/* Claims a one-time token by inserting its hash as _id into the claims collection: the
 * unique _id makes exactly one concurrent claim succeed on every engine (a conditional
 * update_one was measured to let two callers win on FerretDB). Returns 1 when this caller
 * won, 0 when the token was already claimed, or a negative PS_E* code. */
static int claim_token(mongo_store_t *m, const char *kind, const char *hash) {
  bson_t doc = BSON_INITIALIZER;
  char id[200];
  snprintf(id, sizeof(id), "%s:%s", kind, hash);
  BSON_APPEND_UTF8(&doc, "_id", id);
  int rc = ps_mongo_insert(m->claims, &doc);
  bson_destroy(&doc);
  if (!rc) return 1;
  return rc == PS_EEXISTS ? 0 : rc;
}

/* Marks a token document used (1) after a won claim, for the record and for revocation. */
static void mark_used(mongoc_collection_t *c, const char *hash) {
  bson_t filter = BSON_INITIALIZER, set = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, "_id", hash);
  BSON_APPEND_INT32(&set, "used", 1);
  update(c, &filter, &set, 0, 0);
  bson_destroy(&filter);
  bson_destroy(&set);
}

static int token_doc(mongoc_collection_t *c, const char *hash, bson_t **doc) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, "_id", hash);
  int rc = ps_mongo_find_one(c, &filter, doc);
  bson_destroy(&filter);
  return rc;
}

static int m_refresh_use(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                         const char **user_id, const char **family) {
  bson_t *doc;
  int rc = token_doc(M(s)->refresh, hash, &doc);
  if (rc) return rc;
  *user_id = str_field(a, doc, "user_id");
  *family = str_field(a, doc, "family");
  int used = (int)ps_mongo_int(doc, "used");
  int64_t expires_at = ps_mongo_int(doc, "expires_at");
  bson_destroy(doc);
  if (used) return PS_ECONFLICT;
  if (expires_at <= now) return PS_EEXPIRED;
  int won = claim_token(M(s), "refresh", hash);
  if (won < 0) return won;
  if (!won) return PS_ECONFLICT;
  mark_used(M(s)->refresh, hash);
  return 0;
}

static int m_refresh_family(user_store_t *s, ps_arena_t *a, const char *hash,
                            const char **family, const char **user_id) {
  bson_t *doc;
  int rc = token_doc(M(s)->refresh, hash, &doc);
  if (rc) return rc;
  *family = str_field(a, doc, "family");
  *user_id = str_field(a, doc, "user_id");
  bson_destroy(doc);
  return 0;
}

static int revoke_where(user_store_t *s, const char *key, const char *value) {
  bson_t filter = BSON_INITIALIZER, set = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, key, value);
  BSON_APPEND_INT32(&set, "used", 2);
  int rc = update(M(s)->refresh, &filter, &set, 1, 0);
  bson_destroy(&filter);
  bson_destroy(&set);
  return rc;
}

static int m_refresh_revoke_family(user_store_t *s, const char *family) {
  return revoke_where(s, "family", family);
}

static int m_refresh_revoke_user(user_store_t *s, const char *user_id) {
  return revoke_where(s, "user_id", user_id);
}

static int m_reset_add(user_store_t *s, const char *hash, const char *user_id, int64_t expires_at) {
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&doc, "_id", hash);
  BSON_APPEND_UTF8(&doc, "user_id", user_id);
  BSON_APPEND_INT64(&doc, "expires_at", expires_at);
  BSON_APPEND_INT32(&doc, "used", 0);
  int rc = ps_mongo_insert(M(s)->reset, &doc);
  bson_destroy(&doc);
  return rc;
}

static int m_reset_consume(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                           const char **user_id) {
  bson_t *doc;
  int rc = token_doc(M(s)->reset, hash, &doc);
  if (rc) return rc;
  *user_id = str_field(a, doc, "user_id");
  int used = (int)ps_mongo_int(doc, "used");
  int64_t expires_at = ps_mongo_int(doc, "expires_at");
  bson_destroy(doc);
  if (used) return PS_ENOTFOUND;
  if (expires_at <= now) return PS_EEXPIRED;
  int won = claim_token(M(s), "reset", hash);
  if (won < 0) return won;
  if (!won) return PS_ENOTFOUND;
  mark_used(M(s)->reset, hash);
  return 0;
}

static int m_outbox_add(user_store_t *s, const char *type, const char *payload, int64_t now) {
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&doc, "type", type);
  ps_mongo_append_json(&doc, "payload", payload);
  BSON_APPEND_INT64(&doc, "created_at", now);
  BSON_APPEND_NULL(&doc, "sent_at");
  int rc = ps_mongo_insert(M(s)->outbox, &doc);
  bson_destroy(&doc);
  return rc;
}

static int m_ping(user_store_t *s) { return ps_mongo_ping(&M(s)->mongo) ? PS_EUNAVAIL : 0; }

static void m_close(user_store_t *s) {
  mongo_store_t *m = M(s);
  mongoc_collection_destroy(m->users);
  mongoc_collection_destroy(m->refresh);
  mongoc_collection_destroy(m->reset);
  mongoc_collection_destroy(m->outbox);
  mongoc_collection_destroy(m->claims);
  ps_mongo_close(&m->mongo);
  ps_free(m);
}

static const user_store_ops_t mongo_ops = {
    .create = m_create,
    .get_by_id = m_get_by_id,
    .get_by_email = m_get_by_email,
    .update_profile = m_update_profile,
    .update_settings = m_update_settings,
    .update_password = m_update_password,
    .set_role = m_set_role,
    .refresh_add = m_refresh_add,
    .refresh_use = m_refresh_use,
    .refresh_revoke_family = m_refresh_revoke_family,
    .refresh_revoke_user = m_refresh_revoke_user,
    .refresh_family = m_refresh_family,
    .reset_add = m_reset_add,
    .reset_consume = m_reset_consume,
    .outbox_add = m_outbox_add,
    .ping = m_ping,
    .close = m_close,
};

/* One ascending index on field of collection coll. */
static int create_index(mongo_store_t *m, const char *coll, const char *field, int unique) {
  char name[64];
  snprintf(name, sizeof(name), "%s_1", field);
  bson_t *keys = BCON_NEW(field, BCON_INT32(1));
  int rc = ps_mongo_create_index(&m->mongo, coll, keys, name, unique);
  bson_destroy(keys);
  return rc;
}

int user_store_mongo_open(const char *url, user_store_t **out) {
  mongo_store_t *m = ps_calloc(1, sizeof(*m));
  int rc = ps_mongo_open(&m->mongo, url, "polyshop-user", "polyshop");
  if (rc) {
    ps_free(m);
    return rc;
  }
  m->base.ops = &mongo_ops;
  m->users = ps_mongo_collection(&m->mongo, "users");
  m->refresh = ps_mongo_collection(&m->mongo, "refresh_tokens");
  m->reset = ps_mongo_collection(&m->mongo, "reset_tokens");
  m->outbox = ps_mongo_collection(&m->mongo, "user_outbox");
  m->claims = ps_mongo_collection(&m->mongo, "token_claims");
  /* Indexes at start: unique email, and the lookups of session revocation. */
  rc = create_index(m, "users", "email", 1);
  if (!rc) rc = create_index(m, "refresh_tokens", "family", 0);
  if (!rc) rc = create_index(m, "refresh_tokens", "user_id", 0);
  if (rc) {
    m_close(&m->base);
    return rc;
  }
  *out = &m->base;
  return 0;
}
