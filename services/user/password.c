/* password.c - argon2id hashing and verification on the core's worker pool. Each costs tens
 * of milliseconds of CPU by design; on an event loop one login would hold every request of
 * that loop behind it. The handler defers its request, the pool thread does only the
 * crypto (no store, no request state but the strings it was given), and the handler's
 * continuation runs back on the request's loop. */
#include <sodium.h>
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/work.h"
#include "user.h"

typedef struct {
  ps_req_t *req;
  const char *password;
  const char *hash;   /* verify: the stored hash */
  char *out;          /* hash: crypto_pwhash_STRBYTES in the arena */
  unsigned long long ops;
  size_t mem;
  int rc;             /* 0, or PS_EAUTH (wrong password) / PS_EINTERNAL (hashing failed) */
  user_password_cb cb;
  void *arg;
} pw_job_t;

static void hash_work(void *arg) {
  pw_job_t *j = arg;
  j->rc = crypto_pwhash_str(j->out, j->password, strlen(j->password), j->ops, j->mem)
              ? PS_EINTERNAL : 0;
}

static void verify_work(void *arg) {
  pw_job_t *j = arg;
  j->rc = crypto_pwhash_str_verify(j->hash, j->password, strlen(j->password)) == 0 ? 0 : PS_EAUTH;
}

static void job_after(void *arg, int status) {
  pw_job_t *j = arg;
  j->cb(j->req, status ? status : j->rc, j->arg);
}

static void start(ps_req_t *req, pw_job_t *j, void (*work)(void *)) {
  ps_req_defer(req);
  int rc = ps_work_queue(ps_req_base(req), work, job_after, j);
  if (rc) j->cb(req, rc, j->arg); /* the pool's queue is full: the caller answers 503 */
}

static pw_job_t *job_new(ps_req_t *req, const char *password, user_password_cb cb, void *arg) {
  pw_job_t *j = ps_arena_alloc(&req->arena, sizeof(*j));
  memset(j, 0, sizeof(*j));
  j->req = req;
  j->password = password;
  j->cb = cb;
  j->arg = arg;
  return j;
}

void user_password_hash_start(ps_req_t *req, const char *password, char **out,
                              user_password_cb cb, void *arg) {
  const user_service_t *svc = req->service_ctx;
  pw_job_t *j = job_new(req, password, cb, arg);
  j->out = *out = ps_arena_alloc(&req->arena, crypto_pwhash_STRBYTES);
  j->ops = svc->argon_ops;
  j->mem = svc->argon_mem;
  start(req, j, hash_work);
}

void user_password_verify_start(ps_req_t *req, const char *hash, const char *password,
                                user_password_cb cb, void *arg) {
  pw_job_t *j = job_new(req, password, cb, arg);
  j->hash = hash;
  start(req, j, verify_work);
}
