/* store.h - what the payment service needs from its store, whatever the engine: payments,
 * refunds, idempotency records, processed webhook events and the hash-chained audit log.
 *
 * The interface is deliberately small and row-shaped; the money rules (idempotent claims,
 * refund limits, the audit chain) live once in ledger.c on top of it, inside the store's
 * transactions, so every engine enforces them the same way.
 *
 * One payment_store_t is opened per event-loop thread (SQLite: one connection each;
 * PostgreSQL: one connection each), so calls need no locking of their own. Strings filled
 * into out-structures come from the arena passed in and live as long as it. Every call
 * returns 0 or a PS_E* code: PS_ENOTFOUND, PS_EEXISTS (a unique key taken), PS_ECONFLICT
 * (a serialization failure: the caller retries the whole transaction), PS_ESTORE /
 * PS_EUNAVAIL for engine failures.
 */
#ifndef POLYSHOP_PAYMENT_STORE_H
#define POLYSHOP_PAYMENT_STORE_H
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"

/* Payment statuses, as stored and as answered. */
#define PAYMENT_PENDING "pending"
#define PAYMENT_SUCCEEDED "succeeded"
#define PAYMENT_FAILED "failed"
#define PAYMENT_REFUNDED "refunded"
#define PAYMENT_PARTIALLY_REFUNDED "partially_refunded"

typedef struct {
  const char *id;           /* 36-character UUID */
  const char *order_id;
  const char *user_id;
  int64_t amount;           /* minor units */
  const char *currency;     /* ISO 4217, upper case */
  const char *status;       /* one of PAYMENT_* */
  const char *provider;     /* "test", "stripe" */
  const char *provider_ref; /* the provider's id (pi_...), "" until known */
  int64_t captured;         /* minor units actually taken */
  int64_t refunded;         /* minor units refunded or being refunded (never > captured) */
  const char *failure_code; /* "card_declined", ... or "" */
  const char *card_brand;   /* "visa", ... or "" (never the card number) */
  const char *card_last4;   /* or "" */
  int64_t created_at, updated_at; /* seconds since the epoch */
} payment_t;

#define REFUND_PENDING "pending"
#define REFUND_SUCCEEDED "succeeded"
#define REFUND_FAILED "failed"

typedef struct {
  const char *id;           /* UUID */
  const char *payment_id;
  int64_t amount;
  const char *status;       /* REFUND_* */
  const char *provider_ref; /* re_... or "" */
  const char *reason;       /* free text or "" */
  int64_t created_at, updated_at;
} refund_t;

/* An idempotency record: a client's key within a scope (the user id, or "internal"). */
enum { IDEM_PENDING = 0, IDEM_DONE = 1 };
typedef struct {
  const char *scope;
  const char *key;
  const char *request_hash;  /* SHA-256 hex of the canonical request */
  const char *resource_id;   /* the payment or refund the key created */
  int state;                 /* IDEM_* */
  int64_t claimed_at;        /* when a request last took it up (0: released) */
  int response_status;       /* IDEM_DONE: the stored answer */
  const char *response_type; /* content type of the stored answer */
  const char *response_body;
  int64_t created_at;
} idem_t;

/* One audit log entry. hash = SHA-256(prev_hash || canonical(entry)), see ledger.h. */
typedef struct {
  int64_t seq;              /* 1, 2, 3... without gaps */
  int64_t at;               /* seconds since the epoch */
  const char *kind;         /* "charge", "refund", "refund_reversed" */
  const char *payment_id;
  const char *ref;          /* refund id or provider reference, or "" */
  int64_t amount;
  const char *currency;
  const char *prev_hash;    /* 64 hex characters; zeros for the first entry */
  const char *hash;
} audit_t;

typedef struct payment_store payment_store_t;

typedef int (*audit_each_cb)(void *arg, const audit_t *e);

