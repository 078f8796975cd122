/* test_store.c - the behaviour every order store adapter must have: one-transaction creation
 * with items and outbox, idempotency keys unique per user, compare-and-set changes, history
 * pages, unfinished sagas and the outbox's due/sent/retry cycle. Runs against an embedded
 * SQLite file, and against any other engine named by ORDER_TEST_STORE_URL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#ifdef ORDER_HAVE_PG
#include <libpq-fe.h>
#endif

#include "polyshop/error.h"
#include "store.h"

static char url[512];
static char schema[64]; /* PostgreSQL: a schema of this run, dropped at the end */
static int counter;

static int setup(void **state) {
  const char *env = getenv("ORDER_TEST_STORE_URL");
  if (env) {
    snprintf(url, sizeof(url), "%s", env);
    snprintf(schema, sizeof(schema), "order_test_%d", (int)getpid());
  } else {
    char dir[] = "/tmp/polyshop-order-store-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(url, sizeof(url), "sqlite://%s/order.db", dir);
  }
  order_store_t *s;
  assert_int_equal(order_store_open(url, schema[0] ? schema : NULL, &s), 0);
  *state = s;
  return 0;
}

static int teardown(void **state) {
  order_store_t *s = *state;
  s->ops->close(s);
#ifdef ORDER_HAVE_PG
  if (order_store_is_pg(url)) {
    PGconn *c = PQconnectdb(url);
    char sql[128];
    snprintf(sql, sizeof(sql), "SET client_min_messages = warning; DROP SCHEMA %s CASCADE", schema);
    PGresult *r = PQexec(c, sql);
    PQclear(r);
    PQfinish(c);
  }
#endif
  return 0;
}

typedef struct {
  char id[40], user[40], key[40], ev[40];
  order_item_t items[2];
  order_t o;
  outbox_event_t events[2];
} fixture_t;

static void make(fixture_t *f, const char *user, int64_t at) {
  counter++;
  memset(f, 0, sizeof(*f));
  snprintf(f->id, sizeof(f->id), "00000000-0000-4000-8000-%06d%06d", (int)getpid() % 1000000, counter);
  snprintf(f->user, sizeof(f->user), "%s", user);
  snprintf(f->key, sizeof(f->key), "key-%d", counter);
  snprintf(f->ev, sizeof(f->ev), "ev-%d-%d", (int)getpid(), counter);
  f->items[0] = (order_item_t){.product_id = "p1", .variant = NULL, .name = "Phone",
                               .unit_price = 1000, .quantity = 2, .line_total = 2000};
  f->items[1] = (order_item_t){.product_id = "p2", .variant = "p2-red", .name = "Shirt",
                               .unit_price = 500, .quantity = 1, .line_total = 500};
  f->o = (order_t){.id = f->id, .user_id = f->user, .status = "new", .payment_status = "pending",
                   .saga_step = "pending", .subtotal = 2500, .discount = 250, .total = 2250,
                   .currency = "EUR", .discount_code = "WELCOME10",
                   .address = "{\"city\":\"Berlin\"}", .payment_method = "pm_card_visa",
                   .reservation_id = f->id, .idempotency_key = f->key, .request_hash = "h1",
                   .created_at = at, .updated_at = at, .items = f->items, .nitems = 2};
  for (int i = 0; i < 2; i++)
    f->events[i] = (outbox_event_t){.id = f->ev, .destination = i ? "analytics" : "notification",
                                    .type = "order_created", .payload = "{\"x\":1}",
                                    .next_attempt_at = at};
}

static void test_create_get(void **state) {
  order_store_t *s = *state;
  fixture_t f;
  make(&f, "u-create", 1000);
  assert_int_equal(s->ops->create(s, &f.o, f.events, 2), 0);
  ps_arena_t a;
  ps_arena_init(&a);
  order_t got;
  assert_int_equal(s->ops->get(s, &a, f.id, &got), 0);
  assert_string_equal(got.user_id, "u-create");
  assert_int_equal(got.total, 2250);
  assert_string_equal(got.discount_code, "WELCOME10");
  assert_null(got.payment_id);
  assert_int_equal(got.nitems, 2);
  assert_string_equal(got.items[1].variant, "p2-red");
  assert_null(got.items[0].variant);
  assert_int_equal(got.items[0].line_total, 2000);
  assert_int_equal(s->ops->get_by_key(s, &a, "u-create", f.key, &got), 0);
  assert_string_equal(got.id, f.id);
  assert_int_equal(s->ops->get_by_key(s, &a, "someone-else", f.key, &got), PS_ENOTFOUND);
  assert_int_equal(s->ops->get(s, &a, "nope", &got), PS_ENOTFOUND);
  ps_arena_reset(&a);
}

