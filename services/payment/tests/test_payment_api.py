"""API tests of the payment service over HTTP against the real binary on the embedded store
with the built-in test provider: charges and their bad inputs, idempotency (100 repeats, some
concurrent: one charge), history, refunds, Stripe webhooks with our own signed fixtures, and
the audit chain, including tampering found by the verifier."""
import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import sqlite3
import tempfile
import time
import uuid

import pytest

from polyshop_api import TEST_JWT_SECRET, Service, assert_problem

BIN = os.environ.get("POLYSHOP_PAYMENT_BIN", "build/services/payment/polyshop-payment")
WEBHOOK_SECRET = "whsec_test_polyshop_0123456789"
INTERNAL_TOKEN = "internal-token-0123456789abcdef"
OK_CARD = {"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(sub, role="customer", ttl=600, secret=TEST_JWT_SECRET):
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": sub, "role": role, "iss": "polyshop", "iat": now, "exp": now + ttl,
               "jti": uuid.uuid4().hex}
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64url(sig)


def sign_webhook(payload, t=None, secret=WEBHOOK_SECRET):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def start(db_dir, **env):
    full = {"PAYMENT_STORE": f"sqlite://{db_dir}/payment.db",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "POLYSHOP_INTERNAL_TOKEN": INTERNAL_TOKEN}
    full.update(env)
    return Service(BIN, full, name="payment")


@pytest.fixture(scope="module")
def db_dir():
    with tempfile.TemporaryDirectory(prefix="polyshop-payment-api-") as d:
        yield d


@pytest.fixture(scope="module")
def svc(db_dir):
    s = start(db_dir)
    yield s
    s.stop()
    s.tmp.cleanup()


@pytest.fixture(scope="module")
def alice():
    return make_token("user-alice")


@pytest.fixture(scope="module")
def bob():
    return make_token("user-bob")


@pytest.fixture(scope="module")
def admin():
    return make_token("user-admin", role="admin")


def charge(svc, token, key=None, order_id=None, amount=1999, currency="EUR", pm=None, **kw):
    body = {"order_id": order_id or "order-" + uuid.uuid4().hex[:12], "amount": amount,
            "currency": currency, "payment_method": OK_CARD if pm is None else pm}
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return svc.call("POST", "/api/v1/payments", body, token=token, headers=headers, **kw)


def in_progress(r):
    """True when r is the answer to a key whose first request is still running: 503
    idempotency-in-progress with Retry-After, answered at once (the loop never waits)."""
    if r.status != 503:
        return False
    assert_problem(r, 503, "idempotency-in-progress", field="Idempotency-Key")
    assert r.headers.get("Retry-After") == "1", r
    return True


def charge_answered(svc, token, key, order_id, **kw):
    """Charges like a well-behaved client (the order service's does the same): an
    in-progress answer is asked again after its Retry-After. Returns (final answer, how many
    in-progress answers came first)."""
    for busy in range(30):
        r = charge(svc, token, key=key, order_id=order_id, **kw)
        if not in_progress(r):
            return r, busy
        time.sleep(int(r.headers["Retry-After"]))
    raise AssertionError("still in progress after 30 tries")


# --- charges -------------------------------------------------------------------------------

def test_charge_succeeds(svc, alice):
    r = charge(svc, alice, amount=2599, currency="USD")
    assert r.status == 201, r
    p = r.json
    assert p["status"] == "succeeded" and p["amount"] == 2599 and p["captured"] == 2599
    assert p["currency"] == "USD" and p["refunded"] == 0 and p["user_id"] == "user-alice"
    assert p["provider"] == "test" and p["provider_ref"].startswith("pi_test_")
    assert p["card"] == {"brand": "visa", "last4": "4242"}
    assert "4242424242424242" not in r.body.decode()
    assert r.headers["Location"] == "/api/v1/payments/" + p["id"]
    g = svc.call("GET", "/api/v1/payments/" + p["id"], token=alice)
    assert g.status == 200 and g.json["status"] == "succeeded" and g.json["refunds"] == []


def test_charge_with_token(svc, alice):
    r = charge(svc, alice, pm={"token": "pm_card_visa"})
    assert r.status == 201 and r.json["card"] is None, r
    r = charge(svc, alice, pm={"token": "pm_card_unknown"})
    p = assert_problem(r, 402, "payment-declined")
    assert p["code"] == "invalid_payment_method"


