/* test_ledger.c - the behaviour every payment store adapter must have, exercised through
 * ledger.c: idempotent claims, refund limits, webhook updates and the audit chain. Runs
 * against a fresh embedded SQLite file, or, built with PAYMENT_TEST_WITH_PG, against the
 * PostgreSQL of POLYSHOP_TEST_POSTGRES_URL in a private schema dropped at the end (the tamper
 * test then edits rows through PostgreSQL's own SQL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "ledger.h"
#include "polyshop/error.h"
#include "store.h"

static char url[600];
static char sqlite_path[512]; /* set when the store is SQLite */
static int counter;

/* Edits the audit log behind the application's back, like someone with database access.
 * Returns 0 when done. Implemented for SQLite here and for PostgreSQL in the PG test
 * helper below (when built with it). */
static int tamper_sql(const char *sql);

static char pg_schema[64] __attribute__((unused)); /* set when the store is PostgreSQL */

static int setup(void **state) {
  payment_store_t *s;
#ifdef PAYMENT_TEST_WITH_PG
  const char *env = getenv("POLYSHOP_TEST_POSTGRES_URL");
  if (!env) fail_msg("POLYSHOP_TEST_POSTGRES_URL is not set (run under scripts/engines exec)");
  snprintf(url, sizeof(url), "%s", env);
  snprintf(pg_schema, sizeof(pg_schema), "payment_test_%d", getpid());
  assert_int_equal(payment_store_pg_open_schema(url, pg_schema, &s), 0);
  *state = s;
  return 0;
#endif
  {
    char dir[] = "/tmp/polyshop-payment-store-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(sqlite_path, sizeof(sqlite_path), "%s/payment.db", dir);
    snprintf(url, sizeof(url), "sqlite://%s", sqlite_path);
  }
  assert_int_equal(payment_store_open(url, &s), 0);
  *state = s;
  return 0;
}

static int teardown(void **state) {
  payment_store_t *s = *state;
  s->ops->close(s);
  if (sqlite_path[0]) {
    char f[600];
    const char *const suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
      snprintf(f, sizeof(f), "%s%s", sqlite_path, suffixes[i]);
      unlink(f);
    }
    char *slash = strrchr(sqlite_path, '/');
    *slash = '\0';
    rmdir(sqlite_path);
    sqlite_path[0] = '\0';
  }
  return 0;
}

static char *uuid(ps_arena_t *a) {
  unsigned char b[16];
  randombytes_buf(b, sizeof(b));
  char hex[33];
  sodium_bin2hex(hex, sizeof(hex), b, sizeof(b));
  return ps_arena_sprintf(a, "%.8s-%.4s-4%.3s-8%.3s-%.12s", hex, hex + 8, hex + 13, hex + 17,
                          hex + 20);
}

static payment_t new_payment(ps_arena_t *a, int64_t amount, int64_t now) {
  counter++;
  return (payment_t){.id = uuid(a), .order_id = ps_arena_sprintf(a, "order-%d-%d", getpid(), counter),
                     .user_id = ps_arena_sprintf(a, "user-%d", getpid()), .amount = amount,
                     .currency = "EUR", .status = PAYMENT_PENDING, .provider = "test",
                     .provider_ref = "", .failure_code = "", .card_brand = "visa",
                     .card_last4 = "4242", .created_at = now, .updated_at = now};
}

/* Claims, then settles as succeeded with the given provider ref; returns the payment. */
static payment_t paid(payment_store_t *s, ps_arena_t *a, int64_t amount, const char *ref) {
  payment_t p = new_payment(a, amount, 1000), pay;
  idem_t idem;
  claim_t out;
  char *key = uuid(a);
  assert_int_equal(ledger_charge_claim(s, a, "u1", key, "h", &p, 1000, 60, &out, &idem, &pay), 0);
  assert_int_equal(out, CLAIM_NEW);
  pay.status = PAYMENT_SUCCEEDED;
  pay.captured = amount;
  pay.provider_ref = ref;
  assert_int_equal(ledger_charge_finish(s, a, &pay, &idem, 201, "application/json", "{}", 1001), 0);
  return pay;
}

