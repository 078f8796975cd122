"""Shared bits of the product service's API tests."""
import urllib.parse


def drop_mongo_database(url):
    """Drops the database a mongodb:// store URL names (the test's own, fresh each run)."""
    try:
        import pymongo  # Debian's python3-pymongo; without it the database is left behind
    except ImportError:
        return
    name = urllib.parse.urlparse(url).path.lstrip("/")
    if name:
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=3000)
        try:
            client.drop_database(name)
        finally:
            client.close()