@pytest.mark.parametrize("card,status,slug,code", [
    ("4000000000000002", 402, "payment-declined", "card_declined"),
    ("4000000000009995", 402, "payment-declined", "insufficient_funds"),
    ("4000000000000119", 502, "upstream", "processing_error"),
])
def test_declines_and_failures(svc, alice, card, status, slug, code):
    r = charge(svc, alice, pm={"card_number": card})
    p = assert_problem(r, status, slug)
    assert p["code"] == code and p["payment"]["status"] == "failed"
    assert p["payment"]["captured"] == 0 and p["payment"]["failure_code"] == code
    g = svc.call("GET", "/api/v1/payments/" + p["payment_id"], token=alice)
    assert g.status == 200 and g.json["status"] == "failed"


def test_auth_required(svc, alice):
    r = charge(svc, None)
    assert_problem(r, 401, "unauthorized")
    r = charge(svc, "not-a-token")
    assert_problem(r, 401, "unauthorized")
    r = charge(svc, make_token("user-x", secret="another-secret-0123456789abcdef0123456789"))
    assert_problem(r, 401, "unauthorized")
    r = charge(svc, make_token("user-x", ttl=-10))
    assert_problem(r, 401)


def test_idempotency_key_required_and_checked(svc, alice):
    body = {"order_id": "o-1", "amount": 100, "currency": "EUR", "payment_method": OK_CARD}
    r = svc.call("POST", "/api/v1/payments", body, token=alice)
    assert_problem(r, 400, "validation", field="Idempotency-Key")
    for bad in ["k" * 256, "with space", "tab\tkey"]:
        r = svc.call("POST", "/api/v1/payments", body, token=alice, headers={"Idempotency-Key": bad})
        assert_problem(r, 400, "validation", field="Idempotency-Key")
    r = svc.call("POST", "/api/v1/payments", body, token=alice, headers={"Idempotency-Key": "k" * 255})
    assert r.status == 201, r


@pytest.mark.parametrize("amount", [0, -1, -5000, 10**12, 100000000, 1.5, "100", None, True])
def test_bad_amount(svc, alice, amount):
    r = charge(svc, alice, amount=amount)
    assert_problem(r, 400, "validation", field="amount")


@pytest.mark.parametrize("currency", ["eur", "EURO", "XYZ", "", 978, None, "E1R"])
def test_bad_currency(svc, alice, currency):
    r = charge(svc, alice, currency=currency)
    assert_problem(r, 400, "validation", field="currency")


@pytest.mark.parametrize("pm,field", [
    ({"card_number": "4242424242424241"}, "payment_method.card_number"),  # Luhn
    ({"card_number": "4242-4242-4242-4242"}, "payment_method.card_number"),
    ({"card_number": "4242"}, "payment_method.card_number"),
    ({"card_number": "4242424242424242", "token": "pm_card_visa"}, "payment_method"),
    ({}, "payment_method"),
    ({"token": "pm card"}, "payment_method.token"),
    ({"card_number": "4242424242424242", "exp_month": 13}, "exp_month"),
    ({"card_number": "4242424242424242", "cvc": "12a"}, "payment_method.cvc"),
])
def test_bad_payment_method(svc, alice, pm, field):
    r = charge(svc, alice, pm=pm)
    assert_problem(r, 400, "validation", field=field)


