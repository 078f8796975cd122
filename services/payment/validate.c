/* validate.c - checks of the payment service's inputs that the core validators do not know:
 * currencies, card numbers, tokens and foreign ids. */
#include <string.h>

#include "payment.h"

/* The currencies we take: ISO 4217's most used, active codes. */
static const char currencies[][4] = {
    "AED", "ARS", "AUD", "BGN", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK",
    "EGP", "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KES", "KRW",
    "MAD", "MXN", "MYR", "NGN", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON",
    "RSD", "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "UAH", "USD", "VND", "ZAR",
};

const char *payment_check_currency(const char *c) {
  if (!c || strlen(c) != 3) return "currency must be an ISO 4217 code such as EUR";
  for (size_t i = 0; i < sizeof(currencies) / sizeof(currencies[0]); i++)
    if (strcmp(currencies[i], c) == 0) return NULL;
  return "currency must be an upper-case ISO 4217 code we accept (EUR, USD, GBP, ...)";
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
