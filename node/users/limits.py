"""Sizes of the JSON values users store (account data, tags, filters, profiles).

A request body may carry ``\\ud800``-style escapes that decode to lone surrogates:
valid JSON, but not Unicode, so they could never be served back as UTF-8. They are
refused here with 400 M_BAD_JSON, where the size is measured anyway.
"""

from __future__ import annotations

import json
from typing import Any

from node.errors import bad_json


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (400 M_BAD_JSON if not encodable)."""
    try:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    except UnicodeEncodeError:
        raise bad_json("Strings must be valid Unicode (no lone surrogates)") from None
