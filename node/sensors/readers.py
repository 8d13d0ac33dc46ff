"""Reading a source: a command's output, a file, or a plugin (an entry point).

* ``command``: run with asyncio's subprocess support (no shell for a list, ``/bin/sh
  -c`` for a string), stdin closed, in its own process group; past ``timeout`` the
  whole group is killed. Exit status 0 and stdout a reading (node/sensors/content.py),
  else the read fails with the exit status and the last line of stderr.
* ``file``: read as UTF-8 text (at most 64 KiB) in a worker thread (some sensor
  files take long: a 1-Wire DS18B20's ``w1_slave`` about 750 ms), within ``timeout``;
  its text is a reading.
* ``plugin``: the entry point ``entry_point`` of group ``croft.sensors``
  (``importlib.metadata``; packaging spec "Entry points specification"), loaded at the
  first read and again after a failed load. It must be callable; it is called with the
  source's ``options`` as keyword arguments. A coroutine function is awaited on the
  event loop; a plain function runs in a daemon thread (it may block on I/O). Either
  way within ``timeout``; a plain function still running from the last interval is not
  called again until it returns. It returns a number or ``{"value", "unit", "ts"}``.

Every failure is a :class:`ReadError` with a one-line reason.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from node.config import SensorSource
from node.sensors.content import MAX_OUTPUT, Reading, ReadingError, parse_text, parse_value

PLUGIN_GROUP = "croft.sensors"


class ReadError(Exception):
    """A source could not be read (one line, for the log)."""


class Reader(Protocol):
    async def read(self) -> Reading: ...


def make_reader(source: SensorSource) -> Reader:
    readers: dict[str, Callable[[SensorSource], Reader]] = {
        "command": CommandReader,
        "file": FileReader,
        "plugin": PluginReader,
    }
    return readers[source.kind](source)


def _scaled(reading: Reading, source: SensorSource) -> Reading:
    if not source.scale:
        return reading
    return Reading(reading.value * Decimal(source.scale), reading.unit, reading.ts)


class CommandReader:
    def __init__(self, source: SensorSource) -> None:
        self.source = source

    async def read(self) -> Reading:
        src = self.source
        pipes: dict[str, Any] = {
            "stdin": asyncio.subprocess.DEVNULL,
            "stdout": asyncio.subprocess.PIPE,
            "stderr": asyncio.subprocess.PIPE,
            "start_new_session": True,  # its own process group: a timeout kills it all
        }
        try:
            if src.shell:
                proc = await asyncio.create_subprocess_shell(src.command[0], **pipes)
            else:
                proc = await asyncio.create_subprocess_exec(*src.command, **pipes)
        except OSError as e:
            raise ReadError(f"cannot run {src.command[0]!r}: {e.strerror or e}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), src.timeout)
        except TimeoutError:
            raise ReadError(f"no answer within {src.timeout:g} s (killed)") from None
        finally:
            if proc.returncode is None:  # timed out, or the service stops
                _kill_group(proc.pid)
                await proc.wait()
        if proc.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise ReadError(f"exit status {proc.returncode}: {last[0][:200]}".rstrip(": "))
        if len(out) > MAX_OUTPUT:
            raise ReadError(f"output longer than {MAX_OUTPUT} bytes")
        try:
            return _scaled(parse_text(out.decode("utf-8", "replace")), src)
        except ReadingError as e:
            raise ReadError(f"output is not a reading: {e}") from None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class FileReader:
    def __init__(self, source: SensorSource) -> None:
        self.source = source

    async def read(self) -> Reading:
        src = self.source
        try:
            text = await asyncio.wait_for(in_daemon_thread(_read_text, src.path), src.timeout)
        except TimeoutError:
            raise ReadError(f"{src.path}: not read within {src.timeout:g} s") from None
        except OSError as e:
            raise ReadError(f"{src.path}: {e.strerror or e}") from None
        try:
            return _scaled(parse_text(text), src)
        except ReadingError as e:
            raise ReadError(f"{src.path}: not a reading: {e}") from None


def in_daemon_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """Run ``fn`` in a new daemon thread. Not asyncio.to_thread: a read that hangs (a
    stuck bus, a plugin that never returns) must not keep the process from exiting,
    and the default executor's threads are joined at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            outcome = (True, fn(*args, **kwargs))
        except BaseException as e:  # SystemExit in a plugin: a failed read, no more
            outcome = (False, e if isinstance(e, Exception) else RuntimeError(repr(e)))
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=run, daemon=True, name="croft-sensor-read").start()
    return future


def _read_text(path: str) -> str:
    with Path(path).open("rb") as f:
        data = f.read(MAX_OUTPUT + 1)
    if len(data) > MAX_OUTPUT:
        raise OSError(f"longer than {MAX_OUTPUT} bytes")
    return data.decode("utf-8", "replace")


def load_plugin(name: str) -> Callable[..., Any]:
    """The callable of entry point ``name`` in group croft.sensors."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == name]
    if not found:
        raise ReadError(f"no entry point {name!r} in group {PLUGIN_GROUP} (is it installed?)")
    try:
        obj = found[0].load()
    except Exception as e:
        raise ReadError(f"entry point {name!r} ({found[0].value}) does not load: {e}") from None
    if not callable(obj):
        raise ReadError(f"entry point {name!r} ({found[0].value}) is not callable")
    return obj  # type: ignore[no-any-return]


class PluginReader:
    def __init__(self, source: SensorSource) -> None:
        self.source = source
        self._fn: Callable[..., Any] | None = None
        self._busy: asyncio.Future[Any] | None = None  # a plain call still running

    async def read(self) -> Reading:
        src = self.source
        if self._fn is None:
            self._fn = load_plugin(src.entry_point)
        if self._busy is not None and not self._busy.done():
            raise ReadError("the previous call has not returned yet")
        kwargs = dict(src.options)
        try:
            if inspect.iscoroutinefunction(self._fn):
                result = await asyncio.wait_for(self._fn(**kwargs), src.timeout)
            else:
                self._busy = in_daemon_thread(self._fn, **kwargs)
                result = await asyncio.wait_for(asyncio.shield(self._busy), src.timeout)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, src.timeout)
        except TimeoutError:
            raise ReadError(f"no answer within {src.timeout:g} s") from None
        except Exception as e:
            raise ReadError(f"raised {type(e).__name__}: {e}") from None
        try:
            return _scaled(parse_value(result), src)
        except ReadingError as e:
            raise ReadError(f"returned no reading: {e}") from None
