"""A raw DNS-SD announcer for the lab's spoofing test (tests/discovery/test_spoofing.py):
announces one ``_matrix-fed._tcp`` record with the TXT record given on the command line
(node/discovery/service.py), letting zeroconf rename the instance when its name is
taken (RFC 6762 section 9), prints the instance name it got, and keeps announcing until
SIGTERM. Run ONLY inside a lab namespace (``ip netns exec``): it binds to ``--address``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from node.discovery.service import SERVICE_TYPE, Announcement, build_txt, instance_name


async def announce(args: argparse.Namespace) -> None:
    a = Announcement(args.sn, args.port, args.kid, args.fp)
    zc = AsyncZeroconf(interfaces=[args.address], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(
        SERVICE_TYPE,
        instance_name(args.instance or args.sn),
        addresses=[socket.inet_aton(args.address)],
        port=args.port,
        properties=build_txt(a),
        server=args.host,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await (await zc.async_register_service(info, allow_name_change=True))
        print(info.name, flush=True)
        await stop.wait()
        await (await zc.async_unregister_service(info))
    finally:
        await zc.async_close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True, help="the lab address to announce and bind")
    p.add_argument("--host", required=True, help="the SRV target host, e.g. host4.local.")
    p.add_argument("--sn", required=True, help="TXT sn: the server name claimed")
    p.add_argument("--instance", help="the instance name to try (default: --sn)")
    p.add_argument("--port", type=int, default=8448)
    p.add_argument("--kid", required=True)
    p.add_argument("--fp", required=True)
    asyncio.run(announce(p.parse_args()))


if __name__ == "__main__":
    main()
