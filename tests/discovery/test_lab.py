"""Three `croft run` nodes on one LAN find each other and notice cuts (issue #5,
must-show 1 and the liveness bounds).

The lab (tests/discovery/lab.py): a ``lab`` namespace holding a bridge and the driver,
one namespace per node; no namespace has a default route, so no packet can leave the
machine, and mDNS never touches the machine's real interfaces. Each node lists the
other two within 5 s of starting (its own clock: first_seen_ts against run.json's
started_at); a cut link is noticed within about 10 s and a returning peer within about
2 s (bounds below, with the measured times printed; benchmarks/lan.py has the
distribution); a node that stops says goodbye and is lost at once, and is found again
when it restarts.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

from node.discovery.registry import read_peers
from tests.discovery.lab import ROOT, Lab, LabNode, croft_command, lab_env, run_in_netns
from tests.discovery.scenario import wait_peers

FOUND_BOUND_S = 5.0
CUT_BOUND_S = 10.0
RETURN_BOUND_S = 3.0
GOODBYE_BOUND_S = 2.0  # far under the ~7 s of a silent cut: the goodbye is heard


def test_nodes_find_each_other_and_notice_cuts(lab: Lab, tmp_path: Path) -> None:
    nodes = [LabNode(lab, i, tmp_path / f"node{i + 1}") for i in range(3)]
    names = [n.server_name for n in nodes]

    async def main() -> None:
        try:
            for n in nodes:
                n.init()
            for n in nodes:
                n.start()
            await wait_peers(nodes, within=30)
            for n in nodes:
                started = json.loads((n.data_dir / "run.json").read_text())["started_at"]
                peers, refused = read_peers(n.database)
                assert refused == []
                for p in peers:
                    j = names.index(p.server_name)
                    assert p.addresses == (lab.address(j),)
                    took = p.first_seen_ts / 1000 - started
                    print(f"{n.server_name} found {p.server_name} {took:.2f} s after start")
                    assert took <= FOUND_BOUND_S

            # `croft peers --json`, run in the lab namespace, says the same.
            peers_cmd = croft_command("peers", "--json", "--data-dir", str(nodes[0].data_dir))
            out = await asyncio.to_thread(
                subprocess.run,
                ["ip", "netns", "exec", lab.name, *peers_cmd],
                check=True,
                capture_output=True,
                cwd=ROOT,
                env=lab_env(),
            )
            listed = json.loads(out.stdout)
            assert {p["server_name"]: p["state"] for p in listed["peers"]} == {
                names[1]: "alive",
                names[2]: "alive",
            }

            # Node 3's link goes: both sides notice, then it returns.
            lab.cut(2)
            t0 = time.monotonic()
            took = await wait_peers(nodes, [{names[1]}, {names[0]}, set()], within=30)
            print(f"cut noticed by all in {took:.2f} s")
            assert took <= CUT_BOUND_S, (time.monotonic() - t0, took)
            lab.heal(2)
            took = await wait_peers(nodes, within=30, poll=0.02)
            print(f"return noticed by all in {took:.2f} s")
            assert took <= RETURN_BOUND_S

            # Node 3 stops (its mDNS goodbye marks it lost at once) and starts again.
            nodes[2].stop()
            took = await wait_peers(nodes[:2], [{names[1]}, {names[0]}], within=30, poll=0.02)
            print(f"a stopped node is lost {took:.2f} s after it exited")
            assert took <= GOODBYE_BOUND_S
            nodes[2].start()
            took = await wait_peers(nodes, within=30)
            print(f"a restarted node is alive for all {took:.2f} s after its spawn")
        finally:
            for n in nodes:
                n.stop()

    run_in_netns(lab.name, main)
    for n in nodes:
        assert "Traceback" not in n.log_path.read_text(), n.tail()
