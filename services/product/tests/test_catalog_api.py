"""API tests of the product catalog: the real binary over HTTP with a generated demo catalog.
Listings are checked against the data itself (every product fetched, then filtered and
sorted in Python), and every write endpoint against its bad input."""
import json
import os
import urllib.parse

import pytest

from polyshop_api import Service, assert_problem, make_token
from product_testlib import drop_mongo_database

BIN = os.environ["POLYSHOP_PRODUCT_BIN"]
STORE_URL = os.environ.get("PRODUCT_TEST_STORE_URL")
ADMIN = make_token("admin-1", role="admin", ttl=3600)
CUSTOMER = make_token("customer-1", role="customer", ttl=3600)
FOOD = {"food", "snacks", "pantry", "breakfast", "drinks"}
DEMO_SIZE = 300


@pytest.fixture(scope="module")
def svc():
    s = Service(BIN, {"PRODUCT_DEMO_CATALOG": "1", "PRODUCT_DEMO_SIZE": str(DEMO_SIZE),
                      "POLYSHOP_INTERNAL_TOKEN": "internal-secret-0123456789"}, name="product")
    if STORE_URL:  # the same suite against another adapter (integration tier)
        s.stop()
        s.env["PRODUCT_STORE"] = STORE_URL
        s.start()
    yield s
    s.stop()
    s.tmp.cleanup()
    if STORE_URL:
        drop_mongo_database(STORE_URL)


def q(params):
    return "/api/v1/products?" + urllib.parse.urlencode(params)


def fetch_all(svc, params=None, limit=100):
    """Every product of a listing, following next_cursor; checks no id repeats."""
    params = dict(params or {}, limit=limit)
    items, seen = [], set()
    for _ in range(1000):
        r = svc.call("GET", q(params))
        assert r.status == 200, r
        for it in r.json["items"]:
            assert it["id"] not in seen, "a product appeared on two pages"
            seen.add(it["id"])
        items += r.json["items"]
        if not r.json["next_cursor"]:
            return items
        params["cursor"] = r.json["next_cursor"]
    raise AssertionError("pagination did not end")


@pytest.fixture(scope="module")
def catalog(svc):
    return fetch_all(svc)


def nocase(s):
    """SQLite's NOCASE collation: ASCII letters folded, then bytes compared."""
    return "".join(c.lower() if c.isascii() else c for c in s).encode()


def attr_values(p, name):
    vals = []
    for src in [p["attributes"]] + [v["attributes"] for v in p["variants"]]:
        v = src.get(name)
        vals += v if isinstance(v, list) else ([] if v is None else [v])
    return vals


def product_body(**over):
    body = {"sku": "T-" + os.urandom(4).hex(), "name": "Test Phone", "kind": "phone",
            "brand": "Testco", "category": "smartphones", "price": 12345, "currency": "EUR",
            "stock": 7, "attributes": {"cpu": "T1", "memory": 6, "camera": 50},
            "images": ["/media/abc.webp"], "description": "A phone for tests."}
    body.update(over)
    return body


def create(svc, **over):
    r = svc.call("POST", "/api/v1/products", product_body(**over), token=ADMIN)
    assert r.status == 201, r
    return r.json


# --- probes and shapes ---------------------------------------------------------------------

def test_probes(svc):
    assert svc.call("GET", "/healthz").status == 200
    assert svc.call("GET", "/readyz").status == 200
    svc.call("GET", "/api/v1/products?limit=1")
    m = svc.call("GET", "/metrics")
    assert m.status == 200 and b"polyshop" in m.body
    # Store calls are timed per operation, whatever the engine.
    assert b'polyshop_store_call_seconds_count{service="product",engine="' in m.body
    assert b'op="product_list"' in m.body


