/* mongo.h - what every MongoDB store adapter shares (library polyshop_mongo): the driver's
 * one-time set-up, a client per thread opened from a mongodb:// URL, bson_error_t mapped to
 * PS_E* codes, ping, find-one, indexes made with the createIndexes command, and reading
 * fields out of documents. Written to the subset FerretDB also speaks. */
#ifndef POLYSHOP_MONGO_H
#define POLYSHOP_MONGO_H
#include <mongoc/mongoc.h>
#include <stdint.h>

#include "polyshop/arena.h"

/* One connection to a database: a mongoc client (not thread-safe: one per thread) and the
 * database the URL names. */
typedef struct {
  mongoc_client_t *client;
  mongoc_database_t *db;
} ps_mongo_t;

/* Opens m from url ("mongodb://[user:pass@]host[:port][,host...]/[db][?options]"), naming
 * the connection appname for the server's logs; the database is the URL's, or default_db
 * when it names none. A server selection timeout of 3 s is set unless the URL sets one.
 * Runs the driver's global set-up once per process (its log lines go to our log; it is torn
 * down at exit). Nothing is sent to the server: the first call connects. Returns 0 or
 * PS_ECONFIG (the URL is logged with its password hidden); on failure m holds nothing. */
int ps_mongo_open(ps_mongo_t *m, const char *url, const char *appname, const char *default_db);

/* Releases what ps_mongo_open made (collections taken from it must be destroyed first).
 * Safe on a zeroed m. */
void ps_mongo_close(ps_mongo_t *m);

/* A handle on collection name of m's database; the caller destroys it
 * (mongoc_collection_destroy) before ps_mongo_close. */
mongoc_collection_t *ps_mongo_collection(ps_mongo_t *m, const char *name);

/* Maps a driver error: duplicate key (11000, 11001) -> PS_EEXISTS; no server, a broken
 * stream -> PS_EUNAVAIL (not logged); anything else is logged and -> PS_ESTORE. */
int ps_mongo_err(const bson_error_t *err);

/* Asks the server for a ping. Returns 0 or a PS_E* code (see ps_mongo_err). */
int ps_mongo_ping(ps_mongo_t *m);

/* Creates one index of collection coll on m's database with the createIndexes command (which
 * every libmongoc and FerretDB have); keys is the key document, e.g. {email: 1}. An index
 * that exists already is not an error. One index per command: FerretDB 1.24 drops the
 * connection when a command lists several indexes that all exist. Returns 0 or a PS_E* code
 * (the failure is logged with the index's name). */
int ps_mongo_create_index(ps_mongo_t *m, const char *coll, const bson_t *keys, const char *name,
                          int unique);

/* Finds one document of c matching filter; *out is the caller's (bson_destroy). Returns 0,
 * PS_ENOTFOUND when none matches, or a PS_E* code. */
int ps_mongo_find_one(mongoc_collection_t *c, const bson_t *filter, bson_t **out);

/* Finds the document whose _id is the string id (see ps_mongo_find_one). */
int ps_mongo_find_id(mongoc_collection_t *c, const char *id, bson_t **out);

/* Inserts doc into c. Returns 0, PS_EEXISTS on a duplicate key, or a PS_E* code. */
int ps_mongo_insert(mongoc_collection_t *c, const bson_t *doc);

/* The string field key of doc: a copy in the arena a, or (a NULL) a pointer into doc; NULL
 * when doc has no string under key. */
const char *ps_mongo_str(ps_arena_t *a, const bson_t *doc, const char *key);

/* The numeric field key of doc as an integer; 0 when absent or not a number. */
int64_t ps_mongo_int(const bson_t *doc, const char *key);

/* Appends JSON object text (which our own validation produced) as a sub-document under key;
 * text that does not parse appends an empty document. NULL appends an empty document. */
void ps_mongo_append_json(bson_t *b, const char *key, const char *json);

#endif
