"""The terminal client with many rooms and events: ready time, scrolling, room switching.

Issue #7: "With 100 rooms and 10,000 events, the TUI is ready in under 1 s and scrolling
stays smooth." Makes a fresh data directory with `croft init` (listeners on free
127.0.0.1 ports, LAN discovery off) and starts `croft run` on it (the interop harness,
tests/interop/croft_node.py, with this directory's clean environment), then seeds it
through the client API as fast as it answers (``--senders`` concurrent connections):
``--rooms`` rooms, one of them ("Archive", first by name, so shown first) holding
``--big`` messages and the rest ``--events`` minus that, spread evenly. Bodies vary in
length (some wrap at 120 columns).

The TUI is measured in a child process (this script with ``--measure``), so its memory
is the TUI's alone: the real ``CroftApp`` connected the way ``croft tui`` connects (the
token ``croft init`` stored), headless (``App.run_test``, 120x40: layout and rendering
are done, only the write to a terminal is skipped).

(a) ready: from constructing the app to the chat screen having synced
    (``ChatScreen.synced``: /sync answered with every room's latest events), the room
    list filled and the first room's timeline painted (the end of the last frame before
    the app goes quiet), ``--runs`` times with a fresh app each time, with its phases
    (chat screen shown, first /sync answered and parsed by nio, applied); the child's
    import time of the TUI (textual, nio) is reported apart, and so is the time the node
    alone takes to answer that first /sync. RSS (VmRSS, VmHWM) after the last run.
(b) scrolling: in Archive, Home at the top asks for older events (``Timeline.NeedOlder``;
    the screen pages /messages back) until ``--big`` events are loaded (the time per page
    is kept); then PageDown and PageUp steps across the loaded history and mouse-wheel
    steps (``MouseScrollUp``/``Down`` on the timeline). Each input goes in as the terminal
    driver delivers it and is timed to the end of the first frame painted after it and
    to the end of the last one before the app goes quiet (nothing queued or painted for
    ``QUIET_S``; an animated scroll paints until the animation ends). Frame time: every
    screen update with work to do (layout + render) during those steps.
(c) switching rooms: ctrl+n through every room (the last step comes back to Archive with
    its whole history loaded), each timed the same way.

Prints a table and one JSON line, and writes the JSON to benchmarks/out/.

    python benchmarks/tui.py [--rooms 100] [--events 10000] [--big 2000] [--runs 10]
                             [--quick] [--reuse DIR]

``--reuse DIR`` keeps the seeded data directory in DIR and uses it again on the next run
with the same sizes (seeding takes ~10-20 s); without it nothing is kept.

Timing inputs and frames reaches into a few Textual internals (``Screen._on_timer_update``
and its dirty flags, ``Screen._forward_event``, the driver's ``send_message``, message
queues), written against Textual 8.2; Croft's side is only its public surface
(``ChatScreen.synced``/``selected``/``histories``, the Timeline's keys, ``app.screen``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import OUT_DIR, ROOT, percentile, proc_status, write_report  # sibling scripts

sys.path.insert(0, str(ROOT))

TARGET_READY_S = 1.0
TARGET_FRAME_MS = 16.7  # "smooth": input shown, and each frame painted, within 1/60 s
SIZE = (120, 40)
QUIET_S = 0.03  # nothing queued, nothing painted for this long: the input is handled
BIG_ROOM = "Archive"
WORDS = "the quick brown fox jumps over a lazy dog while croft keeps every message".split()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stats_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 0.5), 2),
        "p95": round(percentile(ms, 0.95), 2),
        "max": round(max(ms), 2),
    }


# -- seeding (the parent process) -------------------------------------------------------


def body(rng: random.Random, i: int) -> str:
    return f"message {i:05} " + " ".join(rng.choices(WORDS, k=rng.randint(3, 40)))


async def seed(node: Any, rooms: int, events: int, big: int, senders: int) -> dict[str, Any]:
    """Rooms and messages through the client API; returns what was made."""
    import aiohttp

    from tests.interop.users import MatrixUser

    token = await node.login()
    sessions = [aiohttp.ClientSession() for _ in range(senders)]
    users = [MatrixUser(s, node.client_url, node.user_id, token) for s in sessions]
    t0 = time.monotonic()
    try:
        names = [BIG_ROOM] + [f"Room {i:03}" for i in range(1, rooms)]
        made: list[str] = []
        for start in range(0, rooms, senders):
            batch = names[start : start + senders]
            made += await asyncio.gather(
                *(u.create_room(name=n) for u, n in zip(users, batch, strict=False))
            )
        print(f"  {rooms} rooms in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        rng = random.Random(7)
        plan = [(made[0], i) for i in range(big)]
        rest = events - big
        plan += [(made[1 + i % (rooms - 1)], i) for i in range(rest)] if rooms > 1 else []
        plan.sort(key=lambda p: p[1])  # interleaved, as rooms fill in real life
        texts = [body(rng, i) for _, i in plan]
        queue = iter(zip(plan, texts, strict=True))
        done = 0
        t1 = time.monotonic()

        async def sender(user: MatrixUser) -> None:
            nonlocal done
            for (room, _), text in queue:
                await user.send(room, text)
                done += 1
                if done % 1000 == 0:
                    rate = done / (time.monotonic() - t1)
                    print(f"  {done}/{len(plan)} messages, {rate:.0f}/s", file=sys.stderr)

        await asyncio.gather(*(sender(u) for u in users))
        return {"rooms": made, "big_room": made[0], "messages": len(plan)}
    finally:
        for s in sessions:
            await s.close()
        print(f"  seeded in {time.monotonic() - t0:.1f} s", file=sys.stderr)


# -- measuring (the child process) ------------------------------------------------------


class Frames:
    """Every screen update that had work to do (layout and/or render), as (start, end)
    in ``perf_counter`` seconds, by wrapping Textual's ``Screen._on_timer_update`` (run by
    the screen's refresh timer, at most 60 times a second, and by ``pilot.pause``)."""

    def __init__(self) -> None:
        from textual.screen import Screen

        self.log: list[tuple[float, float]] = []
        original = Screen._on_timer_update
        log = self.log

        def timed(screen: Any) -> None:
            busy = bool(
                screen._layout_required
                or screen._scroll_required
                or screen._repaint_required
                or screen._dirty_widgets
            )
            t = time.perf_counter()
            original(screen)
            if busy:
                log.append((t, time.perf_counter()))

        Screen._on_timer_update = timed  # type: ignore[method-assign]

    def since(self, t: float) -> list[tuple[float, float]]:
        return [f for f in self.log if f[0] >= t]


