# bench/scenarios/00-lib.sh (sourced by bench/run before the other scenario files): helpers
# the product and checkout scenarios share.
#
#   bench_spawn KEY NAME [VAR=VALUE...]
#       like bench_need_service, but several instances of one service can run (KEY names
#       the instance: SERVICE_PORT[KEY], $TMP/KEY.log, default store sqlite://$TMP/KEY.db),
#       and a service that does not come up within BENCH_START_TIMEOUT (120 s) is a
#       failure returned (1), not the end of the run.
#   bench_openloop ID DESCRIPTION RATE TARGETS_FILE [P99_TARGET_MS]
#       open loop: the load generator (below) at RATE requests/s for BENCH_OPENLOOP_DURATION
#       seconds (10), at most BENCH_OPENLOOP_MAX_WORKERS (1000) requests in flight, with
#       the vegeta JSON targets in TARGETS_FILE (one request per line, used in turn);
#       records p50/p99/p99.9/max, errors and the rate really sent. With P99_TARGET_MS the
#       p99 must stay under it with no error (a verdict in the report; a miss counts for
#       BENCH_STRICT).
#       OPENLOOP_CPU=(LABEL=KEY...) also records the CPU time each instance KEY (of
#       bench_spawn; "postgres" for the run's PostgreSQL with its backends) spends per
#       request, and the load generator's (a child of this shell: `times` counts it).
#   bench_loadgen NAME RATE SECONDS TARGETS_FILE OUT_CSV
#       one open-loop attack with the load generator, its results in vegeta's CSV format
#       (bench_openloop uses it; the checkout's warm-up too, with /dev/null).
#   bench_ratio_target ID RATIO REFERENCE
#       ID's requests/s (wrk, median of the per-round ratios) must reach RATIO of those of
#       the scenario REFERENCE run in the same rounds (bench_target compares with nginx).
#   bench_note TEXT
#       a line for the "Notes" of the report (what could not be measured, and why).
#
# wrk is closed-loop: a stalled server slows the client down and the stall hides. Latency
# targets are measured open-loop instead, with a load generator sending on schedule whatever
# the server does. By default that is bench/loadgen/openloop.c, built with cc into the run's
# folder: one thread on libevent, one wake-up per request, latency counted from each
# request's scheduled time (a request the in-flight cap holds back is late against the
# server: no coordinated omission). On this 2-core machine it spends 20-50 µs of CPU per
# product GET and 45-90 µs per checkout, mostly the kernel's loopback TCP; vegeta spends
# 50-350 and 230-590 µs, CPU the services measured do not get. BENCH_LOADGEN=vegeta uses
# vegeta (latency from the actual send), installed with `go install` into
# ${POLYSHOP_CACHE:-~/.cache/polyshop}/bin once. Both read the same vegeta JSON targets and
# give vegeta's CSV results. openloop_report (listed in BENCH_REPORTS) appends the open-loop
# table, the notes and the verdicts to bench/RESULTS.md; bench/scenarios/openloop.py does
# the arithmetic and writes the targets files.

LOADGEN=${BENCH_LOADGEN:-openloop}
case $LOADGEN in
  openloop) LOADGEN_NAME="openloop (bench/loadgen/openloop.c)" ;;
  vegeta) LOADGEN_NAME=vegeta ;;
  *) die "BENCH_LOADGEN is openloop (the default) or vegeta, not '$LOADGEN'" ;;
esac
OPENLOOP_BIN=
VEGETA_MODULE=github.com/tsenart/vegeta/v12@v12.13.0
OPENLOOP_DURATION=${BENCH_OPENLOOP_DURATION:-10}
OPENLOOP_MAX_WORKERS=${BENCH_OPENLOOP_MAX_WORKERS:-1000}
START_TIMEOUT=${BENCH_START_TIMEOUT:-120}
OPENLOOP_PY=$ROOT/bench/scenarios/openloop.py
VEGETA=
BENCH_REPORTS+=(openloop_report)
declare -A RATIO_TARGET=()
declare -A SERVICE_PID=()
OPENLOOP_CPU=()
PG_PID=

