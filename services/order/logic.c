/* logic.c - the order service's pure rules: the status lifecycle and who may move it, saga
 * steps, discount codes, money arithmetic in integer minor units. No I/O here, so the unit tests cover all of it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "order.h"
#include "polyshop/error.h"

static const char *const statuses[] = {"new", "processing", "shipped", "delivered",
                                       "cancelled", "failed", NULL};

int order_status_valid(const char *status) {
  if (!status) return 0;
  for (size_t i = 0; statuses[i]; i++)
    if (strcmp(statuses[i], status) == 0) return 1;
  return 0;
}

typedef struct {
  const char *from, *to;
  unsigned actors; /* bit per order_actor_t */
} transition_t;

#define BY(a) (1u << (a))

/* The whole lifecycle in one table; anything not listed is refused. */
static const transition_t transitions[] = {
    {"new", "processing", BY(ORDER_ACTOR_SYSTEM)},
    {"new", "failed", BY(ORDER_ACTOR_SYSTEM)},
    {"processing", "shipped", BY(ORDER_ACTOR_ADMIN)},
    {"processing", "cancelled", BY(ORDER_ACTOR_ADMIN) | BY(ORDER_ACTOR_OWNER)},
    {"shipped", "delivered", BY(ORDER_ACTOR_ADMIN)},
};

int order_transition_ok(const char *from, const char *to, order_actor_t actor) {
  if (!from || !to) return 0;
  for (size_t i = 0; i < sizeof(transitions) / sizeof(transitions[0]); i++) {
    if (strcmp(transitions[i].from, from) == 0 && strcmp(transitions[i].to, to) == 0)
      return (transitions[i].actors & BY(actor)) != 0;
  }
  return 0;
}

int order_step_final(const char *step) {
  return step && (strcmp(step, ORDER_STEP_COMMITTED) == 0 ||
                  strcmp(step, ORDER_STEP_RELEASED) == 0 || strcmp(step, ORDER_STEP_REFUNDED) == 0);
}

const discount_t order_discounts[] = {
    {"WELCOME10", DISCOUNT_PERCENT, 10, 0},
    {"FLAT500", DISCOUNT_FIXED, 500, 1000},
    {"HALF", DISCOUNT_PERCENT, 50, 0},
};
const size_t order_ndiscounts = sizeof(order_discounts) / sizeof(order_discounts[0]);

const discount_t *order_discount_find(const discount_t *table, size_t n, const char *code) {
  if (!code) return NULL;
  for (size_t i = 0; i < n; i++)
    if (strcasecmp(table[i].code, code) == 0) return &table[i];
  return NULL;
}

int64_t order_discount_amount(const discount_t *d, int64_t subtotal) {
  if (!d || subtotal <= 0 || subtotal < d->min_subtotal) return 0;
  int64_t off;
  if (d->kind == DISCOUNT_PERCENT) {
    /* subtotal <= PS_MONEY_MAX and value <= 100: the product fits in 64 bits. */
    int64_t pct = d->value < 0 ? 0 : d->value > 100 ? 100 : d->value;
    off = subtotal * pct / 100;
  } else {
    off = d->value < 0 ? 0 : d->value;
  }
  return off > subtotal ? subtotal : off;
}

int order_line_total(int64_t unit_price, int64_t quantity, int64_t *out) {
  if (unit_price < 0 || quantity < 0) return PS_ERANGE;
  int64_t r;
  if (__builtin_mul_overflow(unit_price, quantity, &r) || r > PS_MONEY_MAX) return PS_ERANGE;
  *out = r;
  return 0;
}

int order_money_add(int64_t *sum, int64_t v) {
  int64_t r;
  if (v < 0 || __builtin_add_overflow(*sum, v, &r) || r > PS_MONEY_MAX) return PS_ERANGE;
  *sum = r;
  return 0;
}
