"""A spoofing node on the LAN is refused and reported (issue #5, must-show 5), until the
owner trusts its key with `croft peers trust`.

Four lab hosts (tests/discovery/lab.py): three real nodes find each other; the fourth
runs a real `croft run` initialised with the server name ``host1.local`` (so with a key
of its own; its LAN discovery off) and a raw DNS-SD announcer (tests/discovery/
announcer.py) that claims ``host1.local`` with that key. The name is held by host1, so
mDNS renames the spoofer's instance (``host1.local-2``); the TXT record still names
host1.local, and nodes 2 and 3 refuse and report it, keep host1's pin and address, and
answer a federation request the spoofer signs as host1.local with 401. Then host1
stops, the owner of node 2 runs `croft peers trust host1.local`, and node 2 lists
host1.local alive with the spoofer's key and address within a few seconds, and accepts
its requests; node 3, which was not told to trust it, still refuses it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from node.datadir import OLD_KEYS_FILE, SIGNING_KEY_FILE
from node.discovery.registry import ALIVE, LOST, read_peers
from node.discovery.service import instance_name, key_fingerprint
from node.federation.keys import ServerKey, load_server_key
from node.federation.x_matrix import sign_request
from tests.discovery.lab import (
    FEDERATION_PORT,
    ROOT,
    Lab,
    LabNode,
    croft_command,
    lab_env,
    run_in_netns,
)
from tests.discovery.scenario import wait_peers
from tests.interop.util import die_with_parent

# "within a few seconds" (the running node re-reads pins every second, checks at once)
TRUST_BOUND_S = 5.0
SPOOFED = "host1.local"


class Spoofer(LabNode):
    """`croft run` in host 4 under the name host1.local, with its own key; LAN discovery
    off (the announcer speaks for it)."""

    def __init__(self, lab: Lab, data_dir: Path) -> None:
        super().__init__(lab, 3, data_dir, CROFT_FEATURES_DISCOVERY="false")
        self.server_name = SPOOFED
        self.user_id = f"@alice:{SPOOFED}"


def server_key(node: LabNode) -> ServerKey:
    d = node.data_dir
    return load_server_key(node.server_name, d / SIGNING_KEY_FILE, d / OLD_KEYS_FILE)


def start_announcer(lab: Lab, key: ServerKey) -> subprocess.Popen[str]:
    args = [
        sys.executable, "-m", "tests.discovery.announcer",
        "--address", lab.address(3), "--host", "host4.local.", "--sn", SPOOFED,
        "--port", str(FEDERATION_PORT), "--kid", key.key_id,
        "--fp", key_fingerprint(key.verify_key_base64),
    ]  # fmt: skip
    return subprocess.Popen(
        ["ip", "netns", "exec", lab.hosts[3], *args],
        cwd=ROOT,
        env=lab_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )


def croft_peers(lab: Lab, node: LabNode, *args: str) -> subprocess.CompletedProcess[str]:
    """`croft peers ...` of ``node``'s data directory, run in the lab namespace."""
    return subprocess.run(
        ["ip", "netns", "exec", lab.name,
         *croft_command("peers", *args, "--data-dir", str(node.data_dir))],
        capture_output=True, text=True, cwd=ROOT, env=lab_env(), timeout=60,
    )  # fmt: skip