typedef struct {
  /* Transactions. begin(write=1) takes the write lock at once (SQLite BEGIN IMMEDIATE,
   * PostgreSQL row locks through for_update reads), so a read-check-write inside it is
   * atomic. Calls outside a transaction run on their own. */
  int (*begin)(payment_store_t *s, int write);
  int (*commit)(payment_store_t *s);
  void (*rollback)(payment_store_t *s);

  /* Payments */
  int (*payment_insert)(payment_store_t *s, const payment_t *p);
  /* for_update locks the row until the end of the transaction (engines that need it). */
  int (*payment_get)(payment_store_t *s, ps_arena_t *a, const char *id, int for_update,
                     payment_t *out);
  int (*payment_get_by_ref)(payment_store_t *s, ps_arena_t *a, const char *provider_ref,
                            int for_update, payment_t *out);
  /* Writes status, provider_ref, captured, refunded, failure_code and updated_at of p->id. */
  int (*payment_update)(payment_store_t *s, const payment_t *p);
  /* The user's payments (user_id NULL: everyone's), optionally of one order, newest first,
   * after the cursor (created_at, id) when after_id is not NULL. *out is an arena array. */
  int (*payment_list)(payment_store_t *s, ps_arena_t *a, const char *user_id,
                      const char *order_id, int64_t after_created, const char *after_id,
                      int limit, payment_t **out, int *n);

  /* Refunds */
  int (*refund_insert)(payment_store_t *s, const refund_t *r);
  int (*refund_get)(payment_store_t *s, ps_arena_t *a, const char *id, refund_t *out);
  /* Writes status, provider_ref and updated_at of r->id. */
  int (*refund_update)(payment_store_t *s, const refund_t *r);
  int (*refund_list)(payment_store_t *s, ps_arena_t *a, const char *payment_id, refund_t **out,
                     int *n);

  /* Idempotency records. insert answers PS_EEXISTS when (scope, key) is taken. */
  int (*idem_get)(payment_store_t *s, ps_arena_t *a, const char *scope, const char *key,
                  int for_update, idem_t *out);
  int (*idem_insert)(payment_store_t *s, const idem_t *r);
  /* Writes state, claimed_at, resource_id and the stored answer of (r->scope, r->key). */
  int (*idem_update)(payment_store_t *s, const idem_t *r);

  /* Deletes at most limit answered idempotency records created before idem_before, and at
   * most limit webhook event ids received before events_before; *n is how many went. */
  int (*purge)(payment_store_t *s, int64_t idem_before, int64_t events_before, int limit,
               int *n);

  /* Webhook events already processed. insert answers PS_EEXISTS for a duplicate id. */
  int (*event_insert)(payment_store_t *s, const char *event_id, const char *type, int64_t now);

  /* Audit log. last: the newest entry's seq and hash (seq 0 and NULL hash when empty);
   * inside a write transaction it also serialises appenders. insert never updates. */
  int (*audit_last)(payment_store_t *s, ps_arena_t *a, int64_t *seq, const char **hash);
  int (*audit_insert)(payment_store_t *s, const audit_t *e);
  /* Calls cb for every entry in seq order until it returns non-zero (which is returned). */
  int (*audit_each)(payment_store_t *s, ps_arena_t *a, audit_each_cb cb, void *arg);

  int (*ping)(payment_store_t *s);
  void (*close)(payment_store_t *s);
} payment_store_ops_t;

struct payment_store {
  const payment_store_ops_t *ops;
};

/* Opens a store for url ("sqlite:///path/payment.db", "sqlite://relative/path.db" or
 * "postgresql://..." / "postgres://..."). Creates the schema when missing. The caller owns
 * *out and closes it with (*out)->ops->close. Returns 0 or PS_ECONFIG (unknown scheme),
 * PS_ESTORE / PS_EUNAVAIL. */
int payment_store_open(const char *url, payment_store_t **out);
/* Like payment_store_open, for event-loop threads once the service has started: a database
 * that cannot be reached right now is not an error (the store reconnects at its first call,
 * answering PS_EUNAVAIL until then), and the schema is assumed to exist. */
int payment_store_open_lazy(const char *url, payment_store_t **out);
int payment_store_sqlite_open(const char *path, payment_store_t **out);
int payment_store_pg_open(const char *url, payment_store_t **out);
int payment_store_pg_open_lazy(const char *url, payment_store_t **out);
/* The PostgreSQL store in another schema than "payment" (lower-case letters, digits, '_'):
 * tests use a private one. */
int payment_store_pg_open_schema(const char *url, const char *schema, payment_store_t **out);

#endif
