"""API tests of the order service: the real order, user and product binaries over HTTP, and the
payment service (the real binary when POLYSHOP_PAYMENT_BIN is set, otherwise a small stand-in
here that speaks its internal API and can be made slow or declined). Checks the checkout saga
end to end: happy path, bad input, idempotency under concurrency, no overselling, declines,
a dead or slow payment service, a crash at every step of the saga, cancel, the admin
lifecycle and the outbox relay."""
import calendar
import concurrent.futures
import json
import os
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from polyshop_api import Service, assert_problem, free_port, make_token, request

ORDER_BIN = os.environ["POLYSHOP_ORDER_BIN"]
USER_BIN = os.environ["POLYSHOP_USER_BIN"]
PRODUCT_BIN = os.environ["POLYSHOP_PRODUCT_BIN"]
PAYMENT_BIN = os.environ.get("POLYSHOP_PAYMENT_BIN")
SECRET = "internal-secret-0123456789"
INTERNAL = {"X-Internal-Token": SECRET}
ADMIN = make_token("admin-1", role="admin", ttl=3600)
ADDRESS = {"name": "Ann Lee", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115",
           "country": "DE"}
FAULT_POINTS = ["after_persist", "after_reserve", "after_charge", "after_commit"]
# The integration tier runs this suite with the order store on PostgreSQL (tables in a schema
# of this run); the API tier on the embedded store.
STORE_URL = os.environ.get("ORDER_TEST_STORE_URL")
PG_SCHEMA = f"order_api_{os.getpid()}"


# --- a stand-in payment service ---------------------------------------------------------------

