/* routes.c - the user service's HTTP handlers: accounts, sign-in with rotating refresh
 * tokens, profiles, settings and password reset. The route table is at the bottom. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/uuid.h"
#include "polyshop/log.h"
#include "polyshop/problem.h"
#include "polyshop/timestamp.h"
#include "user.h"

#define SVC(req) ((user_service_t *)(req)->service_ctx)
#define THREAD(req) ((user_thread_t *)(req)->thread_ctx)
#define STORE(req) (THREAD(req)->store)
#define SESSIONS(req) (THREAD(req)->sessions)

enum { PROFILE_MAX_KEYS = 50, PROFILE_MAX_VALUE = 1000, PROFILE_MAX_BYTES = 16384 };

/* --- small helpers ---------------------------------------------------------------------- */

static int64_t now_s(void) { return (int64_t)time(NULL); }

/* Tokens are stored by SHA-256: a stolen database holds nothing that signs anyone in. */
static char *sha256_hex(ps_arena_t *a, const char *s) {
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, (const unsigned char *)s, strlen(s));
  char *hex = ps_arena_alloc(a, sizeof(h) * 2 + 1);
  sodium_bin2hex(hex, sizeof(h) * 2 + 1, h, sizeof(h));
  return hex;
}

static char *random_token(ps_arena_t *a) {
  unsigned char b[32];
  randombytes_buf(b, sizeof(b));
  return ps_base64url_encode(a, b, sizeof(b));
}

static json_t *parse_object(const char *text) {
  json_t *v = json_loads(text && *text ? text : "{}", 0, NULL);
  if (!json_is_object(v)) {
    json_decref(v);
    v = json_object();
  }
  return v;
}

static json_t *user_json(ps_arena_t *a, const user_t *u) {
  return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s}", "id", u->id, "email", u->email, "role",
                   u->role, "name", u->name ? u->name : "", "profile", parse_object(u->profile),
                   "created_at", ps_time_rfc3339(a, u->created_at), "updated_at",
                   ps_time_rfc3339(a, u->updated_at));
}

static const char *client_address(ps_req_t *req) {
  const char *real = SVC(req)->trust_proxy ? ps_req_header(req, "X-Real-IP") : NULL;
  return real && *real ? real : (req->client ? req->client : "unknown");
}

/* Counts an attempt against the per-client and the per-key limits; answers 429 itself. Redis
 * counters are shared by every replica; the embedded ones live in this process. */
static int attempt_allowed_or_reply(ps_req_t *req, const char *key) {
  user_service_t *svc = SVC(req);
  int retry = 0, rc;
  const char *client = client_address(req);
  if (THREAD(req)->redis) {
    rc = user_redis_ratelimit_hit(SESSIONS(req), "client", client, svc->limit_per_client,
                                  svc->limit_window, &retry);
    if (!rc)
      rc = user_redis_ratelimit_hit(SESSIONS(req), "key", key, svc->limit_per_email,
                                    svc->limit_window, &retry);
  } else {
    int64_t now = now_s();
    rc = ratelimit_hit(svc->per_client, client, now, &retry);
    if (!rc) rc = ratelimit_hit(svc->per_email, key, now, &retry);
  }
  if (rc == PS_ELIMIT) {
    ps_reply_header(req, "Retry-After", ps_arena_sprintf(&req->arena, "%d", retry));
    ps_reply_problem(req, PS_PROBLEM_RATE_LIMITED, NULL, "too many attempts; try again in %d seconds", retry);
    return rc;
  }
  if (rc) ps_reply_error(req, rc, "the rate limiter is unavailable");
  return rc;
}

static void attempts_clear(ps_req_t *req, const char *key) {
  if (THREAD(req)->redis)
    user_redis_ratelimit_clear(SESSIONS(req), "key", key);
  else
    ratelimit_clear(SVC(req)->per_email, key);
}

/* Loads the signed-in user; answers 401 when the account no longer exists. */
static int current_user_or_reply(ps_req_t *req, user_t *u) {
  if (ps_auth_user_or_reply(req)) return PS_EAUTH;
  int rc = STORE(req)->ops->get_by_id(STORE(req), &req->arena, req->claims.sub, u);
  if (rc == PS_ENOTFOUND) {
    ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, NULL, "the account of this token no longer exists");
    return rc;
  }
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return rc;
  }
  return 0;
}