def test_demo_catalog_has_three_kinds_with_their_attributes(catalog):
    assert len(catalog) == DEMO_SIZE
    kinds = {p["kind"] for p in catalog}
    assert {"phone", "clothing", "food"} <= kinds
    for p in catalog:
        assert set(p) >= {"id", "sku", "name", "description", "kind", "brand", "category",
                          "price", "currency", "stock", "attributes", "variants", "images"}
        assert isinstance(p["price"], int) and p["price"] >= 0 and len(p["currency"]) == 3
        if p["kind"] == "phone":
            assert {"cpu", "memory", "camera"} <= set(p["attributes"])
        if p["kind"] == "clothing":
            assert {"material", "colour"} <= set(p["attributes"])
            assert all("size" in v["attributes"] for v in p["variants"])
        if p["kind"] == "food":
            assert {"shelf_life", "calories", "ingredients"} <= set(p["attributes"])
        if p["variants"]:
            assert p["stock"] == sum(v["stock"] for v in p["variants"])


def test_default_listing_is_newest_first_with_a_cursor(svc, catalog):
    r = svc.call("GET", "/api/v1/products")
    assert r.status == 200 and len(r.json["items"]) == 20 and r.json["next_cursor"]
    expect = sorted(catalog, key=lambda p: (p["created_at"], p["id"]), reverse=True)[:20]
    assert [p["created_at"] for p in r.json["items"]] == [p["created_at"] for p in expect]


def test_get_one(svc, catalog):
    p = catalog[5]
    r = svc.call("GET", "/api/v1/products/" + p["id"])
    assert r.status == 200 and r.json == p
    assert_problem(svc.call("GET", "/api/v1/products/no-such-id"), 404, "not-found")
    assert_problem(svc.call("GET", "/api/v1/products/%24gt"), 404, "not-found")


# --- sorts and filters checked against the data --------------------------------------------

SORTS = {
    "price": (lambda p: (p["price"], p["id"]), False),
    "-price": (lambda p: (p["price"], p["id"]), True),
    "name": (lambda p: (nocase(p["name"]), p["id"]), False),
    "newest": (lambda p: (p["created_at"], p["id"]), True),
    "popularity": (lambda p: (p["popularity"], p["id"]), True),
}


@pytest.mark.parametrize("sort", list(SORTS))
def test_sorts_page_through_everything_in_order(svc, catalog, sort):
    key, rev = SORTS[sort]
    got = fetch_all(svc, {"sort": sort}, limit=37)
    assert len(got) == len(catalog)
    if sort == "newest":  # created_at in the document has whole seconds; the store sorts by ms
        assert [p["created_at"] for p in got] == sorted((p["created_at"] for p in got), reverse=True)
    else:
        assert [p["id"] for p in got] == [p["id"] for p in sorted(catalog, key=key, reverse=rev)]


FILTERS = [
    ({"category": "food"}, lambda p: p["category"] in FOOD),
    ({"category": "tops"}, lambda p: p["category"] in {"tops", "shirts", "knitwear"}),
    ({"category": "smartphones"}, lambda p: p["category"] == "smartphones"),
    ({"category": "no-such-category"}, lambda p: False),
    ({"brand": "Nimbus"}, lambda p: p["brand"] == "Nimbus"),
    ({"brand": "nimbus"}, lambda p: p["brand"].lower() == "nimbus"),
    ({"price_min": 1000, "price_max": 5000}, lambda p: 1000 <= p["price"] <= 5000),
    ({"price_max": 199}, lambda p: p["price"] <= 199),
    ({"q": "shirt"}, lambda p: "shirt" in p["name"].lower() or "shirt" in p["brand"].lower()),
    ({"q": "oak"}, lambda p: "oak" in p["name"].lower() or "oak" in p["brand"].lower()),
    ({"q": "100%"}, lambda p: "100%" in p["name"]),
    ({"in_stock": "true"}, lambda p: p["stock"] > 0),
    ({"in_stock": "false"}, lambda p: True),
    ({"attr.colour": "navy"}, lambda p: "navy" in attr_values(p, "colour")),
    ({"attr.size": "XS"}, lambda p: "XS" in attr_values(p, "size")),
    ({"attr.memory": "8"}, lambda p: 8 in attr_values(p, "memory")),
    ({"attr.ingredients": "oats"}, lambda p: "oats" in attr_values(p, "ingredients")),
    ({"attr.vegan": "true"}, lambda p: True in attr_values(p, "vegan")),
    ({"attr.storage": "256", "attr.memory": "12"},
     lambda p: 256 in attr_values(p, "storage") and 12 in attr_values(p, "memory")),
    ({"category": "clothing", "brand": "Fernhill", "in_stock": "1", "price_min": 2000},
     lambda p: p["category"] in {"tops", "shirts", "knitwear", "bottoms", "outerwear"}
     and p["brand"] == "Fernhill" and p["stock"] > 0 and p["price"] >= 2000),
    # Operators in values are plain strings: they match nothing.
    ({"brand": "$ne"}, lambda p: False),
    ({"brand": '{"$gt":""}'}, lambda p: False),
    ({"q": "' OR 1=1 --"}, lambda p: False),
    ({"attr.colour": '{"$ne":null}'}, lambda p: False),
]


