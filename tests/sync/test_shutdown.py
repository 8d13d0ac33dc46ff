"""Stopping a node answers the /sync requests that are long-polling at once, instead
of holding the shutdown until their timeouts (Ctrl-C on `croft run` with a client
connected took up to 30 s)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from node.app import serve
from node.config import load_config
from tests.federation.nodes import Client, init_node_dir
from tests.interop.util import free_port


async def test_stopping_answers_a_long_polling_sync(tmp_path: Path) -> None:
    d = await asyncio.to_thread(init_node_dir, tmp_path, "n", free_port())
    running = await serve(load_config(d, environ={}))
    stopped = False
    try:
        async with aiohttp.ClientSession() as http:
            client = Client(http, running)
            await client.login()
            since = (await client.call("GET", "/sync"))["next_batch"]
            poll = asyncio.create_task(client.call("GET", f"/sync?timeout=30000&since={since}"))
            await asyncio.sleep(0.5)
            assert not poll.done()  # it waits: nothing new

            started = time.monotonic()
            stopped = True
            await running.stop()
            stopping = time.monotonic() - started
            answer = await asyncio.wait_for(poll, 5)
    finally:
        if not stopped:
            await running.stop()
    assert answer["next_batch"]  # a proper (empty) answer, not a dropped connection
    assert stopping < 10, f"stopping took {stopping:.1f} s: it waited for the long-poll"
