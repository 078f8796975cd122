/* test_product_store.c - the store's behavioural suite, in-process: demo load, listing filters
 * and cursors, all-or-nothing reservations, expiry by the sweeper, outbox events. Runs on a
 * temporary SQLite file, or on the MongoDB protocol server named by PRODUCT_TEST_STORE_URL
 * ("mongodb://host:port/dbprefix"; each test gets its own database, dropped afterwards). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mongoc/mongoc.h>
#include <unistd.h>

#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/uuid.h"
#include "product.h"
#include "store.h"

typedef struct {
  char dir[64], path[128], url[512];
  product_store_t *s;
  ps_arena_t a;
} fx_t;

static int setup(void **state) {
  static int n;
  fx_t *f = calloc(1, sizeof(*f));
  const char *base = getenv("PRODUCT_TEST_STORE_URL");
  if (base && *base) {
    snprintf(f->url, sizeof(f->url), "%s_%d_%d", base, (int)getpid(), ++n);
  } else {
    strcpy(f->dir, "/tmp/ps-product-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->url, sizeof(f->url), "sqlite://%s/product.db", f->dir);
  }
  assert_int_equal(product_store_migrate(f->url), 0);
  assert_int_equal(product_store_open(f->url, &f->s), 0);
  assert_int_equal(product_demo_load(f->s, 60, 7), 0);
  ps_arena_init(&f->a);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  ps_arena_reset(&f->a);
  f->s->ops->close(f->s);
  if (f->dir[0]) {
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
  } else {
    mongoc_uri_t *uri = mongoc_uri_new(f->url);
    mongoc_client_t *c = mongoc_client_new_from_uri(uri);
    mongoc_database_t *db = mongoc_client_get_database(c, mongoc_uri_get_database(uri));
    mongoc_database_drop(db, NULL);
    mongoc_database_destroy(db);
    mongoc_client_destroy(c);
    mongoc_uri_destroy(uri);
  }
  free(f);
  return 0;
}

static json_t *parse(const char *text) {
  json_t *j = json_loads(text, 0, NULL);
  assert_non_null(j);
  return j;
}

/* Creates a plain product with stock and returns its id. */
static const char *make(fx_t *f, const char *sku, int64_t stock) {
  product_in_t in = {0};
  in.fields = PF_SKU | PF_NAME | PF_KIND | PF_BRAND | PF_CATEGORY | PF_PRICE | PF_CURRENCY |
              PF_STOCK;
  in.sku = sku, in.name = "Test", in.kind = "other", in.brand = "Acme", in.category = "snacks";
  in.price = 100, in.currency = "USD", in.stock = stock;
  const char *id = ps_uuid_v4(&f->a);
  char *doc;
  assert_int_equal(f->s->ops->product_create(f->s, &f->a, id, &in, 1000, &doc), 0);
  return id;
}

static int64_t stock_of(fx_t *f, const char *id) {
  char *doc;
  assert_int_equal(f->s->ops->product_get(f->s, &f->a, id, &doc), 0);
  json_t *j = parse(doc);
  int64_t n = json_integer_value(json_object_get(j, "stock"));
  json_decref(j);
  return n;
}

static void lists_every_product_once_across_pages(void **state) {
  fx_t *f = *state;
  product_query_t q = {0};
  q.price_min = q.price_max = -1;
  q.sort = SORT_PRICE;
  q.limit = 7;
  int seen = 0;
  int64_t last = -1;
  for (;;) {
    product_row_t *rows;
    size_t n;
    assert_int_equal(f->s->ops->product_list(f->s, &f->a, &q, &rows, &n), 0);
    size_t shown = n > 7 ? 7 : n;
    for (size_t i = 0; i < shown; i++) {
      assert_true(rows[i].key_i >= last);
      last = rows[i].key_i;
      seen++;
    }
    if (n <= 7) break;
    q.has_cursor = 1;
    q.cursor.sort = SORT_PRICE;
    q.cursor.key_i = rows[6].key_i;
    q.cursor.id = rows[6].id;
  }
  assert_int_equal(seen, 60);
}

