"""No event loop ever waits (docs/design.md; issue 9): no call in lib/ or services/ (tests
excluded) that sleeps or blocks on a timer: sleep, usleep, nanosleep, clock_nanosleep and
any other *sleep* function, sqlite3_busy_timeout, select/pselect, poll/ppoll/epoll_wait
with a timeout other than 0, pthread_cond_timedwait and the other timed waits. Code that
runs off the loops (the worker pool, the exporter thread, the blocking client of non-loop
threads, a checkpointer thread) is named in no_sleep_allow.txt with its reason."""
import pathlib
import re

from csource import ROOT, blank, functions, read_allow_list, rel, sources

ALLOW = pathlib.Path(__file__).with_name("no_sleep_allow.txt")

WAITS = re.compile(r"\b(\w*sleep\w*|sqlite3_busy_timeout|pthread_cond_timedwait|"
                   r"pthread_mutex_timedlock|pthread_rwlock_timed\w+|sem_timedwait|"
                   r"mtx_timedlock|cnd_timedwait|select|pselect)\s*\(")
POLLS = re.compile(r"\b(poll|ppoll|epoll_wait|epoll_pwait)\s*\(")


def _last_arg(code, open_paren):
    depth, start = 0, open_paren + 1
    for j in range(open_paren, len(code)):
        if code[j] == "(":
            depth += 1
        elif code[j] == ")":
            depth -= 1
            if depth == 0:
                return code[start:j].strip()
        elif code[j] == "," and depth == 1:
            start = j + 1
    return ""


def waits_in(code):
    """[(function, call, line)] of the waiting calls inside function bodies of code."""
    out = []
    for name, _, _, body, end in functions(code):
        text = code[body:end]
        for m in WAITS.finditer(text):
            out.append((name, m.group(1), code.count("\n", 0, body + m.start()) + 1))
        for m in POLLS.finditer(text):
            if _last_arg(text, m.end() - 1) != "0":
                out.append((name, m.group(1), code.count("\n", 0, body + m.start()) + 1))
    return out


def test_no_waiting_calls():
    allowed = read_allow_list(ALLOW, 3)
    found = {}
    for p in sources():
        for fn, call, line in waits_in(blank(p.read_text())):
            found.setdefault((rel(p), fn, call), []).append(line)
    offenders = [f"  {path}:{lines[0]} {fn}() calls {call}(): an event loop must never wait; use a "
                 f"timer, the worker pool or the non-blocking client"
                 for (path, fn, call), lines in sorted(found.items())
                 if (path, fn, call) not in allowed]
    stale = [f"  {path} {fn} {call}: no longer there; delete its line from {ALLOW.name}"
             for (path, fn, call) in sorted(allowed) if (path, fn, call) not in found]
    listed = [f"  {k[0]}:{found[k][0]} {k[1]}() {k[2]}(): {allowed[k]}" for k in sorted(allowed)
              if k in found]
    if listed:
        print("allowed (" + ALLOW.name + "):\n" + "\n".join(listed))
    assert not offenders and not stale, "\n" + "\n".join(offenders + stale)


def test_the_scan_sees_waits():
    """The scan finds what it must (a broken scan would pass everything) and only that."""
    code = blank("static void f(void) {\n  usleep(5);\n  poll(&p, 1, 0);\n"
                 "  /* sleep(1); */\n  poll(&p, 1, left);\n  puts(\"sleep(2)\");\n}\n"
                 "static void g(void) { sleep_ms(10); event_base_loop(b, 0); }\n")
    assert waits_in(code) == [("f", "usleep", 2), ("f", "poll", 5), ("g", "sleep_ms", 8)]
    assert ("busy_retry", "nanosleep") in {(f, c) for f, c, _ in
                                           waits_in(blank((ROOT / "lib/drivers/sqlite.c").read_text()))}