def test_bad_bodies(svc, alice):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r = svc.call("POST", "/api/v1/payments", token=alice, headers={**key, "Content-Type": "application/json"}, raw=b"{nope")
    assert_problem(r, 400, "malformed-json")
    r = svc.call("POST", "/api/v1/payments", [1, 2], token=alice, headers=key)
    assert_problem(r, 400, "validation")
    base = {"order_id": "o-1", "amount": 100, "currency": "EUR", "payment_method": OK_CARD}
    for body, field in [({**base, "order_id": ""}, "order_id"), ({**base, "order_id": "a/b"}, "order_id"),
                        ({k: v for k, v in base.items() if k != "order_id"}, "order_id"),
                        ({**base, "payment_method": "4242424242424242"}, "payment_method"),
                        ({**base, "user_id": "someone-else"}, "user_id"),
                        ({**base, "total": 1}, "total")]:
        r = svc.call("POST", "/api/v1/payments", body, token=alice, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert_problem(r, 400, field=field)
    r = svc.call("POST", "/api/v1/payments", token=alice, headers={**key, "Content-Type": "text/plain"}, raw=b"x")
    assert_problem(r, 415)


# --- idempotency ---------------------------------------------------------------------------

def test_same_key_same_answer(svc, alice):
    key = uuid.uuid4().hex
    r1 = charge(svc, alice, key=key, order_id="order-idem-1")
    r2 = charge(svc, alice, key=key, order_id="order-idem-1")
    assert r1.status == r2.status == 201
    assert r1.body == r2.body
    assert r2.headers.get("Idempotent-Replayed") == "true"
    # the same key with another body
    r3 = charge(svc, alice, key=key, order_id="order-idem-1", amount=2000)
    assert_problem(r3, 422, "idempotency-key-reuse", field="Idempotency-Key")
    # keys belong to their user: bob's identical key is his own
    r4 = charge(svc, make_token("user-bob"), key=key, order_id="order-idem-1")
    assert r4.status == 201 and r4.json["id"] != r1.json["id"]


def test_declines_are_replayed_too(svc, alice):
    key = uuid.uuid4().hex
    r1 = charge(svc, alice, key=key, order_id="order-dec", pm={"card_number": "4000000000000002"})
    r2 = charge(svc, alice, key=key, order_id="order-dec", pm={"card_number": "4000000000000002"})
    assert r1.status == r2.status == 402 and r1.body == r2.body


def test_hundred_repeats_one_charge(svc, db_dir, alice):
    key = "checkout-" + uuid.uuid4().hex
    order = "order-hundred-" + uuid.uuid4().hex[:8]

    def once(_):
        return charge_answered(svc, alice, key, order, amount=4200, timeout=30)[0]

    answers = [once(0) for _ in range(10)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers += list(pool.map(once, range(60)))
    answers += [once(0) for _ in range(30)]
    assert len(answers) == 100
    ids = set()
    for r in answers:
        assert r.status == 201, r
        ids.add(r.json["id"])
    assert len(ids) == 1
    lst = svc.call("GET", "/api/v1/payments?order_id=" + order, token=alice)
    assert lst.status == 200 and len(lst.json["items"]) == 1
    db = sqlite3.connect(os.path.join(db_dir, "payment.db"))
    try:
        assert db.execute("SELECT count(*) FROM payments WHERE order_id=?", (order,)).fetchone()[0] == 1
        pid = ids.pop()
        assert db.execute("SELECT count(*) FROM audit_log WHERE payment_id=? AND kind='charge'",
                          (pid,)).fetchone()[0] == 1
    finally:
        db.close()


def test_concurrent_first_requests_one_charge(svc, db_dir, bob):
    """All hundred requests race from the very start (no warm-up request)."""
    key = uuid.uuid4().hex
    order = "order-race-" + uuid.uuid4().hex[:8]
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda _: charge_answered(svc, bob, key, order, timeout=30)[0],
                                range(100)))
    statuses = [r.status for r in answers]
    assert set(statuses) == {201}, statuses
    assert len({r.json["id"] for r in answers}) == 1
    db = sqlite3.connect(os.path.join(db_dir, "payment.db"))
    try:
        assert db.execute("SELECT count(*) FROM payments WHERE order_id=?", (order,)).fetchone()[0] == 1
    finally:
        db.close()


# --- reading -------------------------------------------------------------------------------

def test_get_visibility(svc, alice, bob, admin):
    p = charge(svc, alice).json
    assert svc.call("GET", "/api/v1/payments/" + p["id"], token=alice).status == 200
    assert_problem(svc.call("GET", "/api/v1/payments/" + p["id"], token=bob), 404, "not-found")
    assert svc.call("GET", "/api/v1/payments/" + p["id"], token=admin).status == 200
    assert_problem(svc.call("GET", "/api/v1/payments/" + str(uuid.uuid4()), token=alice), 404)
    assert_problem(svc.call("GET", "/api/v1/payments/" + "x" * 300, token=alice), 404)
    assert_problem(svc.call("GET", "/api/v1/payments/" + p["id"]), 401)


