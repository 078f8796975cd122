"""openloop.py - the Python side of bench/scenarios/00-lib.sh's open-loop runs (bench/run).

  openloop.py stats RATE [CPU]      the load generator's CSV results on stdin (vegeta's
                                    format, which bench/loadgen/openloop.c writes too), and
                                    the CPU microseconds each process spent (a JSON object)
                                    -> one JSON line
  openloop.py get-targets BASE IDS  vegeta JSON targets: GET BASE/<id> for each line of IDS
  openloop.py order-targets URL TOKENS IDS N PREFIX
                                    N POST URL targets, each a distinct Idempotency-Key
                                    PREFIX-<n>, two lines of products from IDS, the buyers'
                                    access tokens of TOKENS in turn
  openloop.py report                Markdown section for bench/RESULTS.md (env TMP ...)
"""
import base64
import csv
import json
import os
import random
import re
import sys


def percentile(sorted_xs, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_xs:
        return 0
    k = max(0, min(len(sorted_xs) - 1, int(-(-p * len(sorted_xs) // 100)) - 1))
    return sorted_xs[k]


def stats(rate, cpu_json="{}"):
    # vegeta encode --to csv (and bench/loadgen/openloop.c): timestamp(ns), code, latency(ns),
    # bytes out, bytes in, error, body (base64), attack, seq, method, url, headers
    lat, starts, codes, kinds = [], [], {}, {}
    errors = 0
    for row in csv.reader(sys.stdin):
        if len(row) < 6:
            continue
        ts, code, ns, err = int(row[0]), int(row[1]), int(row[2]), row[5]
        starts.append(ts)
        lat.append(ns / 1e6)
        codes[code] = codes.get(code, 0) + 1
        if err or not 200 <= code < 300:
            errors += 1
            if code:
                kind = str(code)
                body = base64.b64decode(row[6]) if len(row) > 6 and row[6] else b""
                try:  # a problem document names its type: say which
                    t = json.loads(body).get("type", "")
                    if t:
                        kind += " " + re.split(r"[/:]", t)[-1]
                except (ValueError, AttributeError):
                    pass
            else:
                # Go's errors name the request first ('Get "http://...": dial tcp ...'): drop it,
                # so that one cause counts once.
                msg = re.sub(r'^[A-Z]+ "[^"]*": ', "", err)
                msg = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1", msg)
                kind = "timeout" if "timeout" in msg.lower() or "deadline" in msg.lower() else msg[:80]
            kinds[kind] = kinds.get(kind, 0) + 1
    lat.sort()
    n = len(lat)
    span = (max(starts) - min(starts)) / 1e9 if n > 1 else 0
    print(json.dumps({
        "rate": float(rate), "requests": n,
        "sent_rate": (n - 1) / span if span > 0 else 0,
        "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99), "p999_ms": percentile(lat, 99.9),
        "max_ms": lat[-1] if lat else 0, "errors": errors,
        "codes": {str(k): v for k, v in sorted(codes.items())}, "error_kinds": kinds,
        "cpu_us": json.loads(cpu_json),  # CPU microseconds during the attack, by process
    }))


def get_targets(base, ids_file):
    for line in open(ids_file):
        pid = line.strip()
        if pid:
            print(json.dumps({"method": "GET", "url": base.rstrip("/") + "/" + pid}))


def order_targets(url, tokens_file, ids_file, n, prefix):
    tokens = [l.strip() for l in open(tokens_file) if l.strip()]
    ids = [l.strip() for l in open(ids_file) if l.strip()]
    rnd = random.Random(20261124)
    address = {"name": "Bench Buyer", "line1": "1 Main St", "city": "Berlin",
               "postal_code": "10115", "country": "DE"}
    for i in range(int(n)):
        a, b = rnd.sample(ids, 2)
        body = json.dumps({"items": [{"product_id": a, "quantity": 1},
                                     {"product_id": b, "quantity": 1}],
                           "address": address, "payment_method": "pm_card_visa"},
                          separators=(",", ":"))
        print(json.dumps({
            "method": "POST", "url": url,
            "body": base64.b64encode(body.encode()).decode(),
            "header": {"Authorization": ["Bearer " + tokens[i % len(tokens)]],
                       "Content-Type": ["application/json"],
                       "Idempotency-Key": ["%s-%d" % (prefix, i)]}}))


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def cpu_per_request(rs):
    """Server CPU microseconds per request over every wrk round of a scenario (bench/run
    records cpu_ticks and clk_tck with each round)."""
    done = [x for x in rs.values() if "cpu_ticks" in x]
    reqs = sum(x["requests"] for x in done)
    if not reqs:
        return None
    return sum(x["cpu_ticks"] for x in done) * 1e6 / done[0]["clk_tck"] / reqs


def report():
    tmp = os.environ["TMP"]
    lines, verdicts, missed = [], [], 0

    # Throughput targets against a reference scenario (wrk, same rounds).
    runs = {}
    for line in open(os.path.join(tmp, "results.tsv")):
        sid, rnd, js = line.rstrip("\n").split("\t", 2)
        runs.setdefault(sid, {})[int(rnd)] = json.loads(js)
    for line in open(os.path.join(tmp, "ratio_targets.tsv")):
        if not line.strip():
            continue
        sid, spec = line.rstrip("\n").split("\t", 1)
        ratio_s, ref = spec.split(" ", 1)
        want = float(ratio_s)
        rs, refs = runs.get(sid, {}), runs.get(ref, {})
        ratios = [rs[k]["rps"] / refs[k]["rps"] for k in rs if k in refs and refs[k]["rps"]]
        if not ratios:
            verdicts.append("- `%s` at least %.0f%% of `%s`'s requests/s: **not measured**" % (sid, 100 * want, ref))
            missed += 1
            continue
        r = median(ratios)
        ok = r >= want
        c_s, c_r = cpu_per_request(rs), cpu_per_request(refs)
        eff = ("; by server CPU per request (%.1f vs %.1f µs), which other load on the machine hardly "
               "moves, it does %.0f%% of the reference's work rate" % (c_s, c_r, 100 * c_r / c_s)) if c_s and c_r else ""
        missed += not ok
        verdicts.append("- `%s` at least %.0f%% of `%s`'s requests/s (same rounds, back to back): **%s** "
                        "(%.1f%%: %s vs %s req/s, median rounds; per-round ratios %s)%s" % (
                            sid, 100 * want, ref, "met" if ok else "NOT met", 100 * r,
                            "{:,.0f}".format(median([x["rps"] for x in rs.values()])),
                            "{:,.0f}".format(median([x["rps"] for x in refs.values()])),
                            ", ".join("%.0f%%" % (100 * x) for x in ratios), eff))

    rows = []
    for line in open(os.path.join(tmp, "openloop.tsv")):
        sid, rate, p99_target, desc, js = line.rstrip("\n").split("\t", 4)
        r = json.loads(js)
        top = sorted(r["error_kinds"].items(), key=lambda kv: -kv[1])
        kinds = ", ".join("%s ×%d" % (k.replace("|", "/"), v) for k, v in top[:4])
        if len(top) > 4:
            kinds += ", %d other kinds ×%d" % (len(top) - 4, sum(v for _, v in top[4:]))
        cpu = dict(r.get("cpu_us", {}))
        n = max(r["requests"], 1)
        loadgen = cpu.pop("loadgen", None)
        server = "%.0f µs" % (sum(cpu.values()) / n) if cpu else "n/a"
        if len(cpu) > 1:
            server += " (" + ", ".join("%s %.0f" % (k, v / n) for k, v in cpu.items()) + ")"
        rows.append("| `%s` | %s | %s | %.0f | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %d / %d%s | %s | %s |" % (
            sid, desc, "{:,}".format(int(float(rate))), r["sent_rate"], r["p50_ms"], r["p99_ms"],
            r["p999_ms"], r["max_ms"], r["errors"], r["requests"], (" (" + kinds + ")") if kinds else "",
            server, "%.0f µs" % (loadgen / n) if loadgen is not None else "n/a"))
        if p99_target != "-":
            t = float(p99_target)
            ok = r["p99_ms"] < t and r["errors"] == 0
            missed += not ok
            need = ""
            if cpu:
                per = sum(cpu.values()) / n
                need = ("; the servers spent %.0f µs of CPU per request, so %s req/s need %.2f cores "
                        "for the servers alone (%.2f with the load generator) of the machine's %d" % (
                            per, "{:,}".format(int(float(rate))), per * float(rate) / 1e6,
                            (per + (loadgen or 0) / n) * float(rate) / 1e6, os.cpu_count() or 0))
            verdicts.append("- `%s` p99 under %g ms at %s req/s, open loop: **%s** (p99 %.2f ms, p99.9 %.2f ms, %d errors of %d, sent %.0f/s%s)" % (
                sid, t, "{:,}".format(int(float(rate))), "met" if ok else "NOT met", r["p99_ms"], r["p999_ms"],
                r["errors"], r["requests"], r["sent_rate"], need))

    if rows:
        if os.environ.get("OPENLOOP_LOADGEN", "vegeta") == "vegeta":
            gen, gen_name = "`%s`" % os.environ.get("VEGETA_MODULE", "vegeta"), "vegeta"
            latency = ("Latency is from sending a request to its whole answer (a request that waits for "
                       "a free worker is not charged that wait)")
            cap = "vegeta's `-max-workers`"
        else:
            gen, gen_name = "`bench/loadgen/openloop.c` (one thread, libevent, HTTP/1.1 keep-alive)", "openloop"
            latency = ("Latency is from the request's scheduled time (start + i / rate) to its whole answer, "
                       "so a request the generator sends late, held back by the in-flight cap, is late "
                       "against the server (no coordinated omission)")
            cap = "the generator's cap"
        lines += [
            "## Open-loop latency (%s)" % gen_name,
            "",
            "%s attacking at a fixed rate for %s s: requests leave on schedule whatever the "
            "server does, so a stall shows in the latency instead of slowing the client (wrk above "
            "is closed-loop). %s; percentiles are "
            "nearest-rank over every request; an error is a transport error, a timeout (10 s) or a "
            "non-2xx status. At most %s requests are in flight (%s): a server that "
            "falls further behind makes the generator fall behind its schedule instead of opening thousands of "
            "connections, and `sent/s`, the rate really sent, drops below the asked rate (so does it "
            "when the load generator is short of CPU). Server CPU per request: user + system time of "
            "the server processes (each service with all its threads; PostgreSQL with its backends) "
            "during the attack over the requests sent, in µs, split by process; the machine has %d cores "
            "for all of it, the load generator included." % (
                gen, os.environ.get("OPENLOOP_DURATION", "?"), latency,
                os.environ.get("OPENLOOP_MAX_WORKERS", "?"), cap, os.cpu_count() or 0),
            "",
            "| scenario | what | rate/s | sent/s | p50 | p99 | p99.9 | max | errors / requests | server CPU per request | %s CPU per request |" % gen_name,
            "|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
        ] + rows + [""]
    notes = os.path.join(tmp, "notes.md")
    if os.path.exists(notes):
        lines += ["## Notes", "", open(notes).read().rstrip("\n"), ""]
    if verdicts:
        lines += ["## Targets against a reference, and latency targets", ""] + verdicts + [""]
    if lines:
        print("\n" + "\n".join(lines), end="")
    mf = os.path.join(tmp, "missed")
    before = int(open(mf).read().strip() or 0) if os.path.exists(mf) else 0
    open(mf, "w").write(str(before + missed))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "stats":
        stats(*sys.argv[2:4])
    elif cmd == "get-targets":
        get_targets(sys.argv[2], sys.argv[3])
    elif cmd == "order-targets":
        order_targets(*sys.argv[2:7])
    elif cmd == "report":
        report()
    else:
        sys.exit("openloop.py: unknown command " + cmd)
