/* validate.c - checks of the payment service's inputs that the core validators do not know:
 * currencies, card numbers, tokens and foreign ids. */
#include <string.h>

#include "payment.h"
#include "polyshop/money.h"

const char *payment_check_currency(const char *c) {
  if (ps_currency_valid(c)) return NULL;
  return "currency must be an upper-case ISO 4217 code the shop takes (EUR, USD, GBP, ...)";
}

const char *payment_check_card_number(const char *n) {
  size_t len = n ? strlen(n) : 0;
  if (len < 12 || len > 19) return "card_number must have 12 to 19 digits";
  int sum = 0;
  for (size_t i = 0; i < len; i++) {
    char c = n[len - 1 - i];
    if (c < '0' || c > '9') return "card_number must have only digits";
    int d = c - '0';
    if (i % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 == 0 ? NULL : "card_number fails the Luhn check";
}

const char *payment_check_token(const char *t) {
  size_t n = t ? strlen(t) : 0;
  if (n < 3 || n > 255) return "token must have 3 to 255 characters";
  for (size_t i = 0; i < n; i++) {
    char c = t[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return "token may hold only letters, digits and '_'";
  }
  return NULL;
}

const char *payment_check_ref(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n < 1 || n > 64) return "must have 1 to 64 characters";
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-' || c == '.' || c == ':'))
      return "may hold only letters, digits and _ - . :";
  }
  return NULL;
}
