"""API tests of stock reservations (the internal routes the order service calls): all or
nothing, commit/release, idempotent retries, expiry by the sweeper, no overselling under 64
concurrent clients, and the internal lookup."""
import concurrent.futures
import os
import time

import pytest

from polyshop_api import Service, assert_problem, make_token, request
from product_testlib import drop_mongo_database

BIN = os.environ["POLYSHOP_PRODUCT_BIN"]
STORE_URL = os.environ.get("PRODUCT_TEST_STORE_URL")
ADMIN = make_token("admin-1", role="admin", ttl=3600)
CUSTOMER = make_token("customer-1", role="customer", ttl=3600)
SECRET = "internal-secret-0123456789"
INTERNAL = {"X-Internal-Token": SECRET}


@pytest.fixture(scope="module")
def svc():
    s = Service(BIN, {"POLYSHOP_INTERNAL_TOKEN": SECRET, "PRODUCT_SWEEP_INTERVAL_MS": "200",
                      "PRODUCT_DEMO_CATALOG": "1", "PRODUCT_DEMO_SIZE": "30"}, name="product")
    if STORE_URL:
        s.stop()
        s.env["PRODUCT_STORE"] = STORE_URL
        s.start()
    yield s
    s.stop()
    s.tmp.cleanup()
    if STORE_URL:
        drop_mongo_database(STORE_URL)


def create(svc, stock=10, variants=None, price=500):
    body = {"sku": "R-" + os.urandom(5).hex(), "name": "Reservable", "kind": "food",
            "brand": "Testco", "category": "snacks", "price": price, "currency": "EUR"}
    if variants is None:
        body["stock"] = stock
    else:
        body["variants"] = variants
    r = svc.call("POST", "/api/v1/products", body, token=ADMIN)
    assert r.status == 201, r
    return r.json


def product(svc, pid):
    return svc.call("GET", "/api/v1/products/" + pid).json


def reserve(svc, items, **extra):
    return svc.call("POST", "/internal/reservations", dict(items=items, **extra), headers=INTERNAL)


def test_reserve_commit_release(svc):
    p = create(svc, stock=10)
    r = reserve(svc, [{"product_id": p["id"], "quantity": 3}], ttl_seconds=60)
    assert r.status == 201, r
    res = r.json
    assert res["status"] == "held" and res["expires_at"] > time.time()
    assert res["items"] == [{"product_id": p["id"], "variant": None, "quantity": 3,
                             "price": 500, "currency": "EUR"}]
    assert product(svc, p["id"])["stock"] == 7
    rid = res["reservation_id"]
    g = svc.call("GET", f"/internal/reservations/{rid}", headers=INTERNAL)
    assert g.status == 200 and g.json["status"] == "held"
    c = svc.call("POST", f"/internal/reservations/{rid}/commit", headers=INTERNAL)
    assert c.status == 200 and c.json["status"] == "committed", c
    c = svc.call("POST", f"/internal/reservations/{rid}/commit", headers=INTERNAL)
    assert c.status == 200 and c.json["status"] == "committed"  # idempotent
    after = product(svc, p["id"])
    assert after["stock"] == 7 and after["popularity"] == 3  # units sold count as popularity
    # A cancelled order gives committed units back; doing it twice gives them back once.
    for _ in range(2):
        r = svc.call("POST", f"/internal/reservations/{rid}/release", headers=INTERNAL)
        assert r.status == 200 and r.json["status"] == "released", r
    assert product(svc, p["id"])["stock"] == 10
    assert_problem(svc.call("POST", f"/internal/reservations/{rid}/commit", headers=INTERNAL),
                   409, "conflict")


def test_all_or_nothing(svc):
    a, b = create(svc, stock=5), create(svc, stock=2)
    r = reserve(svc, [{"product_id": a["id"], "quantity": 4}, {"product_id": b["id"], "quantity": 3}])
    p = assert_problem(r, 409, "insufficient-stock", "items[1].quantity")
    assert b["id"] in p["detail"] and "2 left" in p["detail"]
    assert product(svc, a["id"])["stock"] == 5 and product(svc, b["id"])["stock"] == 2
    r = reserve(svc, [{"product_id": a["id"], "quantity": 4}, {"product_id": "nope", "quantity": 1}])
    assert_problem(r, 404, "not-found", "items[1].product_id")
    assert product(svc, a["id"])["stock"] == 5
    # The same product twice in one reservation counts both lines.
    r = reserve(svc, [{"product_id": a["id"], "quantity": 3}, {"product_id": a["id"], "quantity": 3}])
    assert_problem(r, 409, "insufficient-stock", "items[1].quantity")
    assert product(svc, a["id"])["stock"] == 5


