"""LAN discovery over mDNS / DNS-SD (RFC 6762, RFC 6763): node/discovery/lan.py.

zeroconf is loaded from its Python sources, not its Cython builds, ~2.9 MiB less
resident for a running node (node/discovery/sources.py); node/discovery/mdns.py puts
the finder in place before it imports zeroconf. Not here: the rest of the package (key
fingerprints, the peer registry) is used with discovery off too, and the finder's
imports (importlib.abc, importlib.resources) would cost such a node for nothing.
"""