static void filters_by_category_tree_and_attributes(void **state) {
  fx_t *f = *state;
  product_query_t q = {0};
  q.price_min = q.price_max = -1;
  q.limit = 100;
  q.category = "food"; /* a root: its subcategories count */
  product_row_t *rows;
  size_t n;
  assert_int_equal(f->s->ops->product_list(f->s, &f->a, &q, &rows, &n), 0);
  assert_int_equal(n, 20);
  q.category = NULL;
  q.nattrs = 1;
  q.attrs[0].name = "size"; /* variant attribute */
  q.attrs[0].value = "XXL";
  assert_int_equal(f->s->ops->product_list(f->s, &f->a, &q, &rows, &n), 0);
  assert_true(n > 0);
  for (size_t i = 0; i < n; i++) assert_non_null(strstr(rows[i].json, "\"size\":\"XXL\""));
}

static void reservations_are_all_or_nothing(void **state) {
  fx_t *f = *state;
  const char *a = make(f, "T-A", 5), *b = make(f, "T-B", 1);
  reservation_item_t items[] = {{a, NULL, 3}, {b, NULL, 2}};
  char *doc;
  int existing;
  reservation_fail_t fail;
  int rc = f->s->ops->reserve(f->s, &f->a, "r1", items, 2, 1000, 60, &doc, &existing, &fail);
  assert_int_equal(rc, PS_EINSUFFICIENT);
  assert_int_equal(fail.index, 1);
  assert_int_equal(fail.available, 1);
  assert_int_equal(stock_of(f, a), 5); /* the first item was rolled back */
  items[1].quantity = 1;
  assert_int_equal(f->s->ops->reserve(f->s, &f->a, "r1", items, 2, 1000, 60, &doc, &existing, &fail), 0);
  assert_int_equal(existing, 0);
  assert_int_equal(stock_of(f, a), 2);
  assert_int_equal(stock_of(f, b), 0);
  /* The same request again answers the same reservation and takes nothing more. */
  assert_int_equal(f->s->ops->reserve(f->s, &f->a, "r1", items, 2, 1000, 60, &doc, &existing, &fail), 0);
  assert_int_equal(existing, 1);
  assert_int_equal(stock_of(f, a), 2);
  items[0].quantity = 1;
  assert_int_equal(f->s->ops->reserve(f->s, &f->a, "r1", items, 2, 1000, 60, &doc, &existing, &fail),
                   PS_ECONFLICT);
  /* Release is idempotent. */
  assert_int_equal(f->s->ops->reservation_release(f->s, &f->a, "r1", 1001, &doc), 0);
  assert_int_equal(f->s->ops->reservation_release(f->s, &f->a, "r1", 1001, &doc), 0);
  assert_int_equal(stock_of(f, a), 5);
  assert_int_equal(stock_of(f, b), 1);
  assert_int_equal(f->s->ops->reservation_commit(f->s, &f->a, "r1", 1001, &doc), PS_ECONFLICT);
  assert_int_equal(f->s->ops->reservation_commit(f->s, &f->a, "nope", 1001, &doc), PS_ENOTFOUND);
}

static void sweeper_returns_expired_stock(void **state) {
  fx_t *f = *state;
  const char *a = make(f, "T-S", 4);
  reservation_item_t items[] = {{a, NULL, 4}};
  char *doc;
  int existing, count;
  reservation_fail_t fail;
  assert_int_equal(f->s->ops->reserve(f->s, &f->a, "r2", items, 1, 1000, 10, &doc, &existing, &fail), 0);
  assert_int_equal(stock_of(f, a), 0);
  assert_int_equal(f->s->ops->sweep(f->s, 1009, 100, &count), 0);
  assert_int_equal(count, 0);
  assert_int_equal(f->s->ops->sweep(f->s, 1010, 100, &count), 0);
  assert_int_equal(count, 1);
  assert_int_equal(stock_of(f, a), 4);
  assert_int_equal(f->s->ops->reservation_commit(f->s, &f->a, "r2", 1011, &doc), PS_ECONFLICT);
  assert_int_equal(f->s->ops->reservation_get(f->s, &f->a, "r2", 1011, &doc), 0);
  assert_non_null(strstr(doc, "\"status\":\"expired\""));
}

