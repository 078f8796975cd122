"""Integration tests of the Stripe provider against stripe-mock from the engines rig
(scripts/engines up stripe; POLYSHOP_TEST_STRIPE_URL). stripe-mock checks every request
against Stripe's OpenAPI description but is stateless and never declines, so declines and
webhooks are covered by the API tests with our own fixtures; here we check that our requests
are ones Stripe accepts, and how answers and outages are handled."""
import os
import socket
import tempfile
import uuid

import pytest

from polyshop_api import Service, assert_problem
from test_payment_api import BIN, charge, make_token

STRIPE_URL = os.environ.get("POLYSHOP_TEST_STRIPE_URL")
pytestmark = pytest.mark.skipif(not STRIPE_URL, reason="POLYSHOP_TEST_STRIPE_URL is not set "
                                "(run under scripts/engines exec)")


def start(db_dir, base):
    return Service(BIN, {"PAYMENT_STORE": f"sqlite://{db_dir}/payment.db",
                         "PAYMENT_PROVIDER": "stripe", "STRIPE_API_BASE": base,
                         "STRIPE_SECRET_KEY": "sk_test_123", "STRIPE_TIMEOUT_MS": "3000"},
                   name="payment-stripe")


@pytest.fixture(scope="module")
def svc():
    with tempfile.TemporaryDirectory(prefix="polyshop-payment-stripe-") as d:
        s = start(d, STRIPE_URL)
        yield s
        s.stop()
        s.tmp.cleanup()


def test_charge_and_refund_through_stripe(svc):
    cust = make_token("user-stripe")
    admin = make_token("user-admin", role="admin")
    key = uuid.uuid4().hex
    r = charge(svc, cust, key=key, order_id="order-stripe-1", amount=1999)
    assert r.status == 201, (r, svc.logs())
    p = r.json
    assert p["provider"] == "stripe" and p["provider_ref"].startswith("pi_")
    assert p["status"] == "succeeded" and p["captured"] == 1999
    again = charge(svc, cust, key=key, order_id="order-stripe-1", amount=1999)
    assert again.body == r.body
    rf = svc.call("POST", f"/api/v1/payments/{p['id']}/refunds", {"amount": 500}, token=admin)
    assert rf.status == 201, (rf, svc.logs())
    assert rf.json["provider_ref"].startswith("re_") and rf.json["payment"]["refunded"] == 500
    v = svc.call("GET", "/api/v1/payments/audit/verify", token=admin).json
    assert v["ok"] and v["entries"] == 2


def test_token_charge(svc):
    r = charge(svc, make_token("user-stripe"), pm={"token": "pm_card_mastercard"})
    assert r.status == 201, r


def test_raw_card_numbers_are_not_sent(svc):
    # Stripe takes payment methods; only its documented test numbers are mapped.
    r = charge(svc, make_token("user-stripe"), pm={"card_number": "5555555555554444"})
    assert_problem(r, 400, "validation", field="payment_method.card_number")


def test_stripe_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        with tempfile.TemporaryDirectory(prefix="polyshop-payment-stripe-down-") as d:
            s = start(d, dead)
            try:
                cust = make_token("user-stripe-down")
                r = charge(s, cust, key="k-down", order_id="order-down")
                assert_problem(r, 502, "upstream")
                items = s.call("GET", "/api/v1/payments?order_id=order-down", token=cust).json["items"]
                assert len(items) == 1 and items[0]["status"] == "pending"
            finally:
                s.stop()
                s.tmp.cleanup()