/* Signs an access token and stores a new refresh token of family (a new family when NULL). */
static json_t *issue_tokens(ps_req_t *req, const user_t *u, const char *family) {
  user_service_t *svc = SVC(req);
  char *access = NULL;
  ps_role_t role = strcmp(u->role, "admin") == 0 ? PS_ROLE_ADMIN : PS_ROLE_CUSTOMER;
  int64_t now = now_s();
  if (ps_jwt_sign(&svc->keys, &req->arena, u->id, u->email, role, now, &access)) return NULL;
  char *refresh = random_token(&req->arena);
  if (!family) family = ps_uuid_v4(&req->arena);
  if (SESSIONS(req)->ops->refresh_add(SESSIONS(req), sha256_hex(&req->arena, refresh), family, u->id,
                                   now + svc->refresh_ttl))
    return NULL;
  return json_pack("{s:s, s:s, s:s, s:I, s:I}", "access_token", access, "refresh_token", refresh,
                   "token_type", "Bearer", "expires_in", (json_int_t)svc->keys.access_ttl,
                   "refresh_expires_in", (json_int_t)svc->refresh_ttl);
}

static int email_or_reply(ps_req_t *req, json_t *body, char *email, size_t len) {
  const char *raw;
  if (ps_json_str_or_reply(req, body, "email", 1, 254, &raw)) return PS_EINVAL;
  const char *why = user_check_email(raw);
  if (why) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "email", "%s", why);
    return PS_EINVAL;
  }
  user_normalize_email(raw, email, len);
  return 0;
}

static int password_or_reply(ps_req_t *req, json_t *body, const char *email, const char **out) {
  if (ps_json_str_or_reply(req, body, "password", 1, 1024, out)) return PS_EINVAL;
  const char *why = user_check_password(*out, email);
  if (why) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "password", "%s", why);
    return PS_EINVAL;
  }
  return 0;
}

/* The answer when the password work could not run. */
static void reply_password_failure(ps_req_t *req, int rc) {
  if (rc == PS_ELIMIT || rc == PS_ECANCELED) {
    ps_reply_header(req, "Retry-After", "1");
    ps_reply_problem(req, PS_PROBLEM_UNAVAILABLE, NULL, "too many sign-ins at once; try again");
    return;
  }
  ps_reply_problem(req, PS_PROBLEM_INTERNAL, NULL, "could not hash the password");
}

/* Free-form profile fields: short keys, scalar values, a bounded total. Applied as a JSON
 * merge patch (RFC 7396): null removes a field. */
static int profile_patch_or_reply(ps_req_t *req, json_t *profile, json_t *patch) {
  const char *key;
  json_t *v;
  json_object_foreach(patch, key, v) {
    size_t klen = strlen(key);
    if (klen == 0 || klen > 64) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, "profile", "profile keys must have 1 to 64 characters");
      return PS_EINVAL;
    }
    if (json_is_null(v)) {
      json_object_del(profile, key);
    } else if (json_is_string(v) || json_is_number(v) || json_is_boolean(v)) {
      if (json_is_string(v) && json_string_length(v) > PROFILE_MAX_VALUE) {
        ps_reply_problem(req, PS_PROBLEM_VALIDATION, "profile", "profile.%s is longer than %d characters", key, PROFILE_MAX_VALUE);
        return PS_EINVAL;
      }
      json_object_set(profile, key, v);
    } else {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, "profile",
                       "profile.%s must be a string, number, boolean or null", key);
      return PS_EINVAL;
    }
  }
  if (json_object_size(profile) > PROFILE_MAX_KEYS) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "profile", "a profile has at most %d fields", PROFILE_MAX_KEYS);
    return PS_EINVAL;
  }
  return 0;
}

/* --- accounts --------------------------------------------------------------------------- */

/* The rest of a registration, once the password is hashed. */
static void register_hashed(ps_req_t *req, int rc, void *arg) {
  user_t *u = arg;
  if (rc) {
    reply_password_failure(req, rc);
    return;
  }
  rc = STORE(req)->ops->create(STORE(req), u);
  if (rc == PS_EEXISTS) {
    ps_reply_problem(req, PS_PROBLEM_DUPLICATE, "email", "an account with this email already exists");
    return;
  }
  if (rc) {
    ps_reply_error(req, rc, "could not create the account");
    return;
  }
  ps_reply_header(req, "Location", ps_arena_sprintf(&req->arena, "/api/v1/users/%s", u->id));
  ps_reply_json(req, 201, user_json(&req->arena, u));
}

