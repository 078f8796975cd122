"""API tests of the user service: the real binary over HTTP, every endpoint and its bad input."""
import concurrent.futures
import os
import sqlite3
import time

import pytest

from polyshop_api import Service, assert_problem, make_token, request

BIN = os.environ["POLYSHOP_USER_BIN"]
ADMIN = ("admin@example.com", "admin password 1")
STORE_URL = os.environ.get("USER_TEST_STORE_URL")
FAST_HASH = {"USER_ARGON2_OPS": "1", "USER_ARGON2_MEM_KIB": "1024"}


@pytest.fixture(scope="module")
def svc():
    env = dict(FAST_HASH, POLYSHOP_ADMIN_EMAIL=ADMIN[0], POLYSHOP_ADMIN_PASSWORD=ADMIN[1],
               USER_LOGIN_LIMIT_PER_EMAIL="5", USER_LOGIN_LIMIT_PER_CLIENT="1000")
    s = Service(BIN, env, name="user")
    # The same suite runs on the embedded store and, in the integration tier, on MongoDB.
    s.env["USER_STORE"] = STORE_URL or "sqlite://" + os.path.join(s.data_dir, "user.db")
    if os.environ.get("USER_TEST_REDIS_URL"):
        s.env["REDIS_URL"] = os.environ["USER_TEST_REDIS_URL"]
    s.stop()
    s.start()
    yield s
    s.stop()
    s.tmp.cleanup()


_n = [0]


def new_email():
    _n[0] += 1
    return f"shopper{_n[0]}.{os.getpid()}@example.com"


def register(svc, email=None, password="correct horse 7", **extra):
    email = email or new_email()
    r = svc.call("POST", "/api/v1/users", dict(email=email, password=password, **extra))
    assert r.status == 201, r
    return email, password, r.json


def login(svc, email, password):
    r = svc.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert r.status == 200, r
    return r.json


def test_register_login_me(svc):
    email, pw, user = register(svc, name="Ann Lee", profile={"company": "ACME", "job_title": "CTO"})
    assert user["email"] == email and user["role"] == "customer"
    assert user["profile"] == {"company": "ACME", "job_title": "CTO"}
    assert "password" not in str(user) and "hash" not in str(user)
    tokens = login(svc, email.upper(), pw)  # emails are case-insensitive
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] > 0
    me = svc.call("GET", "/api/v1/users/me", token=tokens["access_token"])
    assert me.status == 200 and me.json["id"] == user["id"] and me.json["name"] == "Ann Lee"
    assert me.headers["X-Request-Id"]


def test_request_id_is_echoed(svc):
    r = svc.call("GET", "/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r = svc.call("GET", "/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces"


def test_register_bad_input(svc):
    assert_problem(svc.call("POST", "/api/v1/users", raw=b"{not json", headers={"Content-Type": "application/json"}), 400, "malformed-json")
    assert_problem(svc.call("POST", "/api/v1/users", raw=b"[1,2]", headers={"Content-Type": "application/json"}), 400, "validation")
    assert_problem(svc.call("POST", "/api/v1/users", raw=b"email=a", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    assert_problem(svc.call("POST", "/api/v1/users", {"password": "correct horse 7"}), 400, "validation", "email")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": 42, "password": "correct horse 7"}), 400, "validation", "email")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": "not-an-email", "password": "correct horse 7"}), 400, "validation", "email")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": new_email()}), 400, "validation", "password")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": new_email(), "password": "short"}), 400, "validation", "password")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": new_email(), "password": "onlyletterslong"}), 400, "validation", "password")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": new_email(), "password": "correct horse 7", "role": "admin"}), 400, "validation", "role")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": {"$gt": ""}, "password": "correct horse 7"}), 400, "validation")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": new_email(), "password": "correct horse 7", "profile": {"nested": {"a": 1}}}), 400, "validation", "profile")
    assert_problem(svc.call("POST", "/api/v1/users", {"email": new_email(), "password": "correct horse 7", "profile": "x"}), 400, "validation", "profile")


def test_duplicate_email_409(svc):
    email, _, _ = register(svc)
    r = svc.call("POST", "/api/v1/users", {"email": email.upper(), "password": "another pass 9"})
    assert_problem(r, 409, "duplicate", "email")


def test_oversized_body_413(svc):
    big = b'{"email":"' + b"a" * (2 << 20) + b'"}'
    r = svc.call("POST", "/api/v1/users", raw=big, headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "payload-too-large")