def test_list_and_pages(svc, admin):
    carol = make_token("user-carol-" + uuid.uuid4().hex[:6])
    order = "order-list-" + uuid.uuid4().hex[:8]
    made = [charge(svc, carol, order_id=order if i < 3 else None, amount=100 + i).json["id"]
            for i in range(5)]
    r = svc.call("GET", "/api/v1/payments", token=carol)
    assert r.status == 200 and len(r.json["items"]) == 5 and r.json["next_cursor"] is None
    r = svc.call("GET", "/api/v1/payments?order_id=" + order, token=carol)
    assert {p["id"] for p in r.json["items"]} == set(made[:3])
    seen, cursor = [], None
    while True:
        q = "/api/v1/payments?limit=2" + ("&cursor=" + cursor if cursor else "")
        r = svc.call("GET", q, token=carol)
        assert r.status == 200 and len(r.json["items"]) <= 2
        seen += [p["id"] for p in r.json["items"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 5
    # someone else's order: nothing
    assert svc.call("GET", "/api/v1/payments?order_id=" + order, token=make_token("user-dave")).json["items"] == []
    # admin sees them all, or one user's
    r = svc.call("GET", "/api/v1/payments?order_id=" + order, token=admin)
    assert len(r.json["items"]) == 3
    for q, field in [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"),
                     ("cursor=garbage", "cursor"), ("order_id=a/b", "order_id")]:
        assert_problem(svc.call("GET", "/api/v1/payments?" + q, token=carol), 400, "bad-query", field=field)


# --- refunds -------------------------------------------------------------------------------

def test_refunds(svc, alice, admin):
    p = charge(svc, alice, amount=1000).json
    url = f"/api/v1/payments/{p['id']}/refunds"
    assert_problem(svc.call("POST", url, {"amount": 100}, token=alice), 403, "forbidden")
    assert_problem(svc.call("POST", url, {"amount": 100}), 401)
    assert_problem(svc.call("POST", url, {"amount": 100}, headers={"X-Internal-Token": "wrong-token-wrong"}), 401)
    r = svc.call("POST", url, {"amount": 300, "reason": "damaged"}, token=admin)
    assert r.status == 201, r
    assert r.json["amount"] == 300 and r.json["status"] == "succeeded"
    assert r.json["payment"]["status"] == "partially_refunded" and r.json["payment"]["refunded"] == 300
    # the order service, with its internal token
    r = svc.call("POST", url, {"amount": 200}, headers={"X-Internal-Token": INTERNAL_TOKEN})
    assert r.status == 201 and r.json["payment"]["refunded"] == 500, r
    # never more than captured - refunded
    p409 = assert_problem(svc.call("POST", url, {"amount": 501}, token=admin), 409, "conflict")
    assert "500" in p409["detail"]
    for bad in [0, -1, 10**12, "1", 1.5]:
        assert_problem(svc.call("POST", url, {"amount": bad}, token=admin), 400, field="amount")
    assert_problem(svc.call("POST", url, {"amount": 1, "extra": 1}, token=admin), 400, field="extra")
    # no body: the rest
    r = svc.call("POST", url, token=admin)
    assert r.status == 201 and r.json["amount"] == 500, r
    assert r.json["payment"]["status"] == "refunded"
    assert_problem(svc.call("POST", url, {"amount": 1}, token=admin), 409)
    assert_problem(svc.call("POST", url, token=admin), 409)
    g = svc.call("GET", "/api/v1/payments/" + p["id"], token=alice).json
    assert g["status"] == "refunded" and g["refunded"] == 1000
    assert [x["amount"] for x in g["refunds"]] == [300, 200, 500]
    assert_problem(svc.call("POST", f"/api/v1/payments/{uuid.uuid4()}/refunds", token=admin), 404)


def test_refund_of_failed_payment(svc, alice, admin):
    p = assert_problem(charge(svc, alice, pm={"card_number": "4000000000000002"}), 402)
    r = svc.call("POST", f"/api/v1/payments/{p['payment_id']}/refunds", token=admin)
    assert_problem(r, 409, "conflict")


def test_refund_idempotent(svc, alice, admin):
    p = charge(svc, alice, amount=1000).json
    url = f"/api/v1/payments/{p['id']}/refunds"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r1 = svc.call("POST", url, {"amount": 400}, token=admin, headers=key)
    r2 = svc.call("POST", url, {"amount": 400}, token=admin, headers=key)
    assert r1.status == r2.status == 201 and r1.body == r2.body
    assert_problem(svc.call("POST", url, {"amount": 500}, token=admin, headers=key), 422, "idempotency-key-reuse")
    assert svc.call("GET", "/api/v1/payments/" + p["id"], token=alice).json["refunded"] == 400
    assert_problem(svc.call("POST", url, {"amount": 1}, token=admin, headers={"Idempotency-Key": "bad key"}), 400)


# --- internal charges ------------------------------------------------------------------------

def test_internal_charge(svc, alice, admin):
    body = {"order_id": "order-int-" + uuid.uuid4().hex[:8], "user_id": "user-alice", "amount": 500,
            "currency": "EUR", "payment_method": {"token": "pm_card_visa"}}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r = svc.call("POST", "/internal/payments", body, headers={**key, "X-Internal-Token": INTERNAL_TOKEN})
    assert r.status == 201 and r.json["user_id"] == "user-alice", r
    # the owner sees it
    assert svc.call("GET", "/api/v1/payments/" + r.json["id"], token=alice).status == 200
    # replay
    r2 = svc.call("POST", "/internal/payments", body, headers={**key, "X-Internal-Token": INTERNAL_TOKEN})
    assert r2.body == r.body
    # an admin token also works
    r3 = svc.call("POST", "/internal/payments", body, token=admin, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r3.status == 201
    assert_problem(svc.call("POST", "/internal/payments", body, token=alice, headers=key), 403)
    # a wrong internal token is refused outright, whatever bearer token comes with it (a wrong
    # secret is a misconfiguration or an attack, never a reason to try the token instead)
    for tok in (alice, admin):
        assert_problem(svc.call("POST", "/internal/payments", body, token=tok,
                                headers={"Idempotency-Key": uuid.uuid4().hex,
                                         "X-Internal-Token": "nope-nope-nope-nope"}), 401)
    # a secret of the right length with one byte different, and a longer one
    for wrong in (INTERNAL_TOKEN[:-1] + "X", INTERNAL_TOKEN + "x"):
        assert_problem(svc.call("POST", "/internal/payments", body,
                                headers={**key, "X-Internal-Token": wrong}), 401)
    assert_problem(svc.call("POST", "/internal/payments", body, headers={**key, "X-Internal-Token": "nope-nope-nope-nope"}), 401)
    assert_problem(svc.call("POST", "/internal/payments", body, headers=key), 401)
    nouser = {k: v for k, v in body.items() if k != "user_id"}
    r = svc.call("POST", "/internal/payments", nouser, headers={"Idempotency-Key": uuid.uuid4().hex, "X-Internal-Token": INTERNAL_TOKEN})
    assert_problem(r, 400, field="user_id")


# --- webhooks ------------------------------------------------------------------------------

def post_event(svc, event, header=None, t=None):
    payload = json.dumps(event).encode()
    sig = header if header is not None else sign_webhook(payload, t)
    hdrs = {"Content-Type": "application/json"}
    if sig:
        hdrs["Stripe-Signature"] = sig
    return svc.call("POST", "/api/v1/webhooks/stripe", headers=hdrs, raw=payload)


def test_webhook_refund_from_dashboard(svc, alice):
    p = charge(svc, alice, amount=1000).json
    ev = {"id": "evt_" + uuid.uuid4().hex, "type": "charge.refunded",
          "data": {"object": {"id": "ch_1", "payment_intent": p["provider_ref"], "amount_refunded": 250}}}
    r = post_event(svc, ev)
    assert r.status == 200 and r.json["result"] == "applied" and r.json["payment_id"] == p["id"], r
    g = svc.call("GET", "/api/v1/payments/" + p["id"], token=alice).json
    assert g["refunded"] == 250 and g["status"] == "partially_refunded"
    # the same event again is ignored
    r = post_event(svc, ev)
    assert r.status == 200 and r.json["result"] == "duplicate"
    assert svc.call("GET", "/api/v1/payments/" + p["id"], token=alice).json["refunded"] == 250
    # a late failure does not undo a success
    ev2 = {"id": "evt_" + uuid.uuid4().hex, "type": "payment_intent.payment_failed",
           "data": {"object": {"id": p["provider_ref"], "last_payment_error": {"code": "card_declined"}}}}
    assert post_event(svc, ev2).json["result"] == "unchanged"
    # events about payments we do not know, or of other types, are acknowledged
    ev3 = {"id": "evt_" + uuid.uuid4().hex, "type": "payment_intent.succeeded",
           "data": {"object": {"id": "pi_unknown", "amount_received": 5}}}
    assert post_event(svc, ev3).json["result"] == "ignored"
    ev4 = {"id": "evt_" + uuid.uuid4().hex, "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    assert post_event(svc, ev4).json["result"] == "ignored"


def test_webhook_bad_signatures(svc):
    ev = {"id": "evt_" + uuid.uuid4().hex, "type": "charge.refunded",
          "data": {"object": {"payment_intent": "pi_x", "amount_refunded": 1}}}
    payload = json.dumps(ev).encode()
    assert_problem(post_event(svc, ev, header=""), 400, field="Stripe-Signature")
    assert_problem(post_event(svc, ev, header="garbage"), 400, field="Stripe-Signature")
    assert_problem(post_event(svc, ev, header=sign_webhook(payload, secret="whsec_wrong")), 400,
                   field="Stripe-Signature")
    # stale (a replay) and from the future
    p = assert_problem(post_event(svc, ev, t=int(time.time()) - 301), 400, field="Stripe-Signature")
    assert "tolerance" in p["detail"]
    assert_problem(post_event(svc, ev, t=int(time.time()) + 400), 400)
    assert post_event(svc, ev, t=int(time.time()) - 250).status == 200
    # a tampered body with a once-good signature
    sig = sign_webhook(payload)
    tampered = payload.replace(b'"amount_refunded": 1', b'"amount_refunded": 9')
    r = svc.call("POST", "/api/v1/webhooks/stripe", raw=tampered,
                 headers={"Content-Type": "application/json", "Stripe-Signature": sig})
    assert_problem(r, 400, field="Stripe-Signature")
    # a signed event that is not one
    bad = b"[1,2]"
    r = svc.call("POST", "/api/v1/webhooks/stripe", raw=bad,
                 headers={"Content-Type": "application/json", "Stripe-Signature": sign_webhook(bad)})
    assert_problem(r, 400)


# --- audit log -----------------------------------------------------------------------------

def recompute_chain(path):
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT seq,at,kind,payment_id,ref,amount,currency,prev_hash,hash"
                          " FROM audit_log ORDER BY seq").fetchall()
    finally:
        db.close()
    prev = "0" * 64
    for seq, at, kind, pid, ref, amount, cur, prev_hash, h in rows:
        canon = json.dumps([seq, at, kind, pid, ref, amount, cur], separators=(",", ":"))
        assert prev_hash == prev
        assert hashlib.sha256((prev + canon).encode()).hexdigest() == h
        prev = h
    return len(rows), prev


def test_audit_verify(svc, db_dir, alice, admin):
    assert_problem(svc.call("GET", "/api/v1/payments/audit/verify", token=alice), 403)
    r = svc.call("GET", "/api/v1/payments/audit/verify", token=admin)
    assert r.status == 200 and r.json["ok"] is True, r
    # our own, independent reading of the chain agrees
    n, last = recompute_chain(os.path.join(db_dir, "payment.db"))
    assert r.json["entries"] == n and r.json["last_hash"] == last and n > 0


def test_audit_tamper_found():
    with tempfile.TemporaryDirectory(prefix="polyshop-payment-tamper-") as d:
        s = start(d)
        try:
            admin = make_token("user-admin", role="admin")
            cust = make_token("user-t")
            ids = [charge(s, cust, amount=100 * (i + 1)).json["id"] for i in range(4)]
            assert s.call("POST", f"/api/v1/payments/{ids[0]}/refunds", {"amount": 50}, token=admin).status == 201
            v = s.call("GET", "/api/v1/payments/audit/verify", token=admin).json
            assert v == {"ok": True, "entries": 5, "last_hash": v["last_hash"]}
            db = sqlite3.connect(os.path.join(d, "payment.db"))
            try:
                with pytest.raises(sqlite3.DatabaseError):
                    db.execute("UPDATE audit_log SET amount = 1 WHERE seq = 3")
                db.executescript("DROP TRIGGER audit_no_update; UPDATE audit_log SET amount = 1 WHERE seq = 3;")
            finally:
                db.close()
            v = s.call("GET", "/api/v1/payments/audit/verify", token=admin).json
            assert v["ok"] is False and v["first_bad_seq"] == 3 and v["reason"] == "hash mismatch", v
        finally:
            s.stop()
            s.tmp.cleanup()


# --- provider down, then back ----------------------------------------------------------------

def test_provider_down_then_retry_same_payment():
    with tempfile.TemporaryDirectory(prefix="polyshop-payment-down-") as d:
        cust = make_token("user-down")
        key = uuid.uuid4().hex
        s = start(d, PAYMENT_TEST_FAIL="unavailable", STRIPE_WEBHOOK_SECRET="")
        try:
            r = charge(s, cust, key=key, order_id="order-down")
            p = assert_problem(r, 502, "upstream")
            assert "Idempotency-Key" in p["detail"] and r.headers.get("Retry-After")
            lst = s.call("GET", "/api/v1/payments?order_id=order-down", token=cust).json["items"]
            assert len(lst) == 1 and lst[0]["status"] == "pending"
            assert_problem(charge(s, cust, key=key, order_id="order-down"), 502)
            # webhooks need their secret
            assert_problem(post_event(s, {"id": "evt_1", "type": "x", "data": {"object": {}}}), 503)
        finally:
            s.stop()
            s.tmp.cleanup()
        s = start(d)
        try:
            r = charge(s, cust, key=key, order_id="order-down")
            assert r.status == 201 and r.json["id"] == lst[0]["id"], r
            lst = s.call("GET", "/api/v1/payments?order_id=order-down", token=cust).json["items"]
            assert len(lst) == 1 and lst[0]["status"] == "succeeded"
        finally:
            s.stop()
            s.tmp.cleanup()


def test_webhook_settles_pending_payment():
    """A charge whose outcome is unknown stays pending; the provider's event (naming our
    payment in its metadata) settles it, and a retry of the key answers from the record
    without asking the still-unreachable provider again."""
    with tempfile.TemporaryDirectory(prefix="polyshop-payment-pending-") as d:
        s = start(d, PAYMENT_TEST_FAIL="timeout")
        try:
            cust = make_token("user-pending")
            admin = make_token("user-admin", role="admin")
            key = uuid.uuid4().hex
            assert_problem(charge(s, cust, key=key, order_id="order-p", amount=700), 504, "upstream-timeout")
            pid = s.call("GET", "/api/v1/payments?order_id=order-p", token=cust).json["items"][0]["id"]
            ev = {"id": "evt_" + uuid.uuid4().hex, "type": "payment_intent.succeeded",
                  "data": {"object": {"id": "pi_from_webhook", "amount_received": 700,
                                      "metadata": {"payment_id": pid}}}}
            r = post_event(s, ev)
            assert r.status == 200 and r.json["result"] == "applied" and r.json["payment_id"] == pid, r
            r = charge(s, cust, key=key, order_id="order-p", amount=700)
            assert r.status == 201 and r.json["id"] == pid and r.json["provider_ref"] == "pi_from_webhook", r
            assert r.json["captured"] == 700
            v = s.call("GET", "/api/v1/payments/audit/verify", token=admin).json
            assert v["ok"] and v["entries"] == 1  # one charge, recorded once
        finally:
            s.stop()
            s.tmp.cleanup()


def test_two_concurrent_identical_charges():
    """Two identical charges at once, the first slow at the provider: one charge. The
    second is either the first's 201 replayed or the in-progress answer (never a wait on the
    loop, never a second charge); asked again after Retry-After it is the same 201."""
    with tempfile.TemporaryDirectory(prefix="polyshop-payment-slow-") as d:
        s = start(d, PAYMENT_TEST_DELAY_MS="300")
        try:
            cust = make_token("user-slow")
            admin = make_token("user-admin", role="admin")
            key = uuid.uuid4().hex
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                f1 = pool.submit(charge, s, cust, key, "order-slow")
                time.sleep(0.05)
                f2 = pool.submit(charge, s, cust, key, "order-slow")
                r1, r2 = f1.result(), f2.result()
            assert r1.status == 201, r1
            assert in_progress(r2) or (r2.status == 201 and r2.body == r1.body), r2
            r3, _ = charge_answered(s, cust, key, "order-slow")
            assert r3.status == 201 and r3.body == r1.body and r3.headers.get("Idempotent-Replayed") == "true"
            items = s.call("GET", "/api/v1/payments?order_id=order-slow", token=cust).json["items"]
            assert len(items) == 1 and items[0]["id"] == r1.json["id"]
            v = s.call("GET", "/api/v1/payments/audit/verify", token=admin).json
            assert v["ok"] and v["entries"] == 1  # one charge, recorded once
        finally:
            s.stop()
            s.tmp.cleanup()


# --- service basics --------------------------------------------------------------------------

def test_health_and_metrics(svc):
    assert svc.call("GET", "/healthz").status == 200
    assert svc.call("GET", "/readyz").status == 200
    m = svc.call("GET", "/metrics")
    assert m.status == 200 and b"/api/v1/payments" in m.body
    assert b'polyshop_store_call_seconds_count{service="payment",op="charge_claim"}' in m.body, m.body[-3000:]
    assert b'polyshop_payment_provider_seconds_count{service="payment",provider="test",op="charge"}' in m.body
    assert_problem(svc.call("DELETE", "/api/v1/payments"), 405)
    assert_problem(svc.call("GET", "/api/v1/nothing"), 404)


# --- bad input never makes a 5xx ------------------------------------------------------------

def test_fuzz_never_5xx(svc, alice, admin):
    """Seeded random mutations of good requests: any answer but a 5xx (or a crash: the
    sanitizer build aborts on memory errors, and stop() checks the exit code)."""
    import random
    rnd = random.Random(8104)
    good = {"order_id": "order-fuzz", "amount": 1999, "currency": "EUR",
            "payment_method": {"card_number": "4242424242424242", "exp_month": 1, "exp_year": 2030, "cvc": "123"}}
    weird = [None, True, False, 0, -1, 2**63, -2**63, 1e308, 1.5, "", "x" * 70000, "\u0000", "é" * 10,
             [], [1, "a"], {}, {"$gt": 1}, {"a": {"b": {"c": [None]}}}, "4242424242424242", "EUR"]

    def mutate(obj, depth=0):
        if isinstance(obj, dict):
            o = dict(obj)
            for _ in range(rnd.randint(1, 3)):
                op = rnd.random()
                k = rnd.choice(list(o) or ["k"])
                if op < 0.4:
                    o[k] = rnd.choice(weird)
                elif op < 0.6:
                    o.pop(k, None)
                elif op < 0.8 and isinstance(o.get(k), dict) and depth < 3:
                    o[k] = mutate(o[k], depth + 1)
                else:
                    o[rnd.choice(["x", "$where", "user_id", "amount", ""])] = rnd.choice(weird)
            return o
        return rnd.choice(weird)

    p = charge(svc, alice, amount=5000).json
    targets = [("/api/v1/payments", alice), ("/internal/payments", admin),
               (f"/api/v1/payments/{p['id']}/refunds", admin), ("/api/v1/webhooks/stripe", None)]
    statuses = {}
    for i in range(400):
        path, tok = rnd.choice(targets)
        kind = rnd.random()
        headers = {"Idempotency-Key": rnd.choice([uuid.uuid4().hex, "fixed-fuzz-key", "x" * 300, "a b"])}
        if path.endswith("stripe"):
            headers["Stripe-Signature"] = rnd.choice(["", "t=1,v1=00", sign_webhook(b"{}"), "t=" + "9" * 40 + ",v1=" + "0" * 64])
        if kind < 0.15:
            raw = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200)))
            r = svc.call("POST", path, token=tok, headers={**headers, "Content-Type": "application/json"}, raw=raw)
        elif kind < 0.25:
            raw = json.dumps(good).encode()[: rnd.randint(0, 80)]
            r = svc.call("POST", path, token=tok, headers={**headers, "Content-Type": "application/json"}, raw=raw)
        else:
            r = svc.call("POST", path, mutate(good), token=tok, headers=headers)
        statuses[r.status] = statuses.get(r.status, 0) + 1
        assert r.status < 500, (i, path, r)
    assert svc.call("GET", "/healthz").status == 200
    assert statuses.get(400, 0) > 100, statuses
