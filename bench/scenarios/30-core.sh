# bench/scenarios/30-core.sh (sourced by bench/run): what the asynchronous core promises
# (issue 9), open loop.
#
#   users_me_quiet         GET /api/v1/users/me at BENCH_CORE_ME_RATE (500/s) alone: the
#                          reference of the next one, same service, same run
#   users_me_login_storm   the same requests while BENCH_CORE_LOGIN_RATE (50) logins per
#                          second (argon2id at the service's default cost) run on the same
#                          service; target: p99 under 5 ms. Before issue 9 each login held its
#                          event loop for tens of milliseconds and every request queued on
#                          that loop waited with it.

SCENARIOS+=(core_login_storm)
BENCH_TARGETS+=(polyshop-user)

CORE_ME_RATE=${BENCH_CORE_ME_RATE:-500}
CORE_LOGIN_RATE=${BENCH_CORE_LOGIN_RATE:-50}

# core_targets FILE METHOD URL [BODY [HEADER VALUE]...]: one vegeta JSON target.
core_target() {
  /usr/bin/python3 - "$@" <<'PY'
import base64, json, sys
out, method, url = sys.argv[1:4]
t = {"method": method, "url": url, "header": {}}
if len(sys.argv) > 4 and sys.argv[4]:
    t["body"] = base64.b64encode(sys.argv[4].encode()).decode()
    t["header"]["Content-Type"] = ["application/json"]
rest = sys.argv[5:]
for i in range(0, len(rest) - 1, 2):
    t["header"][rest[i]] = [rest[i + 1]]
open(out, "w").write(json.dumps(t) + "\n")
PY
}

scenario_core_login_storm() {
  ((ROUND == ROUNDS)) || return 0
  bench_spawn core_user user USER_LOGIN_LIMIT_PER_EMAIL=100000 \
    USER_LOGIN_LIMIT_PER_CLIENT=1000000 || die "the user service did not start"
  local base="http://127.0.0.1:${SERVICE_PORT[core_user]}" body token
  body='{"email":"storm@example.com","password":"Storm-pass-12345"}'
  curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' -d "$body" "$base/api/v1/users"
  token=$(curl -fsS -X POST -H 'Content-Type: application/json' -d "$body" "$base/api/v1/auth/login" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  core_target "$TMP/core_me.targets" GET "$base/api/v1/users/me" "" Authorization "Bearer $token"
  core_target "$TMP/core_login.targets" POST "$base/api/v1/auth/login" "$body"
  OPENLOOP_CPU=(user=core_user)
  bench_openloop users_me_quiet "user service, GET /api/v1/users/me alone (reference)" \
    "$CORE_ME_RATE" "$TMP/core_me.targets"
  # The storm runs beside the measured requests, from a second load generator, a little
  # longer so that it covers the whole measurement.
  bench_need_loadgen
  bench_loadgen core_logins "$CORE_LOGIN_RATE" $((OPENLOOP_DURATION + 2)) "$TMP/core_login.targets" \
    "$TMP/core_logins.csv" &
  local storm=$!
  bench_openloop users_me_login_storm \
    "user service, GET /api/v1/users/me while $CORE_LOGIN_RATE logins/s (argon2id, default cost) run on it" \
    "$CORE_ME_RATE" "$TMP/core_me.targets" 5
  wait "$storm" || die "the login storm's load generator failed"
  bench_loadgen_csv core_logins "$TMP/core_logins.csv"
  local logins
  logins=$(/usr/bin/python3 "$OPENLOOP_PY" stats "$CORE_LOGIN_RATE" '{}' <"$TMP/core_logins.csv")
  bench_note "login storm beside users_me_login_storm: $(/usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%d logins, %d errors, p50 %.1f ms, p99 %.1f ms" % (r["requests"], r["errors"], r["p50_ms"], r["p99_ms"]))' "$logins")"
  OPENLOOP_CPU=()
}
