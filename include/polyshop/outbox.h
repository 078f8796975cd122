/* outbox.h - events as a core mechanism: where each event type goes (POLYSHOP_EVENT_ROUTES)
 * and the relay that delivers a service's outbox to those destinations, at least once, with
 * the event id for the receiver to deduplicate.
 *
 * POLYSHOP_EVENT_ROUTES is a list of routes separated by ";", each PATTERN=TARGET[,TARGET...]:
 *   PATTERN  an event type ("order_created"), or a prefix ending in "*" ("order_*", "order.*",
 *            "*" for every type);
 *   TARGET   VARIABLE/path: VARIABLE is the environment variable holding the subscriber's base
 *            URL (upper case, ending in _URL), path its events endpoint ("/internal/events").
 * e.g. order_*=NOTIFICATION_URL/internal/events,ANALYTICS_URL/internal/events
 * A destination is named after its variable, lower case without _URL ("notification"); that
 * name is what the outbox stores. A variable that is unset is skipped: its events wait in the
 * outbox, and the other destinations are served.
 */
#ifndef POLYSHOP_OUTBOX_H
#define POLYSHOP_OUTBOX_H
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"
#include "polyshop/config.h"

struct event_base;

typedef struct ps_event_routes ps_event_routes_t;

enum { PS_EVENT_DESTS_MAX = 8 };

/* Parses spec (syntax above) and resolves each target's variable from the environment
 * through cfg (a variable that is set but not an http(s) URL is an error there). Returns 0
 * and *out (freed with ps_event_routes_free), or PS_EPARSE with a sentence in err. */
int ps_event_routes_parse(ps_config_t *cfg, const char *spec, ps_event_routes_t **out,
                          char *err, size_t errlen);
/* Reads POLYSHOP_EVENT_ROUTES (def when unset); a bad value is recorded in cfg naming the
 * variable, and *out is then NULL. */
void ps_event_routes_from_env(ps_config_t *cfg, const char *def, ps_event_routes_t **out);
void ps_event_routes_free(ps_event_routes_t *r);

/* The destination names of an event type (every route whose pattern matches, each name
 * once), at most max of them into dests (static strings of r). Returns how many. */
size_t ps_event_routes_match(const ps_event_routes_t *r, const char *type, const char **dests,
                             size_t max);

/* One outbox row: an event for one destination. */
typedef struct {
  const char *id, *destination, *type, *payload; /* payload: JSON object text */
  int64_t attempts;
} ps_event_t;

/* What a service with an outbox gives the relay. Every call is made on a worker pool thread,
 * never two at a time for one relay. */
typedef struct {
  void *ctx;
  /* Up to limit due rows (not delivered, next attempt <= now) of the given destinations, in
   * the arena. */
  int (*due)(void *ctx, ps_arena_t *a, int64_t now, const char *const *dests, size_t ndests,
             int limit, ps_event_t **out, size_t *n);
  int (*delivered)(void *ctx, const char *id, const char *destination, int64_t now);
  int (*failed)(void *ctx, const char *id, const char *destination, int64_t next_attempt_at);
  /* Extra "Name: value" header lines for the calls (credentials), NULL-terminated, in the
   * arena. Optional. */
  const char *const *(*headers_cb)(void *ctx, ps_arena_t *a);
  /* Told of each call made (its URL and ps_now_ns start), for metrics. Optional. */
  void (*observe_cb)(void *ctx, const char *url, unsigned long long t0);
} ps_outbox_source_t;

typedef struct ps_outbox_relay ps_outbox_relay_t;

/* A relay over src to the destinations of routes (both must outlive it). */
ps_outbox_relay_t *ps_outbox_relay_new(const ps_event_routes_t *routes,
                                       const ps_outbox_source_t *src);
/* One round, from a periodic job on the loop of base: the round (store calls and POSTs)
 * runs on the worker pool and this returns at once; a round still running makes this do
 * nothing. Each due event is POSTed to its destination's URL with X-Event-Id and
 * Idempotency-Key set to its id (the body carries "id" too); 2xx or 409 marks it delivered,
 * anything else records a failure with the next attempt 1, 2, 4 ... 256 s later, and the
 * rest of that destination's events wait for the next round. */
void ps_outbox_relay_run(ps_outbox_relay_t *r, struct event_base *base);
/* Frees the relay; call after its loop's ps_work_loop_done (no round running). */
void ps_outbox_relay_free(ps_outbox_relay_t *r);

#endif