static void test_claim_lifecycle(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  payment_t p = new_payment(&a, 1999, 1000), pay, got;
  idem_t idem, idem2;
  claim_t out;
  const char *key = uuid(&a);

  assert_int_equal(ledger_charge_claim(s, &a, "u1", key, "hash-a", &p, 1000, 60, &out, &idem, &pay), 0);
  assert_int_equal(out, CLAIM_NEW);
  assert_int_equal(s->ops->payment_get(s, &a, p.id, 0, &got), 0);
  assert_string_equal(got.status, PAYMENT_PENDING);
  assert_string_equal(got.card_last4, "4242");

  /* The same key while the first request is in flight: busy, and nothing new is created. */
  payment_t other = new_payment(&a, 1999, 1001);
  assert_int_equal(ledger_charge_claim(s, &a, "u1", key, "hash-a", &other, 1001, 60, &out, &idem2, &pay), 0);
  assert_int_equal(out, CLAIM_BUSY);
  assert_int_equal(s->ops->payment_get(s, &a, other.id, 0, &got), PS_ENOTFOUND);
  /* Another request under the key: refused whatever the state. */
  assert_int_equal(ledger_charge_claim(s, &a, "u1", key, "hash-b", &other, 1001, 60, &out, &idem2, &pay), 0);
  assert_int_equal(out, CLAIM_MISMATCH);
  /* The same key in another scope (another user) is another key. */
  assert_int_equal(ledger_charge_claim(s, &a, "u2", key, "hash-b", &other, 1001, 60, &out, &idem2, &pay), 0);
  assert_int_equal(out, CLAIM_NEW);

  /* Released (unknown provider outcome): the next request retries the same payment. */
  assert_int_equal(ledger_idem_release(s, &idem), 0);
  assert_int_equal(ledger_charge_claim(s, &a, "u1", key, "hash-a", &other, 1002, 60, &out, &idem2, &pay), 0);
  assert_int_equal(out, CLAIM_RETRY);
  assert_string_equal(pay.id, p.id);

  /* Settled: the stored answer comes back. */
  pay.status = PAYMENT_SUCCEEDED;
  pay.captured = 1999;
  pay.provider_ref = "pi_lifecycle";
  assert_int_equal(ledger_charge_finish(s, &a, &pay, &idem2, 201, "application/json", "{\"x\":1}", 1003), 0);
  assert_int_equal(ledger_charge_claim(s, &a, "u1", key, "hash-a", &other, 1004, 60, &out, &idem2, &pay), 0);
  assert_int_equal(out, CLAIM_DONE);
  assert_int_equal(idem2.response_status, 201);
  assert_string_equal(idem2.response_body, "{\"x\":1}");
  assert_string_equal(idem2.resource_id, p.id);
  assert_int_equal(s->ops->payment_get(s, &a, p.id, 0, &got), 0);
  assert_string_equal(got.status, PAYMENT_SUCCEEDED);
  assert_int_equal(got.captured, 1999);
  assert_int_equal(s->ops->payment_get_by_ref(s, &a, "pi_lifecycle", 0, &got), 0);
  assert_string_equal(got.id, p.id);
  ps_arena_reset(&a);
}

static void test_stale_claim_taken_over(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  payment_t p = new_payment(&a, 500, 1000), pay;
  idem_t idem;
  claim_t out;
  const char *key = uuid(&a);
  assert_int_equal(ledger_charge_claim(s, &a, "u1", key, "h", &p, 1000, 60, &out, &idem, &pay), 0);
  assert_int_equal(ledger_charge_claim(s, &a, "u1", key, "h", &p, 1059, 60, &out, &idem, &pay), 0);
  assert_int_equal(out, CLAIM_BUSY);
  /* The first request died mid-flight (crash): a minute later the key is taken over. */
  assert_int_equal(ledger_charge_claim(s, &a, "u1", key, "h", &p, 1061, 60, &out, &idem, &pay), 0);
  assert_int_equal(out, CLAIM_RETRY);
  assert_string_equal(pay.id, p.id);
  ps_arena_reset(&a);
}

