"""Validate response bodies against the Matrix spec's client-server OpenAPI files.

The spec lives beside the repository, in ``<repo>/../shared/spec`` (that is how CI
checks it out).  The ``api/client-server/*.yaml`` files are OpenAPI 3.1 documents whose
schemas are JSON Schema 2020-12 with relative ``$ref``s to other files of the spec
tree; those are resolved through a :mod:`referencing` registry that reads the local
files (and nothing outside the spec tree).  ``example``/``examples``/``x-*`` keys are
annotations to JSON Schema and so are harmless; ``format`` is not asserted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "spec"
CLIENT_SERVER = SPEC_DIR / "api" / "client-server"
ERROR_SCHEMA = CLIENT_SERVER / "definitions" / "errors" / "error.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class SpecError(LookupError):
    """The spec has no such operation or declares no such response."""


def spec_available() -> bool:
    return CLIENT_SERVER.is_dir()


@cache
def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _retrieve(uri: str) -> Resource[Any]:
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise SpecError(f"not a local spec file: {uri}")
    path = Path(url2pathname(parts.path)).resolve()
    if not path.is_relative_to(SPEC_DIR.resolve()):
        raise SpecError(f"$ref leaves the spec tree: {uri}")
    # The spec files carry no $schema; OpenAPI 3.1 schemas are 2020-12.
    return DRAFT202012.create_resource(_load(path))


@cache
def _registry() -> Registry[Any]:
    return Registry(retrieve=_retrieve)  # type: ignore[call-arg]


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class Operation:
    file: Path
    method: str
    path: str  # the key under ``paths`` in ``file`` (without the base path)

    @property
    def uri(self) -> str:
        return self.file.resolve().as_uri()

    @property
    def pointer(self) -> str:
        return f"/paths/{_escape(self.path)}/{self.method}"

    @property
    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = _load(self.file)
        return doc["paths"][self.path][self.method]


@cache
def operations() -> dict[tuple[str, str], Operation]:
    """Every client-server operation, keyed by (METHOD, full path template)."""
    ops: dict[tuple[str, str], Operation] = {}
    for file in sorted(CLIENT_SERVER.glob("*.yaml")):
        doc = _load(file)
        if not isinstance(doc, dict) or "paths" not in doc:
            continue
        base = ""
        for server in doc.get("servers", []):
            base = server.get("variables", {}).get("basePath", {}).get("default", "")
            break
        for path, item in (doc.get("paths") or {}).items():
            for method in METHODS:
                if method in item:
                    ops.setdefault((method.upper(), base + path), Operation(file, method, path))
    return ops


def find_operation(method: str, path_template: str) -> Operation:
    try:
        return operations()[(method.upper(), path_template)]
    except KeyError:
        raise SpecError(f"the spec has no operation {method.upper()} {path_template}") from None


def _response_location(op: Operation, status: int) -> tuple[str, dict[str, Any]]:
    """The absolute URI (with JSON pointer) of a response object, following $refs."""
    responses = op.document.get("responses", {})
    if str(status) not in responses:
        declared = ", ".join(sorted(responses))
        raise SpecError(
            f"{op.method.upper()} {op.path} ({op.file.name}) declares no {status} response"
            f" (declared: {declared})"
        )
    uri = f"{op.uri}#{op.pointer}/responses/{status}"
    resolver = _registry().resolver()
    resolved = resolver.lookup(uri)
    obj: Any = resolved.contents
    while isinstance(obj, dict) and "$ref" in obj:
        uri = urljoin(uri, obj["$ref"])
        resolved = resolver.lookup(uri)
        obj = resolved.contents
    return uri, obj


def response_schema_uri(method: str, path_template: str, status: int) -> str | None:
    """URI of the JSON schema of a response, or None if it declares no JSON body."""
    op = find_operation(method, path_template)
    uri, obj = _response_location(op, status)
    content = (obj or {}).get("content") or {}
    if "application/json" not in content or "schema" not in content["application/json"]:
        return None
    if "#" not in uri:
        uri += "#"
    return f"{uri}/content/application~1json/schema"


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    """Check ``body`` against the schema the spec gives for this operation and status.

    ``path_template`` is the full path as the spec spells it, e.g.
    ``/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}``.  Raises
    :class:`SpecError` if the operation or status is undeclared (a declared 4xx/5xx
    without a body schema is checked against the standard error schema), and
    :class:`jsonschema.ValidationError` (the best match) if the body does not validate.
    """
    uri = response_schema_uri(method, path_template, status)
    if uri is None and status >= 400:
        # The status is declared but without a body schema (e.g. rooms.yaml's 404s):
        # every Matrix error still has the standard error shape.
        uri = ERROR_SCHEMA.resolve().as_uri()
    if uri is None:
        raise SpecError(f"{method.upper()} {path_template} {status} declares no JSON body")
    validator = jsonschema.Draft202012Validator({"$ref": uri}, registry=_registry())
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        raise error
