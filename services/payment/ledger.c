/* ledger.c - the money rules over the store interface (see ledger.h): idempotent claims,
 * refund limits, webhook updates and the hash-chained audit log. */
#include "ledger.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/error.h"

/* Engines with optimistic concurrency (PostgreSQL's serialization failures, two inserts of
 * the same key racing) report PS_ECONFLICT / PS_EEXISTS; the whole transaction is retried. */
enum { TX_ATTEMPTS = 5 };

static void hex_of(const unsigned char *h, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[h[i] >> 4];
    out[2 * i + 1] = digits[h[i] & 15];
  }
  out[2 * n] = '\0';
}

/* --- audit log --------------------------------------------------------------------------- */

static char *canonical_malloc(const audit_t *e) {
  json_t *arr = json_pack("[I, I, s, s, s, I, s]", (json_int_t)e->seq, (json_int_t)e->at, e->kind,
                          e->payment_id, e->ref ? e->ref : "", (json_int_t)e->amount, e->currency);
  char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
  json_decref(arr);
  return text;
}

char *ledger_audit_canonical(ps_arena_t *a, const audit_t *e) {
  char *text = canonical_malloc(e);
  char *copy = ps_arena_strdup(a, text ? text : "");
  free(text);
  return copy;
}

void ledger_audit_hash(const char *prev_hash, const audit_t *e, char out[65]) {
  char *text = canonical_malloc(e);
  crypto_hash_sha256_state st;
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, (const unsigned char *)prev_hash, strlen(prev_hash));
  if (text) crypto_hash_sha256_update(&st, (const unsigned char *)text, strlen(text));
  crypto_hash_sha256_final(&st, h);
  free(text);
  hex_of(h, sizeof(h), out);
}

int ledger_audit_append(payment_store_t *s, ps_arena_t *a, int64_t at, const char *kind,
                        const char *payment_id, const char *ref, int64_t amount,
                        const char *currency) {
  int64_t last = 0;
  const char *prev = NULL;
  int rc = s->ops->audit_last(s, a, &last, &prev);
  if (rc) return rc;
  audit_t e = {.seq = last + 1, .at = at, .kind = kind, .payment_id = payment_id,
               .ref = ref ? ref : "", .amount = amount, .currency = currency,
               .prev_hash = prev ? prev : LEDGER_ZERO_HASH};
  char hash[65];
  ledger_audit_hash(e.prev_hash, &e, hash);
  e.hash = hash;
  return s->ops->audit_insert(s, &e);
}

typedef struct {
  audit_verify_t *v;
  char prev[65];
} verify_state_t;

static int verify_cb(void *arg, const audit_t *e) {
  verify_state_t *st = arg;
  audit_verify_t *v = st->v;
  v->entries++;
  const char *reason = NULL;
  char hash[65];
  if (e->seq != v->entries)
    reason = "sequence gap";
  else if (strcmp(e->prev_hash, st->prev) != 0)
    reason = "broken link";
  else {
    ledger_audit_hash(e->prev_hash, e, hash);
    if (strcmp(hash, e->hash) != 0) reason = "hash mismatch";
  }
  if (reason) {
    v->ok = 0;
    v->first_bad_seq = e->seq;
    v->reason = reason;
    return 1; /* stop at the first bad entry */
  }
  snprintf(st->prev, sizeof(st->prev), "%s", e->hash);
  return 0;
}

int ledger_audit_verify(payment_store_t *s, ps_arena_t *a, audit_verify_t *out,
                        char last_hash[65]) {
  memset(out, 0, sizeof(*out));
  out->ok = 1;
  verify_state_t st = {.v = out};
  snprintf(st.prev, sizeof(st.prev), "%s", LEDGER_ZERO_HASH);
  int rc = s->ops->audit_each(s, a, verify_cb, &st);
  if (rc < 0) return rc;
  if (last_hash) snprintf(last_hash, 65, "%s", st.prev);
  return 0;
}

/* --- idempotency ------------------------------------------------------------------------- */

char *ledger_request_hash(ps_arena_t *a, const char *what, const json_t *body) {
  char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
  crypto_hash_sha256_state st;
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, (const unsigned char *)what, strlen(what));
  crypto_hash_sha256_update(&st, (const unsigned char *)"\n", 1);
  if (text) crypto_hash_sha256_update(&st, (const unsigned char *)text, strlen(text));
  crypto_hash_sha256_final(&st, h);
  free(text);
  char *hex = ps_arena_alloc(a, 65);
  hex_of(h, sizeof(h), hex);
  return hex;
}

/* Inside a write transaction: classifies an existing record for the request, taking it
 * over when its claim is stale or released. */