static void test_refund_limits(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  payment_t pay = paid(s, &a, 1000, "pi_refunds"), cur;
  refund_t r;
  idem_t idem;
  claim_t out;
  const char *why;

  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 300, uuid(&a), "damaged", NULL, NULL, 2000, 60,
                                         &out, &idem, &cur, &r, &why), 0);
  assert_int_equal(r.amount, 300);
  assert_int_equal(cur.refunded, 300);
  assert_int_equal(ledger_refund_finish(s, &a, &cur, &r, 1, "re_1", NULL, 201, "", "", 2001), 0);
  assert_string_equal(cur.status, PAYMENT_PARTIALLY_REFUNDED);

  /* More than what is left: refused, nothing changes. */
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 701, uuid(&a), NULL, NULL, NULL, 2002, 60,
                                         &out, &idem, &cur, &r, &why), PS_ECONFLICT);
  assert_non_null(why);
  assert_int_equal(s->ops->payment_get(s, &a, pay.id, 0, &cur), 0);
  assert_int_equal(cur.refunded, 300);

  /* A refund the provider refuses gives its amount back. */
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 200, uuid(&a), NULL, NULL, NULL, 2003, 60,
                                         &out, &idem, &cur, &r, &why), 0);
  assert_int_equal(cur.refunded, 500);
  assert_int_equal(ledger_refund_finish(s, &a, &cur, &r, 0, NULL, NULL, 502, "", "", 2004), 0);
  assert_int_equal(cur.refunded, 300);
  assert_string_equal(r.status, REFUND_FAILED);

  /* amount 0: everything left. */
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 0, uuid(&a), NULL, NULL, NULL, 2005, 60,
                                         &out, &idem, &cur, &r, &why), 0);
  assert_int_equal(r.amount, 700);
  assert_int_equal(ledger_refund_finish(s, &a, &cur, &r, 1, "re_2", NULL, 201, "", "", 2006), 0);
  assert_string_equal(cur.status, PAYMENT_REFUNDED);
  assert_int_equal(cur.refunded, 1000);
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 1, uuid(&a), NULL, NULL, NULL, 2007, 60,
                                         &out, &idem, &cur, &r, &why), PS_ECONFLICT);

  refund_t *list;
  int n;
  assert_int_equal(s->ops->refund_list(s, &a, pay.id, &list, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(ledger_refund_reserve(s, &a, "no-such-payment", 1, uuid(&a), NULL, NULL, NULL, 2008,
                                         60, &out, &idem, &cur, &r, &why), PS_ENOTFOUND);
  ps_arena_reset(&a);
}

static void test_refund_idempotent(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  payment_t pay = paid(s, &a, 1000, "pi_refund_idem"), cur;
  refund_t r, r2;
  idem_t idem, idem2;
  claim_t out;
  const char *why, *key = uuid(&a);
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 400, uuid(&a), NULL, key, "rh", 3000, 60,
                                         &out, &idem, &cur, &r, &why), 0);
  assert_int_equal(out, CLAIM_NEW);
  assert_int_equal(ledger_refund_finish(s, &a, &cur, &r, 1, "re_x", &idem, 201, "application/json",
                                        "{\"r\":1}", 3001), 0);
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 400, uuid(&a), NULL, key, "rh", 3002, 60,
                                         &out, &idem2, &cur, &r2, &why), 0);
  assert_int_equal(out, CLAIM_DONE);
  assert_string_equal(idem2.response_body, "{\"r\":1}");
  assert_int_equal(s->ops->payment_get(s, &a, pay.id, 0, &cur), 0);
  assert_int_equal(cur.refunded, 400); /* not 800 */
  ps_arena_reset(&a);
}