def pending(app: Any) -> bool:
    """Whether the app has messages queued or a screen update to do."""
    screen = app.screen
    nodes = [app, screen, *(w for w in (app.focused,) if w is not None)]
    return bool(
        screen._layout_required
        or screen._scroll_required
        or screen._repaint_required
        or screen._dirty_widgets
        or screen._callbacks
        or any(node._message_queue.qsize() for node in nodes)
    )


async def quiet(app: Any, frames: Frames, t0: float) -> tuple[float, float] | None:
    """Waits until nothing has been pending or painted for ``QUIET_S``; returns the
    seconds from ``t0`` to the end of the first and of the last frame painted after it
    (None: nothing was painted)."""
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.002)
        now = time.perf_counter()
        if pending(app):
            last = now
        elif frames.log and frames.log[-1][1] > last:
            last = frames.log[-1][1]
        if now - last >= QUIET_S:
            break
    painted = frames.since(t0)
    return (painted[0][1] - t0, painted[-1][1] - t0) if painted else None


def loaded(history: Any) -> int:
    """Events the client holds for a room (``entries`` of the timeline model; ``events``
    of the RoomHistory before it)."""
    held = getattr(history, "entries", None)
    return len(held if held is not None else history.events)


def memory() -> dict[str, float]:
    status = proc_status(os.getpid())
    return {k: round(status[k] / 1024, 1) for k in ("VmRSS", "VmHWM") if k in status}


async def start_app(data_dir: Path, frames: Frames) -> tuple[Any, Any, dict[str, float]]:
    """A fresh CroftApp under run_test; returns (the run_test context, the app, the
    phases: seconds from constructing the app to the chat screen shown, to the first
    /sync answered and parsed by nio, to ``ChatScreen.synced`` (the answer applied), and
    to ``ready``: the end of the last frame painted once it was applied)."""
    from tui.app import CroftApp
    from tui.screens.chat import ChatScreen
    from tui.session import local_connection

    t0 = time.perf_counter()
    app = CroftApp(local_connection(data_dir))
    phases: dict[str, float] = {}
    nio_sync = app.client.sync

    async def sync(*args: Any, **kw: Any) -> Any:
        response = await nio_sync(*args, **kw)
        phases.setdefault("sync_answered", time.perf_counter() - t0)
        return response

    app.client.sync = sync  # type: ignore[method-assign]
    context = app.run_test(size=SIZE)
    await context.__aenter__()
    deadline = time.monotonic() + 60
    while not isinstance(app.screen, ChatScreen):
        if app.error or time.monotonic() > deadline:
            raise RuntimeError(f"the TUI did not start: {app.error}")
        await asyncio.sleep(0.001)
    phases["chat_screen"] = time.perf_counter() - t0
    try:
        await asyncio.wait_for(app.screen.synced.wait(), 60)
    except TimeoutError:
        raise RuntimeError(f"no /sync within 60 s: {app.screen.said}") from None
    synced = time.perf_counter()
    phases["synced"] = synced - t0
    painted = await quiet(app, frames, synced)
    phases["ready"] = phases["synced"] + (painted[1] if painted else 0.0)
    return context, app, phases


