"""Server discovery (spec "Resolving server names") against a real DNS server and a real
HTTPS well-known server, both on 127.0.0.1; pure parts from tables.

Every Resolver here is given the loopback DNS server: none ever uses the system's.
Addresses in DNS answers are loopback too (resolve() itself connects nowhere; the
well-known fetch connects to what the host name resolves to).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.federation.common import Destination, Unreachable
from node.federation.resolver import (
    DNS_MAX_STALE,
    WELL_KNOWN_MAX_BYTES,
    Resolver,
    SrvRecord,
    TTLCache,
    order_srv,
    parse_nameserver,
    parse_server_name,
    parse_well_known,
    well_known_cache_period,
    well_known_error_period,
)
from tests.federation.dns_server import DnsServer

WK = "/.well-known/matrix/server"
HOSTS = ["example.test", "other.test", "redirect.test", "loop.test", "hop.test"]
UNTRUSTED = "untrusted.test"

# -- pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("example.test", "example.test", None),
        ("example.test:8448", "example.test", 8448),
        ("1.2.3.4:1", "1.2.3.4", 1),
        ("[::1]:65535", "::1", 65535),
        ("[2001:db8::1]", "2001:db8::1", None),
    ],
)
def test_parse_server_name_valid(text: str, host: str, port: int | None) -> None:
    name = parse_server_name(text)
    assert (name.host, name.port) == (host, port)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("bad name", "may only contain"),
        ("a.test:0", "1 to 65535"),
        ("a.test:65536", "1 to 65535"),
        ("a.test:", "port"),
        ("[::1", "unclosed"),
        ("1.2.3.256", "IPv4"),
        (5, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_parse_server_name_invalid(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_server_name(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_parse_nameserver(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize("text", ["dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1]x", ""])
def test_parse_nameserver_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="nameserver"):
        parse_nameserver(text)


def test_resolver_rejects_bad_nameservers() -> None:
    with pytest.raises(ValueError, match="nameserver"):
        Resolver(nameservers=["dns.example"])


def _srv(priority: int, weight: int, target: str) -> SrvRecord:
    return SrvRecord(priority, weight, 8448, target)


def test_order_srv_lowest_priority_first() -> None:
    records = [_srv(20, 5, "c"), _srv(10, 0, "a"), _srv(30, 100, "d"), _srv(10, 0, "b")]
    for seed in range(20):
        ordered = order_srv(records, random.Random(seed))
        assert [r.priority for r in ordered] == [10, 10, 20, 30]
        assert {r.target for r in ordered[:2]} == {"a", "b"}


def test_order_srv_weights_choose_proportionally() -> None:
    records = [_srv(10, 1, "light"), _srv(10, 3, "heavy"), _srv(10, 0, "zero")]
    rng = random.Random(7)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(4000))
    # Expected shares: heavy 3/5 (RFC 2782: pick in [0, 4]), light 1/5, zero 1/5.
    assert 2200 < firsts["heavy"] < 2600
    assert 600 < firsts["light"] < 1000
    assert 600 < firsts["zero"] < 1000


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"m.server": "delegated.test:1234"}', "delegated.test:1234"),
        (b'{"m.server": "[::1]", "other": 1}', "[::1]"),
        ('{"m.server": "d.test"}'.encode("utf-16"), "d.test"),  # JSON's UTF detection
    ],
)
def test_parse_well_known_valid(body: bytes, expected: str) -> None:
    assert parse_well_known(body).name == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'"d.test"', "not a JSON object"),
        (b"{}", "no 'm.server'"),
        (b'{"m.server": 5}', "must be a string"),
        (b'{"m.server": "bad name"}', "invalid 'm.server'"),
        (b'{"m.server": "d.test:99999"}', "1 to 65535"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_parse_well_known_invalid(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_well_known(body)


NOW = 1_700_000_000.0  # wall clock for Expires
H = 3600.0


def _http_date(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


@pytest.mark.parametrize(
    ("headers", "period"),
    [
        ({}, 24 * H),
        ({"Cache-Control": "max-age=7200"}, 7200),
        ({"Cache-Control": "public, max-age=7200"}, 7200),
        ({"Cache-Control": 'max-age="7200"'}, 7200),
        ({"Cache-Control": "max-age=10000000"}, 48 * H),
        ({"Cache-Control": "max-age=0"}, 300),
        ({"Cache-Control": "max-age=oops"}, 300),
        ({"Cache-Control": "no-store"}, 300),
        ({"Cache-Control": "no-cache, max-age=7200"}, 300),
        ({"Expires": _http_date(NOW + 3 * H)}, 3 * H),
        ({"Expires": _http_date(NOW + 10 * H), "Date": _http_date(NOW + 4 * H)}, 6 * H),
        ({"Expires": _http_date(NOW + 100 * H)}, 48 * H),
        ({"Expires": "0"}, 300),
        ({"Expires": _http_date(NOW + 3 * H), "Cache-Control": "max-age=600"}, 600),
    ],
)
def test_well_known_cache_period(headers: dict[str, str], period: float) -> None:
    assert well_known_cache_period(headers, NOW) == pytest.approx(period)


@pytest.mark.parametrize(
    ("failures", "period"), [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 3600), (50, 3600)]
)
def test_well_known_error_period_backs_off_to_an_hour(failures: int, period: float) -> None:
    assert well_known_error_period(failures) == period


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_ttl_cache_expiry_stale_and_lru() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(clock, max_entries=2)
    cache.put("a", 1, 10)
    cache.put("b", 2, 10)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3, 10)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)
    clock.advance(10)
    assert cache.get("a") is None
    assert cache.get("a", max_stale=5) == 1
    clock.advance(5)
    assert cache.get("a", max_stale=5) is None


# -- the real parts: a DNS server and an HTTPS well-known server -----------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], hosts: list[str], directory: Path
) -> tuple[Path, Path]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{hosts[0]}.crt", directory / f"{hosts[0]}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Pki:
    ca_pem: str
    trusted: tuple[Path, Path]  # for HOSTS, issued by the CA the resolver trusts
    untrusted: tuple[Path, Path]  # for UNTRUSTED, issued by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, other_ca = _ca("Croft test CA"), _ca("Some other CA")
    return Pki(
        ca_pem=ca[1].public_bytes(serialization.Encoding.PEM).decode(),
        trusted=_leaf(ca, HOSTS, directory),
        untrusted=_leaf(other_ca, [UNTRUSTED], directory),
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: object, **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, headers=headers)

    return handler


def _raw(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, headers=headers)

    return handler


@dataclass
class WellKnownServer:
    """One HTTPS server for every test host: the handler is chosen by the Host header;
    the certificate by SNI (UNTRUSTED gets one from a CA the resolver does not trust)."""

    sites: dict[str, Handler] = field(default_factory=dict)
    fetches: list[tuple[str, str]] = field(default_factory=list)  # (Host header, path_qs)
    snis: list[str | None] = field(default_factory=list)
    port: int = 0
    plain_port: int = 0  # the same handlers over plain HTTP
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, host: str) -> int:
        return sum(1 for h, _ in self.fetches if h.split(":")[0] == host)

    @property
    def url(self) -> str:
        return f"https://{{host}}:{self.port}{WK}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.fetches.append((request.headers.get("Host", ""), request.path_qs))
        handler = self.sites.get(request.host.rsplit(":", 1)[0])
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)


@pytest.fixture
async def well_known(pki: Pki) -> AsyncIterator[WellKnownServer]:
    server = WellKnownServer()
    untrusted = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    untrusted.load_cert_chain(*map(str, pki.untrusted))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, pki.trusted))

    def sni(conn: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        server.snis.append(name)
        if name == UNTRUSTED:
            conn.context = untrusted

    context.sni_callback = sni  # type: ignore[assignment]
    app = web.Application()
    app.router.add_get(WK, server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    plain = web.TCPSite(runner, "127.0.0.1", 0)
    await plain.start()
    server.port, server.plain_port = (address[1] for address in runner.addresses)
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    async with DnsServer() as server:
        for host in [*HOSTS, UNTRUSTED]:
            server.add_address(host, "127.0.0.1")  # where the well-known server listens
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_resolver(
    dns_server: DnsServer, well_known: WellKnownServer, pki: Pki, clock: Clock
) -> AsyncIterator[Callable[..., Resolver]]:
    client_context = ssl.create_default_context(cadata=pki.ca_pem)
    made: list[Resolver] = []
    asked_ssl_for: list[str] = []

    def ssl_for(host: str) -> ssl.SSLContext:
        asked_ssl_for.append(host)
        return client_context

    def make(**kwargs: object) -> Resolver:
        options: dict[str, object] = {
            "nameservers": [dns_server.nameserver],
            "ssl_context_for": ssl_for,
            "well_known_port": well_known.port,
            "clock": clock,
            "dns_timeout": 1.0,
        }
        options.update(kwargs)
        resolver = Resolver(**options)  # type: ignore[arg-type]
        made.append(resolver)
        return resolver

    make.asked_ssl_for = asked_ssl_for  # type: ignore[attr-defined]
    yield make
    for resolver in made:
        await resolver.close()


@pytest.fixture
def resolver(make_resolver: Callable[..., Resolver]) -> Resolver:
    return make_resolver()


# -- every branch of the order ----------------------------------------------------------


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("127.0.0.5", ("127.0.0.5", 8448, None, "127.0.0.5")),
        ("127.0.0.5:1234", ("127.0.0.5", 1234, None, "127.0.0.5:1234")),
        ("[::1]", ("::1", 8448, None, "[::1]")),
        ("[::1]:1234", ("::1", 1234, None, "[::1]:1234")),
        ("[0:0::1]:1234", ("::1", 1234, None, "[0:0::1]:1234")),
    ],
)
async def test_step1_ip_literal(
    resolver: Resolver,
    dns_server: DnsServer,
    well_known: WellKnownServer,
    server_name: str,
    expected: tuple[object, ...],
) -> None:
    assert await resolver.resolve(server_name) == Destination(server_name, *expected)  # type: ignore[arg-type]
    assert dns_server.queries == [] and well_known.fetches == []


@pytest.mark.parametrize(
    ("records", "address"),
    [
        ([("A", "127.0.0.2")], "127.0.0.2"),
        ([("AAAA", "::1")], "::1"),
        ([("A", "127.0.0.3"), ("AAAA", "::1")], "127.0.0.3"),
        ([("CNAME", "real.test.")], "127.0.0.4"),
    ],
)
async def test_step2_hostname_with_port(
    resolver: Resolver,
    dns_server: DnsServer,
    well_known: WellKnownServer,
    records: list[tuple[str, str]],
    address: str,
) -> None:
    dns_server.add_address("real.test", "127.0.0.4")
    for rdtype, rdata in records:
        dns_server.add("host.test", rdtype, rdata)
    destination = await resolver.resolve("host.test:8449")
    assert destination == Destination(
        "host.test:8449", address, 8449, "host.test", "host.test:8449"
    )
    assert well_known.fetches == []  # an explicit port skips the well-known
    assert dns_server.count("_matrix-fed._tcp.host.test") == 0


@pytest.mark.parametrize(
    ("m_server", "expected"),
    [
        # 3.1 an IP literal: no SNI; Host is the delegated name.
        ("127.0.0.7", ("127.0.0.7", 8448, None, "127.0.0.7")),
        ("127.0.0.7:1234", ("127.0.0.7", 1234, None, "127.0.0.7:1234")),
        ("[::1]:1234", ("::1", 1234, None, "[::1]:1234")),
        # 3.2 a hostname with a port: Host "<delegated_hostname>:<delegated_port>".
        ("target.test:1234", ("127.0.0.8", 1234, "target.test", "target.test:1234")),
    ],
)
async def test_step3_well_known_with_ip_or_port(
    resolver: Resolver,
    dns_server: DnsServer,
    well_known: WellKnownServer,
    m_server: str,
    expected: tuple[object, ...],
) -> None:
    dns_server.add_address("target.test", "127.0.0.8")
    dns_server.add_srv("_matrix-fed._tcp.target.test", "elsewhere.test", 9999)
    well_known.sites["example.test"] = _json({"m.server": m_server})
    destination = await resolver.resolve("example.test")
    assert destination == Destination("example.test", *expected)  # type: ignore[arg-type]
    # The fetch went to the host name's address with SNI and Host = the host name.
    assert well_known.fetches == [(f"example.test:{well_known.port}", WK)]
    assert well_known.snis == ["example.test"]
    assert dns_server.count("_matrix-fed._tcp.target.test") == 0
    assert dns_server.count("_matrix-fed._tcp.example.test") == 0


@pytest.mark.parametrize(
    ("fed", "legacy", "expected"),
    [
        # 3.3 _matrix-fed._tcp on the delegated host name (wins over _matrix._tcp)
        (True, True, ("127.0.0.9", 5555)),
        (True, False, ("127.0.0.9", 5555)),
        # 3.4 [deprecated] _matrix._tcp
        (False, True, ("127.0.0.10", 6666)),
        # 3.5 no SRV: the delegated host's address, port 8448
        (False, False, ("127.0.0.8", 8448)),
    ],
)
async def test_step3_well_known_hostname_then_srv(
    resolver: Resolver,
    dns_server: DnsServer,
    well_known: WellKnownServer,
    fed: bool,
    legacy: bool,
    expected: tuple[str, int],
) -> None:
    dns_server.add_address("target.test", "127.0.0.8")
    dns_server.add_address("fed-target.test", "127.0.0.9")
    dns_server.add_address("legacy-target.test", "127.0.0.10")
    if fed:
        dns_server.add_srv("_matrix-fed._tcp.target.test", "fed-target.test", 5555)
    if legacy:
        dns_server.add_srv("_matrix._tcp.target.test", "legacy-target.test", 6666)
    # SRV on the original host name must not be used once there is a delegation.
    dns_server.add_srv("_matrix-fed._tcp.example.test", "wrong.test", 1)
    well_known.sites["example.test"] = _json({"m.server": "target.test"})
    destination = await resolver.resolve("example.test")
    # Host and SNI are the delegated host name, not the SRV target.
    assert destination == Destination("example.test", *expected, "target.test", "target.test")
    assert dns_server.count("_matrix._tcp.target.test") == (0 if fed else 1)
    assert dns_server.count("_matrix-fed._tcp.example.test") == 0


@pytest.mark.parametrize(
    ("fed", "legacy", "expected"),
    [
        (True, True, ("127.0.0.9", 5555)),  # 4. _matrix-fed._tcp.<hostname>
        (False, True, ("127.0.0.10", 6666)),  # 5. [deprecated] _matrix._tcp.<hostname>
        (False, False, ("127.0.0.1", 8448)),  # 6. the host name's address, 8448
    ],
)
async def test_steps4_to_6_without_well_known(
    resolver: Resolver,
    dns_server: DnsServer,
    well_known: WellKnownServer,
    fed: bool,
    legacy: bool,
    expected: tuple[str, int],
) -> None:
    dns_server.add_address("fed-target.test", "127.0.0.9")
    dns_server.add_address("legacy-target.test", "127.0.0.10")
    if fed:
        dns_server.add_srv("_matrix-fed._tcp.example.test", "fed-target.test", 5555)
    if legacy:
        dns_server.add_srv("_matrix._tcp.example.test", "legacy-target.test", 6666)
    destination = await resolver.resolve("example.test")  # the server answers 404
    assert destination == Destination("example.test", *expected, "example.test", "example.test")
    assert well_known.count("example.test") == 1


# -- well-known: what counts as "no well-known" -----------------------------------------


async def _big_chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b'{"m.server": "127.0.0.7", "pad": "')
    for _ in range(WELL_KNOWN_MAX_BYTES // 1000 + 1):
        await response.write(b"x" * 1000)
    await response.write(b'"}')
    return response


INVALID_WELL_KNOWN: dict[str, Handler] = {
    "not JSON": _raw(b"<html>hello</html>"),
    "a list": _json(["127.0.0.7"]),
    "no m.server": _json({"server": "127.0.0.7"}),
    "m.server not a string": _json({"m.server": ["127.0.0.7"]}),
    "bad server name": _json({"m.server": "bad name!"}),
    "bad port": _json({"m.server": "127.0.0.7:0"}),
    "too large": _json({"m.server": "127.0.0.7", "pad": "x" * WELL_KNOWN_MAX_BYTES}),
    "too large, chunked": _big_chunked,
    "HTTP 500": _raw(b'{"m.server": "127.0.0.7"}', status=500),
    "HTTP 204": _raw(b"", status=204),
    "redirect without Location": _raw(b"", status=302),
}


@pytest.mark.parametrize("case", INVALID_WELL_KNOWN)
async def test_invalid_well_known_falls_through_to_srv(
    resolver: Resolver, dns_server: DnsServer, well_known: WellKnownServer, case: str
) -> None:
    dns_server.add_address("srv-target.test", "127.0.0.11")
    dns_server.add_srv("_matrix-fed._tcp.example.test", "srv-target.test", 7777)
    well_known.sites["example.test"] = INVALID_WELL_KNOWN[case]
    destination = await resolver.resolve("example.test")
    assert destination == Destination(
        "example.test", "127.0.0.11", 7777, "example.test", "example.test"
    )
    assert well_known.count("example.test") == 1


async def test_well_known_json_is_accepted_whatever_its_content_type(
    resolver: Resolver, well_known: WellKnownServer
) -> None:
    well_known.sites["example.test"] = _raw(
        b'{"m.server": "127.0.0.7:99"}', headers={"Content-Type": "text/plain"}
    )
    assert (await resolver.resolve("example.test")).address == "127.0.0.7"


async def test_untrusted_certificate_means_no_well_known(
    resolver: Resolver, dns_server: DnsServer, well_known: WellKnownServer
) -> None:
    well_known.sites[UNTRUSTED] = _json({"m.server": "127.0.0.7"})
    destination = await resolver.resolve(UNTRUSTED)
    assert destination == Destination(UNTRUSTED, "127.0.0.1", 8448, UNTRUSTED, UNTRUSTED)
    assert well_known.snis == [UNTRUSTED]  # the handshake happened ...
    assert well_known.fetches == []  # ... and failed before any request
    assert dns_server.count(f"_matrix-fed._tcp.{UNTRUSTED}") == 1


async def test_well_known_host_without_address_or_server(
    resolver: Resolver, dns_server: DnsServer, well_known: WellKnownServer
) -> None:
    # No HTTPS server listens on 127.0.0.12: connection refused -> step 4.
    dns_server.add_address("quiet.test", "127.0.0.12")
    destination = await resolver.resolve("quiet.test")
    assert destination == Destination("quiet.test", "127.0.0.12", 8448, "quiet.test", "quiet.test")


async def test_well_known_timeout_means_no_well_known(
    make_resolver: Callable[..., Resolver], well_known: WellKnownServer
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await well_known.release.wait()
        return web.json_response({"m.server": "127.0.0.7"})

    well_known.sites["example.test"] = hang
    resolver = make_resolver(well_known_timeout=0.2)
    destination = await resolver.resolve("example.test")
    assert (destination.address, destination.port) == ("127.0.0.1", 8448)
    assert well_known.count("example.test") == 1


async def test_well_known_redirect_is_followed(
    make_resolver: Callable[..., Resolver], well_known: WellKnownServer
) -> None:
    resolver = make_resolver()
    target = well_known.url.format(host="redirect.test")
    well_known.sites["example.test"] = _raw(b"", status=301, headers={"Location": target})
    well_known.sites["redirect.test"] = _json({"m.server": "127.0.0.7:4321"})
    destination = await resolver.resolve("example.test")
    assert destination == Destination("example.test", "127.0.0.7", 4321, None, "127.0.0.7:4321")
    assert [host for host, _ in well_known.fetches] == [
        f"example.test:{well_known.port}",
        f"redirect.test:{well_known.port}",
    ]
    assert well_known.snis == ["example.test", "redirect.test"]
    assert make_resolver.asked_ssl_for == ["example.test", "redirect.test"]  # type: ignore[attr-defined]


async def test_relative_redirect_is_followed(
    resolver: Resolver, well_known: WellKnownServer
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "moved" in request.query:
            return web.json_response({"m.server": "127.0.0.7:4321"})
        raise web.HTTPFound(f"{WK}?moved=1")

    well_known.sites["example.test"] = handler
    assert (await resolver.resolve("example.test")).port == 4321
    assert well_known.count("example.test") == 2


async def test_redirect_loop_and_endless_redirects_are_no_well_known(
    resolver: Resolver, well_known: WellKnownServer
) -> None:
    well_known.sites["example.test"] = _raw(
        b"", status=302, headers={"Location": well_known.url.format(host="loop.test")}
    )
    well_known.sites["loop.test"] = _raw(
        b"", status=307, headers={"Location": well_known.url.format(host="example.test")}
    )

    async def hop(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{WK}?n={int(request.query.get('n', 0)) + 1}")

    well_known.sites["hop.test"] = hop
    assert (await resolver.resolve("example.test")).port == 8448
    assert well_known.count("example.test") == 1 and well_known.count("loop.test") == 1
    assert (await resolver.resolve("hop.test")).port == 8448
    assert well_known.count("hop.test") == 6  # the first request and five redirects


async def test_redirect_to_plain_http_is_not_followed(
    resolver: Resolver, well_known: WellKnownServer
) -> None:
    well_known.sites["example.test"] = _raw(
        b"", status=302, headers={"Location": f"http://redirect.test:{well_known.plain_port}{WK}"}
    )
    well_known.sites["redirect.test"] = _json({"m.server": "127.0.0.7:4321"})
    assert (await resolver.resolve("example.test")).port == 8448
    assert well_known.count("redirect.test") == 0


async def test_concurrent_resolves_share_one_fetch(
    resolver: Resolver, well_known: WellKnownServer
) -> None:
    well_known.sites["example.test"] = _json({"m.server": "127.0.0.7:4321"})
    results = await asyncio.gather(*(resolver.resolve("example.test") for _ in range(5)))
    assert {d.port for d in results} == {4321}
    assert well_known.count("example.test") == 1


# -- caching ---------------------------------------------------------------------------


async def test_second_resolve_makes_no_dns_query_or_fetch(
    resolver: Resolver, dns_server: DnsServer, well_known: WellKnownServer
) -> None:
    dns_server.add_address("fed-target.test", "127.0.0.9")
    dns_server.add_srv("_matrix-fed._tcp.target.test", "fed-target.test", 5555)
    well_known.sites["example.test"] = _json({"m.server": "target.test"})
    first = await resolver.resolve("example.test")
    queries, fetches = len(dns_server.queries), len(well_known.fetches)
    assert await resolver.resolve("example.test") == first
    assert (len(dns_server.queries), len(well_known.fetches)) == (queries, fetches)


@pytest.mark.parametrize(
    ("headers", "period"),
    [
        ({}, 24 * H),
        ({"Cache-Control": "max-age=600"}, 600),
        ({"Cache-Control": "max-age=100000000"}, 48 * H),
        ({"Expires": _http_date(NOW + 2 * H), "Date": _http_date(NOW)}, 2 * H),
    ],
)
async def test_well_known_cached_by_its_headers(
    resolver: Resolver,
    well_known: WellKnownServer,
    clock: Clock,
    headers: dict[str, str],
    period: float,
) -> None:
    well_known.sites["example.test"] = _json({"m.server": "127.0.0.7:4321"}, **headers)
    await resolver.resolve("example.test")
    clock.advance(period - 1)
    await resolver.resolve("example.test")
    assert well_known.count("example.test") == 1
    clock.advance(2)
    well_known.sites["example.test"] = _json({"m.server": "127.0.0.7:4444"})
    assert (await resolver.resolve("example.test")).port == 4444
    assert well_known.count("example.test") == 2


async def test_well_known_errors_cached_with_backoff(
    resolver: Resolver, well_known: WellKnownServer, clock: Clock
) -> None:
    await resolver.resolve("example.test")  # 404
    for period in (300, 600, 1200):
        fetches = well_known.count("example.test")
        clock.advance(period - 1)
        await resolver.resolve("example.test")
        assert well_known.count("example.test") == fetches
        clock.advance(2)
        await resolver.resolve("example.test")
        assert well_known.count("example.test") == fetches + 1
    # A valid answer ends the back-off.
    well_known.sites["example.test"] = _json({"m.server": "127.0.0.7:4321"})
    clock.advance(2400)
    assert (await resolver.resolve("example.test")).port == 4321


@pytest.mark.parametrize(("ttl", "cached_for"), [(100, 100), (1, 30), (10**6, 3600)])
async def test_dns_answers_cached_by_bounded_ttl(
    resolver: Resolver, dns_server: DnsServer, clock: Clock, ttl: int, cached_for: float
) -> None:
    dns_server.add_address("host.test", "127.0.0.2", ttl=ttl)
    await resolver.resolve("host.test:1")
    clock.advance(cached_for - 1)
    await resolver.resolve("host.test:1")
    assert dns_server.count("host.test", "A") == 1
    clock.advance(2)
    await resolver.resolve("host.test:1")
    assert dns_server.count("host.test", "A") == 2


async def test_srv_and_negative_answers_cached_by_ttl_and_soa(
    resolver: Resolver, dns_server: DnsServer, well_known: WellKnownServer, clock: Clock
) -> None:
    dns_server.negative_ttl = 120
    dns_server.add_address("fed-target.test", "127.0.0.9")
    dns_server.add_srv("_matrix-fed._tcp.target.test", "fed-target.test", 5555, ttl=1000)
    well_known.sites["example.test"] = _json({"m.server": "target.test"})
    well_known.sites["other.test"] = _json({"m.server": "nosrv.test"})
    dns_server.add_address("nosrv.test", "127.0.0.13", ttl=5000)
    await resolver.resolve("example.test")
    await resolver.resolve("other.test")  # NXDOMAIN for both SRV names
    clock.advance(119)
    await resolver.resolve("example.test")
    await resolver.resolve("other.test")
    assert dns_server.count("_matrix-fed._tcp.target.test") == 1
    assert dns_server.count("_matrix-fed._tcp.nosrv.test") == 1
    assert dns_server.count("_matrix._tcp.nosrv.test") == 1
    clock.advance(2)
    await resolver.resolve("example.test")
    await resolver.resolve("other.test")
    assert dns_server.count("_matrix-fed._tcp.target.test") == 1
    assert dns_server.count("_matrix-fed._tcp.nosrv.test") == 2
    assert dns_server.count("_matrix._tcp.nosrv.test") == 2
    clock.advance(1000)
    await resolver.resolve("example.test")
    assert dns_server.count("_matrix-fed._tcp.target.test") == 2


async def test_expired_address_stands_in_when_dns_fails(
    resolver: Resolver, dns_server: DnsServer, clock: Clock
) -> None:
    dns_server.add_address("host.test", "127.0.0.2", ttl=60)
    await resolver.resolve("host.test:1")
    clock.advance(61)
    dns_server.set_rcode("host.test", "SERVFAIL")
    assert (await resolver.resolve("host.test:1")).address == "127.0.0.2"
    assert dns_server.count("host.test", "A") == 2
    clock.advance(DNS_MAX_STALE)
    with pytest.raises(Unreachable, match=r"host\.test"):
        await resolver.resolve("host.test:1")


async def test_cache_is_bounded(
    make_resolver: Callable[..., Resolver], dns_server: DnsServer
) -> None:
    resolver = make_resolver(max_cache_entries=2)
    for host in ("a.test", "b.test", "c.test"):
        dns_server.add_address(host, "127.0.0.2")
        await resolver.resolve(f"{host}:1")
    await resolver.resolve("c.test:1")
    await resolver.resolve("b.test:1")
    assert dns_server.count("a.test", "A") == 1
    await resolver.resolve("a.test:1")  # pushed out by c.test
    assert [dns_server.count(h, "A") for h in ("a.test", "b.test", "c.test")] == [2, 1, 1]


# -- SRV details and DNS failures --------------------------------------------------------


async def test_srv_priority_and_fallback_to_the_next_target(
    resolver: Resolver, dns_server: DnsServer
) -> None:
    dns_server.add_srv("_matrix-fed._tcp.example.test", "high.test", 2000, priority=20)
    dns_server.add_srv("_matrix-fed._tcp.example.test", "low.test", 1000, priority=10)
    dns_server.add_address("high.test", "127.0.0.20")
    dns_server.add_address("low.test", "127.0.0.10")
    for _ in range(5):
        assert (await resolver.resolve("example.test")).port == 1000
    other = Resolver(nameservers=[dns_server.nameserver], well_known_port=1)
    try:
        dns_server.add_srv("_matrix-fed._tcp.other.test", "gone.test", 1000, priority=10)
        dns_server.add_srv("_matrix-fed._tcp.other.test", "high.test", 2000, priority=20)
        destination = await other.resolve("other.test")
        assert (destination.address, destination.port) == ("127.0.0.20", 2000)
        assert (destination.tls_server_name, destination.host_header) == ("other.test",) * 2
    finally:
        await other.close()


async def test_srv_answer_too_big_for_udp_is_fetched_over_tcp(
    resolver: Resolver, dns_server: DnsServer
) -> None:
    for i in range(40):
        dns_server.add_srv(
            "_matrix-fed._tcp.example.test", f"target-{i:02}.test", 5000 + i, priority=i
        )
    dns_server.add_address("target-00.test", "127.0.0.14")
    destination = await resolver.resolve("example.test")
    assert (destination.address, destination.port) == ("127.0.0.14", 5000)
    transports = {q.transport for q in dns_server.queries if q.rdtype == "SRV"}
    assert transports == {"udp", "tcp"}


async def test_srv_target_dot_means_no_service(resolver: Resolver, dns_server: DnsServer) -> None:
    dns_server.add("_matrix-fed._tcp.example.test", "SRV", "0 0 0 .")
    with pytest.raises(Unreachable, match="no service"):
        await resolver.resolve("example.test")


@pytest.mark.parametrize("failure", ["SERVFAIL", "REFUSED", "silent"])
async def test_srv_failure_falls_through_and_is_not_cached(
    make_resolver: Callable[..., Resolver], dns_server: DnsServer, failure: str
) -> None:
    resolver = make_resolver(dns_timeout=0.3)
    for name in ("_matrix-fed._tcp.example.test", "_matrix._tcp.example.test"):
        if failure == "silent":
            dns_server.silent.add(name + ".")
        else:
            dns_server.set_rcode(name, failure)
    for expected_queries in (1, 2):
        destination = await resolver.resolve("example.test")
        assert (destination.address, destination.port) == ("127.0.0.1", 8448)
        assert dns_server.count("_matrix._tcp.example.test") >= expected_queries


@pytest.mark.parametrize(
    ("server_name", "setup"),
    [
        ("nowhere.test:8448", None),  # NXDOMAIN
        ("nowhere.test", None),  # NXDOMAIN for the well-known host, SRV and address
        ("broken.test:8448", "SERVFAIL"),
        ("broken.test", "SERVFAIL"),
        ("empty.test:8448", "TXT"),  # the name exists, with no address
    ],
)
async def test_no_address_raises_unreachable(
    resolver: Resolver, dns_server: DnsServer, server_name: str, setup: str | None
) -> None:
    if setup == "SERVFAIL":
        dns_server.set_rcode("broken.test", "SERVFAIL")
    elif setup == "TXT":
        dns_server.add("empty.test", "TXT", '"hello"')
    with pytest.raises(Unreachable, match=re.escape(server_name.split(":")[0])):
        await resolver.resolve(server_name)


async def test_unreachable_nameserver_raises_unreachable(
    make_resolver: Callable[..., Resolver], dns_server: DnsServer
) -> None:
    await dns_server.stop()  # nothing answers on that port now
    resolver = make_resolver(dns_timeout=0.3)
    with pytest.raises(Unreachable):
        await resolver.resolve("example.test")
    assert await resolver.lookup_address("127.0.0.3") == "127.0.0.3"


# -- names, overrides, lookup_address ----------------------------------------------------


@pytest.mark.parametrize("bad", ["", "bad name", "a.test:0", "a.test:70000", "[::1", "a.test:x"])
async def test_bad_server_name_raises_value_error(
    resolver: Resolver, dns_server: DnsServer, bad: str
) -> None:
    with pytest.raises(ValueError, match="server name"):
        await resolver.resolve(bad)
    assert dns_server.queries == []


async def test_override_bypasses_discovery(
    resolver: Resolver, dns_server: DnsServer, well_known: WellKnownServer
) -> None:
    resolver.set_override("laptop.local", "127.0.0.15", 9448)
    destination = await resolver.resolve("laptop.local")
    assert destination == Destination("laptop.local", "127.0.0.15", 9448, None, "laptop.local")
    resolver.set_override("example.test", "::1", 9449)
    assert (await resolver.resolve("example.test")).address == "::1"
    assert dns_server.queries == [] and well_known.fetches == []
    resolver.clear_override("laptop.local")
    resolver.clear_override("never-set.test")
    with pytest.raises(Unreachable):
        await resolver.resolve("laptop.local")


async def test_fallback_serves_a_lan_peer_that_dns_does_not_know(
    resolver: Resolver, dns_server: DnsServer, well_known: WellKnownServer
) -> None:
    """A LAN peer's last address (set by discovery while the peer is not alive) answers
    for a .local name at once, and for another name only when DNS finds nothing; an
    override (the peer is alive) comes first."""
    lan = Destination("kitchen.local", "127.0.0.21", 9448, None, "kitchen.local")
    resolver.set_fallback("kitchen.local", "127.0.0.21", 9448)
    assert await resolver.resolve("kitchen.local") == lan
    assert dns_server.queries == [] and well_known.fetches == []

    resolver.set_fallback("nowhere.test", "127.0.0.22", 9449)
    assert (await resolver.resolve("nowhere.test")).address == "127.0.0.22"
    assert dns_server.queries != []  # DNS was asked first

    dns_server.add_srv("_matrix-fed._tcp.known.test", "srv.known.test", 8443)
    dns_server.add_address("srv.known.test", "127.0.0.23")
    resolver.set_fallback("known.test", "127.0.0.24", 9450)
    assert (await resolver.resolve("known.test")).address == "127.0.0.23"

    resolver.set_override("kitchen.local", "127.0.0.25", 9451)
    assert (await resolver.resolve("kitchen.local")).address == "127.0.0.25"
    resolver.clear_override("kitchen.local")
    assert await resolver.resolve("kitchen.local") == lan
    resolver.clear_fallback("kitchen.local")
    with pytest.raises(Unreachable):
        await resolver.resolve("kitchen.local")


@pytest.mark.parametrize(
    ("name", "address", "port", "message"),
    [
        ("bad name", "127.0.0.1", 1, "server name"),
        ("lan.local", "laptop.local", 1, "not an IP"),
        ("lan.local", "127.0.0.1", 0, "port"),
        ("lan.local", "127.0.0.1", 65536, "port"),
    ],
)
def test_bad_override_raises(name: str, address: str, port: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Resolver(nameservers=["127.0.0.1:1"]).set_override(name, address, port)


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.3", "127.0.0.3"), ("::1", "::1"), ("[::1]", "::1"), ("v4.test", "127.0.0.16")],
)
async def test_lookup_address(
    resolver: Resolver, dns_server: DnsServer, host: str, expected: str
) -> None:
    dns_server.add_address("v4.test", "127.0.0.16", "::1")
    assert await resolver.lookup_address(host) == expected
    assert dns_server.count() == (0 if expected == host.strip("[]") else 1)