class FakePayments:
    """The payment service's internal API, in memory: charges keyed by Idempotency-Key, declines
    for pm_card_chargeDeclined, an adjustable delay, refunds; also an event sink for the relay."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_key = {}
        self.payments = {}
        self.refunds = []
        self.events = []
        self.delay = 0.0
        self.charge_calls = 0
        self.traces = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self, status, doc, ctype="application/json"):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self):
                if self.path.startswith("/api/v1/payments?order_id="):
                    oid = self.path.split("=", 1)[1].split("&")[0]
                    with fake.lock:
                        items = [p for p in fake.payments.values() if p["order_id"] == oid]
                    return self.answer(200, {"items": items, "next_cursor": None})
                self.answer(404, {})

            def do_POST(self):
                if self.headers.get("X-Internal-Token") != SECRET or \
                        not self.headers.get("Authorization", "").startswith("Bearer "):
                    return self.answer(401, {"status": 401})
                body = self.body()
                if self.path == "/internal/events":
                    with fake.lock:
                        fake.events.append((self.headers.get("Idempotency-Key"), body))
                    return self.answer(202, {})
                if self.path == "/internal/payments":
                    return self.charge(body)
                if self.path.startswith("/api/v1/payments/") and self.path.endswith("/refunds"):
                    pid = self.path.split("/")[4]
                    with fake.lock:
                        p = fake.payments.get(pid)
                        if not p:
                            return self.answer(404, {})
                        if p["status"] != "refunded":
                            p["status"] = "refunded"
                            fake.refunds.append(pid)
                    return self.answer(201, {"payment_id": pid, "status": "succeeded"})
                self.answer(404, {})

            def charge(self, body):
                key = self.headers.get("Idempotency-Key")
                with fake.lock:
                    fake.charge_calls += 1
                    fake.traces.append(self.headers.get("traceparent"))
                    if key in fake.by_key:
                        status, doc = fake.by_key[key]
                        return self.answer(status, doc)
                    delay = fake.delay
                if delay:
                    time.sleep(delay)
                pid = str(uuid.uuid4())
                if body.get("payment_method", {}).get("token") == "pm_card_chargeDeclined":
                    status, doc = 402, {"type": "urn:polyshop:problem:payment-declined",
                                        "title": "Payment declined", "status": 402,
                                        "detail": "Your card was declined."}
                    p = dict(id=pid, order_id=body["order_id"], amount=body["amount"],
                             currency=body["currency"], status="failed")
                else:
                    p = dict(id=pid, order_id=body["order_id"], amount=body["amount"],
                             currency=body["currency"], status="succeeded")
                    status, doc = 201, p
                with fake.lock:
                    if key in fake.by_key:  # a concurrent retry won
                        status, doc = fake.by_key[key]
                    else:
                        fake.by_key[key] = (status, doc)
                        fake.payments[pid] = p
                return self.answer(status, doc,
                                   "application/problem+json" if status >= 400 else "application/json")

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def captured(self, order_id):
        """Payments of the order that still hold money."""
        with self.lock:
            return [p for p in self.payments.values()
                    if p["order_id"] == order_id and p["status"] == "succeeded"]

    def charges(self, order_id):
        with self.lock:
            return [p for p in self.payments.values()
                    if p["order_id"] == order_id and p["status"] != "failed"]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tmp():
    d = tempfile.TemporaryDirectory(prefix="polyshop-order-api-")
    yield d.name
    d.cleanup()


@pytest.fixture(scope="module")
def user_svc(tmp):
    s = Service(USER_BIN, {"USER_ARGON2_OPS": "1", "USER_ARGON2_MEM_KIB": "8",
                           "USER_STORE": f"sqlite://{tmp}/user.db",
                           "USER_LOGIN_LIMIT_PER_CLIENT": "100000"}, name="user", threads=2)
    yield s
    s.stop()
    s.tmp.cleanup()


@pytest.fixture(scope="module")
def product_svc():
    s = Service(PRODUCT_BIN, {"POLYSHOP_INTERNAL_TOKEN": SECRET, "PRODUCT_SWEEP_INTERVAL_MS": "200",
                              "PRODUCT_DEMO_CATALOG": "1", "PRODUCT_DEMO_SIZE": "10"},
                name="product", threads=2)
    yield s
    s.stop()
    s.tmp.cleanup()


class RealPayments:
    """The real payment service (test provider), asked through its admin API."""

    def __init__(self, tmp):
        self.svc = Service(PAYMENT_BIN, {"POLYSHOP_INTERNAL_TOKEN": SECRET,
                                         "PAYMENT_STORE": f"sqlite://{tmp}/payment.db"},
                           name="payment", threads=2)
        self.base = self.svc.base

    def _of(self, order_id):
        r = self.svc.call("GET", f"/api/v1/payments?order_id={order_id}&limit=100", token=ADMIN)
        assert r.status == 200, r
        return r.json["items"]

    def captured(self, order_id):
        return [p for p in self._of(order_id) if p["status"] in ("succeeded", "partially_refunded")]

    def charges(self, order_id):
        return [p for p in self._of(order_id) if p["status"] != "failed"]

    def stop(self):
        self.svc.stop()
        self.svc.tmp.cleanup()


@pytest.fixture(scope="module")
def payments(tmp):
    p = RealPayments(tmp) if PAYMENT_BIN else FakePayments()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def fake():
    """A stand-in payment service that can be slowed down, and the events sink."""
    p = FakePayments()
    yield p
    p.stop()


def drop_pg_schema():
    """Best effort: the schema of this run goes away with psql when it is installed."""
    import shutil
    import subprocess
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    if STORE_URL and os.path.exists(psql):
        subprocess.run([psql, STORE_URL, "-q", "-c", "SET client_min_messages = warning;"
                        f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"], check=False)


def store_env():
    return {"ORDER_STORE": STORE_URL, "ORDER_PG_SCHEMA": PG_SCHEMA} if STORE_URL else {}


def order_env(user_svc, product_svc, payments, **extra):
    env = {"USER_URL": user_svc.base, "PRODUCT_URL": product_svc.base,
           "PAYMENT_URL": payments.base, "POLYSHOP_INTERNAL_TOKEN": SECRET,
           "ORDER_RECOVERY_GRACE_SECONDS": "4", "ORDER_RECOVERY_INTERVAL_MS": "300",
           "ORDER_RELAY_INTERVAL_MS": "200", "ORDER_PAYMENT_TIMEOUT_MS": "1500",
           "ORDER_PAYMENT_SETTLE_SECONDS": "5"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def svc(user_svc, product_svc, payments, fake):
    s = Service(ORDER_BIN, order_env(user_svc, product_svc, payments,
                                     NOTIFICATION_URL=fake.base, ANALYTICS_URL=fake.base,
                                     **store_env()),
                name="order", threads=8)
    yield s
    s.stop()
    s.tmp.cleanup()
    drop_pg_schema()


_n = [0]


def new_user(user_svc):
    _n[0] += 1
    email = f"buyer{_n[0]}.{os.getpid()}.{uuid.uuid4().hex[:6]}@example.com"
    password = "correct horse 7"
    r = user_svc.call("POST", "/api/v1/users", {"email": email, "password": password})
    assert r.status == 201, r
    r = user_svc.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert r.status == 200, r
    return r.json["access_token"]


@pytest.fixture(scope="module")
def buyer(user_svc):
    return new_user(user_svc)


def create_product(product_svc, stock=10, price=1250, variants=None):
    body = {"sku": "O-" + os.urandom(5).hex(), "name": "Orderable", "kind": "food",
            "brand": "Testco", "category": "snacks", "price": price, "currency": "EUR"}
    if variants is None:
        body["stock"] = stock
    else:
        body["variants"] = variants
    r = product_svc.call("POST", "/api/v1/products", body, token=ADMIN)
    assert r.status == 201, r
    return r.json


def stock_of(product_svc, pid):
    return product_svc.call("GET", "/api/v1/products/" + pid).json["stock"]


def place(svc, token, items, key=None, **extra):
    body = dict(items=items, address=ADDRESS, **extra)
    return svc.call("POST", "/api/v1/orders", body, token=token,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex})


def reservation(product_svc, rid):
    return product_svc.call("GET", "/internal/reservations/" + rid, headers=INTERNAL)


# --- happy path -----------------------------------------------------------------------------

def test_probes(svc):
    assert svc.call("GET", "/healthz").status == 200
    assert svc.call("GET", "/readyz").status == 200
    r = svc.call("GET", "/metrics")
    assert r.status == 200
    assert b'polyshop_store_call_seconds_count{service="order",engine=' in r.body
    assert b'polyshop_order_call_seconds_count{service="order",target="payment"}' in r.body


def test_happy_path(svc, product_svc, payments, buyer):
    a = create_product(product_svc, stock=10, price=1250)
    b = create_product(product_svc, stock=5, price=499)
    r = place(svc, buyer, [{"product_id": a["id"], "quantity": 2},
                           {"product_id": b["id"], "quantity": 3}], discount_code="WELCOME10")
    assert r.status == 201, r
    o = r.json
    subtotal = 2 * 1250 + 3 * 499
    assert o["subtotal"] == subtotal
    assert o["discount"] == subtotal // 10
    assert o["total"] == subtotal - subtotal // 10
    assert o["currency"] == "EUR"
    assert o["status"] == "processing" and o["payment_status"] == "paid"
    assert [(i["product_id"], i["quantity"], i["unit_price"], i["line_total"]) for i in o["items"]] == \
        [(a["id"], 2, 1250, 2500), (b["id"], 3, 499, 1497)]
    assert stock_of(product_svc, a["id"]) == 8 and stock_of(product_svc, b["id"]) == 2
    assert reservation(product_svc, o["order_id"]).json["status"] == "committed"
    charges = payments.captured(o["order_id"])
    assert len(charges) == 1 and charges[0]["amount"] == o["total"]

    got = svc.call("GET", "/api/v1/orders/" + o["order_id"], token=buyer)
    assert got.status == 200 and got.json["order_id"] == o["order_id"]
    assert got.json["address"] == ADDRESS and len(got.json["items"]) == 2
    # Timestamps are RFC 3339 UTC strings, like every service's, and close to now.
    for field in ("created_at", "updated_at"):
        at = got.json[field]
        assert isinstance(at, str) and len(at) == 20 and at.endswith("Z"), at
        t = calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(t - time.time()) < 600, at
    # An admin sees it too.
    assert svc.call("GET", "/api/v1/orders/" + o["order_id"], token=ADMIN).status == 200


def test_total_above_the_money_limit_is_refused_before_reserving(svc, product_svc, buyer):
    # 99,999,999 minor units is the most one payment can take (money.h): the most expensive
    # product once is fine to price, twice is refused with 422 and nothing is reserved.
    p = create_product(product_svc, stock=5, price=99_999_999)
    r = place(svc, buyer, [{"product_id": p["id"], "quantity": 2}])
    assert_problem(r, 422, field="items")
    assert "99999999" in r.json["detail"], r.json
    assert stock_of(product_svc, p["id"]) == 5
    # the product service refuses a price above the limit in the first place
    body = {"sku": "O-" + os.urandom(5).hex(), "name": "Too dear", "kind": "food", "brand": "Testco",
            "category": "snacks", "price": 100_000_000, "currency": "EUR", "stock": 1}
    assert_problem(product_svc.call("POST", "/api/v1/products", body, token=ADMIN), 400, field="price")


def test_flat_discount_and_variants(svc, product_svc, buyer):
    p = create_product(product_svc, variants=[
        {"sku": "TEE-S", "attributes": {"size": "S"}, "stock": 4},
        {"sku": "TEE-L", "attributes": {"size": "L"}, "stock": 4, "price": 2000}], price=1500)
    r = place(svc, buyer, [{"product_id": p["id"], "variant": "TEE-S", "quantity": 1},
                           {"product_id": p["id"], "variant": "TEE-L", "quantity": 1}],
              discount_code="flat500")
    assert r.status == 201, r
    assert r.json["subtotal"] == 3500 and r.json["discount"] == 500 and r.json["total"] == 3000
    assert r.json["discount_code"] == "FLAT500"
    r = place(svc, buyer, [{"product_id": p["id"], "variant": "TEE-XL", "quantity": 1}])
    assert_problem(r, 404, field="items[0].variant")


def test_forged_prices_and_totals_are_ignored(svc, product_svc, payments, buyer):
    p = create_product(product_svc, stock=5, price=10000)
    r = place(svc, buyer, [{"product_id": p["id"], "quantity": 1, "price": 1, "unit_price": 1,
                            "line_total": 1}], total=1, subtotal=1, discount=9999, currency="XXX")
    assert r.status == 201, r
    assert r.json["total"] == 10000 and r.json["currency"] == "EUR"
    assert r.json["items"][0]["unit_price"] == 10000
    assert payments.captured(r.json["order_id"])[0]["amount"] == 10000


def test_history_pages_with_items(svc, product_svc, user_svc):
    token = new_user(user_svc)
    p = create_product(product_svc, stock=50, price=100)
    ids = []
    for i in range(5):
        r = place(svc, token, [{"product_id": p["id"], "quantity": i + 1}])
        assert r.status == 201, r
        ids.append(r.json["order_id"])
    seen, cursor = [], None
    while True:
        path = "/api/v1/orders?limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = svc.call("GET", path, token=token)
        assert r.status == 200, r
        for o in r.json["items"]:
            assert o["items"] and o["items"][0]["product_id"] == p["id"]
        seen += [o["order_id"] for o in r.json["items"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert_problem(svc.call("GET", "/api/v1/orders?cursor=bogus!", token=token), 400, field="cursor")
    assert_problem(svc.call("GET", "/api/v1/orders?limit=0", token=token), 400)
    # Another user's history is empty.
    other = new_user(user_svc)
    assert svc.call("GET", "/api/v1/orders", token=other).json == {"items": [], "next_cursor": None}


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("body,field", [
    ({"address": ADDRESS}, "items"),
    ({"items": [], "address": ADDRESS}, "items"),
    ({"items": "x", "address": ADDRESS}, "items"),
    ({"items": [{"product_id": "P", "quantity": 0}], "address": ADDRESS}, "items[0].quantity"),
    ({"items": [{"product_id": "P", "quantity": 10**9}], "address": ADDRESS}, "items[0].quantity"),
    ({"items": [{"product_id": "P", "quantity": -1}], "address": ADDRESS}, "items[0].quantity"),
    ({"items": [{"product_id": "P", "quantity": 1.5}], "address": ADDRESS}, "items[0].quantity"),
    ({"items": [{"product_id": "P", "quantity": "1"}], "address": ADDRESS}, "items[0].quantity"),
    ({"items": [{"product_id": 7, "quantity": 1}], "address": ADDRESS}, "items[0].product_id"),
    ({"items": [{"product_id": "", "quantity": 1}], "address": ADDRESS}, "items[0].product_id"),
    ({"items": [{"quantity": 1}], "address": ADDRESS}, "items[0].product_id"),
    ({"items": [{"product_id": "P", "quantity": 1, "colour": "red"}], "address": ADDRESS},
     "items[0].colour"),
    ({"items": [{"product_id": "P", "quantity": 1}, {"product_id": "P", "quantity": 2}],
      "address": ADDRESS}, "items[1]"),
    ({"items": [{"product_id": "P", "quantity": 1}] * 101, "address": ADDRESS}, "items"),
    ({"items": [{"product_id": "P", "quantity": 1}]}, "address"),
    ({"items": [{"product_id": "P", "quantity": 1}], "address": "Berlin"}, "address"),
    ({"items": [{"product_id": "P", "quantity": 1}], "address": dict(ADDRESS, city="")},
     "address.city"),
    ({"items": [{"product_id": "P", "quantity": 1}],
      "address": {k: v for k, v in ADDRESS.items() if k != "line1"}}, "address.line1"),
    ({"items": [{"product_id": "P", "quantity": 1}], "address": dict(ADDRESS, country="Germany")},
     "address.country"),
    ({"items": [{"product_id": "P", "quantity": 1}], "address": ADDRESS, "discount_code": "FREE"},
     "discount_code"),
    ({"items": [{"product_id": "P", "quantity": 1}], "address": ADDRESS, "user_id": "x"},
     "user_id"),
])
def test_bad_bodies(svc, buyer, body, field):
    r = svc.call("POST", "/api/v1/orders", body, token=buyer,
                 headers={"Idempotency-Key": uuid.uuid4().hex})
    assert_problem(r, 400, field=field)


def test_malformed_json_and_auth(svc, buyer):
    r = svc.call("POST", "/api/v1/orders", raw=b"{not json", token=buyer,
                 headers={"Idempotency-Key": "k1", "Content-Type": "application/json"})
    assert_problem(r, 400)
    r = svc.call("POST", "/api/v1/orders", {"items": []}, headers={"Idempotency-Key": "k2"})
    assert_problem(r, 401)
    forged = make_token("someone", secret="x" * 40)
    assert_problem(svc.call("GET", "/api/v1/orders", token=forged), 401)


@pytest.mark.parametrize("key", [None, "", "k" * 256, "caf\xe9", "tab\tkey", "with space"])
def test_malformed_idempotency_key(svc, product_svc, buyer, key):
    p = create_product(product_svc, stock=5)
    headers = {} if key is None else {"Idempotency-Key": key}
    r = svc.call("POST", "/api/v1/orders",
                 {"items": [{"product_id": p["id"], "quantity": 1}], "address": ADDRESS},
                 token=buyer, headers=headers)
    assert_problem(r, 400, field="Idempotency-Key")
    assert stock_of(product_svc, p["id"]) == 5


def test_unknown_product_and_insufficient_stock(svc, product_svc, buyer):
    r = place(svc, buyer, [{"product_id": "no-such-product", "quantity": 1}])
    assert_problem(r, 404, field="items[0].product_id")
    p = create_product(product_svc, stock=2)
    r = place(svc, buyer, [{"product_id": p["id"], "quantity": 3}])
    assert_problem(r, 409, "insufficient-stock", field="items[0].quantity")
    assert stock_of(product_svc, p["id"]) == 2


def test_deleted_account_is_refused(svc):
    ghost = make_token("00000000-0000-4000-8000-000000000000", ttl=600)
    r = place(svc, ghost, [{"product_id": "x", "quantity": 1}])
    assert_problem(r, 401)


def test_another_users_order_is_not_found(svc, product_svc, user_svc, buyer):
    p = create_product(product_svc, stock=5)
    o = place(svc, buyer, [{"product_id": p["id"], "quantity": 1}]).json
    other = new_user(user_svc)
    assert_problem(svc.call("GET", "/api/v1/orders/" + o["order_id"], token=other), 404)
    assert_problem(svc.call("POST", f"/api/v1/orders/{o['order_id']}/cancel", token=other), 404)
    assert_problem(svc.call("GET", "/api/v1/orders/nope", token=buyer), 404)
    assert svc.call("GET", "/api/v1/orders/" + o["order_id"], token=buyer).json["status"] == "processing"


# --- idempotency and concurrency --------------------------------------------------------------

def test_same_key_100_times_one_order_one_charge(svc, product_svc, payments, user_svc):
    token = new_user(user_svc)
    p = create_product(product_svc, stock=100, price=700)
    key = "checkout-" + uuid.uuid4().hex
    items = [{"product_id": p["id"], "quantity": 2}]

    def once(_):
        return place(svc, token, items, key=key)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
        first = list(ex.map(once, range(40)))  # concurrently
    rest = [once(i) for i in range(60)]          # then one after another
    results = first + rest
    ok = [r for r in results if r.status == 201]
    busy = [r for r in results if r.status == 409]
    assert len(ok) + len(busy) == 100, [r for r in results if r.status not in (201, 409)]
    assert all(r.json["type"].endswith(":conflict") for r in busy)
    assert len({r.json["order_id"] for r in ok}) == 1
    assert len(rest) == 60 and all(r.status == 201 for r in rest)
    order_id = ok[0].json["order_id"]
    assert all(r.json == ok[-1].json for r in rest)
    listed = svc.call("GET", "/api/v1/orders", token=token).json["items"]
    assert [o["order_id"] for o in listed] == [order_id]
    assert len(payments.charges(order_id)) == 1
    assert stock_of(product_svc, p["id"]) == 98
    # Same key, another body: refused, nothing new.
    r = place(svc, token, [{"product_id": p["id"], "quantity": 3}], key=key)
    assert_problem(r, 422, "idempotency-key-reuse")
    assert stock_of(product_svc, p["id"]) == 98


@pytest.fixture(scope="module")
def user_tokens(user_svc):
    """64 signed-in shoppers."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
        return list(ex.map(lambda _: new_user(user_svc), range(64)))


