"""From a user's search term to a safe SQLite FTS5 query, and search batch tokens (pure).

Spec: modules/search.md, api/client-server/search.yaml. The search term is user
input: it is never handed to FTS5 as query syntax. It is read as words and
``"quoted phrases"``; a word or phrase led by ``-`` (or ``NOT``) excludes, ``OR``
between two terms makes either do, and ``AND`` changes nothing (terms are all
required anyway); the operators are upper case, so "tea or coffee" is three words.
Every term becomes an FTS5 string (double quotes doubled), so no input can be an
FTS5 syntax error; bare words also match as prefixes (``mart`` finds "martians").
Terms with no letter or digit are dropped.

``next_batch`` tokens are opaque to clients: the URL-safe Base64 of a small JSON
object holding the order, the sort key of the last result served and, for a
group's token, the group it continues.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_TERM_CHARS = 1000
MAX_TERMS = 32

_TERM_RE = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD_RE = re.compile(r"\w+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class InvalidSearch(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SearchQuery:
    fts: str  # an FTS5 MATCH expression
    highlights: tuple[str, ...]


def _fts_string(text: str, *, prefix: bool) -> str:
    return '"' + text.replace('"', '""') + '"' + ("*" if prefix else "")


def parse_search_term(term: str) -> SearchQuery | None:
    """The FTS5 query for a search term, or None when it has nothing to search for."""
    if len(term) > MAX_TERM_CHARS:
        raise InvalidSearch(f"search_term is longer than {MAX_TERM_CHARS} characters")
    term = _CONTROL_RE.sub(" ", term)
    groups: list[list[str]] = []  # AND of ORs
    excluded: list[str] = []
    highlights: list[str] = []
    pending_or = pending_not = False
    count = 0
    for m in _TERM_RE.finditer(term):
        negated, phrase, word = m.group(1), m.group(2), m.group(3)
        if word == "OR" and groups:
            pending_or = True
            continue
        if word == "AND" and groups:
            continue
        if word == "NOT":
            pending_not = True
            continue
        if word is not None:
            negated = "-" if word.startswith("-") else ""
            text = word.lstrip("-")
        else:
            text = phrase
        if pending_not:
            negated, pending_not = "-", False
        words = [w.lower() for w in _WORD_RE.findall(text)]
        if not words:
            continue
        count += 1
        if count > MAX_TERMS:
            raise InvalidSearch(f"search_term has more than {MAX_TERMS} terms")
        fts = _fts_string(text, prefix=word is not None)
        if negated:
            excluded.append(fts)
            pending_or = False
            continue
        highlights.extend(words)
        if pending_or:
            groups[-1].append(fts)
        else:
            groups.append([fts])
        pending_or = False
    if not groups:
        return None
    parts = [g[0] if len(g) == 1 else "(" + " OR ".join(g) + ")" for g in groups]
    expr = " AND ".join(parts)
    if excluded:
        expr = f"({expr})" + "".join(f" NOT {x}" for x in excluded)
    return SearchQuery(expr, tuple(dict.fromkeys(highlights)))


# -- batch tokens -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """Where the next page starts: after the result with this sort key."""

    order_by: str  # "rank" or "recent"
    rank: float  # bm25 of the last result (0 for "recent")
    stream: int  # stream ordering of the last result
    group: tuple[str, str] | None = None  # (group key, value) for a group's token

    def encode(self) -> str:
        obj: dict[str, Any] = {"o": self.order_by, "r": self.rank, "s": self.stream}
        if self.group is not None:
            obj["g"] = list(self.group)
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Batch:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            obj = json.loads(raw)
            order_by, rank, stream = obj["o"], obj["r"], obj["s"]
            group = obj.get("g")
        except (ValueError, binascii.Error, KeyError, TypeError, RecursionError):
            raise InvalidSearch("Invalid next_batch token") from None
        if (
            order_by not in ("rank", "recent")
            or not isinstance(rank, (int, float))
            or isinstance(rank, bool)
            or not isinstance(stream, int)
            or isinstance(stream, bool)
            or not 0 <= stream <= 2**62
            or not -1e300 < rank < 1e300
        ):
            raise InvalidSearch("Invalid next_batch token")
        if group is not None:
            if (
                not isinstance(group, list)
                or len(group) != 2
                or group[0] not in ("room_id", "sender")
                or not isinstance(group[1], str)
            ):
                raise InvalidSearch("Invalid next_batch token")
            return cls(order_by, float(rank), stream, (group[0], group[1]))
        return cls(order_by, float(rank), stream)
