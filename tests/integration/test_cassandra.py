#!/usr/bin/python3
"""Smoke test of the Cassandra engine that scripts/engines starts, through Debian's
python3-cassandra driver until polyshop's own CQL client exists: creates a keyspace and a
table, writes rows and reads them back, checks a lightweight transaction (IF NOT EXISTS) and a
counter, then drops the keyspace. Fails (never skips) when POLYSHOP_TEST_CASSANDRA is unset or
the node does not answer."""
import os
import sys
import time
import unittest
import uuid


def contact():
    addr = os.environ.get("POLYSHOP_TEST_CASSANDRA")
    if not addr:
        raise AssertionError("POLYSHOP_TEST_CASSANDRA is not set: run as "
                             "`scripts/engines exec -- tests/integration/test_cassandra.py`")
    host, _, port = addr.rpartition(":")
    return host, int(port)


class CassandraSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy
        host, port = contact()
        profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]),
                                   request_timeout=30)
        cls.cluster = Cluster([host], port=port, connect_timeout=10,
                              execution_profiles={EXEC_PROFILE_DEFAULT: profile})
        cls.session = cls.cluster.connect()
        cls.ks = "itest_cass_%d_%d" % (os.getpid(), int(time.time()) % 100000)
        cls.session.execute(
            "CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', "
            "'replication_factor': 1}" % cls.ks)
        cls.session.set_keyspace(cls.ks)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.session.execute("DROP KEYSPACE IF EXISTS %s" % cls.ks)
        finally:
            cls.cluster.shutdown()

    def test_version_is_5(self):
        row = self.session.execute("SELECT release_version FROM system.local").one()
        self.assertTrue(row.release_version.startswith("5.0"), row.release_version)

    def test_write_read(self):
        s = self.session
        s.execute("CREATE TABLE events (day text, at timeuuid, kind text, amount_cents bigint, "
                  "PRIMARY KEY (day, at)) WITH CLUSTERING ORDER BY (at DESC)")
        ins = s.prepare("INSERT INTO events (day, at, kind, amount_cents) VALUES (?, now(), ?, ?)")
        for kind, cents in (("order", 4999), ("refund", -1500), ("order", 1200)):
            s.execute(ins, ("2026-11-24", kind, cents))
        rows = list(s.execute("SELECT kind, amount_cents FROM events WHERE day = %s",
                              ("2026-11-24",)))
        self.assertEqual(len(rows), 3)
        self.assertEqual(sum(r.amount_cents for r in rows), 4999 - 1500 + 1200)
        # newest first, by the clustering order
        self.assertEqual(rows[0].kind, "order")
        self.assertEqual(rows[0].amount_cents, 1200)

    def test_lwt_and_counter(self):
        s = self.session
        s.execute("CREATE TABLE users_by_email (email text PRIMARY KEY, id uuid)")
        uid = uuid.uuid4()
        first = s.execute("INSERT INTO users_by_email (email, id) VALUES (%s, %s) IF NOT EXISTS",
                          ("ada@example.com", uid)).one()
        self.assertTrue(first.applied)
        second = s.execute("INSERT INTO users_by_email (email, id) VALUES (%s, %s) IF NOT EXISTS",
                           ("ada@example.com", uuid.uuid4())).one()
        self.assertFalse(second.applied)
        got = s.execute("SELECT id FROM users_by_email WHERE email = %s",
                        ("ada@example.com",)).one()
        self.assertEqual(got.id, uid)

        s.execute("CREATE TABLE views (product text PRIMARY KEY, n counter)")
        for _ in range(5):
            s.execute("UPDATE views SET n = n + 1 WHERE product = 'p1'")
        self.assertEqual(s.execute("SELECT n FROM views WHERE product = 'p1'").one().n, 5)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    passed = max(0, result.testsRun - failed - len(result.skipped))
    print("cassandra: %d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 and not result.skipped and result.testsRun > 0 else 1)
