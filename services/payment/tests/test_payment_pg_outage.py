"""A dead database makes only the payment service answer 503 with Retry-After, and it
recovers by itself when the database is back. Runs its own throw-away PostgreSQL cluster
(Debian's postgresql-15 binaries), so stopping it disturbs nobody."""
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from polyshop_api import Service, assert_problem, free_port
from test_payment_api import BIN, charge, make_token

PG_BIN = "/usr/lib/postgresql/15/bin"
pytestmark = pytest.mark.skipif(not os.path.exists(PG_BIN + "/initdb"),
                                reason="postgresql-15 binaries are not installed")


def pg(*args):
    cmd = list(args)
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster():
    d = tempfile.mkdtemp(prefix="polyshop-payment-pg-")
    try:
        if os.geteuid() == 0:
            shutil.chown(d, "postgres", "postgres")
        data = os.path.join(d, "data")
        pg(PG_BIN + "/initdb", "-D", data, "-U", "polyshop", "--auth=trust", "-E", "UTF8")
        # A free port can be taken by someone else before the server binds it: try a few.
        for attempt in range(5):
            port = free_port()
            opts = f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off"

            def ctl(*a, opts=opts):
                pg(PG_BIN + "/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(d, "log"), "-w", "-s", *a)
            try:
                ctl("start")
                break
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise
        yield {"url": f"postgresql://polyshop@127.0.0.1:{port}/postgres", "ctl": ctl}
        try:
            ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_database_down_then_back(cluster):
    s = Service(BIN, {"PAYMENT_STORE": cluster["url"]}, name="payment-pg-outage")
    try:
        cust = make_token("user-outage")
        first = charge(s, cust, amount=500)
        assert first.status == 201, (first, s.logs())

        cluster["ctl"]("stop", "-m", "fast")
        key = uuid.uuid4().hex
        for _ in range(3):  # every thread finds its connection dead, none crashes
            r = charge(s, cust, key=key, order_id="order-outage")
            p = assert_problem(r, 503, "unavailable")
            assert r.headers.get("Retry-After"), r
        assert_problem(s.call("GET", "/api/v1/payments/" + first.json["id"], token=cust), 503)
        assert s.call("GET", "/readyz").status == 503
        assert s.call("GET", "/healthz").status == 200  # alive, just not ready

        cluster["ctl"]("start")
        deadline = time.time() + 20
        while s.call("GET", "/readyz").status != 200:
            assert time.time() < deadline, s.logs()
            time.sleep(0.2)
        # Both threads reconnect on their own; the refused key never created anything.
        for _ in range(4):
            r = charge(s, cust, key=key, order_id="order-outage")
            assert r.status == 201, (r, s.logs())
        items = s.call("GET", "/api/v1/payments?order_id=order-outage", token=cust).json["items"]
        assert len(items) == 1
        assert s.call("GET", "/api/v1/payments/" + first.json["id"], token=cust).status == 200
    finally:
        s.stop()
        s.tmp.cleanup()