static int classify(payment_store_t *s, idem_t *idem, const char *request_hash, int64_t now,
                    int64_t stale_after, claim_t *outcome) {
  if (strcmp(idem->request_hash, request_hash) != 0) {
    *outcome = CLAIM_MISMATCH;
    return 0;
  }
  if (idem->state == IDEM_DONE) {
    *outcome = CLAIM_DONE;
    return 0;
  }
  if (idem->claimed_at != 0 && idem->claimed_at > now - stale_after) {
    *outcome = CLAIM_BUSY;
    return 0;
  }
  idem->claimed_at = now;
  *outcome = CLAIM_RETRY;
  return s->ops->idem_update(s, idem);
}

int ledger_charge_claim(payment_store_t *s, ps_arena_t *a, const char *scope, const char *key,
                        const char *request_hash, const payment_t *newp, int64_t now,
                        int64_t stale_after, claim_t *outcome, idem_t *idem, payment_t *pay) {
  int rc = PS_ECONFLICT;
  for (int attempt = 0; attempt < TX_ATTEMPTS && (rc == PS_ECONFLICT || rc == PS_EEXISTS);
       attempt++) {
    if ((rc = s->ops->begin(s, 1))) return rc;
    rc = s->ops->idem_get(s, a, scope, key, 1, idem);
    if (rc == PS_ENOTFOUND) {
      *idem = (idem_t){.scope = scope, .key = key, .request_hash = request_hash,
                       .resource_id = newp->id, .state = IDEM_PENDING, .claimed_at = now,
                       .created_at = now};
      rc = s->ops->idem_insert(s, idem);
      if (rc == 0) rc = s->ops->payment_insert(s, newp);
      if (rc == 0) {
        *pay = *newp;
        *outcome = CLAIM_NEW;
      }
    } else if (rc == 0) {
      rc = classify(s, idem, request_hash, now, stale_after, outcome);
      if (rc == 0 && *outcome == CLAIM_RETRY) {
        rc = s->ops->payment_get(s, a, idem->resource_id, 1, pay);
        if (rc == PS_ENOTFOUND) rc = PS_EINTERNAL; /* inserted together: cannot be missing */
      }
    }
    if (rc == 0) rc = s->ops->commit(s);
    else s->ops->rollback(s);
  }
  return rc;
}

int ledger_charge_finish(payment_store_t *s, ps_arena_t *a, const payment_t *pay,
                         const idem_t *idem, int status, const char *ctype, const char *body,
                         int64_t now) {
  int rc = PS_ECONFLICT;
  for (int attempt = 0; attempt < TX_ATTEMPTS && rc == PS_ECONFLICT; attempt++) {
    if ((rc = s->ops->begin(s, 1))) return rc;
    payment_t cur;
    rc = s->ops->payment_get(s, a, pay->id, 1, &cur);
    /* A webhook may have settled the payment while the provider call was in flight; the
     * first settlement wins and the audit log records it once. */
    int already = rc == 0 && strcmp(cur.status, PAYMENT_PENDING) != 0 &&
                  strcmp(cur.status, PAYMENT_FAILED) != 0;
    payment_t p = *pay;
    p.updated_at = now;
    if (rc == 0 && !already) rc = s->ops->payment_update(s, &p);
    if (rc == 0 && idem) {
      idem_t done = *idem;
      done.state = IDEM_DONE;
      done.response_status = status;
      done.response_type = ctype;
      done.response_body = body;
      rc = s->ops->idem_update(s, &done);
    }
    /* Last before the commit: the chain's lock is held from here to the end. */
    if (rc == 0 && !already && p.captured > 0)
      rc = ledger_audit_append(s, a, now, "charge", p.id, p.provider_ref, p.captured, p.currency);
    if (rc == 0) rc = s->ops->commit(s);
    else s->ops->rollback(s);
  }
  return rc;
}

int ledger_idem_release(payment_store_t *s, const idem_t *idem) {
  idem_t r = *idem;
  r.claimed_at = 0;
  return s->ops->idem_update(s, &r);
}

/* --- refunds ----------------------------------------------------------------------------- */

static const char *payment_status_after_refund(const payment_t *p) {
  if (p->refunded <= 0) return PAYMENT_SUCCEEDED;
  return p->refunded >= p->captured ? PAYMENT_REFUNDED : PAYMENT_PARTIALLY_REFUNDED;
}