class Steps:
    """Input as the terminal driver delivers it (``pilot.press`` would add two idle waits
    of 20 ms or more per key), timed from the input to the frames that show it."""

    def __init__(self, app: Any, frames: Frames) -> None:
        self.app = app
        self.frames = frames
        self.unpainted = 0  # inputs after which nothing was painted

    async def timed(self, send: Any, into: dict[str, list[float]], name: str) -> None:
        t = time.perf_counter()
        send()
        painted = await quiet(self.app, self.frames, t)
        if painted is None:
            self.unpainted += 1
            return
        into.setdefault(name, []).append(painted[1])
        into.setdefault(name + "_first_frame", []).append(painted[0])

    async def key(self, key: str, into: dict[str, list[float]], name: str) -> None:
        from textual.events import Key

        event = Key(key, None)
        event.set_sender(self.app)
        await self.timed(lambda: self.app._driver.send_message(event), into, name)

    async def wheel(self, widget: Any, up: bool, into: dict[str, list[float]], name: str) -> None:
        """One notch of the wheel over ``widget``, routed as Pilot routes clicks."""
        from textual.events import MouseScrollDown, MouseScrollUp
        from textual.geometry import Offset

        x, y = widget.region.x + 5, widget.region.y + 5
        kind = MouseScrollUp if up else MouseScrollDown
        event = kind(widget, x, y, 0, -1 if up else 1, 0, False, False, False, x, y)

        def send() -> None:
            self.app.mouse_position = Offset(x, y)
            self.app.screen._forward_event(event)

        await self.timed(send, into, name)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    import nio  # noqa: F401
    import textual  # noqa: F401

    import tui.app
    from tui.widgets import RoomList, Timeline

    out: dict[str, Any] = {"import_s": round(time.perf_counter() - t, 3)}
    out["tui_package"] = str(Path(tui.app.__file__).parent)  # which tree was measured
    frames = Frames()
    data_dir = Path(args.measure)

    runs: dict[str, list[float]] = {}
    for i in range(args.runs):
        context, app, phases = await start_app(data_dir, frames)
        rooms = app.screen.query_one(RoomList).option_count
        await context.__aexit__(None, None, None)
        if rooms < args.rooms:
            raise RuntimeError(f"the room list shows {rooms} of {args.rooms} rooms")
        for phase, seconds in phases.items():
            runs.setdefault(phase, []).append(seconds)
        print(f"  ready run {i + 1}: {phases['ready'] * 1000:.0f} ms", file=sys.stderr)
    out["ready"] = stats_ms(runs["ready"]) | {"first_ms": round(runs["ready"][0] * 1000, 1)}
    out["ready_phases_p50_ms"] = {k: stats_ms(v)["p50"] for k, v in runs.items()}
    out["memory_after_ready_mib"] = memory()

    context, app, _ = await start_app(data_dir, frames)
    try:
        screen = app.screen
        if screen.selected != args.big_room:
            raise RuntimeError(f"the first room shown is {screen.selected}, not {BIG_ROOM}")
        timeline = screen.query_one(Timeline)
        timeline.focus()
        history = screen.histories[args.big_room]
        steps = Steps(app, frames)
        timings: dict[str, list[float]] = {}

        # (b) load the history: Home scrolls to the top; Home at the top asks for an
        # older page. Timed from that key to the last frame once the page is in.
        t_load = time.perf_counter()
        while loaded(history) < args.big and not history.complete:
            if timeline.scroll_y > 0:
                await steps.key("home", {}, "")
                continue
            before, t = loaded(history), time.perf_counter()
            await steps.key("home", {}, "")
            deadline = time.monotonic() + 30
            while loaded(history) == before and not history.complete:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no older events after {before}")
                await asyncio.sleep(0.002)
            painted = await quiet(app, frames, t)
            timings.setdefault("page", []).append(painted[1] if painted else 0.0)
        out["loaded_events"] = loaded(history)
        out["load_history_s"] = round(time.perf_counter() - t_load, 2)
        print(f"  loaded {loaded(history)} events", file=sys.stderr)

        # Scroll steps over the loaded history, from the top down, and back up.
        await steps.key("home", {}, "")
        steps.unpainted = 0
        n_frames = len(frames.log)
        for _ in range(args.steps):
            await steps.key("pagedown", timings, "pagedown")
        await steps.key("end", timings, "end")
        for _ in range(args.steps):
            await steps.key("pageup", timings, "pageup")
        for _ in range(args.steps):
            await steps.wheel(timeline, True, timings, "wheel_up")
        for _ in range(args.steps):
            await steps.wheel(timeline, False, timings, "wheel_down")
        scroll_frames = [end - start for start, end in frames.log[n_frames:]]
        out["scroll_steps_unpainted"] = steps.unpainted
        out["memory_after_scroll_mib"] = memory()

        # (c) ctrl+n through every room, back to the big one.
        for _ in range(args.rooms - 1):
            await steps.key("ctrl+n", timings, "switch")
        await steps.key("ctrl+n", timings, "switch_into_big")
        if screen.selected != args.big_room:
            raise RuntimeError("ctrl+n did not come back to the first room")
        out["memory_at_end_mib"] = memory()
    finally:
        await context.__aexit__(None, None, None)
    out["timings"] = {k: stats_ms(v) for k, v in timings.items()}
    out["timings"]["frame_while_scrolling"] = stats_ms(scroll_frames)
    return out


