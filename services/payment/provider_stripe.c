/* provider_stripe.c - the Stripe provider (see provider.h) over Stripe's HTTP API through
 * the core's libcurl client: a PaymentIntent is created and confirmed with manual capture,
 * then captured; refunds go through /v1/refunds. Bodies are form-encoded, every POST carries
 * an Idempotency-Key derived from our payment or refund id, so a retry after a timeout never
 * charges twice.
 *
 * Card numbers never go to Stripe (its API takes payment methods, not raw numbers): Stripe's
 * documented test card numbers are mapped to its test payment methods, and anything else
 * must come as a token (pm_...). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/client.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "provider.h"

typedef struct {
  provider_t base;
  ps_client_t *client; /* owned; this thread's kept-alive connections */
  const char *base_url;
  char *auth_header;   /* owned: "Authorization: Bearer sk_..." */
  long timeout_ms;
} stripe_provider_t;

/* Appends name=value to a form body, percent-encoding value. */
static char *form_add(ps_arena_t *a, const char *body, const char *name, const char *value) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(value);
  char *enc = ps_arena_alloc(a, 3 * n + 1), *o = enc;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)value[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      *o++ = (char)c;
    } else {
      *o++ = '%';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    }
  }
  *o = '\0';
  return body && *body ? ps_arena_sprintf(a, "%s&%s=%s", body, name, enc)
                       : ps_arena_sprintf(a, "%s=%s", name, enc);
}

static const char *str_or(json_t *obj, const char *key, const char *def) {
  const char *s = json_string_value(json_object_get(obj, key));
  return s ? s : def;
}

static void decref_cb(void *v) { json_decref(v); }

/* POSTs a form to path; *answer is the parsed JSON (owned by the arena). Returns 0 when
 * Stripe answered with a JSON body (any status, in *status), or a PS_E* code for an unknown
 * outcome. */
static int post(stripe_provider_t *sp, ps_arena_t *a, const char *path, const char *form,
                const char *idem_key, long *status, json_t **answer) {
  const char *headers[] = {sp->auth_header, "Stripe-Version: 2024-06-20", NULL};
  ps_call_t call = {.method = "POST",
                    .url = ps_arena_sprintf(a, "%s%s", sp->base_url, path),
                    .body = form,
                    .body_len = strlen(form),
                    .content_type = "application/x-www-form-urlencoded",
                    .headers = headers,
                    .idempotency_key = idem_key,
                    .timeout_ms = sp->timeout_ms};
  ps_response_t resp;
  int rc = ps_client_call(sp->client, a, &call, &resp);
  if (rc) return rc;
  *status = resp.status;
  /* 5xx: Stripe may or may not have acted; 429: it did not, but try again later. */
  if (resp.status >= 500 || resp.status == 429) return PS_EUPSTREAM;
  json_t *v = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, NULL);
  if (!json_is_object(v)) {
    json_decref(v);
    ps_log_warn("stripe: %s answered %ld without a JSON object", path, resp.status);
    return PS_EUPSTREAM;
  }
  ps_arena_defer(a, decref_cb, v);
  *answer = v;
  return 0;
}

/* Fills out from a Stripe error answer (4xx). */
static void from_error(ps_arena_t *a, long status, json_t *answer, provider_result_t *out) {
  json_t *err = json_object_get(answer, "error");
  const char *type = str_or(err, "type", "");
  const char *code = str_or(err, "decline_code", NULL);
  if (!code) code = str_or(err, "code", "");
  out->outcome = status == 402 || strcmp(type, "card_error") == 0 ? PROVIDER_DECLINED
                                                                  : PROVIDER_ERROR;
  out->code = ps_arena_strdup(a, *code ? code : status == 402 ? "card_declined" : "invalid_request");
  out->message = ps_arena_strdup(a, str_or(err, "message", ""));
  json_t *pi = json_object_get(err, "payment_intent");
  out->ref = ps_arena_strdup(a, str_or(pi, "id", ""));
  out->captured = 0;
}