int ledger_refund_reserve(payment_store_t *s, ps_arena_t *a, const char *payment_id,
                          int64_t amount, const char *refund_id, const char *reason,
                          const char *key, const char *request_hash, int64_t now,
                          int64_t stale_after, claim_t *outcome, idem_t *idem, payment_t *pay,
                          refund_t *refund, const char **why) {
  int rc = PS_ECONFLICT;
  *why = NULL;
  for (int attempt = 0; attempt < TX_ATTEMPTS && (rc == PS_ECONFLICT || rc == PS_EEXISTS);
       attempt++) {
    if ((rc = s->ops->begin(s, 1))) return rc;
    *outcome = CLAIM_NEW;
    if (key) {
      rc = s->ops->idem_get(s, a, "refund", key, 1, idem);
      if (rc == 0) {
        rc = classify(s, idem, request_hash, now, stale_after, outcome);
        if (rc == 0 && *outcome == CLAIM_RETRY) {
          rc = s->ops->refund_get(s, a, idem->resource_id, refund);
          if (rc == 0) rc = s->ops->payment_get(s, a, refund->payment_id, 1, pay);
        }
        goto done; /* nothing new is reserved for a key seen before */
      }
      if (rc != PS_ENOTFOUND) goto done;
      *idem = (idem_t){.scope = "refund", .key = key, .request_hash = request_hash,
                       .resource_id = refund_id, .state = IDEM_PENDING, .claimed_at = now,
                       .created_at = now};
      if ((rc = s->ops->idem_insert(s, idem))) goto done;
    }
    if ((rc = s->ops->payment_get(s, a, payment_id, 1, pay))) goto done;
    if (strcmp(pay->status, PAYMENT_SUCCEEDED) != 0 &&
        strcmp(pay->status, PAYMENT_PARTIALLY_REFUNDED) != 0) {
      *why = ps_arena_sprintf(a, "a %s payment cannot be refunded", pay->status);
      rc = PS_ECONFLICT;
      goto done;
    }
    int64_t left = pay->captured - pay->refunded;
    if (amount == 0) amount = left;
    if (left <= 0 || amount > left) {
      *why = ps_arena_sprintf(a, "%lld can be refunded at most (captured %lld, refunded %lld)",
                              (long long)left, (long long)pay->captured,
                              (long long)pay->refunded);
      rc = PS_ECONFLICT;
      goto done;
    }
    *refund = (refund_t){.id = refund_id, .payment_id = pay->id, .amount = amount,
                         .status = REFUND_PENDING, .provider_ref = "",
                         .reason = reason ? reason : "", .created_at = now, .updated_at = now};
    if ((rc = s->ops->refund_insert(s, refund))) goto done;
    pay->refunded += amount;
    pay->updated_at = now;
    rc = s->ops->payment_update(s, pay);
  done:
    if (rc == 0) {
      rc = s->ops->commit(s);
    } else {
      s->ops->rollback(s);
      /* A refund refused for a business reason is final, not a race to retry. */
      if (*why) return rc;
    }
  }
  return rc;
}

int ledger_refund_finish(payment_store_t *s, ps_arena_t *a, payment_t *pay, refund_t *refund,
                         int ok, const char *provider_ref, const idem_t *idem, int status,
                         const char *ctype, const char *body, int64_t now) {
  int rc = PS_ECONFLICT;
  for (int attempt = 0; attempt < TX_ATTEMPTS && rc == PS_ECONFLICT; attempt++) {
    if ((rc = s->ops->begin(s, 1))) return rc;
    payment_t p;
    if ((rc = s->ops->payment_get(s, a, pay->id, 1, &p))) goto done;
    refund_t r = *refund;
    r.updated_at = now;
    if (ok) {
      r.status = REFUND_SUCCEEDED;
      r.provider_ref = provider_ref ? provider_ref : "";
      p.status = payment_status_after_refund(&p);
    } else {
      r.status = REFUND_FAILED;
      p.refunded -= r.amount;
      if (p.refunded < 0) p.refunded = 0;
      p.status = payment_status_after_refund(&p);
    }
    p.updated_at = now;
    if ((rc = s->ops->refund_update(s, &r))) goto done;
    if ((rc = s->ops->payment_update(s, &p))) goto done;
    if (idem && idem->key) {
      idem_t d = *idem;
      d.state = IDEM_DONE;
      d.response_status = status;
      d.response_type = ctype;
      d.response_body = body;
      if ((rc = s->ops->idem_update(s, &d))) goto done;
    }
    /* Last before the commit: the chain's lock is held from here to the end. */
    if (ok && (rc = ledger_audit_append(s, a, now, "refund", p.id, r.id, r.amount, p.currency)))
      goto done;
    *pay = p;
    *refund = r;
  done:
    if (rc == 0) rc = s->ops->commit(s);
    else s->ops->rollback(s);
  }
  return rc;
}

/* --- webhooks ---------------------------------------------------------------------------- */

/* charge.refunded: amount_refunded is the running total at the provider. Refunds we made
 * are already in pay->refunded (reserved when asked for); those whose provider call ended
 * with an unknown outcome are still pending, and the total settles them, oldest first. What
 * is left above everything we know of was refunded elsewhere (the provider's dashboard). */
