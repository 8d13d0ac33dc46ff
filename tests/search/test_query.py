"""Search terms to FTS5 queries: a table of inputs, and hostile input that must never
become an FTS5 syntax error; batch tokens."""

from __future__ import annotations

import sqlite3

import pytest

from node.search.query import Batch, InvalidSearch, parse_search_term


@pytest.mark.parametrize(
    ("term", "fts", "highlights"),
    [
        ("martians and men", '"martians"* AND "and"* AND "men"*', ("martians", "and", "men")),
        ('"exact phrase" word', '"exact phrase" AND "word"*', ("exact", "phrase", "word")),
        ("tea OR coffee", '("tea"* OR "coffee"*)', ("tea", "coffee")),
        ("cake -cheese", '("cake"*) NOT "cheese"*', ("cake",)),
        ('cake -"blue cheese"', '("cake"*) NOT "blue cheese"', ("cake",)),
        ('say "hi', '"say"* AND "hi"', ("say", "hi")),  # unclosed quote: phrase to the end
        ('o"neil', '"o""neil"*', ("o", "neil")),
        ("OR tea", '"OR"* AND "tea"*', ("or", "tea")),  # a leading OR is a word
        ("tea or coffee", '"tea"* AND "or"* AND "coffee"*', ("tea", "or", "coffee")),
        ("tea AND coffee NOT milk", '("tea"* AND "coffee"*) NOT "milk"*', ("tea", "coffee")),
        ("Café", '"Café"*', ("café",)),
    ],
)
def test_parse_search_term(term: str, fts: str, highlights: tuple[str, ...]) -> None:
    query = parse_search_term(term)
    assert query is not None
    assert query.fts == fts
    assert query.highlights == highlights


@pytest.mark.parametrize("term", ["", "   ", "!!! ???", "-only -negative", "\x00\x01"])
def test_nothing_to_search(term: str) -> None:
    assert parse_search_term(term) is None


HOSTILE = [
    "NEAR(a b, 3)",
    "a AND",
    "OR OR OR",
    "NOT x",
    "(((",
    ")",
    "value:secret",
    "{value}: x",
    "^start",
    "x*",
    "*",
    '"',
    '""""',
    "a\x00b",
    "-",
    "--x",
    "a + b",
    "rowid = 1",
    "x' OR '1'='1",
    "😀 emoji",
    "ǅ ᾈ ﬃ",
]


@pytest.mark.parametrize("term", HOSTILE)
def test_hostile_terms_are_valid_fts5(term: str) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(value, tokenize='porter unicode61')")
    conn.execute("INSERT INTO t (value) VALUES ('a near b value secret start emoji x')")
    query = parse_search_term(term)
    if query is not None:
        conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (query.fts,)).fetchall()


def test_limits() -> None:
    with pytest.raises(InvalidSearch):
        parse_search_term("x" * 1001)
    with pytest.raises(InvalidSearch):
        parse_search_term(" ".join(f"w{i}" for i in range(33)))


def test_batch_round_trip_and_rejects_junk() -> None:
    batch = Batch("rank", -1.25, 42, ("room_id", "!r:x"))
    assert Batch.decode(batch.encode()) == batch
    assert Batch.decode(Batch("recent", 0.0, 7).encode()) == Batch("recent", 0.0, 7)
    overflow = Batch("rank", 1.0, 2**70).encode()
    for junk in ["", "not base64!", "e30", Batch("rank", 1.0, 1).encode()[:-3] + "xyz", overflow]:
        with pytest.raises(InvalidSearch):
            Batch.decode(junk)