bench_spawn() {
  local key=$1 name=$2; shift 2
  [[ -n ${SERVICE_PORT[$key]:-} ]] && return 0
  local bin=$ROOT/$BUILD/services/$name/polyshop-$name port up pid
  [[ -x $bin ]] || { log "$bin is not built"; return 1; }
  port=$(free_port)
  up=$(tr '[:lower:]' '[:upper:]' <<<"$name")
  env POLYSHOP_LISTEN="127.0.0.1:$port" POLYSHOP_JWT_SECRET="$JWT_SECRET" \
      POLYSHOP_DATA_DIR="$TMP" POLYSHOP_LOG_LEVEL="$LOG_LEVEL" \
      "${up}_STORE=sqlite://$TMP/$key.db" "$@" "$bin" >>"$TMP/$key.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if ! wait_http "http://127.0.0.1:$port/healthz" "$START_TIMEOUT"; then
    log "$key ($name) did not start; the end of its log:"
    tail -n 20 "$TMP/$key.log" >&2
    kill -TERM "$pid" 2>/dev/null || true
    return 1
  fi
  SERVICE_PORT[$key]=$port
  SERVICE_PID[$key]=$pid
  log "$key: $name service on :$port (pid $pid)"
}

bench_need_vegeta() {
  [[ -n $VEGETA ]] && return 0
  local bin=${POLYSHOP_CACHE:-$HOME/.cache/polyshop}/bin
  local stamp=$bin/.vegeta.version
  if ! [[ -x $bin/vegeta && -f $stamp && $(cat "$stamp") == "$VEGETA_MODULE" ]]; then
    local go
    go=$(command -v go || echo /usr/local/go/bin/go)
    [[ -x $go ]] || die "vegeta is needed for the open-loop runs, and go to install it"
    log "installing vegeta ($VEGETA_MODULE) with go install"
    mkdir -p "$bin"
    (export GOTOOLCHAIN=local GOFLAGS=-trimpath CGO_ENABLED=0; GOBIN=$bin "$go" install "$VEGETA_MODULE") ||
      die "go install $VEGETA_MODULE failed"
    echo "$VEGETA_MODULE" >"$stamp"
  fi
  VEGETA=$bin/vegeta
}