static void handle_register(ps_req_t *req) {
  static const char *const allowed[] = {"email", "password", "name", "profile", NULL};
  json_t *body, *patch;
  char email[256];
  const char *password, *name;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      email_or_reply(req, body, email, sizeof(email)) ||
      password_or_reply(req, body, email, &password) ||
      ps_json_opt_str_or_reply(req, body, "name", 0, 100, &name))
    return;
  json_t *profile = json_object();
  ps_arena_defer(&req->arena, (ps_arena_cleanup_cb)json_decref, profile);
  if ((patch = json_object_get(body, "profile")) && !json_is_null(patch)) {
    if (!json_is_object(patch)) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, "profile", "profile must be an object");
      return;
    }
    if (profile_patch_or_reply(req, profile, patch)) return;
  }
  user_t *u = ps_arena_alloc(&req->arena, sizeof(*u));
  *u = (user_t){.id = ps_uuid_v4(&req->arena), .email = ps_arena_strdup(&req->arena, email),
                .role = "customer", .name = name ? name : "",
                .profile = ps_json_dump(&req->arena, profile), .settings = "{}",
                .created_at = now_s()};
  u->updated_at = u->created_at;
  user_password_hash_start(req, password, (char **)&u->password_hash, register_hashed, u);
}

static void handle_me(ps_req_t *req) {
  user_t u;
  if (current_user_or_reply(req, &u)) return;
  ps_reply_json(req, 200, user_json(&req->arena, &u));
}

static void handle_patch_me(ps_req_t *req) {
  static const char *const allowed[] = {"name", "profile", NULL};
  json_t *body, *patch;
  const char *name;
  user_t u;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_opt_str_or_reply(req, body, "name", 0, 100, &name))
    return;
  if (current_user_or_reply(req, &u)) return;
  json_t *profile = parse_object(u.profile);
  ps_arena_defer(&req->arena, (ps_arena_cleanup_cb)json_decref, profile);
  if ((patch = json_object_get(body, "profile")) && !json_is_null(patch)) {
    if (!json_is_object(patch)) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, "profile", "profile must be an object");
      return;
    }
    if (profile_patch_or_reply(req, profile, patch)) return;
  }
  if (name) u.name = name;
  u.profile = ps_json_dump(&req->arena, profile);
  if (strlen(u.profile) > PROFILE_MAX_BYTES) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "profile", "the profile is larger than %d bytes", PROFILE_MAX_BYTES);
    return;
  }
  u.updated_at = now_s();
  int rc = STORE(req)->ops->update_profile(STORE(req), &u);
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  ps_reply_json(req, 200, user_json(&req->arena, &u));
}

static void handle_get_user(ps_req_t *req) {
  user_t u;
  if (ps_auth_admin_or_reply(req)) return;
  const char *id = ps_req_param(req, "id");
  int rc = id ? STORE(req)->ops->get_by_id(STORE(req), &req->arena, id, &u) : PS_ENOTFOUND;
  if (rc == PS_ENOTFOUND) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "no user with this id");
    return;
  }
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  ps_reply_json(req, 200, user_json(&req->arena, &u));
}

/* --- settings --------------------------------------------------------------------------- */

static json_t *settings_with_defaults(const char *stored) {
  json_t *s = json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:b}", "language", "en", "currency", "EUR",
                        "theme", "system", "marketing_opt_in", 0, "notify_email", 1,
                        "notify_push", 1, "notify_sms", 0);
  json_t *saved = parse_object(stored);
  json_object_update_existing(s, saved);
  json_decref(saved);
  return s;
}

static void handle_get_settings(ps_req_t *req) {
  user_t u;
  if (current_user_or_reply(req, &u)) return;
  ps_reply_json(req, 200, settings_with_defaults(u.settings));
}

static int one_of(const char *v, const char *const *options) {
  for (; *options; options++)
    if (strcmp(v, *options) == 0) return 1;
  return 0;
}

static void handle_put_settings(ps_req_t *req) {
  static const char *const allowed[] = {"language", "currency", "theme", "marketing_opt_in",
                                        "notify_email", "notify_push", "notify_sms", NULL};
  static const char *const bools[] = {"marketing_opt_in", "notify_email", "notify_push",
                                      "notify_sms"};
  static const char *const themes[] = {"light", "dark", "system", NULL};
  json_t *body;
  const char *language, *currency, *theme;
  user_t u;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_opt_str_or_reply(req, body, "language", 2, 16, &language) ||
      ps_json_opt_str_or_reply(req, body, "currency", 3, 3, &currency) ||
      ps_json_opt_str_or_reply(req, body, "theme", 1, 16, &theme))
    return;
  if (currency && !(currency[0] >= 'A' && currency[0] <= 'Z' && currency[1] >= 'A' &&
                    currency[1] <= 'Z' && currency[2] >= 'A' && currency[2] <= 'Z')) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "currency", "currency must be an ISO 4217 code such as EUR");
    return;
  }
  if (theme && !one_of(theme, themes)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "theme", "theme must be light, dark or system");
    return;
  }
  for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
    int b, present;
    if (ps_json_opt_bool_or_reply(req, body, bools[i], &b, &present)) return;
  }
  if (current_user_or_reply(req, &u)) return;
  /* PUT replaces: fields left out go back to their defaults. */
  json_t *settings = settings_with_defaults("{}");
  json_object_update_existing(settings, body);
  char *text = ps_json_dump(&req->arena, settings);
  int rc = STORE(req)->ops->update_settings(STORE(req), u.id, text, now_s());
  if (rc) {
    json_decref(settings);
    ps_reply_error(req, rc, NULL);
    return;
  }
  ps_reply_json(req, 200, settings);
}

