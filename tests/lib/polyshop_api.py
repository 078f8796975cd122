"""Helpers for API tests: start a real service binary on a free loopback port, talk HTTP to
it with the standard library, and stop it with SIGTERM, checking that it drained and exited 0
(under the sanitizer build that also means LeakSanitizer found nothing).

Used by every tests/api and services/*/tests/*.py file through pytest.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

TEST_JWT_SECRET = "test-secret-0123456789abcdef0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        ctype = headers.get("Content-Type", "")
        self.json = None
        if body and ("json" in ctype):
            self.json = json.loads(body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


def request(base, method, path, body=None, headers=None, token=None, raw=None, timeout=10):
    """One HTTP call. body is JSON-encoded; raw sends bytes as they are."""
    hdrs = dict(headers or {})
    data = None
    if raw is not None:
        data = raw
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if token:
        hdrs["Authorization"] = "Bearer " + token
    req = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


def assert_problem(resp, status, type_slug=None, field=None):
    """Checks an RFC 9457 problem answer."""
    assert resp.status == status, resp
    assert resp.headers.get("Content-Type", "").startswith("application/problem+json"), resp
    p = resp.json
    assert p["status"] == status and p["type"].startswith("urn:polyshop:problem:"), p
    assert p["title"] and p["detail"], p
    if type_slug:
        assert p["type"] == "urn:polyshop:problem:" + type_slug, p
    if field:
        assert p.get("field") == field, p
    return p


class Service:
    """A running service process. Use as a context manager or call stop()."""

    def __init__(self, binary, env=None, name="service", threads=2):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = tempfile.TemporaryDirectory(prefix=f"polyshop-{name}-")
        self.log_path = os.path.join(self.tmp.name, "service.log")
        full_env = dict(os.environ)
        full_env.update({
            "POLYSHOP_LISTEN": f"127.0.0.1:{self.port}",
            "POLYSHOP_THREADS": str(threads),
            "POLYSHOP_JWT_SECRET": TEST_JWT_SECRET,
            "POLYSHOP_DATA_DIR": self.tmp.name,
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
        })
        full_env.update(env or {})
        self.env = full_env
        self.binary = binary
        self.proc = None
        self.start()

    @property
    def data_dir(self):
        return self.tmp.name

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary], env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if request(self.base, "GET", "/healthz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.proc.kill()  # never leave an orphan behind a failed start
        self.proc.wait()
        self.proc = None
        self.log.close()
        raise AssertionError("service did not become healthy:\n" + self.logs())

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-6000:]

    def call(self, method, path, body=None, **kw):
        return request(self.base, method, path, body, **kw)

    def stop(self, expect_code=0):
        """SIGTERM, wait, and check the exit code (0: drained, no leak)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("service did not stop on SIGTERM:\n" + self.logs())
        self.proc = None
        self.log.close()
        if expect_code is not None:
            assert code == expect_code, f"exit code {code}:\n{self.logs()}"

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop(expect_code=0 if exc[0] is None else None)
        finally:
            self.tmp.cleanup()


def _b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(sub, role="customer", secret=TEST_JWT_SECRET, ttl=900, email=None, iss="polyshop"):
    """An HS256 access token as the user service signs them (for tests of other services and
    for forged/expired cases)."""
    import hashlib
    import hmac
    import uuid
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": sub, "role": role, "iss": iss, "iat": now, "exp": now + ttl,
               "jti": uuid.uuid4().hex}
    if email:
        payload["email"] = email
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(payload, separators=(",", ":")).encode()))
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)
