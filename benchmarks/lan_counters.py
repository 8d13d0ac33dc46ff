"""sitecustomize for benchmarks/lan.py (instrumentation only): counts a `croft run`'s
federation requests and received PDUs, written to $BENCH_LAN_COUNTERS as JSON."""

import atexit
import functools
import json
import os
import sys
import threading
import time
from importlib.machinery import PathFinder
from typing import Any, ClassVar

_OUT = os.environ.get("BENCH_LAN_COUNTERS")
_COUNTS = {}


def _bump(key, items, seconds):
    v = _COUNTS.get(key)
    if v is None:
        _COUNTS[key] = [1, items, seconds]
    else:
        v[0] += 1
        v[1] += items
        v[2] += seconds


def _dump():
    data = {
        k: {"calls": v[0], "items": v[1], "seconds": round(v[2], 4)}
        for k, v in list(_COUNTS.items())
    }
    with open(_OUT + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(_OUT + ".tmp", _OUT)


def _dumper():
    while True:
        time.sleep(0.25)
        _dump()


def _timed(label, orig, items=lambda a, r: 1):
    @functools.wraps(orig)
    async def wrapper(self, *args, **kw):
        t0, outcome, result = time.perf_counter(), "ok", None
        try:
            result = await orig(self, *args, **kw)
            return result
        except BaseException as e:
            outcome = type(e).__name__ + (f" {e.status}" if hasattr(e, "status") else "")
            raise
        finally:
            key = label(self, args, kw, result, outcome)
            _bump(key, items(args, result), time.perf_counter() - t0)

    return wrapper


def _kind(path):
    parts = path.split("?")[0].split("/")
    return parts[4] if len(parts) > 4 and parts[2] == "federation" else "/".join(parts[2:4])


def _request_items(args, result):
    """Events in an answer (get_missing_events, state, backfill)."""
    if isinstance(result, dict):
        for field in ("events", "pdus"):
            if isinstance(result.get(field), list):
                return len(result[field])
    return 0


def _patch_client(mod):
    cls = mod.FederationClient
    cls.request = _timed(
        lambda s, a, kw, r, o: f"request {a[0]} {_kind(a[2])} -> {a[1]}: {o}",
        cls.request,
        _request_items,
    )
    orig_send = cls.send_transaction
    cls.send_transaction = _timed(
        lambda s, a, kw, r, o: f"sent transaction -> {a[0]}: {o}",
        orig_send,
        lambda a, r: len(a[2].get("pdus") or ()),
    )


def _patch_pdus(mod):
    cls = mod.PduReceiver
    cls.on_pdus = _timed(
        lambda s, a, kw, r, o: f"received transaction from {a[0]}: {o}",
        cls.on_pdus,
        lambda a, r: len(a[1]),
    )
    cls._process = _timed(
        lambda s, a, kw, r, o: f"processed PDU from {a[0]}: {getattr(r, 'outcome', o)}",
        cls._process,
    )
    cls._fetch_missing_events = _timed(
        lambda s, a, kw, r, o: f"get_missing_events to {a[0]}: {o}",
        cls._fetch_missing_events,
    )
    cls._state_after_remote = _timed(
        lambda s, a, kw, r, o: f"state at a gap from {a[0]}: {o}",
        cls._state_after_remote,
    )


# Inclusive wall time of the steps of receiving a PDU and of the storage round trips.
_STEPS = {
    "node.federation.pdus": (
        "PduReceiver",
        (
            "check_event",
            "_dag_status",
            "_missing_prevs",
            "_auth_events",
            "_state_before",
            "_load_state",
            "_persist",
            "_new_current_state",
            "_pending_redaction",
        ),
    ),
    "node.rooms.service": ("RoomService", ("head", "run_on_persisted")),
    "node.storage.database": ("Database", ("write_sync", "read_sync", "read", "read_now")),
    "node.federation.sender": ("FederationSender", ("_next_batch", "_attempt")),
}


def _patch_steps(mod):
    cls_name, names = _STEPS[mod.__name__]
    cls = getattr(mod, cls_name)
    for name in names:
        if hasattr(cls, name):
            label = f"time {cls_name}.{name}"
            wrapped = _timed(lambda s, a, kw, r, o, label=label: label, getattr(cls, name))
            setattr(cls, name, wrapped)
    orig = getattr(mod, "resolve_state", None)
    if orig is not None:

        @functools.wraps(orig)
        async def resolve_state(*args, **kw):
            t0 = time.perf_counter()
            try:
                return await orig(*args, **kw)
            finally:
                _bump("time resolve_state", len(args[1]), time.perf_counter() - t0)

        mod.resolve_state = resolve_state


def _patch_all(*patches):
    def run(mod):
        for patch in patches:
            patch(mod)

    return run


class _After:
    """Patches a module right after it is executed."""

    targets: ClassVar[dict[str, Any]] = {
        "node.federation.client": _patch_client,
        "node.federation.pdus": _patch_all(_patch_pdus, _patch_steps),
        "node.rooms.service": _patch_steps,
        "node.storage.database": _patch_steps,
        "node.federation.sender": _patch_steps,
    }

    def find_spec(self, name, path=None, target=None):
        patch = self.targets.get(name)
        spec = PathFinder.find_spec(name, path, target) if patch else None
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def run(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = run
        return spec


if _OUT:
    sys.meta_path.insert(0, _After())
    threading.Thread(target=_dumper, daemon=True, name="bench-counters").start()
    atexit.register(_dump)
