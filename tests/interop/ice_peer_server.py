#!/usr/bin/python3
"""Reference ZeroC Ice 3.7 server for aiocomm interoperability tests.

Run with the system interpreter that has Debian's ``python3-zeroc-ice``::

    /usr/bin/python3 tests/interop/ice_peer_server.py \
        [--acm-timeout SECONDS] [--acm-heartbeat 0-3] [--acm-close 0-4]

It serves ``echo_servant.EchoServant`` as ``test`` (the operations are listed
there) on ``tcp -h 127.0.0.1 -p 0``, printing ``READY <proxy>`` first, until
its stdin is closed or it receives SIGTERM/SIGINT (``peer_serve.serve``).
"""

from __future__ import annotations

import argparse
import sys

import echo_servant
import peer_serve


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ZeroC Ice 3.7 peer server for aiocomm tests")
    parser.add_argument("--acm-timeout", type=int, help="Ice.ACM.Server.Timeout (seconds)")
    parser.add_argument(
        "--acm-heartbeat",
        type=int,
        help="Ice.ACM.Server.Heartbeat: 0 off, 1 on dispatch, 2 on idle, 3 always",
    )
    parser.add_argument(
        "--acm-close",
        type=int,
        help="Ice.ACM.Server.Close: 0 off, 1 on idle (graceful), 2 on invocation, "
        "3 on invocation and idle, 4 on idle (forceful)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    props = peer_serve.properties()
    # Note (Ice 3.7): the server's own writes, heartbeats included, count as
    # activity, so with heartbeat 3 (always) Ice never closes an idle
    # connection; with heartbeat 0 and close 1 it closes one on which it has
    # read nothing for the timeout (client heartbeats prevent that).
    for name, value in (
        ("Timeout", args.acm_timeout),
        ("Heartbeat", args.acm_heartbeat),
        ("Close", args.acm_close),
    ):
        if value is not None:
            props.setProperty(f"Ice.ACM.Server.{name}", str(value))
    return peer_serve.serve(props, echo_servant.add_servants)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