def test_variants(svc):
    p = create(svc, variants=[{"sku": "VS-" + os.urandom(4).hex(), "attributes": {"size": "M"}, "stock": 2},
                              {"sku": "VL-" + os.urandom(4).hex(), "attributes": {"size": "L"},
                               "stock": 1, "price": 700}])
    vm, vl = p["variants"][0]["sku"], p["variants"][1]["sku"]
    assert p["stock"] == 3
    r = reserve(svc, [{"product_id": p["id"], "variant": vl, "quantity": 1}])
    assert r.status == 201 and r.json["items"][0]["price"] == 700, r
    after = product(svc, p["id"])
    assert after["stock"] == 2 and after["variants"][1]["stock"] == 0
    assert_problem(reserve(svc, [{"product_id": p["id"], "variant": vl, "quantity": 1}]), 409,
                   "insufficient-stock", "items[0].quantity")
    assert_problem(reserve(svc, [{"product_id": p["id"], "quantity": 1}]), 400,
                   "validation", "items[0].variant")
    assert_problem(reserve(svc, [{"product_id": p["id"], "variant": "NO-SUCH", "quantity": 1}]),
                   404, "not-found", "items[0].variant")
    r = reserve(svc, [{"product_id": p["id"], "variant": vm, "quantity": 2}])
    assert r.status == 201 and r.json["items"][0]["price"] == 500
    svc.call("POST", f"/internal/reservations/{r.json['reservation_id']}/release", headers=INTERNAL)
    after = product(svc, p["id"])
    assert after["stock"] == 2 and after["variants"][0]["stock"] == 2
    plain = create(svc, stock=3)
    assert_problem(reserve(svc, [{"product_id": plain["id"], "variant": vm, "quantity": 1}]),
                   404, field="items[0].variant")


def test_reservation_id_makes_retries_idempotent(svc):
    p = create(svc, stock=5)
    items = [{"product_id": p["id"], "quantity": 2}]
    r1 = reserve(svc, items, reservation_id="order-42-" + p["id"][:8])
    r2 = reserve(svc, items, reservation_id="order-42-" + p["id"][:8])
    assert r1.status == 201 and r2.status == 200 and r1.json == r2.json
    assert product(svc, p["id"])["stock"] == 3
    r3 = reserve(svc, [{"product_id": p["id"], "quantity": 1}], reservation_id="order-42-" + p["id"][:8])
    assert_problem(r3, 409, "conflict", "reservation_id")
    # Once released, a retry under the same id is refused rather than answered "held".
    rid = r1.json["reservation_id"]
    assert svc.call("POST", f"/internal/reservations/{rid}/release", headers=INTERNAL).status == 200
    p4 = assert_problem(reserve(svc, items, reservation_id=rid), 409, "conflict", "reservation_id")
    assert "released or has expired" in p4["detail"]
    assert product(svc, p["id"])["stock"] == 5


