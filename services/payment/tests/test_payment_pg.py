"""The payment service on PostgreSQL (the rig's server, POLYSHOP_TEST_POSTGRES_URL): the
money races that the embedded store serialises with its file lock must hold with row locks
too: one charge per Idempotency-Key under concurrent repeats, concurrent refunds never above
what was captured, and an unbroken audit chain."""
import concurrent.futures
import os
import tempfile
import uuid

import pytest

from polyshop_api import Service, assert_problem
from test_payment_api import BIN, charge, charge_answered, make_token

PG_URL = os.environ.get("POLYSHOP_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="POLYSHOP_TEST_POSTGRES_URL is not set "
                                "(run under scripts/engines exec)")


@pytest.fixture(scope="module")
def svc():
    s = Service(BIN, {"PAYMENT_STORE": PG_URL, "POLYSHOP_THREADS": "4"}, name="payment-pg")
    yield s
    s.stop()
    s.tmp.cleanup()


def test_charge_and_read(svc):
    cust = make_token("user-pg-" + uuid.uuid4().hex[:6])
    r = charge(svc, cust, amount=1234)
    assert r.status == 201, (r, svc.logs())
    g = svc.call("GET", "/api/v1/payments/" + r.json["id"], token=cust)
    assert g.status == 200 and g.json["captured"] == 1234 and g.json["refunds"] == []
    assert_problem(charge(svc, cust, pm={"card_number": "4000000000000002"}), 402, "payment-declined")


def test_hundred_repeats_one_charge(svc):
    cust = make_token("user-pg-" + uuid.uuid4().hex[:6])
    key, order = uuid.uuid4().hex, "order-pg-" + uuid.uuid4().hex[:8]
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda _: charge_answered(svc, cust, key, order, timeout=30)[0],
                                range(100)))
    assert {r.status for r in answers} == {201}, [r for r in answers if r.status != 201][:3]
    assert len({r.json["id"] for r in answers}) == 1
    items = svc.call("GET", "/api/v1/payments?order_id=" + order, token=cust).json["items"]
    assert len(items) == 1


def test_concurrent_refunds_never_exceed_captured(svc):
    cust = make_token("user-pg-" + uuid.uuid4().hex[:6])
    admin = make_token("user-admin", role="admin")
    p = charge(svc, cust, amount=1000).json
    url = f"/api/v1/payments/{p['id']}/refunds"
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: svc.call("POST", url, {"amount": 100}, token=admin, timeout=30),
                                range(25)))
    statuses = sorted(r.status for r in answers)
    assert statuses.count(201) == 10 and statuses.count(409) == 15, statuses
    g = svc.call("GET", "/api/v1/payments/" + p["id"], token=cust).json
    assert g["refunded"] == 1000 and g["status"] == "refunded" and len(g["refunds"]) == 10


def test_audit_chain_holds(svc):
    admin = make_token("user-admin", role="admin")
    v = svc.call("GET", "/api/v1/payments/audit/verify", token=admin)
    assert v.status == 200 and v.json["ok"] is True and v.json["entries"] >= 12, v
