/* http.h - the HTTP server every service runs: HTTP/1.1 on libevent (lib/http1.c) with one
 * event loop per thread sharing the listening socket, a route table per service, a per-request arena,
 * X-Request-Id, access logs, /healthz, /readyz, /metrics and graceful drain on SIGTERM.
 *
 * A service declares its routes as data:
 *
 *   static const ps_route_t routes[] = {
 *     {"POST", "/api/v1/users", handle_register},
 *     {"GET",  "/api/v1/users/{id}", handle_get_user},
 *   };
 *
 * Handlers run on an event-loop thread and must answer before they return, through exactly
 * one ps_reply_* call. Everything allocated from req->arena is released after the answer is
 * sent.
 */
#ifndef POLYSHOP_HTTP_H
#define POLYSHOP_HTTP_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"
#include "polyshop/auth.h"
#include "polyshop/config.h"
#include "polyshop/router.h"

struct ps__conn;
struct ps__header;
typedef struct ps_req ps_req_t;
typedef struct ps_server ps_server_t;

typedef void (*ps_handler_cb)(ps_req_t *req);

typedef struct {
  const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
  const char *pattern; /* "/api/v1/users/{id}" */
  ps_handler_cb handler;
} ps_route_t;

struct ps_req {
  struct ps__conn *conn_;  /* private: the connection the request came on */
  ps_server_t *server;
  ps_arena_t arena;        /* released after the answer is sent */
  const char *method;
  const char *path;        /* decoded path without the query string */
  const char *route;       /* the matched pattern, or "unmatched" */
  const char *request_id;  /* taken from X-Request-Id or generated */
  const char *traceparent; /* incoming W3C traceparent or NULL */
  const char *client;      /* peer address */
  ps_param_t params[PS_ROUTE_MAX_PARAMS];
  int nparams;
  const char *body;        /* NUL-terminated copy of the request body (arena), may be "" */
  size_t body_len;
  json_t *json;            /* the parsed body once ps_json_body_or_reply ran (arena-owned) */
  ps_claims_t claims;      /* filled by ps_auth_*_or_reply */
  void *thread_ctx;        /* what the service's thread_init_cb returned for this thread */
  void *service_ctx;       /* ps_service_t.ctx */
  const ps_jwt_keys_t *jwt_keys; /* ps_service_t.jwt_keys */
  int status;              /* the status sent, 0 until then */
  uint64_t start_ns;
  void *query_;            /* parsed query (private, see ps_req_query) */
  const char *query_string_;            /* private: the raw query, or NULL */
  struct ps__header *in_headers_;       /* private */
  struct ps__header *out_headers_;      /* private: added by ps_reply_header */
  int keep_alive_, head_only_;          /* private */
};

typedef struct {
  const char *name;              /* "user": logs, metrics */
  const ps_route_t *routes;
  size_t nroutes;
  void *ctx;                     /* service-wide state, shared by all threads */
  /* Per-thread state (store connections, HTTP clients). Optional. */
  void *(*thread_init_cb)(void *ctx);
  void (*thread_cleanup_cb)(void *thread_ctx);
  /* /readyz: returns 0 when the service's store is reachable. Optional. Runs on the
   * calling event-loop thread with that thread's thread_ctx. */
  int (*ready_cb)(void *ctx, void *thread_ctx);
  /* Keys to verify access tokens with (ps_auth_*_or_reply); NULL when the service has no
   * authenticated routes. */
  const ps_jwt_keys_t *jwt_keys;
} ps_service_t;

typedef struct {
  char host[64];
  int port;
  int threads;            /* event loops, default: number of cores */
  size_t body_limit;      /* bytes, default 1 MiB; larger bodies get 413 */
  int drain_seconds;      /* graceful drain deadline, default 10 */
  int fd;                 /* an already-listening socket to use instead of host:port, or -1 */
  int install_signals;    /* stop on SIGTERM/SIGINT, default 1 */
} ps_server_config_t;

/* Reads POLYSHOP_LISTEN, POLYSHOP_THREADS, POLYSHOP_BODY_LIMIT, POLYSHOP_DRAIN_SECONDS into
 * cfg, recording bad values in the config collector (see config.h). */
void ps_server_config_from_env(ps_server_config_t *cfg, ps_config_t *collector,
                               const char *default_listen);

/* Runs the service until SIGTERM/SIGINT (or ps_server_stop), then drains: stops accepting,
 * lets requests in flight finish, closes idle connections and returns 0 before the deadline.
 * Returns a PS_E* code when it cannot start (port taken, bad route table). */
int ps_server_run(const ps_service_t *svc, const ps_server_config_t *cfg);

/* Asks a running server to drain and stop (thread-safe, async-signal-safe). */
void ps_server_stop(void);

/* The port actually bound (useful when cfg.port was 0); valid once the server is running. */
int ps_server_port(void);

/* --- reading the request ------------------------------------------------------------------ */

/* The path parameter, NUL-terminated and percent-decoded, in the arena; NULL when absent. */
const char *ps_req_param(ps_req_t *req, const char *name);
/* The first value of a query parameter (decoded), or NULL. */
const char *ps_req_query(ps_req_t *req, const char *name);
/* Calls cb for every query parameter in order. */
void ps_req_query_each(ps_req_t *req, void (*cb)(void *arg, const char *key, const char *value),
                       void *arg);
/* A request header, or NULL. */
const char *ps_req_header(ps_req_t *req, const char *name);

/* --- answering ---------------------------------------------------------------------------- */

/* Adds a response header (before the reply). */
void ps_reply_header(ps_req_t *req, const char *name, const char *value);
/* Sends body as JSON; takes the reference to body (NULL sends no body, e.g. for 204). */
void ps_reply_json(ps_req_t *req, int status, json_t *body);
/* Sends bytes as they are. */
void ps_reply_raw(ps_req_t *req, int status, const char *content_type, const void *data,
                  size_t len);

/* --- authentication guards ---------------------------------------------------------------- */

/* Requires a valid access token (Authorization: Bearer). On success fills req->claims and
 * returns 0; otherwise answers 401 (absent, malformed, forged or expired token) and returns
 * PS_EAUTH. */
int ps_auth_user_or_reply(ps_req_t *req);

/* Like ps_auth_user_or_reply, and also requires the admin role (403 otherwise). */
int ps_auth_admin_or_reply(ps_req_t *req);

/* The guard of internal routes (service-to-service calls), the same in every service:
 *   - internal_token set and an X-Internal-Token header present: accepted when the header
 *     equals internal_token (lengths and bytes compared in constant time); a wrong secret is
 *     answered 401 and never retried as a bearer token, since it means a misconfiguration or
 *     an attack;
 *   - otherwise (no header, or no internal_token configured, when the header means nothing):
 *     ps_auth_admin_or_reply decides, so an admin access token works too.
 * Returns 0 when the caller may go on (req->claims is filled only when the admin token
 * decided), or PS_EAUTH / PS_EFORBIDDEN / PS_EINTERNAL after answering. */
int ps_auth_internal_or_reply(ps_req_t *req, const char *internal_token);

/* The calling thread's event loop (struct event_base *), for services that need timers. */
void *ps_server_thread_base(void);

#endif
