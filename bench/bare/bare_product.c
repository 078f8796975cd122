/* bare_product.c - the reference for the product-lookup benchmark: the least a libevent +
 * SQLite server can do to answer GET /api/v1/products/{id}, with nothing of polyshop's core
 * (no router, no arena, no metrics, no logs, no request id). It has the product service's
 * shape where that shape costs work the service cannot avoid: N evhttp loops sharing one
 * listening socket (like lib/http.c), one SQLite connection per loop opened like
 * lib/sqlite.c opens it, and one prepared statement running the very SQL that
 * services/product/store_sqlite.c runs to assemble the product document (its DOC_SQL,
 * extracted at build time), over the same database file.
 *
 *   bare_product DB_PATH PORT [THREADS]   (THREADS: default the number of online cores)
 *
 * Built by bench/scenarios/product.sh with cc -O2; not part of the CMake build. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PREFIX "/api/v1/products/"

/* DOC_SQL: the product service's own definition, taken out of services/product/store_sqlite.c
 * into doc_sql.h by bench/scenarios/10-product.sh at build time, so both do equal work. */
#include "doc_sql.h"

typedef struct {
  pthread_t tid;
  struct event_base *base;
  struct evhttp *http;
  sqlite3 *db;
  sqlite3_stmt *get;
} loop_t;

static const char *db_path;
static int listen_fd;

static void reply(struct evhttp_request *req, int status, const char *reason, const void *body,
                  size_t len) {
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
  evhttp_send_reply(req, status, reason, NULL);
}

static void request_cb(struct evhttp_request *req, void *arg) {
  loop_t *loop = arg;
  const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
  size_t plen = strlen(PREFIX);
  if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || !path ||
      strncmp(path, PREFIX, plen) != 0 || !path[plen] || strchr(path + plen, '/')) {
    reply(req, 404, "Not Found", "{\"status\":404}", 14);
    return;
  }
  sqlite3_bind_text(loop->get, 1, path + plen, -1, SQLITE_STATIC);
  int rc = sqlite3_step(loop->get);
  if (rc == SQLITE_ROW) {
    reply(req, 200, "OK", sqlite3_column_text(loop->get, 0),
          (size_t)sqlite3_column_bytes(loop->get, 0));
  } else if (rc == SQLITE_DONE) {
    reply(req, 404, "Not Found", "{\"status\":404}", 14);
  } else {
    reply(req, 503, "Service Unavailable", "{\"status\":503}", 14);
  }
  sqlite3_reset(loop->get);
  sqlite3_clear_bindings(loop->get);
}

static int loop_init(loop_t *loop) {
  if (sqlite3_open_v2(db_path, &loop->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    fprintf(stderr, "bare_product: cannot open %s\n", db_path);
    return -1;
  }
  sqlite3_busy_timeout(loop->db, 5000);
  if (sqlite3_exec(loop->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                   NULL) != SQLITE_OK ||
      sqlite3_prepare_v3(loop->db, "SELECT " DOC_SQL " FROM products p WHERE p.id = ?", -1,
                         SQLITE_PREPARE_PERSISTENT, &loop->get, NULL) != SQLITE_OK) {
    fprintf(stderr, "bare_product: %s\n", sqlite3_errmsg(loop->db));
    return -1;
  }
  loop->base = event_base_new();
  loop->http = loop->base ? evhttp_new(loop->base) : NULL;
  if (!loop->http) return -1;
  evhttp_set_gencb(loop->http, request_cb, loop);
  struct evconnlistener *l =
      evconnlistener_new(loop->base, NULL, NULL, LEV_OPT_REUSEABLE, 0, listen_fd);
  if (!l || !evhttp_bind_listener(loop->http, l)) return -1;
  return 0;
}

static void *loop_run(void *arg) {
  loop_t *loop = arg;
  event_base_dispatch(loop->base);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bare_product DB_PATH PORT [THREADS]\n");
    return 2;
  }
  db_path = argv[1];
  int port = atoi(argv[2]);
  long nthreads = argc > 3 ? atol(argv[3]) : sysconf(_SC_NPROCESSORS_ONLN);
  if (nthreads < 1) nthreads = 1;
  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(listen_fd, 1024)) {
    perror("bare_product: listen");
    return 1;
  }
  loop_t *loops = calloc((size_t)nthreads, sizeof(*loops));
  if (!loops) return 1;
  for (long i = 0; i < nthreads; i++)
    if (loop_init(&loops[i])) return 1;
  for (long i = 1; i < nthreads; i++) pthread_create(&loops[i].tid, NULL, loop_run, &loops[i]);
  fprintf(stderr, "bare_product: listening on 127.0.0.1:%d with %ld event loops\n", port,
          nthreads);
  loop_run(&loops[0]); /* runs until killed */
  return 0;
}