/* --- sign-in ---------------------------------------------------------------------------- */

typedef struct {
  user_t u;
  int known;         /* the email has an account (else a dummy hash was checked) */
  const char *email; /* normalised, the rate limit's key */
} login_t;

/* The rest of a sign-in, once the password is checked. */
static void login_verified(ps_req_t *req, int rc, void *arg) {
  login_t *l = arg;
  if (rc && rc != PS_EAUTH) {
    reply_password_failure(req, rc);
    return;
  }
  if (rc || !l->known) {
    ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, NULL, "the email or the password is wrong");
    return;
  }
  attempts_clear(req, l->email);
  json_t *tokens = issue_tokens(req, &l->u, NULL);
  if (!tokens) {
    ps_reply_problem(req, PS_PROBLEM_UNAVAILABLE, NULL, "could not start a session");
    return;
  }
  ps_reply_json(req, 200, tokens);
}

static void handle_login(ps_req_t *req) {
  static const char *const allowed[] = {"email", "password", NULL};
  user_service_t *svc = SVC(req);
  json_t *body;
  const char *raw_email, *password;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_str_or_reply(req, body, "email", 1, 254, &raw_email) ||
      ps_json_str_or_reply(req, body, "password", 1, 1024, &password))
    return;
  char email[256];
  user_normalize_email(raw_email, email, sizeof(email));
  if (attempt_allowed_or_reply(req, email)) return;
  user_t u;
  int rc = STORE(req)->ops->get_by_email(STORE(req), &req->arena, email, &u);
  if (rc && rc != PS_ENOTFOUND) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  /* Verify against a dummy hash when the email is unknown, so both cases cost the same and
   * the answer time does not tell which emails have accounts. */
  login_t *l = ps_arena_alloc(&req->arena, sizeof(*l));
  *l = (login_t){.known = rc == 0, .email = ps_arena_strdup(&req->arena, email)};
  if (rc == 0) l->u = u;
  user_password_verify_start(req, rc == 0 ? u.password_hash : svc->dummy_hash, password,
                             login_verified, l);
}

static int refresh_token_or_reply(ps_req_t *req, const char **hash) {
  static const char *const allowed[] = {"refresh_token", NULL};
  json_t *body;
  const char *token;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_str_or_reply(req, body, "refresh_token", 1, 512, &token))
    return PS_EINVAL;
  *hash = sha256_hex(&req->arena, token);
  return 0;
}

static void handle_refresh(ps_req_t *req) {
  const char *hash, *user_id, *family;
  if (refresh_token_or_reply(req, &hash)) return;
  user_store_t *st = STORE(req), *ss = SESSIONS(req);
  int rc = ss->ops->refresh_use(ss, &req->arena, hash, now_s(), &user_id, &family);
  if (rc == PS_ECONFLICT) {
    /* A rotated token came back: someone holds a copy. End the whole session family. */
    ss->ops->refresh_revoke_family(ss, family);
    ps_log(PS_LOG_WARN, req->request_id, "refresh token reuse for user %s: session revoked", user_id);
    ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, "refresh_token",
                     "this refresh token was already used; the session is revoked, sign in again");
    return;
  }
  if (rc == PS_ENOTFOUND || rc == PS_EEXPIRED) {
    ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, "refresh_token",
                     "the refresh token is unknown or expired; sign in again");
    return;
  }
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  user_t u;
  rc = st->ops->get_by_id(st, &req->arena, user_id, &u);
  if (rc) {
    ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, "refresh_token", "the account no longer exists");
    return;
  }
  json_t *tokens = issue_tokens(req, &u, family);
  if (!tokens) {
    ps_reply_problem(req, PS_PROBLEM_UNAVAILABLE, NULL, "could not renew the session");
    return;
  }
  ps_reply_json(req, 200, tokens);
}