@pytest.mark.parametrize("params,pred", FILTERS, ids=[json.dumps(f[0]) for f in FILTERS])
def test_filters_match_the_data(svc, catalog, params, pred):
    got = fetch_all(svc, dict(params, sort="price"), limit=50)
    expect = sorted((p for p in catalog if pred(p)), key=lambda p: (p["price"], p["id"]))
    assert [p["id"] for p in got] == [p["id"] for p in expect]


def test_filters_that_should_match_do(svc, catalog):
    # Guard against a broken generator making the filter tests vacuous.
    for params in ({"attr.colour": "navy"}, {"attr.size": "XS"}, {"attr.memory": "8"},
                   {"attr.ingredients": "oats"}, {"category": "food"}, {"q": "shirt"}):
        assert fetch_all(svc, params), params


BAD_QUERIES = [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"limit": "5.5"}, "limit"), ({"sort": "cheapest"}, "sort"), ({"sort": "price desc"}, "sort"),
    ({"price_min": "-1"}, "price_min"), ({"price_min": "abc"}, "price_min"),
    ({"price_max": "100000000"}, "price_max"), ({"price_min": "500", "price_max": "100"}, "price_min"),
    ({"in_stock": "maybe"}, "in_stock"), ({"cursor": "garbage!"}, "cursor"),
    ({"cursor": "eyIkZ3QiOiIifQ"}, "cursor"), ({"brand[$ne]": "x"}, "brand[$ne]"),
    ({"price[$gt]": "0"}, "price[$gt]"), ({"$where": "1"}, "$where"), ({"color": "red"}, "color"),
    ({"attr.bad-name": "x"}, "attr.bad-name"), ({"attr.": "x"}, "attr."),
    ({"category": "../etc"}, "category"), ({"q": "x" * 201}, "q"),
]


@pytest.mark.parametrize("params,field", BAD_QUERIES, ids=[f[1] for f in BAD_QUERIES])
def test_bad_query_parameters(svc, params, field):
    assert_problem(svc.call("GET", q(params)), 400, "bad-query", field=field)


def test_repeated_parameter_is_refused(svc):
    assert_problem(svc.call("GET", "/api/v1/products?brand=a&brand=b"), 400, "bad-query", "brand")


def test_cursor_of_another_sort_is_refused(svc):
    r = svc.call("GET", q({"sort": "price", "limit": 2}))
    assert_problem(svc.call("GET", q({"sort": "name", "cursor": r.json["next_cursor"]})), 400,
                   field="cursor")


def test_cursor_is_stable_under_inserts(svc, catalog):
    first = svc.call("GET", q({"sort": "price", "limit": 10})).json
    # A product that sorts before everything on page one, and one that sorts inside page two.
    a = create(svc, price=0, name="Cheapest insert")
    b = create(svc, price=first["items"][-1]["price"], name="Same price insert")
    try:
        rest = fetch_all(svc, {"sort": "price", "cursor": first["next_cursor"]}, limit=10)
        ids = [p["id"] for p in first["items"]] + [p["id"] for p in rest]
        assert a["id"] not in ids  # it sorts before the cursor: never shows up later
        original = [p["id"] for p in sorted(catalog, key=SORTS["price"][0])]
        assert [i for i in ids if i != b["id"]] == original
    finally:
        for p in (a, b):
            assert svc.call("DELETE", "/api/v1/products/" + p["id"], token=ADMIN).status == 204


