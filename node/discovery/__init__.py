"""LAN discovery over mDNS / DNS-SD (RFC 6762, RFC 6763): node/discovery/lan.py.

zeroconf is loaded from its Python sources, not its Cython builds, ~2.9 MiB less
resident for a running node (node/discovery/sources.py): the finder is put in place
here, before anything imports zeroconf.
"""

from node.discovery import sources as _sources

_sources.install("zeroconf")