# -- the parent ---------------------------------------------------------------------


def run_child(args: argparse.Namespace, data_dir: Path, big_room: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--measure", str(data_dir), "--big-room", big_room]
    cmd += ["--runs", str(args.runs), "--rooms", str(args.rooms), "--big", str(args.big)]
    cmd += ["--steps", str(args.steps)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process failed (status {done.returncode})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def seeded_node(args: argparse.Namespace, workdir: Path) -> tuple[Any, str]:
    from federation import BenchCroft  # the harness's croft run with the clean env

    marker = workdir / "seeded.json"
    sizes = {"rooms": args.rooms, "events": args.events, "big": args.big}
    old = json.loads(marker.read_text()) if marker.exists() else None
    if old is not None and old["sizes"] == sizes:
        node = BenchCroft(
            workdir / "node", client_port=old["client_port"], fed_port=old["fed_port"]
        )
        await node.start()
        print(f"reusing {workdir} (seeded before)", file=sys.stderr)
        return node, str(old["big_room"])
    shutil.rmtree(workdir / "node", ignore_errors=True)
    node = BenchCroft(workdir / "node")
    await node.start()
    print(f"seeding {args.rooms} rooms, {args.events} messages ...", file=sys.stderr)
    made = await seed(node, args.rooms, args.events, args.big, args.senders)
    ports = {"client_port": node.client_port, "fed_port": node.fed_port}
    marker.write_text(json.dumps({"sizes": sizes, "big_room": made["big_room"], **ports}))
    return node, str(made["big_room"])


async def server_sync(node: Any, runs: int = 3) -> dict[str, float]:
    """The node's own share of the TUI's first /sync: the same request (the TUI's filter,
    no ``since``, ``timeout=0``) with the TUI's token, timed to the last byte."""
    from urllib.parse import quote

    import aiohttp

    from tui.screens.chat import SYNC_FILTER

    url = f"{node.client_url}/_matrix/client/v3/sync?timeout=0&filter="
    url += quote(json.dumps(SYNC_FILTER, separators=(",", ":")))
    headers = {"Authorization": f"Bearer {node.tui_token}"}
    times, size = [], 0
    async with aiohttp.ClientSession() as http:
        for _ in range(runs):
            t = time.perf_counter()
            async with http.get(url, headers=headers) as r:
                size = len(await r.read())
            times.append(time.perf_counter() - t)
    return {"p50_ms": round(percentile(times, 0.5) * 1000, 1), "bytes": size}


def table(r: dict[str, Any]) -> str:
    t = r["timings"]

    def row(name: str, key: str) -> str:
        s = t.get(key, {})
        if not s.get("n"):
            return f"  {name:<36} (none)"
        first = t.get(key + "_first_frame", {}).get("p50")
        also = f"   {first:>8.1f}" if first is not None else " " * 11
        return f"  {name:<36} {s['p50']:>8.1f} {s['p95']:>8.1f} {s['max']:>8.1f}{also}   n={s['n']}"

    lines = [
        f"  {'(ms)':<36} {'p50':>8} {'p95':>8} {'max':>8}   {'1st p50':>8}",
        f"  {'(a) ready (fresh app each run)':<36} {r['ready']['p50']:>8.1f} "
        f"{r['ready']['p95']:>8.1f} {r['ready']['max']:>8.1f}   n={r['ready']['n']}",
        f"  {'    (first run; TUI import time)':<36} {r['ready']['first_ms']:>8.1f} "
        f"{r['import_s'] * 1000:>8.0f}",
        "      phases p50: "
        + ", ".join(f"{k} {v:.0f}" for k, v in r["ready_phases_p50_ms"].items())
        + f"; the node alone answers that /sync in {r['server_first_sync']['p50_ms']:.0f}"
        + f" ({r['server_first_sync']['bytes'] // 1024} KiB)",
        row("(b) older page (/messages + paint)", "page"),
        row("    PageDown", "pagedown"),
        row("    PageUp", "pageup"),
        row("    End (to the bottom)", "end"),
        row("    wheel up (one notch)", "wheel_up"),
        row("    wheel down (one notch)", "wheel_down"),
        row("    frame while scrolling", "frame_while_scrolling"),
        row("(c) ctrl+n room switch", "switch"),
        row("    back into Archive (all loaded)", "switch_into_big"),
        f"  Archive: {r['loaded_events']} events loaded in {r['load_history_s']} s;"
        f" scroll inputs that painted nothing: {r['scroll_steps_unpainted']}",
        f"  TUI memory (MiB): after ready {r['memory_after_ready_mib']}, after scrolling "
        f"{r['memory_after_scroll_mib']}, at the end {r['memory_at_end_mib']}",
        "  (each input: from the key or wheel event to the end of the last frame painted"
        " before the app went quiet; 1st: to the end of the first frame)",
    ]
    return "\n".join(lines)


async def parent(args: argparse.Namespace) -> int:
    workdir = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="croft-tui-"))
    workdir.mkdir(parents=True, exist_ok=True)
    node = None
    try:
        node, big_room = await seeded_node(args, workdir)
        print(f"measuring ({args.runs} ready runs) ...", file=sys.stderr)
        first_sync = await server_sync(node)
        results = await asyncio.to_thread(run_child, args, node.data_dir, big_room)
        results["server_first_sync"] = first_sync
    finally:
        if node is not None:
            await node.stop()
        if not args.reuse:
            shutil.rmtree(workdir, ignore_errors=True)
    results["machine"] = {"nproc": os.cpu_count(), "cpu": cpu_model()}
    results["sizes"] = {"rooms": args.rooms, "messages": args.events, "big_room": args.big}
    print(f"\nTUI benchmark: {args.rooms} rooms, {args.events} messages ({args.big} in Archive)")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")
    print(table(results))
    targets = {
        f"ready p50 under {TARGET_READY_S:.0f} s": results["ready"]["p50"] < TARGET_READY_S * 1000,
        f"scroll input to its first frame p95 under {TARGET_FRAME_MS} ms": all(
            results["timings"][k + "_first_frame"]["p95"] < TARGET_FRAME_MS
            for k in ("pagedown", "pageup", "wheel_up", "wheel_down")
        ),
        f"frame while scrolling p95 under {TARGET_FRAME_MS} ms": (
            results["timings"]["frame_while_scrolling"]["p95"] < TARGET_FRAME_MS
        ),
    }
    write_report("tui", args, [sys.executable, *sys.argv], results, targets)
    print(json.dumps({"benchmark": "tui", **results}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=100)
    p.add_argument("--events", type=int, default=10_000, help="messages in all rooms")
    p.add_argument("--big", type=int, default=2_000, help="messages in the Archive room")
    p.add_argument("--runs", type=int, default=10, help="ready runs, a fresh app each")
    p.add_argument("--steps", type=int, default=40, help="steps per scroll direction")
    p.add_argument("--senders", type=int, default=8, help="concurrent connections seeding")
    p.add_argument("--quick", action="store_true", help="20 rooms, 1,000 messages, 3 runs")
    p.add_argument("--reuse", metavar="DIR", help="keep the seeded node in DIR, reuse it")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    p.add_argument("--measure", metavar="DATA_DIR", help=argparse.SUPPRESS)
    p.add_argument("--big-room", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rooms, args.events, args.big, args.runs, args.steps = 20, 1_000, 400, 3, 15
    if args.measure:
        print(json.dumps(asyncio.run(measure(args))))
        return 0
    return asyncio.run(parent(args))


if __name__ == "__main__":
    sys.exit(main())