BAD = [
    ({}, "items"), ({"items": []}, "items"), ({"items": "x"}, "items"),
    ({"items": [{"product_id": "p", "quantity": 0}]}, "items[0].quantity"),
    ({"items": [{"product_id": "p", "quantity": -1}]}, "items[0].quantity"),
    ({"items": [{"product_id": "p", "quantity": 10001}]}, "items[0].quantity"),
    ({"items": [{"product_id": "p", "quantity": 10 ** 12}]}, "items[0].quantity"),
    ({"items": [{"product_id": "p", "quantity": "1"}]}, "items[0].quantity"),
    ({"items": [{"product_id": "p", "quantity": 1.5}]}, "items[0].quantity"),
    ({"items": [{"product_id": "p"}]}, "items[0].quantity"),
    ({"items": [{"quantity": 1}]}, "items[0].product_id"),
    ({"items": [{"product_id": 7, "quantity": 1}]}, "items[0].product_id"),
    ({"items": [{"product_id": "p", "quantity": 1, "price": 0}]}, "items[0].price"),
    ({"items": [{"product_id": "p", "variant": "a b", "quantity": 1}]}, "items[0].variant"),
    ({"items": [1]}, "items[0]"),
    ({"items": [{"product_id": "p", "quantity": 1}], "ttl_seconds": 0}, "ttl_seconds"),
    ({"items": [{"product_id": "p", "quantity": 1}], "ttl_seconds": 86401}, "ttl_seconds"),
    ({"items": [{"product_id": "p", "quantity": 1}], "reservation_id": ""}, "reservation_id"),
    ({"items": [{"product_id": "p", "quantity": 1}], "user": "x"}, "user"),
    ({"items": [{"product_id": {"$gt": ""}, "quantity": 1}]}, None),
    ({"items": [{"product_id": "p", "quantity": {"$gt": 0}}]}, None),
]


@pytest.mark.parametrize("body,field", BAD, ids=[str(b[1]) + str(i) for i, b in enumerate(BAD)])
def test_bad_reservations(svc, body, field):
    p = assert_problem(svc.call("POST", "/internal/reservations", body, headers=INTERNAL), 400)
    assert p.get("field") == field, p


def test_malformed_reservation_bodies(svc):
    h = dict(INTERNAL, **{"Content-Type": "application/json"})
    for raw in (b"{", b"", b"[]", b"{\"items\": [}"):
        assert_problem(svc.call("POST", "/internal/reservations", raw=raw, headers=h), 400)


def test_internal_routes_need_the_secret_or_an_admin(svc):
    p = create(svc, stock=5)
    body = {"items": [{"product_id": p["id"], "quantity": 1}]}
    assert_problem(svc.call("POST", "/internal/reservations", body), 401)
    assert_problem(svc.call("POST", "/internal/reservations", body, token=CUSTOMER), 403)
    assert_problem(svc.call("POST", "/internal/reservations", body,
                            headers={"X-Internal-Token": "wrong-secret-0123456789"}), 401)
    # A wrong secret is not rescued by an admin token beside it.
    assert_problem(svc.call("POST", "/internal/reservations", body, token=ADMIN,
                            headers={"X-Internal-Token": "wrong"}), 401)
    r = svc.call("POST", "/internal/reservations", body, token=ADMIN)
    assert r.status == 201
    for path in ("/internal/reservations/x/commit", "/internal/reservations/x/release",
                 "/internal/reservations/x", "/internal/products/lookup"):
        method = "GET" if path == "/internal/reservations/x" else "POST"
        assert_problem(svc.call(method, path, {"ids": ["x"]}), 401)
        assert_problem(svc.call(method, path, {"ids": ["x"]}, token=CUSTOMER), 403)
    assert product(svc, p["id"])["stock"] == 4


def test_unknown_reservation(svc):
    for verb in ("commit", "release"):
        assert_problem(svc.call("POST", f"/internal/reservations/nope/{verb}", headers=INTERNAL),
                       404, "not-found")
    assert_problem(svc.call("GET", "/internal/reservations/nope", headers=INTERNAL), 404)


def test_expired_reservations_return_their_stock(svc):
    p = create(svc, stock=6)
    r = reserve(svc, [{"product_id": p["id"], "quantity": 4}], ttl_seconds=1)
    assert r.status == 201
    rid = r.json["reservation_id"]
    assert product(svc, p["id"])["stock"] == 2
    deadline = time.time() + 10
    while time.time() < deadline and product(svc, p["id"])["stock"] != 6:
        time.sleep(0.1)
    assert product(svc, p["id"])["stock"] == 6  # the sweeper gave the units back
    g = svc.call("GET", f"/internal/reservations/{rid}", headers=INTERNAL)
    assert g.json["status"] == "expired"
    assert_problem(svc.call("POST", f"/internal/reservations/{rid}/commit", headers=INTERNAL), 409)
    r = svc.call("POST", f"/internal/reservations/{rid}/release", headers=INTERNAL)
    assert r.status == 200 and r.json["status"] == "expired"
    assert product(svc, p["id"])["stock"] == 6  # releasing an expired one gives nothing twice


