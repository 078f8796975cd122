"""The Stripe adapter against our own fixture server, for the answers stripe-mock never gives:
card declines (402 card_error with a decline_code), requests Stripe refuses (400), Stripe
failing (503: outcome unknown, retried under the same Idempotency-Key), and what our requests
look like on the wire (form fields, Idempotency-Key, Authorization)."""
import http.server
import json
import os
import tempfile
import threading
import urllib.parse
import uuid

import pytest

from polyshop_api import Service, assert_problem
from test_payment_api import BIN, charge, make_token


class Fixture(http.server.BaseHTTPRequestHandler):
    """Answers from a script keyed by path; records every request."""
    script = {}
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        form = urllib.parse.parse_qs(body)
        Fixture.seen.append({"path": self.path, "form": form, "headers": dict(self.headers)})
        status, answer = Fixture.script.get(self.path.split("?")[0], (404, {"error": {"type": "invalid_request_error"}}))
        if callable(answer):
            answer = answer(form)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def stripe():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fixture)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def svc(stripe):
    with tempfile.TemporaryDirectory(prefix="polyshop-payment-fixtures-") as d:
        s = Service(BIN, {"PAYMENT_STORE": f"sqlite://{d}/payment.db", "PAYMENT_PROVIDER": "stripe",
                          "STRIPE_API_BASE": stripe, "STRIPE_SECRET_KEY": "sk_test_fixture",
                          "STRIPE_TIMEOUT_MS": "2000"}, name="payment-fixtures")
        yield s
        s.stop()
        s.tmp.cleanup()


def pi(status, amount=1999, pid="pi_fixture_1"):
    return {"id": pid, "object": "payment_intent", "status": status, "amount": amount,
            "amount_received": amount if status == "succeeded" else 0}


def test_wire_format_and_capture(svc):
    Fixture.seen.clear()
    Fixture.script = {"/v1/payment_intents": (200, pi("requires_capture")),
                      "/v1/payment_intents/pi_fixture_1/capture": (200, pi("succeeded"))}
    r = charge(svc, make_token("user-fx"), order_id="order-fx-1", amount=1999, currency="EUR")
    assert r.status == 201 and r.json["provider_ref"] == "pi_fixture_1", r
    create, capture = Fixture.seen
    f = create["form"]
    assert f["amount"] == ["1999"] and f["currency"] == ["eur"] and f["confirm"] == ["true"]
    assert f["capture_method"] == ["manual"] and f["payment_method"] == ["pm_card_visa"]
    assert f["metadata[payment_id]"] == [r.json["id"]] and f["metadata[order_id]"] == ["order-fx-1"]
    assert create["headers"]["Authorization"] == "Bearer sk_test_fixture"
    assert create["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert create["headers"]["Idempotency-Key"] == f"polyshop-{r.json['id']}-create"
    assert capture["headers"]["Idempotency-Key"] == f"polyshop-{r.json['id']}-capture"
    assert capture["form"]["amount_to_capture"] == ["1999"]


def test_card_declined(svc):
    Fixture.script = {"/v1/payment_intents": (402, {"error": {
        "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.", "payment_intent": {"id": "pi_declined"}}})}
    r = charge(svc, make_token("user-fx"), pm={"card_number": "4000000000009995"})
    p = assert_problem(r, 402, "payment-declined")
    assert p["code"] == "insufficient_funds" and p["payment"]["provider_ref"] == "pi_declined"
    assert p["detail"] == "Your card has insufficient funds."
    assert Fixture.seen[-1]["form"]["payment_method"] == ["pm_card_chargeDeclinedInsufficientFunds"]


def test_request_refused(svc):
    Fixture.script = {"/v1/payment_intents": (400, {"error": {
        "type": "invalid_request_error", "code": "parameter_invalid_integer", "message": "Invalid integer"}})}
    r = charge(svc, make_token("user-fx"))
    p = assert_problem(r, 502, "upstream")
    assert p["code"] == "parameter_invalid_integer" and p["payment"]["status"] == "failed"


def test_stripe_failing_then_back(svc):
    """5xx: outcome unknown; the core client retries a 503 under the same key, then the
    payment stays pending and the client's retry with its key charges the same payment."""
    Fixture.seen.clear()
    Fixture.script = {"/v1/payment_intents": (503, {"error": {"type": "api_error"}})}
    cust, key = make_token("user-fx"), uuid.uuid4().hex
    r = charge(svc, cust, key=key, order_id="order-fx-500")
    assert_problem(r, 502, "upstream")
    keys = {s["headers"]["Idempotency-Key"] for s in Fixture.seen}
    assert len(Fixture.seen) >= 2 and len(keys) == 1  # retried, always with one key
    Fixture.script = {"/v1/payment_intents": (200, pi("succeeded", pid="pi_fixture_2"))}
    r2 = charge(svc, cust, key=key, order_id="order-fx-500")
    assert r2.status == 201 and r2.json["provider_ref"] == "pi_fixture_2", r2
    assert Fixture.seen[-1]["headers"]["Idempotency-Key"] == keys.pop()
    items = svc.call("GET", "/api/v1/payments?order_id=order-fx-500", token=cust).json["items"]
    assert len(items) == 1


def test_refund_refused_gives_amount_back(svc):
    Fixture.script = {"/v1/payment_intents": (200, pi("succeeded", 1000, "pi_fixture_3")),
                      "/v1/refunds": (400, {"error": {"type": "invalid_request_error",
                                                      "code": "charge_already_refunded",
                                                      "message": "already refunded"}})}
    p = charge(svc, make_token("user-fx"), amount=1000).json
    admin = make_token("user-admin", role="admin")
    r = svc.call("POST", f"/api/v1/payments/{p['id']}/refunds", {"amount": 400}, token=admin)
    pr = assert_problem(r, 502, "upstream")
    assert pr["code"] == "charge_already_refunded" and pr["refund_id"]
    g = svc.call("GET", f"/api/v1/payments/{p['id']}", token=admin).json
    assert g["refunded"] == 0 and g["status"] == "succeeded" and g["refunds"][0]["status"] == "failed"
    assert Fixture.seen[-1]["form"] == {"payment_intent": ["pi_fixture_3"], "amount": ["400"]}
    Fixture.script["/v1/refunds"] = (200, {"id": "re_fx", "status": "succeeded", "amount": 1000})
    r = svc.call("POST", f"/api/v1/payments/{p['id']}/refunds", token=admin)
    assert r.status == 201 and r.json["amount"] == 1000 and r.json["provider_ref"] == "re_fx", r
