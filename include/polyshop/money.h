/* money.h - the shop's one set of money rules, used by product (prices), order (totals) and
 * payment (charges and refunds).
 *
 * Amounts are integers in the minor unit of their currency (1999 = 19.99 EUR; JPY has no
 * minor unit, so 1999 = 1999 JPY). Every amount a service accepts or computes - a price, a
 * line, a subtotal, an order total, a charge, a refund - is 0..PS_MONEY_MAX.
 *
 * PS_MONEY_MAX is 99,999,999: the largest amount card processors take in one charge (Stripe's
 * eight-digit ceiling, 999,999.99 in a two-decimal currency). An order the payment service
 * could never charge is refused when it is placed, before any stock is reserved, instead of
 * failing at the charge.
 *
 * Currencies are the active ISO 4217 codes the payment providers settle (list in money.c);
 * a product priced in any other code could never be paid for.
 */
#ifndef POLYSHOP_MONEY_H
#define POLYSHOP_MONEY_H
#include <stdint.h>

#define PS_MONEY_MAX ((int64_t)99999999)

/* Returns 1 when code is one of the accepted ISO 4217 codes (exactly three upper-case
 * letters, from the list in money.c), else 0 (also for NULL). */
int ps_currency_valid(const char *code);

/* The accepted codes, sorted, NULL-terminated (for documentation and messages). */
extern const char *const ps_currencies[];

#endif