def test_64_concurrent_buyers_stock_20(svc, product_svc, payments, user_tokens):
    p = create_product(product_svc, stock=20, price=999)
    tokens = user_tokens

    def buy(token):
        return place(svc, token, [{"product_id": p["id"], "quantity": 1}])

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as ex:
        results = list(ex.map(buy, tokens))
    paid = [r for r in results if r.status == 201]
    refused = [r for r in results if r.status == 409]
    assert len(paid) == 20, [r for r in results if r.status not in (201, 409)][:3]
    assert len(refused) == 44
    assert all(r.json["type"].endswith(":insufficient-stock") for r in refused)
    assert stock_of(product_svc, p["id"]) == 0
    charged = sum(len(payments.captured(r.json["order_id"])) for r in paid)
    assert charged == 20
    for r in paid:
        assert r.json["status"] == "processing"


# --- payment failures -------------------------------------------------------------------------

def test_declined_payment_releases_stock(svc, product_svc, payments, buyer):
    p = create_product(product_svc, stock=3)
    r = place(svc, buyer, [{"product_id": p["id"], "quantity": 2}],
              payment_method="pm_card_chargeDeclined")
    prob = assert_problem(r, 402, "payment-declined")
    assert "declined" in prob["detail"]
    assert stock_of(product_svc, p["id"]) == 3
    orders = svc.call("GET", "/api/v1/orders?limit=100", token=buyer).json["items"]
    failed = [o for o in orders if o["items"][0]["product_id"] == p["id"]]
    assert len(failed) == 1 and failed[0]["status"] == "failed"
    assert failed[0]["payment_status"] == "failed"
    assert reservation(product_svc, failed[0]["order_id"]).json["status"] == "released"


