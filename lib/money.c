/* money.c - the currencies the shop takes (see money.h). */
#include <string.h>

#include "polyshop/money.h"

/* ISO 4217's most used active codes, sorted; docs/openapi.yaml's Currency enum lists the same. */
const char *const ps_currencies[] = {
    "AED", "ARS", "AUD", "BGN", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK",
    "EGP", "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KES", "KRW",
    "MAD", "MXN", "MYR", "NGN", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON",
    "RSD", "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "UAH", "USD", "VND", "ZAR", NULL,
};

int ps_currency_valid(const char *code) {
  if (!code || strlen(code) != 3) return 0;
  for (size_t i = 0; ps_currencies[i]; i++)
    if (memcmp(ps_currencies[i], code, 4) == 0) return 1;
  return 0;
}
