"""Process plumbing every Ice peer shares, under Ice 3.7 and Ice 3.8 alike.

Runs in the peer's interpreter (it imports Ice, not aiocomm). A peer server
listens on ``tcp -h 127.0.0.1 -p 0``, prints ``READY <proxy of "test">`` as
its first stdout line, and serves until its stdin is closed (the test's
signal to stop) or it receives SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import Ice

V38 = Ice.intVersion() >= 30800


def properties() -> Any:
    """The properties every peer starts from."""
    props = Ice.createProperties()
    props.setProperty("Ice.Warn.Connections", "0")
    props.setProperty("Ice.Warn.Dispatch", "0")
    # Dispatches overlap (sleep, and typed callbacks into the client): more
    # than one thread on each side.
    props.setProperty("Ice.ThreadPool.Server.Size", "4")
    props.setProperty("Ice.ThreadPool.Server.SizeMax", "16")
    props.setProperty("Ice.ThreadPool.Client.Size", "2")
    props.setProperty("Ice.ThreadPool.Client.SizeMax", "4")
    # Ice.MessageSizeMax is deliberately left at its default (1024 KB).
    return props


def initialize(props: Any, event_loop_adapter: Any = None) -> Any:
    """A communicator; Ice 3.8 takes keywords (and may bind an asyncio loop)."""
    if V38:
        init_data = Ice.InitializationData(properties=props, eventLoopAdapter=event_loop_adapter)
        return Ice.initialize(initData=init_data)
    init_data = Ice.InitializationData()
    init_data.properties = props
    return Ice.initialize(init_data)


def serve(props: Any, add_servants: Callable[[Any], None]) -> int:
    """Serve on an adapter ``add_servants`` fills, until stdin closes or a signal."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fd = sys.stdin.fileno()

    def watch_stdin() -> None:
        # os.read on the raw fd: no buffered-reader lock held by this daemon
        # thread, so interpreter shutdown after SIGTERM stays clean.
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        stop.set()

    with initialize(props) as communicator:
        adapter = communicator.createObjectAdapterWithEndpoints("Test", "tcp -h 127.0.0.1 -p 0")
        add_servants(adapter)
        adapter.activate()
        proxy = adapter.createProxy(Ice.stringToIdentity("test"))
        sys.stdout.write(f"READY {communicator.proxyToString(proxy)}\n")
        sys.stdout.flush()
        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
        while not stop.wait(0.5):
            pass
        communicator.shutdown()
        communicator.waitForShutdown()
    return 0