def test_no_overselling_under_concurrency(svc):
    """64 parallel clients try 1,000 single-unit reservations of one SKU with stock 100."""
    p = create(svc, stock=100)
    body = {"items": [{"product_id": p["id"], "quantity": 1}], "ttl_seconds": 600}

    def one(_):
        return request(svc.base, "POST", "/internal/reservations", body, headers=INTERNAL,
                       timeout=60)

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(one, range(1000)))
    statuses = [r.status for r in results]
    assert statuses.count(201) == 100, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(409) == 900
    for r in results:
        if r.status == 409:
            assert r.json["type"].endswith("insufficient-stock")
    assert product(svc, p["id"])["stock"] == 0
    # Every unit is accounted for: releasing the 100 winners restores exactly 100.
    ids = [r.json["reservation_id"] for r in results if r.status == 201]
    assert len(set(ids)) == 100
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        rel = list(pool.map(lambda rid: request(svc.base, "POST",
                                                f"/internal/reservations/{rid}/release",
                                                headers=INTERNAL, timeout=60), ids))
    assert all(r.status == 200 for r in rel)
    assert product(svc, p["id"])["stock"] == 100


def test_lookup(svc):
    a, b = create(svc, stock=1, price=111), create(svc, stock=2, price=222)
    r = svc.call("POST", "/internal/products/lookup", {"ids": [b["id"], "missing-id", a["id"]]},
                 headers=INTERNAL)
    assert r.status == 200, r
    assert [(x["id"], x["price"], x["stock"]) for x in r.json["items"]] == [
        (b["id"], 222, 2), (a["id"], 111, 1)]
    assert r.json["missing"] == ["missing-id"]
    # "fields" narrows each document to those keys, in the document's own order.
    v = create(svc, variants=[{"sku": "LV-" + os.urandom(4).hex(), "stock": 4, "price": 650},
                              {"sku": "LW-" + os.urandom(4).hex(), "stock": 1}])
    whole = svc.call("POST", "/internal/products/lookup", {"ids": [v["id"], a["id"]]},
                     headers=INTERNAL).json
    r = svc.call("POST", "/internal/products/lookup",
                 {"ids": [v["id"], "missing-id", a["id"]],
                  "fields": ["variants", "id", "price", "currency", "name", "stock", "price"]},
                 headers=INTERNAL)
    assert r.status == 200, r
    assert r.json["missing"] == ["missing-id"]
    for got, full in zip(r.json["items"], whole["items"]):
        assert list(got) == ["id", "name", "price", "currency", "stock", "variants"]
        assert got == {k: full[k] for k in got}
    assert r.json["items"][0]["variants"] == [
        {"sku": v["variants"][0]["sku"], "attributes": {}, "stock": 4, "price": 650},
        {"sku": v["variants"][1]["sku"], "attributes": {}, "stock": 1}]
    every = ["id", "sku", "name", "description", "kind", "brand", "category", "price", "currency",
             "stock", "attributes", "variants", "images", "popularity", "created_at", "updated_at"]
    r = svc.call("POST", "/internal/products/lookup", {"ids": [v["id"], a["id"]], "fields": every},
                 headers=INTERNAL)
    assert r.status == 200 and r.json == whole and r.body == svc.call(
        "POST", "/internal/products/lookup", {"ids": [v["id"], a["id"]]}, headers=INTERNAL).body
    for body, field in (({}, "ids"), ({"ids": []}, "ids"), ({"ids": [1]}, "ids[0]"),
                        ({"ids": ["x"] * 101}, "ids"), ({"ids": {"$in": ["x"]}}, None),
                        ({"ids": ["x"], "fields": []}, "fields"),
                        ({"ids": ["x"], "fields": "id"}, "fields"),
                        ({"ids": ["x"], "fields": ["id"] * 17}, "fields"),
                        ({"ids": ["x"], "fields": ["id", "password"]}, "fields[1]"),
                        ({"ids": ["x"], "fields": ["id", 7]}, "fields[1]"),
                        ({"ids": ["x"], "fields": ["$where"]}, "fields[0]")):
        assert_problem(svc.call("POST", "/internal/products/lookup", body, headers=INTERNAL), 400,
                       field=field)
