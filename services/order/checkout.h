/* checkout.h - what the checkout's files share (checkout.c, checkout_steps.c, input.c,
 * routes.c, offload.c): the parsed input, the answers, the failure endings and the worker
 * pool hand-off. Not used outside the order service. */
#ifndef POLYSHOP_ORDER_CHECKOUT_H
#define POLYSHOP_ORDER_CHECKOUT_H
#include "order.h"
#include "polyshop/problem.h"

/* One line of a checkout body, as the client sent it (strings in the request's arena). */
typedef struct {
  const char *product_id, *variant;
  int64_t quantity;
} item_in_t;

/* --- input (input.c): each answers 400 naming the field and returns nonzero on bad input */
int order_items_or_reply(ps_req_t *req, json_t *body, item_in_t **out, size_t *n);
/* *out: the address object as JSON text (arena). */
int order_address_or_reply(ps_req_t *req, json_t *body, const char **out);
/* *out: the payment method to send on (owned by the arena); *label: what the order keeps. */
int order_payment_method_or_reply(ps_req_t *req, json_t *body, json_t **out, const char **label);

/* --- answers (routes.c) ----------------------------------------------------------------- */
/* A problem document as text, for answers that are stored with the order and replayed. */
char *order_problem_text(ps_req_t *req, ps_problem_t problem, const char *field,
                         const char *detail);
/* Sends stored answer text (problem+json from 400 on, with Retry-After on 503). */
void order_reply_text(ps_req_t *req, int status, const char *text);
/* The answer for an order whose first request is over, from its current state. */
void order_reply_from_state(ps_req_t *req, const order_t *o);
/* Same key again: the stored answer when the body hash is the same, 422 when it is not. */
void order_replay(ps_req_t *req, const order_t *o, const char *hash);

/* --- the checkout (checkout.c, checkout_steps.c) ------------------------------------------ */
void order_handle_create(ps_req_t *req);

/* Prices every line into o (items, subtotal, currency) from the product service's lookup
 * answer (JSON text). Answers and returns nonzero when a line cannot be sold. */
int order_price_or_reply(ps_req_t *req, const char *lookup, const item_in_t *in, size_t n,
                         order_t *o);
/* Completes o (id, status, totals after disc, times) and writes it with its order_created
 * event. On PS_EEXISTS (the same key won a race) the earlier order's answer was replayed;
 * on any nonzero return an answer was sent. */
int order_checkout_persist_or_reply(ps_req_t *req, order_t *o, const discount_t *disc);

/* Why a checkout failed, and the stored problem answer for it. */
typedef struct {
  const char *from;           /* the saga step the order is at */
  const char *payment_status; /* none, failed, unknown */
  ps_problem_t problem;
  const char *field, *detail;
} order_failure_t;

/* Fails o (the answer stored with it), gives back its stock (and money when the payment's
 * fate is unknown) on a pool thread, then answers. A deferred request only. */
void order_fail_and_reply(ps_req_t *req, order_t *o, const order_failure_t *why);
/* After a commit that did not finish the order: runs the release first when `release`, and
 * refunds payment_id when the order failed under it, then answers from the stored state. */
void order_settle_and_reply(ps_req_t *req, order_t *o, const char *payment_id, int release);

/* --- the worker pool hand-off (offload.c) -------------------------------------------------- */
/* run executes on a pool thread with that thread's own order_thread_t (its own store
 * connection and blocking client), with the request's arena (the loop does not touch the
 * request meanwhile); done then runs on the request's loop with run's result, or with
 * PS_ECANCELED / PS_ELIMIT when the pool could not run it. The request must be deferred
 * (ps_req_defer) and done must answer it. */
typedef int (*order_job_cb)(order_thread_t *pt, ps_arena_t *a, void *arg);
typedef void (*order_job_done_cb)(ps_req_t *req, int rc, void *arg);
void order_offload(ps_req_t *req, order_job_cb run, order_job_done_cb done, void *arg);

#endif
