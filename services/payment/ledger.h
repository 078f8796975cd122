/* ledger.h - the money rules of the payment service, written once over store.h so every
 * engine enforces them the same way: idempotent claims of a charge or refund, refund limits,
 * webhook updates, and the hash-chained audit log with its verifier.
 *
 * Every function that writes runs its reads and writes inside one write transaction of the
 * store (begin(write=1) ... commit), rolled back on any failure, and returns 0 or a PS_E*
 * code. Strings come from the arena a.
 */
#ifndef POLYSHOP_PAYMENT_LEDGER_H
#define POLYSHOP_PAYMENT_LEDGER_H
#include <jansson.h>
#include <stdint.h>

#include "polyshop/arena.h"
#include "store.h"

#define LEDGER_ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* --- audit log ------------------------------------------------------------------------- */

/* The canonical text of an entry, the bytes hashed after prev_hash: the compact JSON array
 * [seq, at, kind, payment_id, ref, amount, currency], e.g.
 * [1,1764000000,"charge","6f1c...","pi_123",1999,"EUR"]. In the arena. */
char *ledger_audit_canonical(ps_arena_t *a, const audit_t *e);

/* hash = hex(SHA-256(prev_hash_hex || canonical(e))) into out (65 bytes with the NUL). */
void ledger_audit_hash(const char *prev_hash, const audit_t *e, char out[65]);

/* Appends one entry (seq = last + 1, chained to the last hash). Must run inside the caller's
 * write transaction, which serialises appenders. */
int ledger_audit_append(payment_store_t *s, ps_arena_t *a, int64_t at, const char *kind,
                        const char *payment_id, const char *ref, int64_t amount,
                        const char *currency);

typedef struct {
  int ok;                /* 1 when every entry checks out */
  int64_t entries;       /* entries read */
  int64_t first_bad_seq; /* the first entry that does not check out (0 when ok) */
  const char *reason;    /* static text: "hash mismatch", "broken link", "sequence gap" */
} audit_verify_t;

/* Walks the whole chain: seq must run 1, 2, 3..., each prev_hash must equal the hash before
 * it (zeros first) and each hash must be the recomputed one. Returns 0 with the verdict in
 * out, or a store error. (A truncated tail is only visible against an externally kept
 * (entries, last hash) pair, which the verify answer gives for that purpose.) */
int ledger_audit_verify(payment_store_t *s, ps_arena_t *a, audit_verify_t *out,
                        char last_hash[65]);

/* --- idempotency ----------------------------------------------------------------------- */

/* The SHA-256 hex of what a request asks for: what ("charge", "refund:<payment id>"), a
 * newline, and body dumped compactly with sorted keys, so key order and white space do not
 * matter but any changed value does. In the arena. */
char *ledger_request_hash(ps_arena_t *a, const char *what, const json_t *body);

typedef enum {
  CLAIM_NEW,      /* a fresh key: the resource was created pending; go ahead */
  CLAIM_RETRY,    /* the key's earlier attempt never finished (released or stale): go ahead
                     with the same resource and the same provider idempotency key */
  CLAIM_DONE,     /* answered before: send idem.response_* again */
  CLAIM_BUSY,     /* another request holds the key right now */
  CLAIM_MISMATCH, /* the key was used with another request */
} claim_t;

/* Takes the key for a charge: inside one write transaction, either inserts the idempotency
 * record and the pending payment newp together (CLAIM_NEW), or reports what the key already
 * holds. A pending claim older than stale_after seconds is taken over (CLAIM_RETRY). On
 * CLAIM_NEW / CLAIM_RETRY *pay is the payment to charge; idem is filled in every case but
 * CLAIM_NEW's (where it is the new record). */
int ledger_charge_claim(payment_store_t *s, ps_arena_t *a, const char *scope, const char *key,
                        const char *request_hash, const payment_t *newp, int64_t now,
                        int64_t stale_after, claim_t *outcome, idem_t *idem, payment_t *pay);

/* Records the outcome of a charge: writes pay (status, provider_ref, captured,
 * failure_code), appends a "charge" audit entry when money was captured, and stores the
 * answer under the key, all in one transaction. */
int ledger_charge_finish(payment_store_t *s, ps_arena_t *a, const payment_t *pay,
                         const idem_t *idem, int status, const char *ctype, const char *body,
                         int64_t now);

/* Gives a pending key back without an answer (the provider's outcome is unknown), so the
 * next request with the same key retries at once, with the same payment. */
int ledger_idem_release(payment_store_t *s, const idem_t *idem);

/* --- refunds --------------------------------------------------------------------------- */

/* Reserves a refund of amount (0: everything left) of payment_id: checks the payment can be
 * refunded (PS_ENOTFOUND; PS_ECONFLICT when it is not succeeded / partially refunded, or
 * amount is more than captured - refunded, with *why set), inserts the pending refund
 * (id refund_id) and adds it to the payment's refunded total, in one transaction. With key
 * (may be NULL) the same claim rules as charges apply under scope "refund". */
int ledger_refund_reserve(payment_store_t *s, ps_arena_t *a, const char *payment_id,
                          int64_t amount, const char *refund_id, const char *reason,
                          const char *key, const char *request_hash, int64_t now,
                          int64_t stale_after, claim_t *outcome, idem_t *idem, payment_t *pay,
                          refund_t *refund, const char **why);

/* Settles a reserved refund: on ok marks it succeeded (provider_ref), sets the payment
 * refunded / partially_refunded and appends a "refund" audit entry; otherwise marks it
 * failed and gives the amount back to the payment. Stores the answer under idem when
 * idem->key is set. pay and refund are updated in place. */
int ledger_refund_finish(payment_store_t *s, ps_arena_t *a, payment_t *pay, refund_t *refund,
                         int ok, const char *provider_ref, const idem_t *idem, int status,
                         const char *ctype, const char *body, int64_t now);

/* --- webhooks -------------------------------------------------------------------------- */

typedef enum {
  WEBHOOK_APPLIED,   /* the payment changed */
  WEBHOOK_UNCHANGED, /* known payment, nothing to change (already in that state) */
  WEBHOOK_IGNORED,   /* unknown payment or event type: recorded, nothing else */
  WEBHOOK_DUPLICATE, /* this event id was processed before */
} webhook_result_t;

typedef enum {
  WEBHOOK_PI_SUCCEEDED,  /* payment_intent.succeeded, amount = amount_received */
  WEBHOOK_PI_FAILED,     /* payment_intent.payment_failed, code = the failure code */
  WEBHOOK_CHARGE_REFUNDED, /* charge.refunded, amount = amount_refunded (total so far) */
  WEBHOOK_OTHER,
} webhook_kind_t;

/* Applies one verified provider event in one transaction: records event_id (duplicates are
 * reported and change nothing), finds the payment by provider_ref, or else by our own
 * payment_id (sent to the provider as metadata; may be NULL) when that payment has no
 * provider reference yet (its charge ended with an unknown outcome), and moves it, appending
 * audit entries for money that moved. */
int ledger_webhook_apply(payment_store_t *s, ps_arena_t *a, const char *event_id,
                         const char *type, webhook_kind_t kind, const char *provider_ref,
                         const char *payment_id, int64_t amount, const char *code, int64_t now,
                         webhook_result_t *result, payment_t *pay);

#endif