def test_unknown_path_and_method(svc):
    assert_problem(svc.call("GET", "/api/v1/nothing"), 404, "not-found")
    r = svc.call("DELETE", "/api/v1/users/me")
    assert_problem(r, 405, "method-not-allowed")
    assert "GET" in r.headers["Allow"] and "PATCH" in r.headers["Allow"]


def test_login_wrong_password_and_unknown_email(svc):
    email, _, _ = register(svc)
    assert_problem(svc.call("POST", "/api/v1/auth/login", {"email": email, "password": "wrong password 1"}), 401)
    assert_problem(svc.call("POST", "/api/v1/auth/login", {"email": new_email(), "password": "wrong password 1"}), 401)
    assert_problem(svc.call("POST", "/api/v1/auth/login", {"email": email}), 400, "validation", "password")
    assert_problem(svc.call("POST", "/api/v1/auth/login", {"email": email, "password": ["x"]}), 400, "validation", "password")


def test_login_rate_limit_per_email(svc):
    email, pw, _ = register(svc)
    for _ in range(5):
        svc.call("POST", "/api/v1/auth/login", {"email": email, "password": "wrong password 1"})
    r = svc.call("POST", "/api/v1/auth/login", {"email": email, "password": pw})
    assert_problem(r, 429, "rate-limited")
    assert int(r.headers["Retry-After"]) >= 1
    # Another account from the same client is not affected.
    other, opw, _ = register(svc)
    login(svc, other, opw)


def test_tokens_absent_forged_expired(svc):
    email, pw, user = register(svc)
    assert_problem(svc.call("GET", "/api/v1/users/me"), 401, "unauthorized")
    assert_problem(svc.call("GET", "/api/v1/users/me", headers={"Authorization": "Basic abc"}), 401)
    assert_problem(svc.call("GET", "/api/v1/users/me", token="garbage.token.here"), 401)
    forged = make_token(user["id"], secret="another-secret-0123456789abcdef0123456789")
    assert_problem(svc.call("GET", "/api/v1/users/me", token=forged), 401)
    expired = make_token(user["id"], ttl=-10)
    assert_problem(svc.call("GET", "/api/v1/users/me", token=expired), 401, "token-expired")
    tok = login(svc, email, pw)["access_token"]
    h, p, s = tok.split(".")
    tampered = h + "." + p[:-2] + ("A" if p[-2] != "A" else "B") + p[-1] + "." + s
    assert_problem(svc.call("GET", "/api/v1/users/me", token=tampered), 401)


def test_patch_me_profile_merge(svc):
    email, pw, _ = register(svc, profile={"company": "ACME"})
    tok = login(svc, email, pw)["access_token"]
    r = svc.call("PATCH", "/api/v1/users/me", {"name": "Bea", "profile": {"job_title": "Buyer", "company": None, "employees": 12}}, token=tok)
    assert r.status == 200, r
    assert r.json["name"] == "Bea" and r.json["profile"] == {"job_title": "Buyer", "employees": 12}
    assert svc.call("GET", "/api/v1/users/me", token=tok).json["profile"] == {"job_title": "Buyer", "employees": 12}
    assert_problem(svc.call("PATCH", "/api/v1/users/me", {"email": "x@y.com"}, token=tok), 400, "validation", "email")
    assert_problem(svc.call("PATCH", "/api/v1/users/me", {"name": 5}, token=tok), 400, "validation", "name")
    assert_problem(svc.call("PATCH", "/api/v1/users/me", {"profile": {"k": "v" * 2000}}, token=tok), 400, "validation", "profile")
    many = {f"k{i}": i for i in range(60)}
    assert_problem(svc.call("PATCH", "/api/v1/users/me", {"profile": many}, token=tok), 400, "validation", "profile")
    assert_problem(svc.call("PATCH", "/api/v1/users/me", {"name": "x"}), 401)
    # Nothing changed by the refused requests.
    assert svc.call("GET", "/api/v1/users/me", token=tok).json["name"] == "Bea"