static void test_key_unique_and_atomic(void **state) {
  order_store_t *s = *state;
  fixture_t f, g;
  make(&f, "u-key", 1000);
  assert_int_equal(s->ops->create(s, &f.o, f.events, 2), 0);
  make(&g, "u-key", 1000);
  g.o.idempotency_key = f.key; /* same user, same key, another order */
  int64_t before, after;
  assert_int_equal(s->ops->outbox_pending(s, &before), 0);
  assert_int_equal(s->ops->create(s, &g.o, g.events, 2), PS_EEXISTS);
  assert_int_equal(s->ops->outbox_pending(s, &after), 0);
  assert_int_equal(before, after); /* nothing of the refused order was written */
  ps_arena_t a;
  ps_arena_init(&a);
  order_t got;
  assert_int_equal(s->ops->get(s, &a, g.id, &got), PS_ENOTFOUND);
  /* Another user may use the same key. */
  make(&g, "u-key-2", 1000);
  g.o.idempotency_key = f.key;
  assert_int_equal(s->ops->create(s, &g.o, g.events, 2), 0);
  ps_arena_reset(&a);
}

static void test_change_cas(void **state) {
  order_store_t *s = *state;
  fixture_t f;
  make(&f, "u-cas", 1000);
  assert_int_equal(s->ops->create(s, &f.o, NULL, 0), 0);
  order_change_t c = {.id = f.id, .expect_step = "pending", .step = "reserved", .now = 1001};
  assert_int_equal(s->ops->change(s, &c), 0);
  assert_int_equal(s->ops->change(s, &c), PS_ECONFLICT); /* no longer pending */
  order_change_t d = {.id = f.id, .expect_step = "reserved", .step = "charged",
                      .payment_status = "paid", .payment_id = "pay-1", .now = 1002,
                      .nevents = 1};
  d.events[0] = (outbox_event_t){.id = "ev-cas", .destination = "analytics",
                                 .type = "order_status_changed", .payload = "{}"};
  assert_int_equal(s->ops->change(s, &d), 0);
  order_change_t r = {.id = f.id, .response_status = 201, .response_body = "{\"ok\":true}", .now = 1003};
  assert_int_equal(s->ops->change(s, &r), 0);
  order_change_t st = {.id = f.id, .expect_status = "processing", .status = "shipped", .now = 1004};
  assert_int_equal(s->ops->change(s, &st), PS_ECONFLICT);
  order_change_t missing = {.id = "nope", .step = "x", .now = 1};
  assert_int_equal(s->ops->change(s, &missing), PS_ENOTFOUND);
  ps_arena_t a;
  ps_arena_init(&a);
  order_t got;
  assert_int_equal(s->ops->get(s, &a, f.id, &got), 0);
  assert_string_equal(got.saga_step, "charged");
  assert_string_equal(got.payment_status, "paid");
  assert_string_equal(got.payment_id, "pay-1");
  assert_string_equal(got.status, "new");
  assert_int_equal(got.response_status, 201);
  assert_string_equal(got.response_body, "{\"ok\":true}");
  assert_int_equal(got.updated_at, 1003);
  ps_arena_reset(&a);
}

static void test_list_pages(void **state) {
  order_store_t *s = *state;
  fixture_t f;
  for (int i = 0; i < 5; i++) {
    make(&f, "u-list", 2000 + i / 2); /* two orders share each second: the id breaks ties */
    assert_int_equal(s->ops->create(s, &f.o, NULL, 0), 0);
  }
  ps_arena_t a;
  ps_arena_init(&a);
  order_t *page;
  size_t n, seen = 0;
  order_cursor_t cur, *after = NULL;
  char last_id[64] = "";
  int64_t last_at = INT64_MAX;
  do {
    assert_int_equal(s->ops->list(s, &a, "u-list", after, 2, &page, &n), 0);
    for (size_t i = 0; i < n; i++) {
      assert_string_equal(page[i].user_id, "u-list");
      assert_int_equal(page[i].nitems, 2);
      assert_true(page[i].created_at < last_at ||
                  (page[i].created_at == last_at && strcmp(page[i].id, last_id) < 0));
      last_at = page[i].created_at;
      snprintf(last_id, sizeof(last_id), "%s", page[i].id);
    }
    seen += n;
    if (n) {
      cur.created_at = page[n - 1].created_at;
      cur.id = page[n - 1].id;
      after = &cur;
    }
  } while (n == 2);
  assert_int_equal(seen, 5);
  assert_int_equal(s->ops->list(s, &a, "nobody", NULL, 10, &page, &n), 0);
  assert_int_equal(n, 0);
  ps_arena_reset(&a);
}