# --- categories ----------------------------------------------------------------------------

def test_category_tree(svc):
    r = svc.call("GET", "/api/v1/categories")
    assert r.status == 200
    roots = {c["slug"]: c for c in r.json["items"]}
    assert {"electronics", "clothing", "food"} <= set(roots)
    food = {c["slug"] for c in roots["food"]["children"]}
    assert food == {"snacks", "pantry", "breakfast", "drinks"}
    phones = roots["electronics"]["children"][0]
    assert phones["slug"] == "phones" and {c["slug"] for c in phones["children"]} == {
        "smartphones", "rugged-phones"}


def test_admin_adds_a_category(svc):
    assert_problem(svc.call("POST", "/api/v1/categories", {"slug": "teas", "name": "Teas"}), 401)
    assert_problem(svc.call("POST", "/api/v1/categories", {"slug": "teas", "name": "Teas"},
                            token=CUSTOMER), 403)
    assert_problem(svc.call("POST", "/api/v1/categories",
                            {"slug": "teas", "name": "Teas", "parent": "nope"}, token=ADMIN),
                   400, field="parent")
    assert_problem(svc.call("POST", "/api/v1/categories", {"slug": "te as", "name": "Teas"},
                            token=ADMIN), 400, field="slug")
    r = svc.call("POST", "/api/v1/categories", {"slug": "teas", "name": "Teas", "parent": "drinks"},
                 token=ADMIN)
    assert r.status == 201, r
    # A category cannot hang under itself or under one of its own subcategories.
    for slug, parent in (("teas", "teas"), ("food", "teas"), ("drinks", "teas")):
        assert_problem(svc.call("POST", "/api/v1/categories",
                                {"slug": slug, "name": "x", "parent": parent}, token=ADMIN),
                       400, "validation", "parent")
    tree = svc.call("GET", "/api/v1/categories").json["items"]
    assert "food" in {c["slug"] for c in tree}
    p = create(svc, category="teas", kind="drink", attributes={"caffeine": "high"})
    got = fetch_all(svc, {"category": "food"})
    assert p["id"] in {x["id"] for x in got}
    svc.call("DELETE", "/api/v1/products/" + p["id"], token=ADMIN)


# --- admin create / update / delete --------------------------------------------------------

def test_create_get_update_delete(svc):
    body = product_body(variants=[], stock=3)
    r = svc.call("POST", "/api/v1/products", body, token=ADMIN)
    assert r.status == 201, r
    p = r.json
    assert r.headers["Location"] == "/api/v1/products/" + p["id"]
    for k in ("sku", "name", "kind", "brand", "category", "price", "currency", "stock",
              "attributes", "images", "description"):
        assert p[k] == body[k], k
    assert svc.call("GET", "/api/v1/products/" + p["id"]).json == p

    r = svc.call("PATCH", "/api/v1/products/" + p["id"], {"price": 999, "attributes": {"cpu": "T2"}},
                 token=ADMIN)
    assert r.status == 200, r
    assert r.json["price"] == 999 and r.json["attributes"] == {"cpu": "T2"}
    assert r.json["name"] == body["name"] and r.json["stock"] == 3

    r = svc.call("PATCH", "/api/v1/products/" + p["id"],
                 {"variants": [{"sku": body["sku"] + "-A", "attributes": {"colour": "red"}, "stock": 4},
                               {"sku": body["sku"] + "-B", "stock": 5, "price": 1500}]},
                 token=ADMIN)
    assert r.status == 200, r
    assert r.json["stock"] == 9 and len(r.json["variants"]) == 2
    # Attribute filters follow updates (attributes and variants' attributes).
    found = lambda params: [x["id"] for x in fetch_all(svc, params)]
    assert p["id"] in found({"attr.cpu": "T2", "attr.colour": "red"})
    assert p["id"] not in found({"attr.cpu": body["attributes"]["cpu"]})
    assert r.json["variants"][1]["price"] == 1500 and "price" not in r.json["variants"][0]
    # The product's stock now belongs to its variants.
    assert_problem(svc.call("PATCH", "/api/v1/products/" + p["id"], {"stock": 1}, token=ADMIN),
                   400, field="stock")

    assert svc.call("DELETE", "/api/v1/products/" + p["id"], token=ADMIN).status == 204
    assert_problem(svc.call("GET", "/api/v1/products/" + p["id"]), 404)
    assert_problem(svc.call("DELETE", "/api/v1/products/" + p["id"], token=ADMIN), 404)
    assert_problem(svc.call("PATCH", "/api/v1/products/" + p["id"], {"price": 1}, token=ADMIN), 404)
    # Its SKUs are free again.
    again = create(svc, sku=body["sku"] + "-A")
    svc.call("DELETE", "/api/v1/products/" + again["id"], token=ADMIN)


