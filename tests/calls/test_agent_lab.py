"""`croft call` between two nodes of the network lab (issue #8, must-shows 1 and 2):
two `croft run` in two host namespaces on a bridge, federating over the LAN; each
owner's headless agent (a real `croft call` process, run with `ip netns exec` in its
host's namespace, ICE on its bridge address only).

- A calls, B's agent answers (--auto-answer): audio flows both ways (each side sends a
  tone of its own; the frequency and level each received are checked from the JSON
  line each agent prints), A hangs up and both sides end; the time from invite to the
  first audio frame is printed.
- Nobody answers: A's invite times out (its lifetime), exit status 1.
- Glare: both agents call at once; they end up in one call, which both report.

The m.call.* events the agents sent, as the node serves them, validate against the
spec's event schemas.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.calls.test_call_events_schema import check, validator
from tests.discovery.lab import ROOT, Lab, LabNode, croft_command, lab_env, run_in_netns
from tests.discovery.scenario import wait_peers
from tests.interop.util import die_with_parent

WITHIN = 60.0  # a loaded 2-core machine


def agent(node: LabNode, room: str, *args: str, text: bool = False) -> subprocess.Popen[Any]:
    """`croft call` for ``node``'s owner, in ``node``'s namespace, ICE on its bridge
    address only; stdout and stderr piped (``text``: as str)."""
    argv = croft_command(
        "call", "--data-dir", str(node.data_dir), "--ice-address", node.address, room, *args
    )
    return subprocess.Popen(
        ["ip", "netns", "exec", node.lab.hosts[node.i], *argv],
        cwd=ROOT,
        env=lab_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        preexec_fn=die_with_parent,
    )


async def finished(proc: subprocess.Popen[bytes], what: str) -> tuple[int, list[dict[str, Any]]]:
    """Wait for ``proc``; its exit status and the JSON lines it printed."""
    try:
        out, err = await asyncio.to_thread(proc.communicate, timeout=WITHIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{what} did not finish:\n{err.decode(errors='replace')}") from None
    reports = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    print(f"--- {what} ---\n{err.decode(errors='replace')}")
    return proc.returncode, reports


async def shared_room(
    nodes: list[LabNode], http: aiohttp.ClientSession, name: str = "intercom"
) -> str:
    """Owner 1 makes a room and invites owner 2, who joins over the LAN."""
    u1, u2 = [await n.login(http) for n in nodes]
    room = await u1.create_room(preset="private_chat", name=name)
    await u1.call("POST", f"/rooms/{room}/invite", {"user_id": u2.user_id})
    deadline = time.monotonic() + WITHIN
    while True:
        got = await u2.call("POST", f"/join/{room}?server_name={nodes[0].server_name}", {}, None)
        if "room_id" in got:
            return room
        if time.monotonic() > deadline:
            raise AssertionError(f"owner 2 cannot join: {got}")
        await asyncio.sleep(0.5)


@asynccontextmanager
async def two_nodes_in_a_room(
    lab: Lab, tmp_path: Path, name: str = "intercom"
) -> AsyncIterator[tuple[list[LabNode], str]]:
    """A `croft run` in each of the lab's two hosts, found on the LAN, their owners in
    one room; stopped on the way out. Run it on a loop in the lab's namespace."""
    nodes = [LabNode(lab, i, tmp_path / f"node{i + 1}") for i in range(2)]
    try:
        for n in nodes:
            n.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            for n in nodes:
                await n.wait_ready(http)
            await wait_peers(nodes)
            room = await shared_room(nodes, http, name)
        yield nodes, room
    finally:
        for n in nodes:
            n.stop()


