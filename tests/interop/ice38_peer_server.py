#!/usr/bin/env python3
"""Reference ZeroC Ice 3.8 server for aiocomm interoperability tests.

Run with an interpreter that has ZeroC Ice 3.8 for Python (``zeroc-ice`` 3.8,
e.g. the venv ``.ci/ice38-peer.sh`` makes; see ``peer_pythons.py``)::

    python tests/interop/ice38_peer_server.py \
        [--idle-timeout SECONDS] [--enable-idle-check 0|1] [--inactivity-timeout SECONDS]

The options set ``Ice.Connection.Server.IdleTimeout``,
``Ice.Connection.Server.EnableIdleCheck`` and
``Ice.Connection.Server.InactivityTimeout`` (Ice 3.8's replacements for ACM).
With an idle timeout T, Ice 3.8 writes a heartbeat (validate connection) when
it has written nothing for T/2, and, with the idle check enabled, aborts a
connection on which it has read nothing for T.

Otherwise as ``ice_peer_server.py``: the servant is ``echo_servant.EchoServant``
(with 3.8's ``fail_status``), served by ``peer_serve.serve``.
"""

from __future__ import annotations

import argparse
import sys

import echo_servant
import peer_serve


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ZeroC Ice 3.8 peer server for aiocomm tests")
    parser.add_argument(
        "--idle-timeout", type=int, help="Ice.Connection.Server.IdleTimeout (seconds, default 60)"
    )
    parser.add_argument(
        "--enable-idle-check",
        type=int,
        choices=(0, 1),
        help="Ice.Connection.Server.EnableIdleCheck (default 1)",
    )
    parser.add_argument(
        "--inactivity-timeout",
        type=int,
        help="Ice.Connection.Server.InactivityTimeout (seconds, default 300)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    props = peer_serve.properties()
    for name, value in (
        ("IdleTimeout", args.idle_timeout),
        ("EnableIdleCheck", args.enable_idle_check),
        ("InactivityTimeout", args.inactivity_timeout),
    ):
        if value is not None:
            props.setProperty(f"Ice.Connection.Server.{name}", str(value))
    return peer_serve.serve(props, echo_servant.add_servants)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