def test_skus_are_unique_across_products_and_variants(svc):
    a = create(svc, variants=[{"sku": "UNIQ-V1-" + os.urandom(3).hex(), "stock": 1}], stock=None)
    vsku = a["variants"][0]["sku"]
    assert_problem(svc.call("POST", "/api/v1/products", product_body(sku=a["sku"]), token=ADMIN),
                   409, "duplicate", "sku")
    assert_problem(svc.call("POST", "/api/v1/products", product_body(sku=vsku), token=ADMIN),
                   409, "duplicate", "sku")
    b = create(svc)
    assert_problem(svc.call("PATCH", "/api/v1/products/" + b["id"], {"sku": vsku}, token=ADMIN),
                   409, "duplicate", "sku")
    for p in (a, b):
        svc.call("DELETE", "/api/v1/products/" + p["id"], token=ADMIN)


def test_writes_need_an_admin(svc, catalog):
    pid = catalog[0]["id"]
    for method, path, body in (("POST", "/api/v1/products", product_body()),
                               ("PATCH", "/api/v1/products/" + pid, {"price": 1}),
                               ("DELETE", "/api/v1/products/" + pid, None)):
        assert_problem(svc.call(method, path, body), 401, "unauthorized")
        assert_problem(svc.call(method, path, body, token=CUSTOMER), 403, "forbidden")
        assert_problem(svc.call(method, path, body, token="not.a.token"), 401)
        forged = make_token("admin-1", role="admin", secret="x" * 40)
        assert_problem(svc.call(method, path, body, token=forged), 401)
    assert svc.call("GET", "/api/v1/products/" + pid).json == catalog[0]


