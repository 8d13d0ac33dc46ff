"""Outbound HTTPS: push gateways are reached with Croft's own verified TLS context
(node/federation/tls.py client_ssl_context), never aiohttp's import-time default,
which `croft run` builds without a CA bundle to save memory (node/cli.py).

The gateway is a real aiohttp HTTPS server on 127.0.0.1 with a self-signed
certificate; SSL_CERT_FILE decides whether the node trusts it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

import node.federation.tls as tls
from node.app import RunningNode
from node.federation.tls import create_self_signed_certificate, server_ssl_context
from tests.client import call
from tests.push.conftest import Gateway, running_gateway
from tests.push.test_push_delivery import bob_joins, bob_says, setup_room

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "gw.crt", tmp_path / "gw.key"
    create_self_signed_certificate("127.0.0.1", cert, key)
    return cert, key


@pytest.fixture
async def https_gateway(certificate: tuple[Path, Path]) -> AsyncIterator[Gateway]:
    async with running_gateway(server_ssl_context(*certificate)) as gw:
        yield gw


def trust(monkeypatch: pytest.MonkeyPatch, ca_file: str) -> None:
    """Make the next client_ssl_context() load ``ca_file`` as its CA bundle."""
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    monkeypatch.setenv("SSL_CERT_DIR", os.devnull)
    monkeypatch.setattr(tls, "_client_context", None)


async def test_gateway_over_https_with_a_trusted_certificate(
    monkeypatch: pytest.MonkeyPatch,
    certificate: tuple[Path, Path],
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    node: RunningNode,
    https_gateway: Gateway,
) -> None:
    trust(monkeypatch, str(certificate[0]))
    room_id = await setup_room(http, v3, token, https_gateway)
    await bob_joins(node, room_id)
    event_id = await bob_says(node, room_id, "over TLS")
    got = (await https_gateway.next())["notification"]
    assert got["event_id"] == event_id


async def test_gateway_with_an_untrusted_certificate_gets_nothing(
    monkeypatch: pytest.MonkeyPatch,
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    node: RunningNode,
    https_gateway: Gateway,
) -> None:
    trust(monkeypatch, os.devnull)  # no CA at all: the self-signed gateway is not trusted
    room_id = await setup_room(http, v3, token, https_gateway)
    await bob_joins(node, room_id)
    await bob_says(node, room_id, "not to a stranger")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            await https_gateway.received.get()
    # The node is fine: it still answers and the event was stored.
    page = await call(http, "GET", f"{v3}/rooms/{room_id}/messages?dir=b&limit=1", token)
    assert page["chunk"][0]["content"]["body"] == "not to a stranger"


def test_croft_run_imports_aiohttp_without_its_ca_bundle() -> None:
    """In a fresh interpreter, as `croft run` does: aiohttp's default verified context
    holds no CA, the environment is restored, and Croft's own context has the bundle."""
    script = textwrap.dedent(
        """
        import json, os, sys
        os.environ["SSL_CERT_FILE"] = "/nonexistent/keep-me"
        from node.cli import _import_aiohttp_without_ca_bundle
        _import_aiohttp_without_ca_bundle()
        import aiohttp.connector
        from node.federation.tls import client_ssl_context
        del os.environ["SSL_CERT_FILE"]  # back to the system bundle for Croft's context
        print(json.dumps({
            "aiohttp_cas": aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
            "croft_cas": client_ssl_context().cert_store_stats()["x509_ca"],
        }))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SSL_CERT_FILE": "/nonexistent/keep-me"}
    check = textwrap.dedent(
        """
        import os
        from node.cli import _import_aiohttp_without_ca_bundle
        _import_aiohttp_without_ca_bundle()
        assert os.environ["SSL_CERT_FILE"] == "/nonexistent/keep-me", os.environ
        assert "SSL_CERT_DIR" not in os.environ
        """
    )
    env.pop("SSL_CERT_DIR", None)
    restored = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True)
    assert restored.returncode == 0, restored.stderr.decode()
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    counts = json.loads(out.stdout)
    assert counts["aiohttp_cas"] == 0
    assert counts["croft_cas"] > 0, "this machine has a system CA bundle"