static void test_unfinished(void **state) {
  order_store_t *s = *state;
  fixture_t f, g;
  make(&f, "u-unf", 100);
  assert_int_equal(s->ops->create(s, &f.o, NULL, 0), 0);
  make(&g, "u-unf", 100);
  g.o.saga_step = "committed";
  assert_int_equal(s->ops->create(s, &g.o, NULL, 0), 0);
  ps_arena_t a;
  ps_arena_init(&a);
  const char **ids;
  size_t n;
  assert_int_equal(s->ops->unfinished(s, &a, 101, 1000, &ids, &n), 0);
  int found_f = 0, found_g = 0;
  for (size_t i = 0; i < n; i++) {
    found_f |= strcmp(ids[i], f.id) == 0;
    found_g |= strcmp(ids[i], g.id) == 0;
  }
  assert_true(found_f);
  assert_false(found_g);
  assert_int_equal(s->ops->unfinished(s, &a, 100, 1000, &ids, &n), 0);
  for (size_t i = 0; i < n; i++) assert_string_not_equal(ids[i], f.id); /* too recent */
  ps_arena_reset(&a);
}

static void test_outbox(void **state) {
  order_store_t *s = *state;
  fixture_t f;
  make(&f, "u-outbox", 5000);
  assert_int_equal(s->ops->create(s, &f.o, f.events, 2), 0);
  ps_arena_t a;
  ps_arena_init(&a);
  const char *const only_analytics[] = {"analytics", NULL};
  outbox_event_t *ev;
  size_t n;
  assert_int_equal(s->ops->outbox_due(s, &a, 1000000, only_analytics, 1000, &ev, &n), 0);
  int found = 0;
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(ev[i].destination, "analytics");
    found |= strcmp(ev[i].id, f.ev) == 0;
  }
  assert_true(found);
  assert_int_equal(s->ops->outbox_retry(s, f.ev, "analytics", 2000000), 0);
  assert_int_equal(s->ops->outbox_due(s, &a, 1000000, only_analytics, 1000, &ev, &n), 0);
  for (size_t i = 0; i < n; i++) assert_string_not_equal(ev[i].id, f.ev);
  assert_int_equal(s->ops->outbox_due(s, &a, 2000000, only_analytics, 1000, &ev, &n), 0);
  found = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(ev[i].id, f.ev) == 0) {
      found = 1;
      assert_int_equal(ev[i].attempts, 1);
    }
  assert_true(found);
  assert_int_equal(s->ops->outbox_sent(s, f.ev, "analytics", 2000001), 0);
  assert_int_equal(s->ops->outbox_due(s, &a, 3000000, only_analytics, 1000, &ev, &n), 0);
  for (size_t i = 0; i < n; i++) assert_string_not_equal(ev[i].id, f.ev);
  /* The notification copy is still pending. */
  const char *const only_notification[] = {"notification", NULL};
  assert_int_equal(s->ops->outbox_due(s, &a, 3000000, only_notification, 1000, &ev, &n), 0);
  found = 0;
  for (size_t i = 0; i < n; i++) found |= strcmp(ev[i].id, f.ev) == 0;
  assert_true(found);
  /* Pruning removes sent rows older than the bound, never pending ones. */
  int64_t pending_before, pending_after, pruned;
  assert_int_equal(s->ops->outbox_pending(s, &pending_before), 0);
  assert_int_equal(s->ops->outbox_prune(s, 2000001, &pruned), 0);
  assert_int_equal(pruned, 0);
  assert_int_equal(s->ops->outbox_prune(s, 2000002, &pruned), 0);
  assert_true(pruned >= 1);
  assert_int_equal(s->ops->outbox_pending(s, &pending_after), 0);
  assert_int_equal(pending_before, pending_after);
  assert_int_equal(s->ops->ping(s), 0);
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_get),   cmocka_unit_test(test_key_unique_and_atomic),
      cmocka_unit_test(test_change_cas),   cmocka_unit_test(test_list_pages),
      cmocka_unit_test(test_unfinished),   cmocka_unit_test(test_outbox),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