def wait_for(pred, timeout=30, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def test_payment_service_down(user_svc, product_svc, payments, buyer):
    dead = f"http://127.0.0.1:{free_port()}"
    s = Service(ORDER_BIN, order_env(user_svc, product_svc, payments, PAYMENT_URL=dead),
                name="order-nopay", threads=2)
    try:
        p = create_product(product_svc, stock=4)
        t0 = time.time()
        r = place(s, buyer, [{"product_id": p["id"], "quantity": 2}])
        assert time.time() - t0 < 10
        assert_problem(r, 503, "unavailable")
        assert r.headers.get("Retry-After")
        assert stock_of(product_svc, p["id"]) == 4
        o = s.call("GET", "/api/v1/orders", token=buyer).json["items"][0]
        assert o["status"] == "failed"
        assert reservation(product_svc, o["order_id"]).json["status"] == "released"
    finally:
        s.stop()
        s.tmp.cleanup()


def test_payment_service_slow(user_svc, product_svc, fake, buyer):
    s = Service(ORDER_BIN, order_env(user_svc, product_svc, fake), name="order-slowpay", threads=2)
    try:
        p = create_product(product_svc, stock=4)
        fake.delay = 3.0
        try:
            t0 = time.time()
            trace = "4bf92f3577b34da6a3ce929d0e0e4736"
            r = s.call("POST", "/api/v1/orders",
                       {"items": [{"product_id": p["id"], "quantity": 1}], "address": ADDRESS},
                       token=buyer, headers={"Idempotency-Key": uuid.uuid4().hex,
                                             "traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
            assert time.time() - t0 < 6
        finally:
            fake.delay = 0.0
        assert_problem(r, 504, "upstream-timeout")
        # The charge continued the caller's trace.
        assert fake.traces and fake.traces[-1].split("-")[1] == trace
        assert stock_of(product_svc, p["id"]) == 4
        orders = s.call("GET", "/api/v1/orders?limit=100", token=buyer).json["items"]
        o = [x for x in orders if x["items"][0]["product_id"] == p["id"]][0]
        assert o["status"] == "failed"
        # The charge the slow provider made after all is found and refunded.
        assert wait_for(lambda: fake.charges(o["order_id"]), timeout=10)
        assert wait_for(lambda: not fake.captured(o["order_id"]) and
                        s.call("GET", "/api/v1/orders/" + o["order_id"], token=buyer)
                        .json["payment_status"] == "refunded", timeout=15)
        assert stock_of(product_svc, p["id"]) == 4
    finally:
        s.stop()
        s.tmp.cleanup()


# --- crashes at every step ----------------------------------------------------------------------

@pytest.mark.parametrize("point", FAULT_POINTS)
def test_crash_at_each_step_is_finished_after_restart(user_svc, product_svc, payments, buyer, point):
    s = Service(ORDER_BIN, order_env(user_svc, product_svc, payments, ORDER_FAULT_POINT=point,
                                     **store_env()),
                name="order-crash", threads=2)
    try:
        p = create_product(product_svc, stock=6, price=300)
        try:
            r = place(s, buyer, [{"product_id": p["id"], "quantity": 2}])
            pytest.fail(f"the service answered {r} instead of dying at {point}")
        except OSError:
            pass
        assert s.proc.wait(timeout=10) == 137
        s.proc = None
        s.log.close()
        del s.env["ORDER_FAULT_POINT"]
        s.start()

        def final():
            items = s.call("GET", "/api/v1/orders?limit=100", token=buyer).json["items"]
            mine = [o for o in items if o["items"][0]["product_id"] == p["id"]]
            if len(mine) != 1 or mine[0]["status"] not in ("processing", "failed"):
                return None
            o = mine[0]
            if o["status"] == "processing" and o["payment_status"] == "paid":
                return o
            if o["status"] == "failed" and o["payment_status"] in ("failed", "refunded", "none"):
                return o
            return None

        o = wait_for(final, timeout=30)
        assert o, s.logs()
        res = reservation(product_svc, o["order_id"])
        if o["status"] == "processing":
            assert res.json["status"] == "committed"
            assert stock_of(product_svc, p["id"]) == 4
            assert len(payments.captured(o["order_id"])) == 1
        else:
            assert res.status == 404 or res.json["status"] in ("released", "expired")
            assert stock_of(product_svc, p["id"]) == 6
            assert payments.captured(o["order_id"]) == []
        # Crashes before the charge fail the order; after it, the order is paid.
        expect = "failed" if point in ("after_persist", "after_reserve") else "processing"
        assert o["status"] == expect
    finally:
        if s.proc:
            s.stop()
        s.tmp.cleanup()


# --- cancel and the admin lifecycle -------------------------------------------------------------

def test_cancel_refunds_and_restocks(svc, product_svc, payments, buyer):
    p = create_product(product_svc, stock=5, price=800)
    o = place(svc, buyer, [{"product_id": p["id"], "quantity": 2}]).json
    assert stock_of(product_svc, p["id"]) == 3
    r = svc.call("POST", f"/api/v1/orders/{o['order_id']}/cancel", token=buyer)
    assert r.status == 200, r
    assert r.json["status"] == "cancelled" and r.json["payment_status"] == "refunded"
    assert stock_of(product_svc, p["id"]) == 5
    assert payments.captured(o["order_id"]) == []
    again = svc.call("POST", f"/api/v1/orders/{o['order_id']}/cancel", token=buyer)
    assert again.status == 200 and again.json["status"] == "cancelled"
    assert stock_of(product_svc, p["id"]) == 5


def test_admin_lifecycle(svc, product_svc, buyer):
    p = create_product(product_svc, stock=5)
    o = place(svc, buyer, [{"product_id": p["id"], "quantity": 1}]).json
    path = "/api/v1/orders/" + o["order_id"]
    assert_problem(svc.call("PATCH", path, {"status": "shipped"}, token=buyer), 403)
    assert_problem(svc.call("PATCH", path, {"status": "delivered"}, token=ADMIN), 409)
    assert_problem(svc.call("PATCH", path, {"status": "paid"}, token=ADMIN), 400, field="status")
    assert_problem(svc.call("PATCH", path, {"status": "shipped", "x": 1}, token=ADMIN), 400)
    r = svc.call("PATCH", path, {"status": "shipped"}, token=ADMIN)
    assert r.status == 200 and r.json["status"] == "shipped"
    assert_problem(svc.call("POST", path + "/cancel", token=buyer), 409)
    assert_problem(svc.call("PATCH", path, {"status": "processing"}, token=ADMIN), 409)
    r = svc.call("PATCH", path, {"status": "delivered"}, token=ADMIN)
    assert r.status == 200 and r.json["status"] == "delivered"
    assert_problem(svc.call("PATCH", path, {"status": "cancelled"}, token=ADMIN), 409)
    assert_problem(svc.call("PATCH", "/api/v1/orders/nope", {"status": "shipped"}, token=ADMIN), 404)


# --- outbox relay ------------------------------------------------------------------------------

def test_outbox_events_are_delivered_once_each_with_ids(svc, product_svc, fake, buyer):
    p = create_product(product_svc, stock=5)
    o = place(svc, buyer, [{"product_id": p["id"], "quantity": 1}]).json

    def mine():
        with fake.lock:
            return [(k, e) for k, e in fake.events if e.get("order_id") == o["order_id"]]

    # Two events (created, new -> processing), each to notification and analytics.
    events = wait_for(lambda: len(mine()) >= 4 and mine(), timeout=15)
    assert events
    types = sorted(e["type"] for _, e in events)
    assert types == ["order_created", "order_created", "order_status_changed",
                     "order_status_changed"]
    for key, e in events:
        assert key == e["id"]  # the event id travels as the Idempotency-Key too
    ids = {e["id"] for _, e in events}
    assert len(ids) == 2
    time.sleep(1)
    assert len(mine()) == 4  # marked sent: not delivered again


def test_free_order_is_not_charged(svc, product_svc, payments, buyer):
    p = create_product(product_svc, stock=3, price=0)
    r = place(svc, buyer, [{"product_id": p["id"], "quantity": 1}])
    assert r.status == 201, r
    assert r.json["total"] == 0 and r.json["status"] == "processing"
    assert payments.charges(r.json["order_id"]) == []
    assert stock_of(product_svc, p["id"]) == 2


def test_sigkill_under_load_leaves_every_order_consistent(user_svc, product_svc, payments, user_tokens):
    """SIGKILL in the middle of 128 checkouts (32 at a time), restart: every order the store knows
    ends paid with stock committed or failed with stock back, and stock adds up."""
    s = Service(ORDER_BIN, order_env(user_svc, product_svc, payments, **store_env()),
                name="order-kill", threads=4)
    try:
        p = create_product(product_svc, stock=1000, price=250)

        def buy(token):
            try:
                return place(s, token, [{"product_id": p["id"], "quantity": 2}])
            except OSError:
                return None

        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
            futures = [ex.submit(buy, t) for t in user_tokens * 2]
            time.sleep(0.08)
            s.proc.kill()
            s.proc.wait()
            answered = [f.result() for f in futures]
        s.proc = None
        s.log.close()
        s.start()

        def settled():
            found = []
            for t in user_tokens:
                items = s.call("GET", "/api/v1/orders?limit=100", token=t).json["items"]
                found += [o for o in items if o["items"][0]["product_id"] == p["id"]]
            ok = all((o["status"] == "processing" and o["payment_status"] == "paid") or
                     (o["status"] == "failed" and o["payment_status"] in ("failed", "none",
                                                                           "refunded"))
                     for o in found)
            return found if ok else None

        orders = wait_for(settled, timeout=30)
        assert orders is not None, s.logs()
        paid = [o for o in orders if o["status"] == "processing"]
        assert any(r is None for r in answered)  # the kill did cut checkouts short
        # Every answer the clients did get agrees with the store.
        for r in answered:
            if r is not None and r.status == 201:
                assert r.json["order_id"] in {o["order_id"] for o in paid}
        assert stock_of(product_svc, p["id"]) == 1000 - 2 * len(paid)
        for o in orders:
            res = reservation(product_svc, o["order_id"])
            captured = payments.captured(o["order_id"])
            if o["status"] == "processing":
                assert res.json["status"] == "committed" and len(captured) == 1
            else:
                assert (res.status == 404 or res.json["status"] in ("released", "expired"))
                assert captured == []
    finally:
        if s.proc:
            s.stop()
        s.tmp.cleanup()


@pytest.mark.skipif(not PAYMENT_BIN, reason="needs the real payment binary")
def test_slow_real_payment_provider_late_capture_is_refunded(user_svc, product_svc, buyer, tmp):
    """The real payment service with a provider slower than the order's deadline: the order
    fails at once with its stock back, and the capture that lands later is refunded."""
    pay = Service(PAYMENT_BIN, {"POLYSHOP_INTERNAL_TOKEN": SECRET, "PAYMENT_TEST_DELAY_MS": "2500",
                                "PAYMENT_STORE": f"sqlite://{tmp}/payment-slow.db"},
                  name="payment-slow", threads=2)
    slow = RealPayments.__new__(RealPayments)
    slow.svc, slow.base = pay, pay.base
    s = Service(ORDER_BIN, order_env(user_svc, product_svc, slow), name="order-slowreal", threads=2)
    try:
        p = create_product(product_svc, stock=4)
        r = place(s, buyer, [{"product_id": p["id"], "quantity": 1}])
        assert_problem(r, 504, "upstream-timeout")
        assert stock_of(product_svc, p["id"]) == 4
        orders = s.call("GET", "/api/v1/orders?limit=100", token=buyer).json["items"]
        o = [x for x in orders if x["items"][0]["product_id"] == p["id"]][0]
        assert o["status"] == "failed"
        assert wait_for(lambda: slow.charges(o["order_id"]), timeout=10)
        assert wait_for(lambda: not slow.captured(o["order_id"]) and
                        s.call("GET", "/api/v1/orders/" + o["order_id"], token=buyer)
                        .json["payment_status"] == "refunded", timeout=20)
        assert [x["status"] for x in slow.charges(o["order_id"])] == ["refunded"]
    finally:
        s.stop()
        s.tmp.cleanup()
        pay.stop()
        pay.tmp.cleanup()