def test_settings(svc):
    email, pw, _ = register(svc)
    tok = login(svc, email, pw)["access_token"]
    r = svc.call("GET", "/api/v1/users/me/settings", token=tok)
    assert r.status == 200 and r.json["language"] == "en" and r.json["marketing_opt_in"] is False
    r = svc.call("PUT", "/api/v1/users/me/settings", {"language": "de", "marketing_opt_in": True, "theme": "dark"}, token=tok)
    assert r.status == 200 and r.json["language"] == "de" and r.json["theme"] == "dark"
    r = svc.call("GET", "/api/v1/users/me/settings", token=tok)
    assert r.json["marketing_opt_in"] is True and r.json["currency"] == "EUR"
    assert_problem(svc.call("PUT", "/api/v1/users/me/settings", {"theme": "neon"}, token=tok), 400, "validation", "theme")
    assert_problem(svc.call("PUT", "/api/v1/users/me/settings", {"currency": "eur"}, token=tok), 400, "validation", "currency")
    assert_problem(svc.call("PUT", "/api/v1/users/me/settings", {"notify_sms": "yes"}, token=tok), 400, "validation", "notify_sms")
    assert_problem(svc.call("PUT", "/api/v1/users/me/settings", {"unknown": 1}, token=tok), 400, "validation", "unknown")
    assert svc.call("GET", "/api/v1/users/me/settings", token=tok).json["language"] == "de"


def test_refresh_rotation_and_reuse(svc):
    email, pw, _ = register(svc)
    t1 = login(svc, email, pw)
    r = svc.call("POST", "/api/v1/auth/refresh", {"refresh_token": t1["refresh_token"]})
    assert r.status == 200, r
    t2 = r.json
    assert t2["refresh_token"] != t1["refresh_token"]
    assert svc.call("GET", "/api/v1/users/me", token=t2["access_token"]).status == 200
    # The old token comes back: the whole family is revoked, the new token too.
    assert_problem(svc.call("POST", "/api/v1/auth/refresh", {"refresh_token": t1["refresh_token"]}), 401, field="refresh_token")
    assert_problem(svc.call("POST", "/api/v1/auth/refresh", {"refresh_token": t2["refresh_token"]}), 401)
    # Another login (another family) is unaffected.
    t3 = login(svc, email, pw)
    assert svc.call("POST", "/api/v1/auth/refresh", {"refresh_token": t3["refresh_token"]}).status == 200
    assert_problem(svc.call("POST", "/api/v1/auth/refresh", {"refresh_token": "made-up"}), 401)
    assert_problem(svc.call("POST", "/api/v1/auth/refresh", {}), 400, "validation", "refresh_token")


def test_concurrent_refresh_only_one_wins(svc):
    email, pw, _ = register(svc)
    t = login(svc, email, pw)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda _: svc.call("POST", "/api/v1/auth/refresh", {"refresh_token": t["refresh_token"]}).status, range(8)))
    assert codes.count(200) == 1, codes


def test_logout_revokes(svc):
    email, pw, _ = register(svc)
    t = login(svc, email, pw)
    assert svc.call("POST", "/api/v1/auth/logout", {"refresh_token": t["refresh_token"]}).status == 204
    assert_problem(svc.call("POST", "/api/v1/auth/refresh", {"refresh_token": t["refresh_token"]}), 401)
    assert svc.call("POST", "/api/v1/auth/logout", {"refresh_token": t["refresh_token"]}).status == 204
    assert_problem(svc.call("POST", "/api/v1/auth/logout", {"refresh_token": 7}), 400, "validation")


def mongo_db():
    import pymongo
    client = pymongo.MongoClient(STORE_URL)
    return client, client.get_default_database()


def outbox_token(svc, email):
    """Reads what the service queued for the notification service, straight from its store."""
    if STORE_URL:
        client, db = mongo_db()
        try:
            tokens = [d["payload"]["token"] for d in db.user_outbox.find({"type": "password_reset"})
                      if d["payload"]["email"] == email]
        finally:
            client.close()
        return tokens[-1] if tokens else None
    db = sqlite3.connect(os.path.join(svc.data_dir, "user.db"))
    try:
        import json
        rows = db.execute("SELECT payload FROM outbox WHERE type='password_reset' ORDER BY id").fetchall()
        tokens = [json.loads(p)["token"] for (p,) in rows if json.loads(p)["email"] == email]
        return tokens[-1] if tokens else None
    finally:
        db.close()


def stored_reset_hashes(svc, token):
    """How many reset-token rows hold the token in clear (should be none)."""
    if STORE_URL:
        client, db = mongo_db()
        try:
            return db.reset_tokens.count_documents({"_id": token})
        finally:
            client.close()
    db = sqlite3.connect(os.path.join(svc.data_dir, "user.db"))
    try:
        return db.execute("SELECT count(*) FROM reset_tokens WHERE hash=?", (token,)).fetchone()[0]
    finally:
        db.close()