static void changes_reach_the_outbox(void **state) {
  fx_t *f = *state;
  char *events;
  assert_int_equal(f->s->ops->outbox_read(f->s, &f->a, 0, 1000, &events), 0);
  json_t *j = parse(events);
  assert_int_equal(json_array_size(j), 60); /* one product.created per demo product */
  json_decref(j);
  const char *a = make(f, "T-O", 1);
  assert_int_equal(f->s->ops->product_delete(f->s, a, 1001), 0);
  assert_int_equal(f->s->ops->product_delete(f->s, a, 1001), PS_ENOTFOUND);
  assert_int_equal(f->s->ops->outbox_read(f->s, &f->a, 60, 1000, &events), 0);
  j = parse(events);
  assert_int_equal(json_array_size(j), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "type")),
                      "product.deleted");
  json_decref(j);
}

/* A lookup answers whole documents by default, and the keys asked for (in document order,
 * with the same values) when given a field mask; every key asked is the whole document. */
static void lookup_answers_the_fields_asked(void **state) {
  fx_t *f = *state;
  product_query_t q = {0};
  q.price_min = q.price_max = -1;
  q.limit = 100;
  q.nattrs = 1;
  q.attrs[0].name = "size"; /* clothing: variants at the product's price */
  q.attrs[0].value = "M";
  product_row_t *rows;
  size_t n;
  assert_int_equal(f->s->ops->product_list(f->s, &f->a, &q, &rows, &n), 0);
  assert_true(n >= 1);
  const char *ids[3] = {rows[0].id, "no-such-product", NULL};
  q.attrs[0].name = "storage"; /* phones: variants with their own prices */
  q.attrs[0].value = "256";
  assert_int_equal(f->s->ops->product_list(f->s, &f->a, &q, &rows, &n), 0);
  assert_true(n >= 1);
  ids[2] = rows[0].id;
  char *whole, *all, *some, *missing;
  assert_int_equal(f->s->ops->product_lookup(f->s, &f->a, ids, 3, 0, &whole, &missing), 0);
  assert_string_equal(missing, "[\"no-such-product\"]");
  char *d0, *d1;
  assert_int_equal(f->s->ops->product_get(f->s, &f->a, ids[0], &d0), 0);
  assert_int_equal(f->s->ops->product_get(f->s, &f->a, ids[2], &d1), 0);
  char expect[16384];
  snprintf(expect, sizeof(expect), "[%s,%s]", d0, d1);
  assert_string_equal(whole, expect);
  unsigned every = (1u << PRODUCT_DOC_NFIELDS) - 1;
  assert_int_equal(f->s->ops->product_lookup(f->s, &f->a, ids, 3, every, &all, &missing), 0);
  assert_string_equal(all, expect);
  unsigned mask = product_doc_field_bit("variants") | product_doc_field_bit("id") |
                  product_doc_field_bit("price") | product_doc_field_bit("stock");
  assert_int_equal(f->s->ops->product_lookup(f->s, &f->a, ids, 3, mask, &some, &missing), 0);
  assert_string_equal(missing, "[\"no-such-product\"]");
  json_t *got = parse(some), *full = parse(whole);
  assert_int_equal(json_array_size(got), 2);
  for (size_t i = 0; i < 2; i++) {
    json_t *g = json_array_get(got, i), *w = json_array_get(full, i);
    assert_int_equal(json_object_size(g), 4);
    const char *order[] = {"id", "price", "stock", "variants"};
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach(g, key, v) {
      assert_string_equal(key, order[k++]);
      assert_true(json_equal(v, json_object_get(w, key)));
    }
  }
  json_decref(got);
  json_decref(full);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(lists_every_product_once_across_pages, setup, teardown),
      cmocka_unit_test_setup_teardown(filters_by_category_tree_and_attributes, setup, teardown),
      cmocka_unit_test_setup_teardown(reservations_are_all_or_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(sweeper_returns_expired_stock, setup, teardown),
      cmocka_unit_test_setup_teardown(changes_reach_the_outbox, setup, teardown),
      cmocka_unit_test_setup_teardown(lookup_answers_the_fields_asked, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