def listed(lab: Lab, node: LabNode) -> dict[str, Any]:
    out = croft_peers(lab, node, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def wait_for(what: str, check: Any, nodes: list[LabNode], within: float = 20.0) -> float:
    t0 = time.monotonic()
    while not await asyncio.to_thread(check):
        if time.monotonic() - t0 > within:
            raise AssertionError(f"not seen in {within} s: {what}\n" + "\n".join(
                n.tail(40) for n in nodes))  # fmt: skip
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def signed_send(
    http: aiohttp.ClientSession, key: ServerKey, to: LabNode
) -> tuple[int, dict[str, Any]]:
    """An empty PUT /send transaction to ``to``, X-Matrix signed with ``key``."""
    uri = f"/_matrix/federation/v1/send/spoof{time.monotonic_ns()}"
    body = {"origin": key.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": []}
    header = sign_request(key, "PUT", uri, to.server_name, body)
    url = f"https://{to.address}:{FEDERATION_PORT}{uri}"
    async with http.put(url, headers={"Authorization": header}, json=body) as resp:
        return resp.status, await resp.json()


def test_a_spoofer_is_refused_until_trusted(lab4: Lab, tmp_path: Path) -> None:
    lab = lab4
    nodes = [LabNode(lab, i, tmp_path / f"node{i + 1}") for i in range(3)]
    host1, node2, node3 = nodes
    spoofer = Spoofer(lab, tmp_path / "spoofer")
    announcer: list[subprocess.Popen[str]] = []

    async def main() -> None:
        try:
            for n in nodes:
                n.init()
            spoofer.init()
            for n in nodes:
                n.start()
            await wait_peers(nodes, within=30)
            real, fake = server_key(host1), server_key(spoofer)
            real_fp, fake_fp = (key_fingerprint(k.verify_key_base64) for k in (real, fake))
            assert real_fp != fake_fp

            spoofer.start()
            t0 = time.monotonic()
            announcer.append(start_announcer(lab, fake))
            assert announcer[0].stdout is not None
            instance = await asyncio.to_thread(announcer[0].stdout.readline)
            print(f"the spoofer announces as {instance.strip()!r}")
            # mDNS renamed it: the name is host1's (RFC 6762 section 9).
            assert instance.strip() not in ("", instance_name(SPOOFED)), announcer[0].stderr

            # Nodes 2 and 3 refuse and report it, and keep host1's pin and address.
            def refused_on(n: LabNode) -> bool:
                return any(c["fingerprint"] == fake_fp for c in read_peers(n.database)[1])

            for n in (node2, node3):
                await wait_for(f"{n.server_name} refuses", lambda n=n: refused_on(n), nodes)
                took = time.monotonic() - t0
                print(f"{n.server_name} refused the spoofer {took:.2f} s after it started")
                seen = listed(lab, n)
                assert [
                    (c["server_name"], c["key_id"], c["fingerprint"], c["addresses"])
                    for c in seen["refused"]
                ] == [(SPOOFED, fake.key_id, fake_fp, [lab.address(3)])]
                pin = next(p for p in seen["peers"] if p["server_name"] == SPOOFED)
                assert (pin["fingerprint"], pin["addresses"], pin["state"]) == (
                    real_fp,
                    [host1.address],
                    ALIVE,
                )
                text = croft_peers(lab, n).stdout
                assert f"REFUSED {SPOOFED} at {lab.address(3)}" in text, text

            timeout = aiohttp.ClientTimeout(total=30)
            # The nodes' certificates are self-signed: the X-Matrix signature is the test.
            connector = aiohttp.TCPConnector(ssl=False)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                await spoofer.wait_ready(http)
                # Signed by the spoofer as host1.local: refused. By host1: accepted.
                status, answer = await signed_send(http, fake, node2)
                assert (status, answer.get("errcode")) == (401, "M_UNAUTHORIZED"), answer
                assert (await signed_send(http, real, node2))[0] == 200

                # host1 goes; node 2's owner trusts the new key.
                host1.stop()
                out = croft_peers(lab, node2, "trust", SPOOFED)
                assert out.returncode == 0, out.stderr
                print(out.stdout.strip())
                assert f"now pinned to key {fake.key_id} {fake_fp}" in out.stdout

                def trusted() -> bool:
                    peers = read_peers(node2.database)[0]
                    return any(
                        (p.server_name, p.fingerprint, p.addresses, p.state)
                        == (SPOOFED, fake_fp, (lab.address(3),), ALIVE)
                        for p in peers
                    )

                took = await wait_for("node 2 takes the trust up", trusted, nodes)
                print(f"node 2 lists {SPOOFED} alive with the new key {took:.2f} s after trust")
                assert took <= TRUST_BOUND_S
                seen = listed(lab, node2)
                assert seen["refused"] == []
                assert (await signed_send(http, fake, node2))[0] == 200

                # Node 3 still refuses it: host1 is lost to it, its pin stands.
                def host1_lost_on_3() -> bool:
                    peers = read_peers(node3.database)[0]
                    return any(p.server_name == SPOOFED and p.state == LOST for p in peers)

                await wait_for("node 3 loses host1", host1_lost_on_3, nodes)
                seen = listed(lab, node3)
                pin = next(p for p in seen["peers"] if p["server_name"] == SPOOFED)
                assert (pin["fingerprint"], pin["addresses"]) == (real_fp, [host1.address])
                assert [c["fingerprint"] for c in seen["refused"]] == [fake_fp]
                status, answer = await signed_send(http, fake, node3)
                assert (status, answer.get("errcode")) == (401, "M_UNAUTHORIZED"), answer
        finally:
            for p in announcer:
                p.terminate()
                p.wait(timeout=15)
            spoofer.stop()
            for n in nodes:
                n.stop()

    run_in_netns(lab.name, main)
    for n in [*nodes, spoofer]:
        assert "Traceback" not in n.log_path.read_text(), n.tail()