static void test_webhooks(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  payment_t p = new_payment(&a, 2500, 1000), pay;
  idem_t idem;
  claim_t out;
  char *ref = ps_arena_sprintf(&a, "pi_wh_%s", p.id);
  char *ev1 = uuid(&a), *ev2 = uuid(&a), *ev3 = uuid(&a), *ev4 = uuid(&a);
  assert_int_equal(ledger_charge_claim(s, &a, "u1", uuid(&a), "h", &p, 1000, 60, &out, &idem, &pay), 0);
  /* The charge ended with an unknown outcome: pending, and the provider's id unknown. The
   * provider's event names our payment id in its metadata. */

  webhook_result_t res;
  payment_t got;
  assert_int_equal(ledger_webhook_apply(s, &a, ev1, "payment_intent.succeeded", WEBHOOK_PI_SUCCEEDED,
                                        ref, p.id, 2500, NULL, 1100, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_APPLIED);
  assert_string_equal(got.status, PAYMENT_SUCCEEDED);
  assert_int_equal(got.captured, 2500);
  assert_int_equal(s->ops->payment_get_by_ref(s, &a, ref, 0, &got), 0);
  assert_string_equal(got.id, p.id);
  /* Our id in another intent's metadata does not move a payment that has its own intent. */
  assert_int_equal(ledger_webhook_apply(s, &a, uuid(&a), "payment_intent.payment_failed", WEBHOOK_PI_FAILED,
                                        "pi_other", p.id, 0, NULL, 1100, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_IGNORED);
  /* The same event again: a duplicate, nothing changes. */
  assert_int_equal(ledger_webhook_apply(s, &a, ev1, "payment_intent.succeeded", WEBHOOK_PI_SUCCEEDED,
                                        ref, NULL, 2500, NULL, 1101, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_DUPLICATE);
  /* A late failure event does not undo a success. */
  assert_int_equal(ledger_webhook_apply(s, &a, ev2, "payment_intent.payment_failed", WEBHOOK_PI_FAILED,
                                        ref, NULL, 0, "card_declined", 1102, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_UNCHANGED);
  /* A refund made in the provider's dashboard. */
  assert_int_equal(ledger_webhook_apply(s, &a, ev3, "charge.refunded", WEBHOOK_CHARGE_REFUNDED, ref,
                                        NULL, 1000, NULL, 1103, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_APPLIED);
  assert_int_equal(got.refunded, 1000);
  assert_string_equal(got.status, PAYMENT_PARTIALLY_REFUNDED);
  /* Unknown payments are recorded and ignored. */
  assert_int_equal(ledger_webhook_apply(s, &a, ev4, "payment_intent.succeeded", WEBHOOK_PI_SUCCEEDED,
                                        "pi_nobody_knows", NULL, 100, NULL, 1104, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_IGNORED);
  ps_arena_reset(&a);
}

static int count_cb(void *arg, const audit_t *e) {
  (*(int64_t *)arg)++;
  return 0;
}

/* Entries in the log (verify stops at a break, and the PostgreSQL schema is shared by the
 * tests of one run, including the one that breaks the chain on purpose). */
static int64_t audit_count(payment_store_t *s, ps_arena_t *a) {
  int64_t n = 0;
  assert_int_equal(s->ops->audit_each(s, a, count_cb, &n), 0);
  return n;
}

static void test_webhook_settles_pending_refund(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  char *ref = ps_arena_sprintf(&a, "pi_pending_refund_%s", uuid(&a));
  payment_t pay = paid(s, &a, 1000, ref), cur, got;
  refund_t r1, r2;
  idem_t idem;
  claim_t out;
  const char *why;
  /* 300 refunded and confirmed; 200 asked for, provider outcome unknown (still pending). */
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 300, uuid(&a), NULL, NULL, NULL, 5000, 60,
                                         &out, &idem, &cur, &r1, &why), 0);
  assert_int_equal(ledger_refund_finish(s, &a, &cur, &r1, 1, "re_1", NULL, 201, "", "", 5001), 0);
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 200, uuid(&a), NULL, NULL, NULL, 5002, 60,
                                         &out, &idem, &cur, &r2, &why), 0);
  int64_t before = audit_count(s, &a);
  webhook_result_t res;
  /* The provider's total is 500: it did make the pending refund. */
  assert_int_equal(ledger_webhook_apply(s, &a, uuid(&a), "charge.refunded", WEBHOOK_CHARGE_REFUNDED,
                                        ref, NULL, 500, NULL, 5003, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_APPLIED);
  assert_int_equal(got.refunded, 500);
  assert_string_equal(got.status, PAYMENT_PARTIALLY_REFUNDED);
  refund_t check;
  assert_int_equal(s->ops->refund_get(s, &a, r2.id, &check), 0);
  assert_string_equal(check.status, REFUND_SUCCEEDED);
  assert_int_equal(audit_count(s, &a), before + 1);
  /* Later the dashboard refunds 100 more: recorded as such. */
  assert_int_equal(ledger_webhook_apply(s, &a, uuid(&a), "charge.refunded", WEBHOOK_CHARGE_REFUNDED,
                                        ref, NULL, 600, NULL, 5004, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_APPLIED);
  assert_int_equal(got.refunded, 600);
  /* The same total again changes nothing. */
  assert_int_equal(ledger_webhook_apply(s, &a, uuid(&a), "charge.refunded", WEBHOOK_CHARGE_REFUNDED,
                                        ref, NULL, 600, NULL, 5005, &res, &got), 0);
  assert_int_equal(res, WEBHOOK_UNCHANGED);
  ps_arena_reset(&a);
}

static void test_purge(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  payment_t p1 = new_payment(&a, 100, 1000), p2 = new_payment(&a, 100, 1000), pay;
  idem_t idem1, idem2;
  claim_t out;
  char *k1 = uuid(&a), *k2 = uuid(&a), *ev = uuid(&a);
  /* k1 answered long ago, k2 still pending (never purged: its request may be running). */
  assert_int_equal(ledger_charge_claim(s, &a, "u1", k1, "h", &p1, 1000, 60, &out, &idem1, &pay), 0);
  assert_int_equal(ledger_charge_finish(s, &a, &pay, &idem1, 201, "application/json", "{}", 1000), 0);
  assert_int_equal(ledger_charge_claim(s, &a, "u1", k2, "h", &p2, 1000, 60, &out, &idem2, &pay), 0);
  assert_int_equal(s->ops->event_insert(s, ev, "x", 1000), 0);
  int n = 0;
  assert_int_equal(s->ops->purge(s, 1001, 1001, 1000, &n), 0);
  assert_true(n >= 2);
  assert_int_equal(s->ops->idem_get(s, &a, "u1", k1, 0, &idem1), PS_ENOTFOUND);
  assert_int_equal(s->ops->idem_get(s, &a, "u1", k2, 0, &idem2), 0);
  assert_int_equal(s->ops->event_insert(s, ev, "x", 2000), 0); /* forgotten, so new again */
  assert_int_equal(s->ops->payment_get(s, &a, p1.id, 0, &pay), 0); /* payments stay */
  /* Limits hold. */
  assert_int_equal(s->ops->purge(s, 1001, 0, 1, &n), 0);
  assert_true(n <= 1);
  ps_arena_reset(&a);
}

typedef struct {
  int64_t n;
  char kinds[64];
} collect_t;

static int collect_cb(void *arg, const audit_t *e) {
  collect_t *c = arg;
  c->n++;
  return 0;
}

static void test_audit_chain(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  audit_verify_t v;
  char last[65];
  assert_int_equal(ledger_audit_verify(s, &a, &v, last), 0);
  assert_true(v.ok);
  int64_t before = v.entries;

  payment_t pay = paid(s, &a, 800, "pi_audit"), cur;
  refund_t r;
  idem_t idem;
  claim_t out;
  const char *why;
  assert_int_equal(ledger_refund_reserve(s, &a, pay.id, 300, uuid(&a), NULL, NULL, NULL, 4000, 60,
                                         &out, &idem, &cur, &r, &why), 0);
  assert_int_equal(ledger_refund_finish(s, &a, &cur, &r, 1, "re_a", NULL, 201, "", "", 4001), 0);
  /* A declined charge moves no money and writes no entry. */
  payment_t p2 = new_payment(&a, 100, 4002), pay2;
  assert_int_equal(ledger_charge_claim(s, &a, "u1", uuid(&a), "h", &p2, 4002, 60, &out, &idem, &pay2), 0);
  pay2.status = PAYMENT_FAILED;
  pay2.failure_code = "card_declined";
  assert_int_equal(ledger_charge_finish(s, &a, &pay2, &idem, 402, "", "", 4003), 0);

  assert_int_equal(ledger_audit_verify(s, &a, &v, last), 0);
  assert_true(v.ok);
  assert_int_equal(v.entries, before + 2);
  assert_int_equal(strlen(last), 64);

  /* The canonical form is documented, so anyone can re-check the chain. */
  audit_t e = {.seq = 1, .at = 1764000000, .kind = "charge", .payment_id = "p", .ref = "pi_1",
               .amount = 1999, .currency = "EUR"};
  assert_string_equal(ledger_audit_canonical(&a, &e), "[1,1764000000,\"charge\",\"p\",\"pi_1\",1999,\"EUR\"]");
  char h[65];
  ledger_audit_hash(LEDGER_ZERO_HASH, &e, h);
  /* sha256("000...0" + canonical), computed with Python's hashlib */
  assert_string_equal(h, "78bd63e6d4a3dca9ad20b2c6bbcc5b977c38fbe3c8567356c83c606f4afae828");
  collect_t c = {0};
  assert_int_equal(s->ops->audit_each(s, &a, collect_cb, &c), 0);
  assert_int_equal(c.n, before + 2);

  /* Tamper with the charge's amount behind the application's back. */
  int64_t charge_seq = before + 1;
  char sql[256];
  snprintf(sql, sizeof(sql), "UPDATE audit_log SET amount = amount + 1 WHERE seq = %lld",
           (long long)charge_seq);
  assert_int_equal(tamper_sql(sql), 0);
  assert_int_equal(ledger_audit_verify(s, &a, &v, last), 0);
  assert_false(v.ok);
  assert_int_equal(v.first_bad_seq, charge_seq);
  assert_string_equal(v.reason, "hash mismatch");
  snprintf(sql, sizeof(sql), "UPDATE audit_log SET amount = amount - 1 WHERE seq = %lld",
           (long long)charge_seq);
  assert_int_equal(tamper_sql(sql), 0);
  assert_int_equal(ledger_audit_verify(s, &a, &v, last), 0);
  assert_true(v.ok);

  /* Deleting an entry breaks the sequence. */
  snprintf(sql, sizeof(sql), "DELETE FROM audit_log WHERE seq = %lld", (long long)charge_seq);
  assert_int_equal(tamper_sql(sql), 0);
  assert_int_equal(ledger_audit_verify(s, &a, &v, last), 0);
  assert_false(v.ok);
  assert_int_equal(v.first_bad_seq, charge_seq + 1);
  assert_string_equal(v.reason, "sequence gap");
  ps_arena_reset(&a);
}

static void test_list(void **state) {
  payment_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  char *user = uuid(&a);
  const char *order = "order-list";
  for (int i = 0; i < 5; i++) {
    payment_t p = new_payment(&a, 100 + i, 5000 + i);
    p.user_id = user;
    p.order_id = i < 3 ? order : "order-other";
    assert_int_equal(s->ops->payment_insert(s, &p), 0);
  }
  payment_t *items;
  int n;
  assert_int_equal(s->ops->payment_list(s, &a, user, NULL, 0, NULL, 10, &items, &n), 0);
  assert_int_equal(n, 5);
  assert_int_equal(items[0].amount, 104); /* newest first */
  assert_int_equal(s->ops->payment_list(s, &a, user, order, 0, NULL, 10, &items, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(s->ops->payment_list(s, &a, user, NULL, 0, NULL, 2, &items, &n), 0);
  assert_int_equal(n, 2);
  payment_t *page2;
  assert_int_equal(s->ops->payment_list(s, &a, user, NULL, items[1].created_at, items[1].id, 10, &page2, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(page2[0].amount, 102);
  assert_int_equal(s->ops->payment_list(s, &a, "nobody", NULL, 0, NULL, 10, &items, &n), 0);
  assert_int_equal(n, 0);
  ps_arena_reset(&a);
}

/* --- tampering through the engine's own SQL ---------------------------------------------- */

#ifdef PAYMENT_TEST_WITH_PG
#include <libpq-fe.h>
static int tamper_pg(const char *sql) {
  PGconn *c = PQconnectdb(url);
  if (PQstatus(c) != CONNECTION_OK) {
    PQfinish(c);
    return -1;
  }
  /* The application itself cannot change the log: the trigger refuses it. */
  char first[512];
  snprintf(first, sizeof(first), "SET search_path TO %s; %s", pg_schema, sql);
  PGresult *r0 = PQexec(c, first);
  int refused = PQresultStatus(r0) != PGRES_COMMAND_OK;
  PQclear(r0);
  if (!refused) {
    PQfinish(c);
    return -1;
  }
  /* The application role cannot change the log (a trigger refuses it); an owner can
   * disable the trigger, which is the attack the hash chain is for. */
  char buf[512];
  snprintf(buf, sizeof(buf),
           "BEGIN; SET LOCAL search_path TO %s; ALTER TABLE audit_log DISABLE TRIGGER USER; %s;"
           " ALTER TABLE audit_log ENABLE TRIGGER USER; COMMIT;", pg_schema, sql);
  PGresult *r = PQexec(c, buf);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  PQfinish(c);
  return ok ? 0 : -1;
}
#endif

static int tamper_sql(const char *sql) {
  if (!sqlite_path[0]) {
#ifdef PAYMENT_TEST_WITH_PG
    return tamper_pg(sql);
#else
    return -1;
#endif
  }
  sqlite3 *db;
  if (sqlite3_open(sqlite_path, &db) != SQLITE_OK) return -1;
  sqlite3_busy_timeout(db, 5000);
  /* The application cannot change the log: the triggers refuse it. */
  int refused = sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK;
  char buf[512];
  snprintf(buf, sizeof(buf),
           "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; %s;"
           "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log"
           " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
           "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log"
           " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
           sql);
  int rc = refused && sqlite3_exec(db, buf, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
  sqlite3_close(db);
  return rc;
}

#ifdef PAYMENT_TEST_WITH_PG
static void quiet_notice(void *arg, const char *message) {}
#endif

/* Drops the private PostgreSQL schema of this run. */
static int group_teardown(void **state) {
#ifdef PAYMENT_TEST_WITH_PG
  PGconn *c = PQconnectdb(url);
  PQsetNoticeProcessor(c, quiet_notice, NULL);
  char buf[128];
  snprintf(buf, sizeof(buf), "DROP SCHEMA IF EXISTS %s CASCADE", pg_schema);
  if (pg_schema[0]) PQclear(PQexec(c, buf));
  PQfinish(c);
#endif
  return 0;
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_claim_lifecycle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_claim_taken_over, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refund_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refund_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_webhooks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_audit_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
      cmocka_unit_test_setup_teardown(test_webhook_settles_pending_refund, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, group_teardown);
}
