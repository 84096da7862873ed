"""Process plumbing of the typed Ice peers (both Ice versions): start, serve, stop.

The four ``ice*_typed_*.py`` scripts put the generated code on ``sys.path``
and call ``serve()`` or ``client()``; the Slice logic is in ``typed_peer.py``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import Ice
import typed_peer


def _initialize(server: bool) -> Any:
    props = Ice.createProperties()
    props.setProperty("Ice.Warn.Connections", "0")
    props.setProperty("Ice.Warn.Dispatch", "0")
    # Dispatches call back into the client (invokeCallback): more than one thread.
    props.setProperty("Ice.ThreadPool.Server.Size", "4")
    props.setProperty("Ice.ThreadPool.Server.SizeMax", "16")
    props.setProperty("Ice.ThreadPool.Client.Size", "2")
    props.setProperty("Ice.ThreadPool.Client.SizeMax", "4")
    init_data = Ice.InitializationData()
    init_data.properties = props
    if typed_peer.V38:
        return Ice.initialize(initData=init_data)
    return Ice.initialize(init_data)


def serve() -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fd = sys.stdin.fileno()

    def watch_stdin() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        stop.set()

    with _initialize(server=True) as communicator:
        adapter = communicator.createObjectAdapterWithEndpoints("Test", "tcp -h 127.0.0.1 -p 0")
        typed_peer.add_servants(adapter)
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


def client(proxy: str, peer: str) -> int:
    with _initialize(server=False) as communicator:
        return typed_peer.run_client(communicator, proxy, peer)
