"""The DNS-SD TXT record (node/discovery/service.py) and the key check of the probe."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from node.discovery.lan import ProbeFailed, check_key_document
from node.discovery.service import (
    SERVICE_TYPE,
    Announcement,
    InvalidRecord,
    build_txt,
    instance_name,
    key_fingerprint,
    parse_txt,
)
from node.federation.keys import ServerKey

GOOD = {b"v": b"1", b"sn": b"host1.local", b"port": b"8448", b"kid": b"ed25519:a_1"}


def _key(name: str = "host1.local") -> ServerKey:
    signing = SigningKey.generate()
    signing.version = "a_1"  # type: ignore[attr-defined]
    signing.alg = "ed25519"  # type: ignore[attr-defined]
    return ServerKey(name, signing)


def _announce(key: ServerKey) -> Announcement:
    return Announcement(key.server_name, 8448, key.key_id, key_fingerprint(key.verify_key_base64))


def test_round_trip_as_zeroconf_gives_it() -> None:
    a = _announce(_key())
    txt = {k.encode(): v.encode() for k, v in build_txt(a).items()}
    assert parse_txt(txt) == a
    assert instance_name("host1.local") == "host1.local." + SERVICE_TYPE
    assert len(SERVICE_TYPE.split(".")[0]) - 1 <= 15  # RFC 6763 section 7.2


def test_fingerprint_is_sha256_of_the_raw_key() -> None:
    fp = key_fingerprint("A" * 43)
    assert fp.startswith("sha256:") and len(fp) == 7 + 43
    assert key_fingerprint("A" * 43) != key_fingerprint("B" * 43)
    with pytest.raises(ValueError):
        key_fingerprint("AAAA")


FP = key_fingerprint("A" * 43).encode()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({b"v": b"2"}, "version"),
        ({b"v": b"x"}, "number"),
        ({b"sn": b"10.0.0.1"}, "IP literal"),
        ({b"sn": b"bad name!"}, "server name"),
        ({b"port": b"0"}, "port"),
        ({b"port": b"99999"}, "port"),
        ({b"kid": b"rsa:1"}, "kid"),
        ({b"fp": b"md5:abc"}, "fp"),
        ({b"sn": b"\xff"}, "ASCII"),
        ({b"fp": None}, "fp"),
    ],
)
def test_bad_records_are_refused(change: dict[bytes, bytes | None], why: str) -> None:
    txt: dict[bytes, bytes | None] = {**GOOD, b"fp": FP, **change}
    with pytest.raises(InvalidRecord, match=why):
        parse_txt(txt)


@pytest.mark.parametrize("missing", [b"v", b"sn", b"port", b"kid", b"fp"])
def test_missing_keys_are_refused(missing: bytes) -> None:
    txt = {k: v for k, v in {**GOOD, b"fp": FP}.items() if k != missing}
    with pytest.raises(InvalidRecord, match="no"):
        parse_txt(txt)


def test_key_document_must_match_the_announcement() -> None:
    key = _key()
    a = _announce(key)
    assert check_key_document(key.key_document(), a) == key.verify_key_base64
    other = _key()
    # Another key under the same name and key ID: fingerprint mismatch.
    with pytest.raises(ProbeFailed, match="fingerprint"):
        check_key_document(other.key_document(), a)
    # The right public key, but signed by someone else: the signature fails.
    doc = other.key_document()
    doc["verify_keys"] = key.key_document()["verify_keys"]
    with pytest.raises(ProbeFailed, match="verify"):
        check_key_document(doc, a)
    with pytest.raises(ProbeFailed, match="another server"):
        check_key_document(_key("host2.local").key_document(), a)
    with pytest.raises(ProbeFailed):
        check_key_document([], a)