static int apply_refunded_total(payment_store_t *s, ps_arena_t *a, payment_t *pay,
                                int64_t amount, const char *event_id, int64_t now,
                                webhook_result_t *result) {
  int64_t total = amount > pay->captured ? pay->captured : amount;
  refund_t *list;
  int n, rc = s->ops->refund_list(s, a, pay->id, &list, &n);
  if (rc) return rc;
  int64_t pending = 0;
  for (int i = 0; i < n; i++)
    if (strcmp(list[i].status, REFUND_PENDING) == 0) pending += list[i].amount;
  int64_t covered = total - (pay->refunded - pending); /* beyond the settled refunds */
  for (int i = 0; i < n && covered > 0; i++) {
    refund_t *r = &list[i];
    if (strcmp(r->status, REFUND_PENDING) != 0 || r->amount > covered) continue;
    r->status = REFUND_SUCCEEDED;
    r->updated_at = now;
    if ((rc = s->ops->refund_update(s, r))) return rc;
    if ((rc = ledger_audit_append(s, a, now, "refund", pay->id, r->id, r->amount, pay->currency)))
      return rc;
    covered -= r->amount;
    *result = WEBHOOK_APPLIED;
  }
  if (total > pay->refunded) {
    int64_t delta = total - pay->refunded;
    pay->refunded = total;
    if ((rc = ledger_audit_append(s, a, now, "refund", pay->id, event_id, delta, pay->currency)))
      return rc;
    *result = WEBHOOK_APPLIED;
  }
  if (*result == WEBHOOK_APPLIED) {
    pay->status = payment_status_after_refund(pay);
    pay->updated_at = now;
    rc = s->ops->payment_update(s, pay);
  }
  return rc;
}

int ledger_webhook_apply(payment_store_t *s, ps_arena_t *a, const char *event_id,
                         const char *type, webhook_kind_t kind, const char *provider_ref,
                         const char *payment_id, int64_t amount, const char *code, int64_t now,
                         webhook_result_t *result, payment_t *pay) {
  int rc = PS_ECONFLICT;
  for (int attempt = 0; attempt < TX_ATTEMPTS && rc == PS_ECONFLICT; attempt++) {
    if ((rc = s->ops->begin(s, 1))) return rc;
    rc = s->ops->event_insert(s, event_id, type, now);
    if (rc == PS_EEXISTS) {
      s->ops->rollback(s);
      *result = WEBHOOK_DUPLICATE;
      return 0;
    }
    if (rc) goto done;
    *result = WEBHOOK_IGNORED;
    if (kind == WEBHOOK_OTHER || !provider_ref || !*provider_ref) goto done;
    rc = s->ops->payment_get_by_ref(s, a, provider_ref, 1, pay);
    if (rc == PS_ENOTFOUND && payment_id && *payment_id) {
      rc = s->ops->payment_get(s, a, payment_id, 1, pay);
      if (rc == 0 && *pay->provider_ref) rc = PS_ENOTFOUND; /* it belongs to another intent */
      if (rc == 0) pay->provider_ref = provider_ref;
    }
    if (rc == PS_ENOTFOUND) {
      rc = 0;
      goto done;
    }
    if (rc) goto done;
    *result = WEBHOOK_UNCHANGED;
    int pending_or_failed =
        strcmp(pay->status, PAYMENT_PENDING) == 0 || strcmp(pay->status, PAYMENT_FAILED) == 0;
    if (kind == WEBHOOK_PI_SUCCEEDED && pending_or_failed) {
      pay->status = PAYMENT_SUCCEEDED;
      pay->captured = amount > 0 && amount <= pay->amount ? amount : pay->amount;
      pay->failure_code = "";
      pay->updated_at = now;
      if ((rc = s->ops->payment_update(s, pay))) goto done;
      rc = ledger_audit_append(s, a, now, "charge", pay->id, provider_ref, pay->captured,
                               pay->currency);
      *result = WEBHOOK_APPLIED;
    } else if (kind == WEBHOOK_PI_FAILED && strcmp(pay->status, PAYMENT_PENDING) == 0) {
      pay->status = PAYMENT_FAILED;
      pay->failure_code = code && *code ? code : "payment_failed";
      pay->updated_at = now;
      rc = s->ops->payment_update(s, pay);
      *result = WEBHOOK_APPLIED;
    } else if (kind == WEBHOOK_CHARGE_REFUNDED && !pending_or_failed) {
      rc = apply_refunded_total(s, a, pay, amount, event_id, now, result);
    }
  done:
    if (rc == 0) rc = s->ops->commit(s);
    else s->ops->rollback(s);
  }
  return rc;
}