# bench_need_loadgen: the chosen load generator, built or installed once per run.
bench_need_loadgen() {
  if [[ $LOADGEN == vegeta ]]; then
    bench_need_vegeta
    return 0
  fi
  [[ -n $OPENLOOP_BIN ]] && return 0
  log "building bench/loadgen/openloop.c"
  # shellcheck disable=SC2046
  cc -std=c17 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
    $(pkg-config --cflags libevent jansson) "$ROOT"/bench/loadgen/*.c -o "$TMP/openloop" \
    $(pkg-config --libs libevent jansson) -lm || die "cannot build bench/loadgen/openloop.c"
  OPENLOOP_BIN=$TMP/openloop
}

bench_loadgen() {
  local name=$1 rate=$2 secs=$3 targets=$4 out=$5
  bench_need_loadgen
  if [[ $LOADGEN == vegeta ]]; then
    "$VEGETA" attack -format=json -targets="$targets" -rate="$rate/1s" -duration="${secs}s" -timeout=10s \
      -max-workers="$OPENLOOP_MAX_WORKERS" -max-body=400 -name="$name" >"$TMP/$name.bin" ||
      die "$name: vegeta failed"
  else
    "$OPENLOOP_BIN" -r "$rate" -d "$secs" -t 10 -c "$OPENLOOP_MAX_WORKERS" -b 400 -n "$name" -o "$out" "$targets" ||
      die "$name: the load generator failed"
  fi
}

# bench_loadgen_csv NAME OUT_CSV: after bench_loadgen (and outside the CPU accounting): vegeta's
# binary results to CSV.
bench_loadgen_csv() {
  [[ $LOADGEN == vegeta ]] || return 0
  "$VEGETA" encode --to csv <"$TMP/$1.bin" >"$2" || die "$1: vegeta encode failed"
  rm -f "$TMP/$1.bin"
}

bench_ratio_target() { RATIO_TARGET[$1]="$2 $3"; }

bench_note() { printf -- '- %s\n' "$*" >>"$TMP/notes.md"; }

# cpu_pids KEY: the processes whose CPU time counts for instance KEY.
cpu_pids() {
  if [[ $1 == postgres ]]; then
    [[ -n $PG_PID ]] && { echo "$PG_PID"; pgrep -P "$PG_PID"; }
  else
    echo "${SERVICE_PID[$1]:-}"
  fi
}

# children_seconds FILE: user + system CPU seconds of the shell's finished children, from
# the output of `times` (which must run in the shell itself, not in a $(...) subshell).
children_seconds() {
  tail -n1 "$1" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%.3f", s }'
}

bench_openloop() {
  local id=$1 desc=$2 rate=$3 targets=$4 p99_ms=${5:-}
  bench_need_loadgen
  log "$id: open loop, $rate req/s for ${OPENLOOP_DURATION}s ($LOADGEN)"
  local csv=$TMP/$id.csv json spec cpu="{" c0 c1
  local -A pids_of=() t0=()
  for spec in "${OPENLOOP_CPU[@]}"; do
    pids_of[$spec]=$(cpu_pids "${spec#*=}" | tr '\n' ' ')
    # shellcheck disable=SC2086
    t0[$spec]=$(cpu_ticks ${pids_of[$spec]})
  done
  # The load generator runs in this shell (not in a subshell), so that `times` counts it.
  times >"$TMP/times.0"
  bench_loadgen "$id" "$rate" "$OPENLOOP_DURATION" "$targets" "$csv"
  times >"$TMP/times.1"
  c0=$(children_seconds "$TMP/times.0") c1=$(children_seconds "$TMP/times.1")
  for spec in "${OPENLOOP_CPU[@]}"; do
    # shellcheck disable=SC2086
    cpu+="\"${spec%%=*}\": $(( ($(cpu_ticks ${pids_of[$spec]}) - t0[$spec]) * 1000000 / CLK_TCK )), "
  done
  cpu+="\"loadgen\": $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%d", (b - a) * 1000000 }')}"
  bench_loadgen_csv "$id" "$csv"
  json=$(/usr/bin/python3 "$OPENLOOP_PY" stats "$rate" "$cpu" <"$csv") ||
    die "$id: no statistics from the load generator's results"
  rm -f "$csv"
  printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$rate" "${p99_ms:--}" "$desc" "$json" >>"$TMP/openloop.tsv"
  log "$id: $(/usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("sent %.0f/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, errors %d of %d %s" % (r["sent_rate"], r["p50_ms"], r["p99_ms"], r["p999_ms"], r["errors"], r["requests"], r["error_kinds"] or ""))' "$json")"
}

# bench_median_rps ID: the median requests/s of ID's wrk rounds so far (0 when none).
bench_median_rps() {
  /usr/bin/python3 - "$TMP/results.tsv" "$1" <<'PY'
import json, sys
xs = sorted(json.loads(l.split("\t", 2)[2])["rps"] for l in open(sys.argv[1]) if l.split("\t", 1)[0] == sys.argv[2])
print(int(xs[(len(xs) - 1) // 2]) if xs else 0)
PY
}

openloop_report() {
  local k
  : >"$TMP/ratio_targets.tsv"
  for k in "${!RATIO_TARGET[@]}"; do printf '%s\t%s\n' "$k" "${RATIO_TARGET[$k]}" >>"$TMP/ratio_targets.tsv"; done
  touch "$TMP/openloop.tsv"
  TMP=$TMP OPENLOOP_DURATION=$OPENLOOP_DURATION OPENLOOP_MAX_WORKERS=$OPENLOOP_MAX_WORKERS VEGETA_MODULE=$VEGETA_MODULE \
    OPENLOOP_LOADGEN=$LOADGEN \
    /usr/bin/python3 "$OPENLOOP_PY" report
}