static int s_charge(provider_t *p, ps_arena_t *a, const provider_charge_t *in,
                    provider_result_t *out) {
  stripe_provider_t *sp = (stripe_provider_t *)p;
  *out = (provider_result_t){.ref = "", .code = "", .message = ""};
  const char *method = in->token;
  if (!method) method = provider_test_card_method(in->card_number);
  if (!method) {
    out->outcome = PROVIDER_ERROR;
    out->code = "card_number_not_accepted";
    out->message = "Stripe takes a payment method token (pm_...), not a card number";
    return 0;
  }
  char cur[4] = {0};
  for (int i = 0; i < 3 && in->currency[i]; i++)
    cur[i] = (char)(in->currency[i] | 0x20); /* Stripe spells currencies in lower case */
  char *form = ps_arena_sprintf(a, "amount=%lld", (long long)in->amount);
  form = form_add(a, form, "currency", cur);
  form = form_add(a, form, "payment_method", method);
  form = form_add(a, form, "payment_method_types[]", "card");
  form = form_add(a, form, "confirm", "true");
  form = form_add(a, form, "capture_method", "manual");
  form = form_add(a, form, "metadata[payment_id]", in->payment_id ? in->payment_id : "");
  form = form_add(a, form, "metadata[order_id]", in->order_id ? in->order_id : "");
  long status = 0;
  json_t *pi = NULL;
  int rc = post(sp, a, "/v1/payment_intents", form,
                ps_arena_sprintf(a, "%s-create", in->idempotency_key), &status, &pi);
  if (rc) return rc;
  if (status >= 400) {
    from_error(a, status, pi, out);
    return 0;
  }
  const char *id = str_or(pi, "id", "");
  if (!*id) return PS_EUPSTREAM;
  out->ref = ps_arena_strdup(a, id);
  const char *st = str_or(pi, "status", "");
  if (strcmp(st, "succeeded") == 0) {
    json_int_t got = json_integer_value(json_object_get(pi, "amount_received"));
    out->outcome = PROVIDER_SUCCEEDED;
    out->captured = got > 0 ? (int64_t)got : in->amount;
    return 0;
  }
  if (strcmp(st, "canceled") == 0 || strcmp(st, "requires_action") == 0) {
    out->outcome = PROVIDER_DECLINED;
    out->code = strcmp(st, "canceled") == 0 ? "canceled" : "authentication_required";
    return 0;
  }
  /* requires_capture (or, from stripe-mock, any fixture status): capture the whole amount;
   * Stripe itself refuses a capture of an intent that was not authorised. */
  char *cap = ps_arena_sprintf(a, "amount_to_capture=%lld", (long long)in->amount);
  json_t *captured = NULL;
  rc = post(sp, a, ps_arena_sprintf(a, "/v1/payment_intents/%s/capture", id), cap,
            ps_arena_sprintf(a, "%s-capture", in->idempotency_key), &status, &captured);
  if (rc) return rc;
  if (status >= 400) {
    from_error(a, status, captured, out);
    out->ref = ps_arena_strdup(a, id);
    return 0;
  }
  json_int_t got = json_integer_value(json_object_get(captured, "amount_received"));
  out->outcome = PROVIDER_SUCCEEDED;
  out->captured = got > 0 && got <= in->amount ? (int64_t)got : in->amount;
  return 0;
}

static int s_refund(provider_t *p, ps_arena_t *a, const char *ref, int64_t amount,
                    const char *idempotency_key, provider_result_t *out) {
  stripe_provider_t *sp = (stripe_provider_t *)p;
  *out = (provider_result_t){.ref = "", .code = "", .message = ""};
  char *form = form_add(a, NULL, "payment_intent", ref);
  form = ps_arena_sprintf(a, "%s&amount=%lld", form, (long long)amount);
  long status = 0;
  json_t *re = NULL;
  int rc = post(sp, a, "/v1/refunds", form, idempotency_key, &status, &re);
  if (rc) return rc;
  if (status >= 400) {
    from_error(a, status, re, out);
    out->outcome = PROVIDER_ERROR;
    return 0;
  }
  const char *st = str_or(re, "status", "");
  out->ref = ps_arena_strdup(a, str_or(re, "id", ""));
  if (strcmp(st, "failed") == 0 || strcmp(st, "canceled") == 0) {
    out->outcome = PROVIDER_ERROR;
    out->code = ps_arena_strdup(a, str_or(re, "failure_reason", "refund_failed"));
    return 0;
  }
  out->outcome = PROVIDER_SUCCEEDED; /* "succeeded", or "pending" that settles later */
  return 0;
}

static void s_free(provider_t *p) {
  stripe_provider_t *sp = (stripe_provider_t *)p;
  ps_client_free(sp->client);
  ps_free(sp->auth_header);
  ps_free(sp);
}

/* Every call crosses the network. */
static int s_waits(const provider_t *p) { return 1; }

static const provider_ops_t stripe_ops = {
    .name = "stripe", .charge = s_charge, .refund = s_refund, .waits = s_waits, .free = s_free};

int provider_stripe_new(const provider_config_t *cfg, provider_t **out) {
  if (!cfg->stripe_key || !*cfg->stripe_key || strpbrk(cfg->stripe_key, "\r\n"))
    return PS_ECONFIG;
  ps_client_opts_t opts;
  ps_client_opts_default(&opts);
  opts.timeout_ms = cfg->stripe_timeout_ms > 0 ? cfg->stripe_timeout_ms : 10000;
  opts.connect_timeout_ms = 2000;
  ps_client_t *c = ps_client_new(&opts);
  if (!c) return PS_EUNAVAIL;
  stripe_provider_t *sp = ps_calloc(1, sizeof(*sp));
  sp->base.ops = &stripe_ops;
  sp->client = c;
  sp->base_url = cfg->stripe_base && *cfg->stripe_base ? cfg->stripe_base : "https://api.stripe.com";
  size_t n = strlen(cfg->stripe_key) + 32;
  sp->auth_header = ps_malloc(n);
  snprintf(sp->auth_header, n, "Authorization: Bearer %s", cfg->stripe_key);
  sp->timeout_ms = opts.timeout_ms;
  *out = &sp->base;
  return 0;
}
