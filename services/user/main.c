/* main.c - the user service: its configuration, its store (one connection per loop, Redis
 * for sessions when set), and the first admin made at start; lib/skeleton.c runs the rest. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/service.h"
#include "user.h"

static user_service_t svc;
static const char *admin_email, *admin_password;

static void *thread_init(void *ctx) {
  user_thread_t *t = ps_calloc(1, sizeof(*t));
  user_store_t *inner;
  if (user_store_open(svc.store_url, &inner)) {
    /* Checked at start on the main thread, so this is a store gone bad since: no way to serve.
     * Not the URL: it may hold a password. */
    ps_log_error("cannot open the user store");
    abort();
  }
  t->store = user_store_timed(inner);
  t->sessions = t->store;
  /* Redis may be down right now: the connection is retried on each call, and sign-in
   * answers 503 meanwhile (only this feature degrades). */
  if (svc.redis_url && user_sessions_redis_open(svc.redis_url, &t->sessions) == 0)
    t->redis = 1;
  else if (svc.redis_url)
    ps_log_warn("redis unreachable at start; sessions fall back to the main store");
  return t;
}

static void thread_cleanup(void *thread_ctx) {
  user_thread_t *t = thread_ctx;
  if (t->sessions != t->store) t->sessions->ops->close(t->sessions);
  t->store->ops->close(t->store);
  ps_free(t);
}

static int ping(void *ctx, void *thread_ctx) {
  user_thread_t *t = thread_ctx;
  int rc = t->store->ops->ping(t->store);
  return rc ? rc : t->sessions->ops->ping(t->sessions);
}

/* Creates the admin from POLYSHOP_ADMIN_EMAIL / POLYSHOP_ADMIN_PASSWORD, or promotes the
 * account if it exists (its password is left alone: the operator may have changed it). */
