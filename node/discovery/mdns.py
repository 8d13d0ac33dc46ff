"""zeroconf, as the rest of Croft gets it: from its Python sources, not its Cython
builds (node/discovery/sources.py). The finder must be in place before zeroconf's first
import, so import zeroconf's names from here, never from zeroconf directly."""

from node.discovery import sources

sources.install("zeroconf")

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange  # noqa: E402
from zeroconf.asyncio import (  # noqa: E402
    AsyncServiceBrowser,
    AsyncServiceInfo,
    AsyncZeroconf,
)

__all__ = [
    "AsyncServiceBrowser",
    "AsyncServiceInfo",
    "AsyncZeroconf",
    "IPVersion",
    "InterfaceChoice",
    "ServiceStateChange",
]
