/* input.c - the checkout's input: the items, the address and the payment method of a
 * POST /api/v1/orders body, each checked and answered with a 400 naming the field. */
#include <string.h>

#include "checkout.h"
#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/problem.h"

#define SVC(req) ((order_service_t *)(req)->service_ctx)

static int text_ok(const char *s, size_t min, size_t max) {
  size_t n = strlen(s);
  if (n < min || n > max) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
  return 1;
}

/* A JSON string of min..max bytes without control characters or embedded NULs. */
static const char *json_text(json_t *v, size_t min, size_t max) {
  if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) return NULL;
  return text_ok(json_string_value(v), min, max) ? json_string_value(v) : NULL;
}

int order_items_or_reply(ps_req_t *req, json_t *body, item_in_t **out, size_t *n) {
  /* Client prices and totals are accepted and ignored: the server prices every line. */
  static const char *const allowed[] = {"product_id", "variant", "quantity", "price",
                                        "unit_price", "name", "line_total", "total", NULL};
  ps_arena_t *a = &req->arena;
  json_t *items = json_object_get(body, "items");
  if (!json_is_array(items) || json_array_size(items) < 1 ||
      json_array_size(items) > ORDER_ITEMS_MAX) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "items",
                     "items must be an array of 1 to %d lines", ORDER_ITEMS_MAX);
    return PS_EINVAL;
  }
  size_t count = json_array_size(items);
  item_in_t *its = ps_arena_alloc(a, count * sizeof(*its));
  for (size_t i = 0; i < count; i++) {
    json_t *x = json_array_get(items, i);
    const char *base = ps_arena_sprintf(a, "items[%zu]", i);
    if (ps_json_only_keys_at_or_reply(req, x, allowed, base)) return PS_EINVAL;
    if (!(its[i].product_id = json_text(json_object_get(x, "product_id"), 1, ORDER_PRODUCT_ID_MAX))) {
      const char *f = ps_arena_sprintf(a, "%s.product_id", base);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a product id (1 to %d characters)",
                       f, ORDER_PRODUCT_ID_MAX);
      return PS_EINVAL;
    }
    json_t *var = json_object_get(x, "variant");
    if (var && !json_is_null(var) && !(its[i].variant = json_text(var, 1, ORDER_VARIANT_MAX))) {
      const char *f = ps_arena_sprintf(a, "%s.variant", base);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a variant SKU", f);
      return PS_EINVAL;
    }
    json_t *q = json_object_get(x, "quantity");
    if (!json_is_integer(q) || json_integer_value(q) < 1 || json_integer_value(q) > ORDER_QTY_MAX) {
      const char *f = ps_arena_sprintf(a, "%s.quantity", base);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a whole number from 1 to %d", f,
                       ORDER_QTY_MAX);
      return PS_EINVAL;
    }
    its[i].quantity = json_integer_value(q);
    for (size_t j = 0; j < i; j++) {
      if (strcmp(its[j].product_id, its[i].product_id) == 0 &&
          (its[j].variant == its[i].variant ||
           (its[j].variant && its[i].variant && strcmp(its[j].variant, its[i].variant) == 0))) {
        ps_reply_problem(req, PS_PROBLEM_VALIDATION, base,
                         "%s repeats items[%zu]: give one line per product and variant", base, j);
        return PS_EINVAL;
      }
    }
  }
  *out = its;
  *n = count;
  return 0;
}

int order_address_or_reply(ps_req_t *req, json_t *body, const char **out) {
  static const char *const fields[] = {"name", "line1", "line2", "city", "region",
                                       "postal_code", "country", "phone", NULL};
  static const char *const required[] = {"name", "line1", "city", "postal_code", "country", NULL};
  json_t *addr = json_object_get(body, "address");
  if (!json_is_object(addr)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "address",
                     "address must be an object with name, line1, city, postal_code and country");
    return PS_EINVAL;
  }
  const char *key;
  json_t *v;
  json_object_foreach(addr, key, v) {
    int ok = 0;
    for (const char *const *k = fields; *k && !ok; k++) ok = strcmp(*k, key) == 0;
    const char *f = ps_arena_sprintf(&req->arena, "address.%s", key);
    if (!ok) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s is not a field of an address", f);
      return PS_EINVAL;
    }
    if (!json_text(v, 1, ORDER_ADDRESS_FIELD_MAX)) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a string of 1 to %d characters",
                       f, ORDER_ADDRESS_FIELD_MAX);
      return PS_EINVAL;
    }
  }
  for (const char *const *k = required; *k; k++) {
    if (!json_object_get(addr, *k)) {
      const char *f = ps_arena_sprintf(&req->arena, "address.%s", *k);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s is required", f);
      return PS_EINVAL;
    }
  }
  const char *country = json_string_value(json_object_get(addr, "country"));
  if (strlen(country) != 2 || country[0] < 'A' || country[0] > 'Z' || country[1] < 'A' ||
      country[1] > 'Z') {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "address.country",
                     "address.country must be an ISO 3166-1 alpha-2 code such as \"DE\"");
    return PS_EINVAL;
  }
  *out = ps_json_dump(&req->arena, addr);
  return 0;
}

/* The payment method goes to the payment service as it came: a token string ("pm_card_visa",
 * short for {"token": ...}) or an object {card_number, exp_month, exp_year, cvc} / {token},
 * which that service validates. The order keeps only a label (the token, or the card's last
 * four digits): card numbers are never stored here. */
int order_payment_method_or_reply(ps_req_t *req, json_t *body, json_t **out, const char **label) {
  static const char *const allowed[] = {"card_number", "exp_month", "exp_year", "cvc", "token", NULL};
  json_t *pm = json_object_get(body, "payment_method");
  json_t *method;
  if (!pm || json_is_null(pm)) pm = json_string(SVC(req)->default_payment_method);
  else json_incref(pm);
  ps_arena_defer(&req->arena, (ps_arena_cleanup_cb)json_decref, pm);
  if (json_is_string(pm)) {
    const char *tok = json_text(pm, 3, 255);
    if (!tok) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, "payment_method",
                       "payment_method must be a payment token or an object");
      return PS_EINVAL;
    }
    method = json_pack("{s:s}", "token", tok);
    ps_arena_defer(&req->arena, (ps_arena_cleanup_cb)json_decref, method);
    *label = ps_arena_sprintf(&req->arena, "token:%s", tok);
  } else if (json_is_object(pm)) {
    if (ps_json_only_keys_or_reply(req, pm, allowed)) return PS_EINVAL;
    method = pm;
    const char *card = json_string_value(json_object_get(pm, "card_number"));
    const char *tok = json_string_value(json_object_get(pm, "token"));
    size_t len = card ? strlen(card) : 0;
    *label = card && len >= 4 ? ps_arena_sprintf(&req->arena, "card:%s", card + len - 4)
             : tok ? ps_arena_sprintf(&req->arena, "token:%.64s", tok)
                   : "unknown";
  } else {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "payment_method",
                     "payment_method must be a payment token or an object");
    return PS_EINVAL;
  }
  *out = method;
  return 0;
}
