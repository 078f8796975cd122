"""End to end through the one-machine shape: polyshop-run starts the user service and the nginx
edge; the shop is used through the edge only; a killed service comes back; SIGTERM stops
everything with exit 0 and leaves no process behind; a second start reuses the secrets.

Needs POLYSHOP_RUN_BIN (the launcher) and POLYSHOP_BIN_DIR (the build's services/ folder).
"""
import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from polyshop_api import assert_problem, free_port, request

SOURCE = os.environ.get("POLYSHOP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
RUN_BIN = os.environ.get("POLYSHOP_RUN_BIN")
BIN_DIR = os.environ.get("POLYSHOP_BIN_DIR")
START_TIMEOUT = 90  # sanitizer builds start slowly on a busy machine


def port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_offset(base_ports):
    """A --port-offset that puts every service port of services.tsv on a free port."""
    for _ in range(200):
        off = int.from_bytes(os.urandom(2), "little") % 30000 + 20000
        if all(port_is_free(p + off) for p in base_ports):
            return off
    raise RuntimeError("no free port range")


def tsv_ports():
    ports = []
    with open(os.path.join(SOURCE, "deploy", "services.tsv")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                ports.append(int(line.split("\t")[1]))
    return ports


def descendants(pid):
    """Every process below pid, from /proc."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = st[st.rindex(")") + 2:].split()
        parent[int(d)] = int(fields[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(")") + 2] != "Z"


class Launcher:
    def __init__(self, data_dir, edge_port, offset):
        self.data_dir = data_dir
        self.edge_port = edge_port
        self.offset = offset
        self.base = f"http://127.0.0.1:{edge_port}"
        self.out_path = os.path.join(os.path.dirname(data_dir), f"launcher-{time.monotonic_ns()}.out")
        self.err_path = self.out_path[:-4] + ".err"
        env = dict(os.environ)
        for k in ("POLYSHOP_JWT_SECRET", "POLYSHOP_ADMIN_EMAIL", "POLYSHOP_ADMIN_PASSWORD", "USER_STORE"):
            env.pop(k, None)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [RUN_BIN, "--root", SOURCE, "--bin-dir", BIN_DIR, "--data", data_dir,
                 "--edge-port", str(edge_port), "--port-offset", str(offset), "--only", "user",
                 "--stop-timeout", "20"],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)

    def events(self):
        out = []
        with open(self.err_path, "rb") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict) and e.get("component") == "launcher":
                    out.append(e)
        return out

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def logs(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()[-6000:]

    def wait_event(self, pred, timeout=START_TIMEOUT, what="event"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if pred(e):
                    return e
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited {self.proc.returncode} waiting for {what}:\n{self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout}s:\n{self.logs()}")

    def wait_ready(self):
        self.wait_event(lambda e: e["event"] == "all_ready", what="all_ready")

    def service_pid(self):
        started = [e for e in self.events() if e["event"] == "started" and e["service"] == "user"]
        return started[-1]["pid"]

    def stop(self, timeout=40):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture(scope="module")
def workdir():
    if not RUN_BIN or not BIN_DIR:
        pytest.skip("POLYSHOP_RUN_BIN and POLYSHOP_BIN_DIR are not set (run through ctest)")
    with tempfile.TemporaryDirectory(prefix="polyshop-e2e-") as d:
        yield d


@pytest.fixture(scope="module")
def shop(workdir):
    data = os.path.join(workdir, "data")
    offset = free_offset(tsv_ports())
    launcher = Launcher(data, free_port(), offset)
    try:
        launcher.wait_ready()
        yield launcher
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.kill()
            launcher.proc.wait()


def register_and_login(base, email, password="Edge-pass-12345"):
    r = request(base, "POST", "/api/v1/users", {"email": email, "password": password})
    assert r.status == 201, r
    r = request(base, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert r.status == 200, r
    return r.json["access_token"]


def test_banner_names_the_url_and_the_generated_admin(shop):
    out = shop.stdout()
    assert f"http://localhost:{shop.edge_port}/" in out, out
    assert "admin@polyshop.local" in out and "password:" in out, out
    secrets = os.path.join(shop.data_dir, "secrets.env")
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o600
    kv = dict(l.split("=", 1) for l in open(secrets).read().splitlines() if "=" in l and not l.startswith("#"))
    assert len(kv["POLYSHOP_JWT_SECRET"]) == 64
    assert kv["POLYSHOP_ADMIN_PASSWORD"] in out
    # The first admin was created from those values and can log in through the edge.
    r = request(shop.base, "POST", "/api/v1/auth/login",
                {"email": kv["POLYSHOP_ADMIN_EMAIL"], "password": kv["POLYSHOP_ADMIN_PASSWORD"]})
    assert r.status == 200, r


def test_register_login_me_through_the_edge(shop):
    token = register_and_login(shop.base, "edge-user@example.com")
    r = request(shop.base, "GET", "/api/v1/users/me", token=token, headers={"X-Request-Id": "e2e-req-1"})
    assert r.status == 200, r
    assert r.json["email"] == "edge-user@example.com"
    assert r.headers.get_all("X-Request-Id") == ["e2e-req-1"]
    # The edge made an id when the client sent none, and the service saw the same one.
    r = request(shop.base, "GET", "/api/v1/users/me", token=token)
    rid = r.headers.get_all("X-Request-Id")
    assert len(rid) == 1 and rid[0], r.headers
    # Bad input still reaches the service and gets its problem answers.
    assert_problem(request(shop.base, "GET", "/api/v1/users/me"), 401)
    assert_problem(request(shop.base, "POST", "/api/v1/users", raw=b"{not json",
                           headers={"Content-Type": "application/json"}), 400)


def test_unknown_api_path_is_a_404_problem(shop):
    p = assert_problem(request(shop.base, "GET", "/api/v1/no-such-thing"), 404, "not-found")
    assert p["request_id"]
    assert_problem(request(shop.base, "POST", "/api/v2/users", {"a": 1}), 404, "not-found")


def test_service_not_running_is_a_503_problem(shop):
    # Only the user service runs here, so the product prefix has nobody behind it.
    r = request(shop.base, "GET", "/api/v1/products")
    assert_problem(r, 503, "unavailable")
    assert r.headers.get("Retry-After") == "1"


def test_oversized_body_is_a_413_problem(shop):
    # The edge judges Content-Length before reading the body, so the body need not be sent
    # (sending 33 MB would race with the edge closing the connection).
    with socket.create_connection(("127.0.0.1", shop.edge_port), timeout=10) as s:
        s.sendall(b"POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 40000000\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), data
    assert b"application/problem+json" in head, head
    p = json.loads(body)
    assert p["type"] == "urn:polyshop:problem:payload-too-large" and p["status"] == 413


def test_client_is_served_at_root(shop):
    for path in ("/", "/some/client/route"):
        r = request(shop.base, "GET", path)
        assert r.status == 200, r
        assert r.headers.get("Content-Type", "").startswith("text/html")
        assert b"polyshop" in r.body


def test_edge_access_log_is_json(shop):
    request(shop.base, "GET", "/api/v1/users/me", headers={"X-Request-Id": "e2e-log-1"})
    path = os.path.join(shop.data_dir, "edge", "access.log")
    deadline = time.monotonic() + 5  # buffered, flushed every second
    while time.monotonic() < deadline:
        if os.path.exists(path):
            lines = [json.loads(l) for l in open(path) if l.strip()]
            hit = [l for l in lines if l["request_id"] == "e2e-log-1"]
            if hit:
                assert hit[0]["status"] == 401 and hit[0]["uri"] == "/api/v1/users/me"
                return
        time.sleep(0.2)
    raise AssertionError("request not in the edge's JSON access log")


def test_killed_service_is_restarted(shop):
    token = register_and_login(shop.base, "survivor@example.com")
    old = shop.service_pid()
    os.kill(old, signal.SIGKILL)
    shop.wait_event(lambda e: e["event"] == "crashed" and e["pid"] == old, 10, "crashed event")
    shop.wait_event(lambda e: e["event"] == "ready" and e["service"] == "user" and e["pid"] != old,
                    START_TIMEOUT, "restarted user ready")
    new = shop.service_pid()
    assert new != old and alive(new)
    # Same data, same signing key: the account and the token still work.
    r = request(shop.base, "GET", "/api/v1/users/me", token=token)
    assert r.status == 200, r
    assert r.json["email"] == "survivor@example.com"


def test_sigterm_stops_everything(shop):
    tree = descendants(shop.proc.pid)
    assert shop.service_pid() in tree
    assert len(tree) >= 3, tree  # the user service, the nginx master and its workers
    assert shop.stop() == 0, shop.logs()
    left = [p for p in tree if alive(p)]
    assert not left, f"still running after the launcher exited: {left}"
    assert port_is_free(shop.edge_port)
    stops = [e for e in shop.events() if e["event"] == "stopped"]
    assert {e["service"] for e in stops} == {"user", "edge"}, stops
    # Graceful: every child exited by itself with 0 (for a sanitizer build that also means
    # LeakSanitizer found nothing in the user service).
    assert all(e.get("exit_code") == 0 for e in stops), stops
    assert shop.events()[-1]["event"] == "stopped_all"


def test_second_start_reuses_the_secrets(shop, workdir):
    if shop.proc.poll() is None:  # run alone, without the test above
        assert shop.stop() == 0, shop.logs()
    register_needed = not any(e["event"] == "crashed" for e in shop.events())
    again = Launcher(shop.data_dir, free_port(), shop.offset)
    try:
        again.wait_ready()
        assert "password:" not in again.stdout(), again.stdout()
        if register_needed:
            register_and_login(again.base, "survivor@example.com")
        r = request(again.base, "POST", "/api/v1/auth/login",
                    {"email": "survivor@example.com", "password": "Edge-pass-12345"})
        assert r.status == 200, r
        assert again.stop() == 0, again.logs()
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
            again.proc.wait()


# --- the launcher on its own (no real service needed) ------------------------------------

def run_launcher(args, env=None, timeout=20):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([RUN_BIN] + args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=e)


def test_bad_services_table_is_refused(workdir):
    tsv = os.path.join(workdir, "bad.tsv")
    with open(tsv, "w") as f:
        f.write("user\t8101\t/users/\n")
    r = run_launcher(["--root", SOURCE, "--services", tsv, "--data", os.path.join(workdir, "bad"),
                      "--write-edge-config"])
    assert r.returncode == 1
    assert "bad prefix '/users/'" in r.stderr, r.stderr


def test_edge_config_renders_every_prefix(workdir):
    data = os.path.join(workdir, "render")
    r = run_launcher(["--root", SOURCE, "--data", data, "--write-edge-config"])
    assert r.returncode == 0, r.stderr
    conf = open(os.path.join(data, "edge", "nginx.conf")).read()
    assert "@@" not in conf
    for line in open(os.path.join(SOURCE, "deploy", "services.tsv")):
        if not line.strip() or line.startswith("#"):
            continue
        name, port, prefixes = line.rstrip("\n").split("\t")
        assert f"server 127.0.0.1:{port} " in conf
        for p in prefixes.split(","):
            assert f"location /api/v1{p}/ {{ proxy_pass http://polyshop_{name}; }}" in conf
    # nginx itself accepts it.
    t = subprocess.run(["/usr/sbin/nginx", "-t", "-q", "-p", os.path.join(data, "edge") + "/",
                        "-e", os.path.join(data, "edge", "error.log"), "-c",
                        os.path.join(data, "edge", "nginx.conf")], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr


def test_edge_port_in_use_is_refused(workdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_launcher(["--root", SOURCE, "--bin-dir", os.path.join(workdir, "nobin"),
                          "--data", os.path.join(workdir, "busy"), "--edge-port", str(port)])
    assert r.returncode == 1
    assert f"edge port {port} is already in use" in r.stderr, r.stderr


def test_crash_loop_backs_off_exponentially(workdir):
    bindir = os.path.join(workdir, "crashbin")
    os.makedirs(bindir)
    fake = os.path.join(bindir, "polyshop-user")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\nexit 3\n")
    os.chmod(fake, 0o755)
    data = os.path.join(workdir, "crash")
    os.makedirs(data)
    launcher = Launcher.__new__(Launcher)  # the class above, without its standard arguments
    launcher.data_dir = data
    launcher.out_path = os.path.join(workdir, "crash.out")
    launcher.err_path = os.path.join(workdir, "crash.err")
    with open(launcher.out_path, "wb") as out, open(launcher.err_path, "wb") as err:
        launcher.proc = subprocess.Popen(
            [RUN_BIN, "--root", SOURCE, "--bin-dir", bindir, "--data", data, "--no-edge",
             "--only", "user", "--port-offset", str(free_offset(tsv_ports()))],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        launcher.wait_event(lambda e: e["event"] == "crashed" and e["restart_in_s"] >= 1.0, 20,
                            "a third crash")
        delays = [e["restart_in_s"] for e in launcher.events() if e["event"] == "crashed"]
        assert delays[:3] == [0.25, 0.5, 1.0], delays
        assert all(e["exit_code"] == 3 for e in launcher.events() if e["event"] == "crashed")
        assert launcher.stop() == 0, launcher.logs()
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.kill()
            launcher.proc.wait()