def test_password_reset(svc):
    email, pw, _ = register(svc)
    session = login(svc, email, pw)
    r = svc.call("POST", "/api/v1/auth/password-reset", {"email": email})
    assert r.status == 202
    # Unknown emails get the same answer and nothing is queued.
    ghost = new_email()
    assert svc.call("POST", "/api/v1/auth/password-reset", {"email": ghost}).status == 202
    assert outbox_token(svc, ghost) is None
    token = outbox_token(svc, email)
    assert token
    # The token is stored hashed, never in clear.
    assert stored_reset_hashes(svc, token) == 0
    assert_problem(svc.call("POST", "/api/v1/auth/password-reset/confirm", {"token": token, "password": "short"}), 400, "validation", "password")
    assert_problem(svc.call("POST", "/api/v1/auth/password-reset/confirm", {"token": "nope", "password": "brand new pass 8"}), 400, "validation", "token")
    assert svc.call("POST", "/api/v1/auth/password-reset/confirm", {"token": token, "password": "brand new pass 8"}).status == 204
    # One time only; old password gone; old sessions ended.
    assert_problem(svc.call("POST", "/api/v1/auth/password-reset/confirm", {"token": token, "password": "other new pass 9"}), 400, "validation", "token")
    assert_problem(svc.call("POST", "/api/v1/auth/login", {"email": email, "password": pw}), 401)
    assert_problem(svc.call("POST", "/api/v1/auth/refresh", {"refresh_token": session["refresh_token"]}), 401)
    login(svc, email, "brand new pass 8")
    assert_problem(svc.call("POST", "/api/v1/auth/password-reset", {"email": "bad"}), 400, "validation", "email")


def test_admin_get_user(svc):
    _, _, user = register(svc)
    email, pw, _ = register(svc)
    customer = login(svc, email, pw)["access_token"]
    admin = login(svc, *ADMIN)["access_token"]
    r = svc.call("GET", "/api/v1/users/" + user["id"], token=admin)
    assert r.status == 200 and r.json["email"] == user["email"]
    assert_problem(svc.call("GET", "/api/v1/users/" + user["id"], token=customer), 403, "forbidden")
    assert_problem(svc.call("GET", "/api/v1/users/" + user["id"]), 401)
    assert_problem(svc.call("GET", "/api/v1/users/00000000-0000-4000-8000-000000000000", token=admin), 404, "not-found")
    # A token with the admin role but a forged signature is refused.
    assert_problem(svc.call("GET", "/api/v1/users/" + user["id"], token=make_token(user["id"], role="admin", secret="x" * 40)), 401)


def test_metrics_and_probes(svc):
    svc.call("GET", "/api/v1/users/me")
    assert svc.call("GET", "/readyz").status == 200
    m = svc.call("GET", "/metrics")
    assert m.status == 200
    text = m.body.decode()
    assert 'polyshop_http_requests_total{service="user",method="GET",route="/api/v1/users/me",status="401"}' in text
    assert 'polyshop_http_request_duration_seconds_bucket{service="user",method="GET",route="/api/v1/users/me",le="+Inf"}' in text


def test_bad_config_exits_78():
    import subprocess
    env = dict(os.environ, POLYSHOP_JWT_SECRET="short", POLYSHOP_THREADS="many", POLYSHOP_LISTEN="nowhere")
    p = subprocess.run([BIN], env=env, capture_output=True, timeout=30)
    assert p.returncode == 78
    err = p.stderr.decode()
    assert "POLYSHOP_THREADS" in err and "POLYSHOP_LISTEN" in err and "POLYSHOP_JWT_SECRET" in err


def test_graceful_drain_finishes_inflight():
    """Requests in flight when SIGTERM arrives still get their answer; the process exits 0."""
    s = Service(BIN, dict(FAST_HASH, USER_ARGON2_OPS="4", USER_ARGON2_MEM_KIB="65536"), name="drain")
    try:
        email, pw, _ = register(s)
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(s.call, "POST", "/api/v1/auth/login", {"email": email, "password": pw}) for _ in range(4)]
            time.sleep(0.05)
            s.proc.send_signal(15)
            codes = [f.result().status for f in futs]
        assert all(c == 200 for c in codes), codes
        assert s.proc.wait(timeout=30) == 0, s.logs()
        s.proc = None
        s.log.close()
    finally:
        if s.proc:
            s.kill()
        s.tmp.cleanup()