BAD_BODIES = [
    ({"price": -1}, "price"), ({"price": 100000000}, "price"), ({"price": 10 ** 30}, None),
    ({"price": 12.5}, "price"), ({"price": "12"}, "price"), ({"price": None}, "price"),
    ({"stock": -1}, "stock"), ({"stock": 10000001}, "stock"), ({"stock": True}, "stock"),
    ({"currency": "eur"}, "currency"), ({"currency": "EURO"}, "currency"), ({"currency": 978}, "currency"),
    ({"currency": "XYZ"}, "currency"), ({"variants": [{"sku": "V", "price": 100000000}]}, "variants[0].price"),
    ({"kind": "spaceship"}, "kind"), ({"category": "no-such"}, "category"),
    ({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({"name": ["a"]}, "name"),
    ({"sku": "has space"}, "sku"), ({"brand": {"x": 1}}, "brand"),
    ({"attributes": [1, 2]}, "attributes"), ({"attributes": {"a.b": 1}}, "attributes.a.b"),
    ({"attributes": {"deep": {"x": 1}}}, "attributes.deep"), ({"images": "x.png"}, "images"),
    ({"images": [1]}, "images[0]"), ({"variants": {"sku": "x"}}, "variants"),
    ({"variants": [{"sku": "V", "stock": -2}]}, "variants[0].stock"),
    ({"variants": [{"sku": "V", "price": -2}]}, "variants[0].price"),
    ({"variants": [{"stock": 1}]}, "variants[0].sku"),
    ({"id": "chosen-by-client"}, "id"), ({"created_at": 1}, "created_at"),
    ({"name": {"$gt": ""}}, None), ({"brand": {"$ne": None}}, None), ({"$where": "1"}, None),
    ({"attributes": {"$where": "sleep(1)"}}, None),
]


@pytest.mark.parametrize("over,field", BAD_BODIES, ids=[json.dumps(b[0])[:40] for b in BAD_BODIES])
def test_bad_product_bodies(svc, over, field):
    r = svc.call("POST", "/api/v1/products", product_body(**over), token=ADMIN)
    p = assert_problem(r, 400)
    if field:
        assert p.get("field") == field, p


@pytest.mark.parametrize("missing", ["sku", "name", "kind", "brand", "category", "price", "currency"])
def test_missing_required_fields(svc, missing):
    body = product_body()
    del body[missing]
    assert_problem(svc.call("POST", "/api/v1/products", body, token=ADMIN), 400, "validation", missing)


def test_malformed_bodies(svc, catalog):
    h = {"Content-Type": "application/json"}
    for raw in (b"{", b"", b"[1,2]", b"null", b'{"price": 1,}', b'{"a":1,"a":2}', b"\xff\xfe"):
        r = svc.call("POST", "/api/v1/products", raw=raw, headers=h, token=ADMIN)
        assert_problem(r, 400)
        r = svc.call("PATCH", "/api/v1/products/" + catalog[0]["id"], raw=raw, headers=h, token=ADMIN)
        assert_problem(r, 400)
    r = svc.call("POST", "/api/v1/products", raw=b"sku=x", headers={"Content-Type": "text/plain"},
                 token=ADMIN)
    assert_problem(r, 415)
    big = json.dumps(product_body(description="x" * (2 << 20))).encode()
    assert_problem(svc.call("POST", "/api/v1/products", raw=big, headers=h, token=ADMIN), 413)
    assert svc.call("GET", "/api/v1/products/" + catalog[0]["id"]).json == catalog[0]


def test_bad_patches_change_nothing(svc):
    p = create(svc)
    for body, field in (({"price": -5}, "price"), ({"name": None}, "name"),
                        ({"category": "nowhere"}, "category"), ({"kind": "x"}, "kind"),
                        ({"stock": {"$inc": -100}}, None)):
        assert_problem(svc.call("PATCH", "/api/v1/products/" + p["id"], body, token=ADMIN), 400,
                       field=field)
    assert svc.call("GET", "/api/v1/products/" + p["id"]).json == p
    svc.call("DELETE", "/api/v1/products/" + p["id"], token=ADMIN)


def test_method_not_allowed(svc):
    r = svc.call("PUT", "/api/v1/products", {})
    assert_problem(r, 405)


# --- outbox --------------------------------------------------------------------------------

def test_outbox_follows_changes(svc):
    hdr = {"X-Internal-Token": "internal-secret-0123456789"}
    last = svc.call("GET", "/internal/outbox?limit=1000&after=0", headers=hdr).json["items"]
    after = last[-1]["seq"] if last else 0
    p = create(svc)
    svc.call("PATCH", "/api/v1/products/" + p["id"], {"stock": 2}, token=ADMIN)
    svc.call("DELETE", "/api/v1/products/" + p["id"], token=ADMIN)
    r = svc.call("GET", f"/internal/outbox?after={after}", headers=hdr)
    assert r.status == 200, r
    mine = [(e["type"], e["payload"].get("stock")) for e in r.json["items"] if e["product_id"] == p["id"]]
    assert mine == [("product.created", 7), ("product.updated", 2), ("product.stock_changed", 2),
                    ("product.deleted", None)]
    assert_problem(svc.call("GET", "/internal/outbox"), 401)
    assert_problem(svc.call("GET", "/internal/outbox", token=CUSTOMER), 403)
    assert_problem(svc.call("GET", "/internal/outbox", headers={"X-Internal-Token": "wrong"}), 401)
    assert svc.call("GET", "/internal/outbox?limit=1", token=ADMIN).status == 200
    assert_problem(svc.call("GET", "/internal/outbox?limit=0", token=ADMIN), 400, field="limit")