def run_lab(lab: Lab, tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        async with two_nodes_in_a_room(lab, tmp_path) as (nodes, room):
            await scenario(nodes, room)

    run_in_netns(lab.name, main)


def hears(report: dict[str, Any], hz: float) -> None:
    assert report["frequency_hz"] is not None, report
    assert abs(report["frequency_hz"] - hz) < 10, report
    assert report["level_dbfs"] is not None and report["level_dbfs"] > -20, report
    assert report["received_audio_s"] > 1.0, report


def test_call_answered_audio_both_ways_and_hangup(lab: Lab, tmp_path: Path) -> None:
    async def scenario(nodes: list[LabNode], room: str) -> None:
        callee = agent(nodes[1], room, "--auto-answer", "--once", "--tone", "880")
        await asyncio.sleep(1.5)  # the callee's first /sync: it follows from then on
        caller = agent(nodes[0], room, "--tone", "440", "--hangup-after", "3")
        a_status, a_reports = await finished(caller, "caller")
        b_status, b_reports = await finished(callee, "callee")
        assert (a_status, b_status) == (0, 0)
        [a], [b] = a_reports, b_reports
        assert a["call_id"] == b["call_id"]
        assert a["outbound"] and not b["outbound"]
        assert (a["ended"], a["by_us"]) == ("user_hangup", True)
        assert (b["ended"], b["by_us"]) == ("user_hangup", False)
        hears(a, 880)  # the caller hears the callee's tone
        hears(b, 440)
        assert a["seconds"] >= 2.5
        # Every m.call.* event the two agents sent, as node 1 serves them, validates
        # against the spec's event schemas (must-show 3, on the real events).
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            owner = await nodes[0].login(http)
            page = await owner.call("GET", f"/rooms/{room}/messages?dir=b&limit=100")
        sent = [e for e in page["chunk"] if e["type"].startswith("m.call.")]
        types = {e["type"] for e in sent}
        assert {"m.call.invite", "m.call.answer", "m.call.select_answer"} <= types, types
        assert {"m.call.candidates", "m.call.hangup"} <= types, types
        for event in sent:
            check(validator(event["type"]), event)
            assert event["content"]["call_id"] == a["call_id"]
        print(
            f"invite to media: {a['setup_ms']} ms; invite to first audio frame:"
            f" {a['first_audio_ms']} ms (caller), answer to first audio: {b['first_audio_ms']}"
            f" ms (callee); CPU caller {a['cpu_s']} s, RSS {a['max_rss_mib']} MiB"
        )

    run_lab(lab, tmp_path, scenario)


@pytest.mark.parametrize("ring_s", [3])
def test_unanswered_call_times_out(lab: Lab, tmp_path: Path, ring_s: int) -> None:
    async def scenario(nodes: list[LabNode], room: str) -> None:
        caller = agent(nodes[0], room, "--tone", "440", "--ring-for", str(ring_s))
        status, [report] = await finished(caller, "caller")
        assert status == 1
        assert report["ended"] == "invite_timeout" and report["setup_ms"] is None

    run_lab(lab, tmp_path, scenario)


def test_glare_ends_in_one_call(lab: Lab, tmp_path: Path) -> None:
    async def scenario(nodes: list[LabNode], room: str) -> None:
        one = agent(nodes[0], room, "--tone", "440", "--hangup-after", "2")
        two = agent(nodes[1], room, "--tone", "880", "--hangup-after", "2")
        (s1, r1), (s2, r2) = await asyncio.gather(
            finished(one, "agent 1"), finished(two, "agent 2")
        )
        connected = [r for r in r1 + r2 if r["setup_ms"] is not None]
        assert {r["call_id"] for r in connected} == {min(r["call_id"] for r in r1 + r2)}, (
            r1,
            r2,
        )
        assert len(connected) == 2, (r1, r2)  # the surviving call, at both ends
        assert (s1, s2) == (0, 0)

    run_lab(lab, tmp_path, scenario)


def write_pattern(path: Path, seconds: float = 2.0, width: int = 160, height: int = 120) -> None:
    """A small raw video (YUV4MPEG): red above, blue below, 15 frames a second."""
    import av

    out = av.open(str(path), "w", format="yuv4mpegpipe")
    stream = out.add_stream("rawvideo", rate=15)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    rows = bytes([255, 0, 0]) * width * (height // 2) + bytes([0, 0, 255]) * width * (height // 2)
    for i in range(int(seconds * 15)):
        frame = av.VideoFrame(width, height, "rgb24")
        frame.planes[0].update(rows)
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def test_video_from_a_doorbell(lab: Lab, tmp_path: Path) -> None:
    """The caller (a doorbell) sends a video file; the callee receives its frames."""
    pattern = tmp_path / "pattern.y4m"
    write_pattern(pattern)

    async def scenario(nodes: list[LabNode], room: str) -> None:
        callee = agent(nodes[1], room, "--auto-answer", "--once", "--tone", "880")
        await asyncio.sleep(1.5)
        caller = agent(
            nodes[0], room, "--tone", "440", "--video", str(pattern), "--hangup-after", "3"
        )
        (a_status, [a]), (b_status, [b]) = await asyncio.gather(
            finished(caller, "caller"), finished(callee, "callee")
        )
        assert (a_status, b_status) == (0, 0)
        assert b["video_size"] == "160x120", b
        assert b["video_frames"] >= 15, b  # at least a second of the 15 fps pattern
        assert a["video_frames"] == 0  # the callee sends none
        hears(b, 440)

    run_lab(lab, tmp_path, scenario)
