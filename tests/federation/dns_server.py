"""A small authoritative DNS server on 127.0.0.1 for tests (UDP and TCP, one port).

Built on dnspython's message parsing. It answers from a table (A, AAAA, SRV, CNAME
chains), says NXDOMAIN for unknown names and NOERROR/no data for known names without
the asked type (both with an SOA whose minimum sets the negative TTL), can be told to
answer a name with any rcode (SERVFAIL, REFUSED, NXDOMAIN) or not at all, truncates UDP
answers over 512 bytes (so the client retries over TCP) and records every query.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

UDP_MAX = 512


@dataclass(frozen=True)
class Query:
    name: str  # lower case, with the final dot
    rdtype: str  # "A", "SRV" ...
    transport: str  # "udp" or "tcp"


def _fqdn(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


@dataclass
class DnsServer:
    negative_ttl: int = 300
    records: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)
    rcodes: dict[str, dns.rcode.Rcode] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    queries: list[Query] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    # -- the zone

    def add(self, name: str, rdtype: str, rdata: str, *, ttl: int = 300) -> None:
        self.records.setdefault((_fqdn(name), rdtype.upper()), []).append((ttl, rdata))

    def add_address(self, name: str, *addresses: str, ttl: int = 300) -> None:
        for address in addresses:
            self.add(name, "AAAA" if ":" in address else "A", address, ttl=ttl)

    def add_srv(
        self,
        name: str,
        target: str,
        port: int,
        *,
        priority: int = 10,
        weight: int = 0,
        ttl: int = 300,
    ) -> None:
        self.add(name, "SRV", f"{priority} {weight} {port} {_fqdn(target)}", ttl=ttl)

    def set_rcode(self, name: str, rcode: str) -> None:
        self.rcodes[_fqdn(name)] = dns.rcode.from_text(rcode)

    def count(self, name: str | None = None, rdtype: str | None = None) -> int:
        return sum(
            1
            for q in self.queries
            if (name is None or q.name == _fqdn(name)) and (rdtype is None or q.rdtype == rdtype)
        )

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- answering

    def answer(self, wire: bytes, max_size: int, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if len(query.question) != 1:
            return None
        question = query.question[0]
        qname = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append(Query(qname, rdtype, transport))
        if qname in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if qname in self.rcodes:
            response.set_rcode(self.rcodes[qname])
            if self.rcodes[qname] == dns.rcode.NXDOMAIN:
                response.authority.append(self._soa(qname))
        else:
            self._fill(response, qname, rdtype)
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _fill(self, response: dns.message.Message, qname: str, rdtype: str) -> None:
        current = qname
        for _ in range(8):  # follow CNAMEs inside the zone
            if (current, rdtype) in self.records:
                response.answer.append(self._rrset(current, rdtype))
                return
            if (current, "CNAME") not in self.records:
                break
            response.answer.append(self._rrset(current, "CNAME"))
            current = _fqdn(self.records[(current, "CNAME")][0][1])
        if response.answer:
            return
        if not any(n == qname for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(self._soa(qname))

    def _rrset(self, name: str, rdtype: str) -> dns.rrset.RRset:
        entries = self.records[(name, rdtype)]
        ttl = min(ttl for ttl, _ in entries)
        return dns.rrset.from_text_list(name, ttl, "IN", rdtype, [r for _, r in entries])

    def _soa(self, qname: str) -> dns.rrset.RRset:
        zone = qname.rstrip(".").rsplit(".", 1)[-1] + "."
        rdata = f"ns.{zone} admin.{zone} 1 3600 600 86400 {self.negative_ttl}"
        return dns.rrset.from_text(zone, 3600, "IN", "SOA", rdata)

    # -- serving

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # UDP and TCP must get the same free port
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=("127.0.0.1", self.port)
            )
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
                return
            except OSError:
                self._udp.close()
                self.port = 0
        raise RuntimeError("no free port for the test DNS server")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = self.answer(await reader.readexactly(length), 65535, "tcp")
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self._server.answer(data, UDP_MAX, "udp")
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)