static void handle_logout(ps_req_t *req) {
  const char *hash, *family, *user_id;
  if (refresh_token_or_reply(req, &hash)) return;
  user_store_t *ss = SESSIONS(req);
  int rc = ss->ops->refresh_family(ss, &req->arena, hash, &family, &user_id);
  if (rc == 0) rc = ss->ops->refresh_revoke_family(ss, family);
  if (rc && rc != PS_ENOTFOUND) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  ps_reply_json(req, 204, NULL); /* unknown tokens too: logging out twice is fine */
}

/* --- password reset --------------------------------------------------------------------- */

static void handle_reset_request(ps_req_t *req) {
  static const char *const allowed[] = {"email", NULL};
  user_service_t *svc = SVC(req);
  json_t *body;
  char email[256];
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      email_or_reply(req, body, email, sizeof(email)))
    return;
  int64_t now = now_s();
  if (attempt_allowed_or_reply(req, ps_arena_sprintf(&req->arena, "reset:%s", email))) return;
  user_t u;
  user_store_t *st = STORE(req);
  int rc = st->ops->get_by_email(st, &req->arena, email, &u);
  if (rc == 0) {
    char *token = random_token(&req->arena);
    int64_t expires = now + svc->reset_ttl;
    rc = st->ops->reset_add(st, sha256_hex(&req->arena, token), u.id, expires);
    json_t *event = json_pack("{s:s, s:s, s:s, s:s, s:I}", "type", "password_reset", "user_id",
                              u.id, "email", u.email, "token", token, "expires_at",
                              (json_int_t)expires);
    if (rc == 0) rc = st->ops->outbox_add(st, "password_reset", ps_json_dump(&req->arena, event), now);
    json_decref(event);
  }
  if (rc && rc != PS_ENOTFOUND) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  /* The same answer whether or not the account exists: no way to probe for emails. */
  ps_reply_json(req, 202, json_pack("{s:s}", "status", "if the account exists, an email is on its way"));
}

/* The rest of a reset, once the new password is hashed. */
static void reset_hashed(ps_req_t *req, int rc, void *arg) {
  user_t *u = arg;
  if (rc) {
    reply_password_failure(req, rc);
    return;
  }
  user_store_t *st = STORE(req);
  rc = st->ops->update_password(st, u->id, u->password_hash, now_s());
  /* Every session of the account ends: whoever knew the old password is signed out. */
  if (rc == 0) rc = SESSIONS(req)->ops->refresh_revoke_user(SESSIONS(req), u->id);
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  ps_reply_json(req, 204, NULL);
}

static void handle_reset_confirm(ps_req_t *req) {
  static const char *const allowed[] = {"token", "password", NULL};
  json_t *body;
  const char *token, *password, *user_id;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_str_or_reply(req, body, "token", 1, 512, &token) ||
      password_or_reply(req, body, NULL, &password))
    return;
  user_store_t *st = STORE(req);
  int rc = st->ops->reset_consume(st, &req->arena, sha256_hex(&req->arena, token), now_s(), &user_id);
  if (rc == PS_ENOTFOUND || rc == PS_EEXPIRED) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "token", "the reset token is unknown, used or expired");
    return;
  }
  user_t *u = ps_arena_alloc(&req->arena, sizeof(*u));
  if (rc == 0) rc = st->ops->get_by_id(st, &req->arena, user_id, u);
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  const char *why = user_check_password(password, u->email);
  if (why) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "password", "%s", why);
    return;
  }
  user_password_hash_start(req, password, (char **)&u->password_hash, reset_hashed, u);
}

/* --- the route table -------------------------------------------------------------------- */

const ps_route_t user_routes[] = {
    {"POST", "/api/v1/users", handle_register},
    {"GET", "/api/v1/users/me", handle_me},
    {"PATCH", "/api/v1/users/me", handle_patch_me},
    {"GET", "/api/v1/users/me/settings", handle_get_settings},
    {"PUT", "/api/v1/users/me/settings", handle_put_settings},
    {"GET", "/api/v1/users/{id}", handle_get_user},
    {"POST", "/api/v1/auth/login", handle_login},
    {"POST", "/api/v1/auth/refresh", handle_refresh},
    {"POST", "/api/v1/auth/logout", handle_logout},
    {"POST", "/api/v1/auth/password-reset", handle_reset_request},
    {"POST", "/api/v1/auth/password-reset/confirm", handle_reset_confirm},
};
const size_t user_nroutes = sizeof(user_routes) / sizeof(user_routes[0]);
