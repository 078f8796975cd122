# bench/scenarios/20-checkout.sh (sourced by bench/run): POST /api/v1/orders, the whole
# checkout across four processes (issue 5), open loop at fixed rates. Runs once, in the last
# round.
#
#   checkout_sqlite   order and payment on their embedded SQLite stores; target: p99 under
#                     20 ms at 1,000 orders/s
#   checkout_pg       order and payment on PostgreSQL 15 (a private cluster for the run, in
#                     $TMP: no other work shares it, nothing of it outlives the run)
#
# Both use the same user and product services (embedded SQLite: neither has a PostgreSQL
# adapter). Every order comes from one of BENCH_CHECKOUT_BUYERS (50) buyers in turn, has a
# distinct Idempotency-Key and two lines (quantity 1) of products picked at random among 50
# made for the run with 10,000,000 units each, and is paid with the payment service's
# built-in test provider (pm_card_visa). Each rate of BENCH_CHECKOUT_RATES
# ("250 500 1000 2000") runs BENCH_OPENLOOP_DURATION seconds after a 3 s warm-up at the
# lowest rate. BENCH_CHECKOUT_THREADS sets POLYSHOP_THREADS of the order service, which
# calls the other services synchronously and so serves that many checkouts at once
# (docs/order.md); default: the number of cores, like every other service.

BENCH_TARGETS+=(polyshop-user polyshop-product polyshop-order polyshop-payment)
SCENARIOS+=(checkout_sqlite checkout_pg)

CHECKOUT_RATES=${BENCH_CHECKOUT_RATES:-250 500 1000 2000}
CHECKOUT_THREADS=${BENCH_CHECKOUT_THREADS:-}
CHECKOUT_BUYERS=${BENCH_CHECKOUT_BUYERS:-50}
CHECKOUT_TARGET_RATE=1000
CHECKOUT_SECRET=
CHECKOUT_PRODUCTS=
PG_URL=              # "" not tried, "failed", or the URL
PG_BIN=${POLYSHOP_PG_BIN:-/usr/lib/postgresql/15/bin}

# An admin access token signed with the run's JWT secret (the user service would need an
# admin account for this; the services only check the signature and the claims).
admin_token() {
  JWT_SECRET=$JWT_SECRET /usr/bin/python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
body = b64(json.dumps({"sub": "bench-admin", "role": "admin", "iat": now, "exp": now + 3600,
                       "iss": "polyshop", "jti": b64(os.urandom(16))}, separators=(",", ":")).encode())
sig = hmac.new(os.environ["JWT_SECRET"].encode(), (head + "." + body).encode(), hashlib.sha256).digest()
print(head + "." + body + "." + b64(sig))
PY
}