static int ensure_admin(user_store_t *st, const char *email_in,
                        const char *password) {
  ps_arena_t a;
  ps_arena_init(&a);
  char email[256];
  user_normalize_email(email_in, email, sizeof(email));
  user_t u;
  int rc = st->ops->get_by_email(st, &a, email, &u);
  if (rc == 0) {
    rc = strcmp(u.role, "admin") ? st->ops->set_role(st, u.id, "admin") : 0;
  } else if (rc == PS_ENOTFOUND) {
    char hash[crypto_pwhash_STRBYTES];
    unsigned char b[16];
    randombytes_buf(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char *id = ps_arena_sprintf(&a, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
                                b[11], b[12], b[13], b[14], b[15]);
    rc = crypto_pwhash_str(hash, password, strlen(password), svc.argon_ops, svc.argon_mem)
             ? PS_ENOMEM
             : 0;
    user_t admin = {.id = id, .email = email, .password_hash = hash, .role = "admin", .name = "Admin",
                    .profile = "{}", .settings = "{}", .created_at = (int64_t)time(NULL)};
    admin.updated_at = admin.created_at;
    if (rc == 0) rc = st->ops->create(st, &admin);
    if (rc == PS_EEXISTS) rc = 0; /* another replica made it first */
    if (rc == 0) ps_log_info("created the first admin %s", email);
  }
  ps_arena_reset(&a);
  return rc;
}

static void config(ps_config_t *cfg, void *ctx) {
  svc.store_url = ps_config_str(cfg, "USER_STORE", "sqlite://./data/user.db");
  svc.refresh_ttl = ps_config_int(cfg, "USER_REFRESH_TTL", 30 * 86400, 60, 365 * 86400);
  svc.reset_ttl = ps_config_int(cfg, "USER_RESET_TTL", 3600, 60, 7 * 86400);
  /* OWASP's argon2id floor (19 MiB, 2 passes): a hash costs tens of milliseconds and stays
   * inside the memory budget of a small service. Tests may lower it. */
  svc.argon_ops = (unsigned long long)ps_config_int(cfg, "USER_ARGON2_OPS", 2, 1, 10);
  svc.argon_mem = (size_t)ps_config_int(cfg, "USER_ARGON2_MEM_KIB", 19 * 1024, 8, 1024 * 1024) * 1024;
  svc.trust_proxy = ps_config_bool(cfg, "POLYSHOP_TRUST_PROXY", 0);
  svc.limit_per_email = (int)ps_config_int(cfg, "USER_LOGIN_LIMIT_PER_EMAIL", 10, 1, 100000);
  svc.limit_per_client = (int)ps_config_int(cfg, "USER_LOGIN_LIMIT_PER_CLIENT", 100, 1, 1000000);
  svc.limit_window = (int)ps_config_int(cfg, "USER_LOGIN_LIMIT_WINDOW", 300, 1, 86400);
  svc.redis_url = ps_config_str(cfg, "REDIS_URL", NULL);
  if (svc.redis_url && strncmp(svc.redis_url, "redis://", 8) != 0)
    ps_config_error(cfg, "REDIS_URL must look like redis://host:port");
  admin_email = ps_config_str(cfg, "POLYSHOP_ADMIN_EMAIL", NULL);
  admin_password = ps_config_str(cfg, "POLYSHOP_ADMIN_PASSWORD", NULL);
  if (!user_store_url_ok(svc.store_url))
    ps_config_error(cfg, "USER_STORE is not a supported store URL (sqlite://PATH or mongodb://HOST:PORT/DB)");
  if ((admin_email == NULL) != (admin_password == NULL))
    ps_config_error(cfg, "set both POLYSHOP_ADMIN_EMAIL and POLYSHOP_ADMIN_PASSWORD, or neither");
  if (admin_email && user_check_email(admin_email))
    ps_config_error(cfg, "POLYSHOP_ADMIN_EMAIL: %s", user_check_email(admin_email));
  if (admin_password && user_check_password(admin_password, admin_email))
    ps_config_error(cfg, "POLYSHOP_ADMIN_PASSWORD: %s", user_check_password(admin_password, admin_email));
}

/* Opens the store once so a bad path or a dead engine fails the start, loudly; makes the
 * login's dummy hash and the first admin. */
static int store_open(void *ctx) {
  user_store_t *st;
  int rc = user_store_open(svc.store_url, &st);
  if (rc) {
    ps_log_error("cannot open the user store: %s", ps_strerror(rc));
    return rc == PS_ECONFIG ? PS_EIO : rc;
  }
  if (crypto_pwhash_str(svc.dummy_hash, "not a real password", 19, svc.argon_ops, svc.argon_mem)) {
    ps_log_error("argon2id failed: out of memory?");
    rc = PS_ENOMEM;
  } else if (admin_email && (rc = ensure_admin(st, admin_email, admin_password))) {
    ps_log_error("cannot create the first admin: %s", ps_strerror(rc));
  }
  st->ops->close(st);
  if (rc) return rc == PS_ECONFIG ? PS_EIO : rc;
  user_store_metrics_register(strncmp(svc.store_url, "mongodb://", 10) ? "sqlite" : "mongodb");
  svc.per_email = ratelimit_new(svc.limit_per_email, svc.limit_window);
  svc.per_client = ratelimit_new(svc.limit_per_client, svc.limit_window);
  return 0;
}

static void store_close(void *ctx) {
  ratelimit_free(svc.per_email);
  ratelimit_free(svc.per_client);
}

int main(void) {
  ps_service_def_t def = {
      .name = "user", .listen = "127.0.0.1:8101", .routes = user_routes,
      .nroutes = user_nroutes, .ctx = &svc, .config_cb = config, .jwt_keys = &svc.keys,
      .store_open_cb = store_open, .store_close_cb = store_close, .store_ping_cb = ping,
      .thread_init_cb = thread_init, .thread_cleanup_cb = thread_cleanup};
  return ps_service_main(&def);
}
