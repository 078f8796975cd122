"""docs/openapi.yaml describes exactly the public routes the services declare.

Route tables are data in each service's C source ({"METHOD", "/api/v1/...", handler}); this
test reads them and compares with the document, both ways, and checks the document's shape.
"""
import glob
import os
import re

import yaml

SRC = os.environ.get("POLYSHOP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ROUTE = re.compile(r'\{\s*"(GET|POST|PUT|PATCH|DELETE)"\s*,\s*"(/api/v1/[^"]*)"\s*,')
METHODS = {"get", "post", "put", "patch", "delete"}


def declared_routes():
    routes = set()
    for path in glob.glob(os.path.join(SRC, "services", "*", "*.c")):
        with open(path) as f:
            for method, pattern in ROUTE.findall(f.read()):
                routes.add((method.lower(), pattern[len("/api/v1"):]))
    return routes


def documented_routes(doc):
    return {(m, p) for p, item in doc["paths"].items() for m in item if m in METHODS}


def load():
    with open(os.path.join(SRC, "docs", "openapi.yaml")) as f:
        return yaml.safe_load(f)


def test_every_route_is_documented_and_nothing_else():
    doc = load()
    declared = declared_routes()
    assert declared, "found no route tables"
    documented = documented_routes(doc)
    missing = sorted(declared - documented)
    extra = sorted(documented - declared)
    assert not missing, f"routes without a description in docs/openapi.yaml: {missing}"
    assert not extra, f"docs/openapi.yaml describes routes no service has: {extra}"


def test_document_shape():
    doc = load()
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    responses = doc["components"]["responses"]
    for path, item in doc["paths"].items():
        params = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            assert op.get("responses"), f"{method} {path} has no responses"
            assert op.get("operationId"), f"{method} {path} has no operationId"
            declared = {p["name"] for p in op.get("parameters", []) + item.get("parameters", []) if p.get("in") == "path"}
            assert params == declared, f"{method} {path}: path parameters {params} vs {declared}"
            for code, resp in op["responses"].items():
                ref = resp.get("$ref")
                if ref:
                    assert ref.split("/")[-1] in responses, f"{method} {path} {code}: unknown {ref}"
    text = open(os.path.join(SRC, "docs", "openapi.yaml")).read()
    for ref in re.findall(r"#/components/schemas/(\w+)", text):
        assert ref in schemas, f"unknown schema {ref}"