# The user and product services of the checkout, and 50 products with plenty of stock.
need_checkout_common() {
  [[ -n $CHECKOUT_PRODUCTS ]] && return 0
  CHECKOUT_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # Cheap password hashing and no login limit: the buyers' sign-up is set-up, not measured
  # (a checkout only verifies the access token).
  bench_spawn co_user user POLYSHOP_INTERNAL_TOKEN="$CHECKOUT_SECRET" USER_ARGON2_OPS=1 \
    USER_ARGON2_MEM_KIB=1024 USER_LOGIN_LIMIT_PER_CLIENT=1000000 || die "the user service did not start"
  bench_spawn co_product product POLYSHOP_INTERNAL_TOKEN="$CHECKOUT_SECRET" || die "the product service did not start"
  CHECKOUT_PRODUCTS=$TMP/checkout.ids
  ADMIN=$(admin_token) /usr/bin/python3 - "http://127.0.0.1:${SERVICE_PORT[co_product]}" "$CHECKOUT_PRODUCTS" <<'PY' ||
import json, os, sys, urllib.request
base, out = sys.argv[1], sys.argv[2]
def post(path, doc):
    req = urllib.request.Request(base + path, json.dumps(doc).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": "Bearer " + os.environ["ADMIN"]})
    return json.load(urllib.request.urlopen(req, timeout=30))
post("/api/v1/categories", {"slug": "bench", "name": "Bench"})
ids = []
for i in range(50):
    p = post("/api/v1/products", {"sku": "BENCH-%03d" % i, "name": "Bench item %d" % i, "kind": "other",
                                  "brand": "Benchmark", "category": "bench", "price": 1000 + 7 * i,
                                  "currency": "EUR", "stock": 10000000})
    ids.append(p["id"])
open(out, "w").write("\n".join(ids) + "\n")
PY
    die "cannot create the checkout's products"
  log "checkout: 50 products with 10,000,000 units each"
}

# A PostgreSQL 15 cluster of the run's own: durability as the embedded stores have it
# (WAL mode, synchronous=NORMAL: a crash cannot corrupt, a power cut can lose the last
# commits), i.e. fsync on and synchronous_commit off.
need_postgres() {
  [[ -z $PG_URL ]] || return 0
  PG_URL=failed
  if [[ ! -x $PG_BIN/initdb ]]; then
    bench_note "PostgreSQL: not measured, $PG_BIN/initdb is missing (scripts/install-deps installs postgresql-15)."
    return 0
  fi
  local d=$TMP/pg port run=()
  port=$(free_port)
  mkdir -p "$d"
  if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    chmod 711 "$TMP"
    chown postgres: "$d"
    run=(runuser -u postgres --)
  fi
  printf 'polyshop\n' >"$d/pw"
  ((EUID == 0)) && chown postgres: "$d/pw"
  if ! "${run[@]}" "$PG_BIN/initdb" -D "$d/data" -U polyshop --pwfile="$d/pw" -A scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$d/initdb.log" 2>&1; then
    bench_note "PostgreSQL: not measured, initdb failed: $(tail -n1 "$d/initdb.log")"
    return 0
  fi
  cat >>"$d/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$d'
synchronous_commit = off
max_connections = 100
shared_buffers = 128MB
EOF
  if ! "${run[@]}" "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/log" -s start -w -t 60 >/dev/null 2>&1; then
    bench_note "PostgreSQL: not measured, the cluster did not start: $(tail -n1 "$d/log")"
    return 0
  fi
  PG_PID=$(head -n1 "$d/data/postmaster.pid")
  PIDS+=("$PG_PID")
  PGPASSWORD=polyshop psql -qX -h 127.0.0.1 -p "$port" -U polyshop -d postgres \
    -c 'CREATE DATABASE polyshop' >/dev/null || die "cannot create the benchmark's database"
  PG_URL=postgresql://polyshop:polyshop@127.0.0.1:$port/polyshop
  bench_note "PostgreSQL: $("$PG_BIN/postgres" --version | awk '{print $3}'), a cluster private to the run (initdb in the run's folder), shared_buffers 128MB, fsync on, synchronous_commit off (the embedded stores' durability: WAL with synchronous=NORMAL); the user and product services stay on SQLite (they have no PostgreSQL adapter)."
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on :$port"
}

# checkout_stack STORE (sqlite or pg): the payment and order services of that store.
checkout_stack() {
  local store=$1 pay=() ord=() threads=()
  need_checkout_common
  if [[ $store == pg ]]; then
    pay=(PAYMENT_STORE="$PG_URL")
    ord=(ORDER_STORE="$PG_URL")
  fi
  [[ -n $CHECKOUT_THREADS ]] && threads=(POLYSHOP_THREADS="$CHECKOUT_THREADS")
  bench_spawn "co_payment_$store" payment POLYSHOP_INTERNAL_TOKEN="$CHECKOUT_SECRET" "${pay[@]}" || return 1
  bench_spawn "co_order_$store" order POLYSHOP_INTERNAL_TOKEN="$CHECKOUT_SECRET" "${ord[@]}" "${threads[@]}" \
    USER_URL="http://127.0.0.1:${SERVICE_PORT[co_user]}" \
    PRODUCT_URL="http://127.0.0.1:${SERVICE_PORT[co_product]}" \
    PAYMENT_URL="http://127.0.0.1:${SERVICE_PORT[co_payment_$store]}" || return 1
}

# wait_idle ORDERS_URL: until the order service answers its probe quickly again (requests
# the load generator gave up on are still queued in an overloaded service), so that each rate starts
# from an idle system.
wait_idle() {
  local health=${1%/api/v1/orders}/healthz deadline=$((SECONDS + 120)) t quick=0
  while ((SECONDS < deadline)); do
    sleep 0.5
    t=$(curl -s -o /dev/null -w '%{time_total}' --max-time 10 "$health" || echo 10)
    if awk -v t="$t" 'BEGIN { exit !(t < 0.05) }'; then
      ((++quick < 3)) || return 0
    else
      quick=0
    fi
  done
  return 1
}

# checkout_login EMAIL: registers the buyer on the checkout's user service, prints a token.
checkout_login() {
  local base="http://127.0.0.1:${SERVICE_PORT[co_user]}" body
  body=$(printf '{"email":"%s","password":"Bench-pass-12345"}' "$1")
  curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' -d "$body" "$base/api/v1/users"
  curl -fsS -X POST -H 'Content-Type: application/json' -d "$body" "$base/api/v1/auth/login" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# checkout_rates STORE LABEL: the warm-up and every rate, each order a new key.
checkout_rates() {
  local store=$1 label=$2 base token rate n target
  base="http://127.0.0.1:${SERVICE_PORT[co_order_$store]}/api/v1/orders"
  # The buyers: logged in now, so their tokens (15 minutes) outlive the sweep.
  local i tokens=$TMP/buyers-$store.tokens
  : >"$tokens"
  for ((i = 0; i < CHECKOUT_BUYERS; i++)); do checkout_login "buyer$i-$store@example.com" >>"$tokens"; done
  token=$(head -n1 "$tokens")
  local first
  first=$(curl -sS -o "$TMP/checkout_first.json" -w '%{http_code}' -X POST "$base" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -H "Idempotency-Key: first-$store" \
    -d "{\"items\":[{\"product_id\":\"$(head -n1 "$CHECKOUT_PRODUCTS")\",\"quantity\":1}],\"address\":{\"name\":\"Bench Buyer\",\"line1\":\"1 Main St\",\"city\":\"Berlin\",\"postal_code\":\"10115\",\"country\":\"DE\"}}")
  [[ $first == 201 ]] || { cat "$TMP/checkout_first.json" >&2; die "checkout_$store: a first order answers $first"; }
  local low=${CHECKOUT_RATES%% *}
  /usr/bin/python3 "$OPENLOOP_PY" order-targets "$base" "$tokens" "$CHECKOUT_PRODUCTS" $((low * 3)) "warm-$store" >"$TMP/warm.targets"
  log "checkout_$store: warm-up 3 s at $low orders/s ($LOADGEN)"
  bench_loadgen "checkout_${store}_warm" "$low" 3 "$TMP/warm.targets" /dev/null
  if [[ $LOADGEN == vegeta ]]; then rm -f "$TMP/checkout_${store}_warm.bin"; fi
  if [[ $store == pg ]]; then
    # Planner statistics for the tables the warm-up filled, as autovacuum would have them on
    # a running shop (it looks at most once a minute; the run is shorter).
    PGPASSWORD=polyshop psql -qX "${PG_URL/polyshop:polyshop@/polyshop@}" -c 'ANALYZE' >/dev/null ||
      log "checkout_pg: ANALYZE failed"
  fi
  OPENLOOP_CPU=(user=co_user product=co_product order="co_order_$store" payment="co_payment_$store")
  [[ $store == pg ]] && OPENLOOP_CPU+=(postgres=postgres)
  for rate in $CHECKOUT_RATES; do
    n=$((rate * OPENLOOP_DURATION))
    /usr/bin/python3 "$OPENLOOP_PY" order-targets "$base" "$tokens" "$CHECKOUT_PRODUCTS" "$n" "$store-$rate" >"$TMP/orders.targets"
    target=
    [[ $store == sqlite && $rate == "$CHECKOUT_TARGET_RATE" ]] && target=20
    wait_idle "$base" || bench_note "checkout_${store}_$rate: the order service was still busy with the previous rate's backlog after 120 s."
    bench_openloop "checkout_${store}_$rate" "POST /api/v1/orders, $label" "$rate" "$TMP/orders.targets" $target
  done
  OPENLOOP_CPU=()
  rm -f "$TMP/orders.targets" "$TMP/warm.targets"
}

scenario_checkout_sqlite() {
  ((ROUND == ROUNDS)) || return 0
  bench_note "Checkout: every order is from one of $CHECKOUT_BUYERS buyers in turn, 2 lines (quantity 1) of 50 products, a new Idempotency-Key, the test provider's good card; user, product, order and payment are separate processes (POLYSHOP_THREADS ${CHECKOUT_THREADS:-default} for the order service, which serves that many checkouts at once) and the load generator, $LOADGEN_NAME, runs on the same 2 cores. Each rate starts once the previous one's backlog is served; past saturation \`sent/s\` is about the stack's throughput, since the load generator keeps at most $OPENLOOP_MAX_WORKERS orders in flight."
  checkout_stack sqlite || die "the checkout services did not start on SQLite"
  checkout_rates sqlite "order + payment on embedded SQLite"
}

scenario_checkout_pg() {
  ((ROUND == ROUNDS)) || return 0
  need_postgres
  [[ $PG_URL == failed ]] && return 0
  if ! checkout_stack pg; then
    bench_note "PostgreSQL: not measured, the order or payment service did not start on it."
    return 0
  fi
  checkout_rates pg "order + payment on PostgreSQL 15"
}
