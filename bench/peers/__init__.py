"""The benchmarked stacks: one module per peer, each with ``server`` and ``client`` entry points.

This catalogue is read by the runner without importing any peer's library.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PeerSpec:
    name: str  # also the module name: bench.peers.<name>
    imports: str  # the module whose import decides whether the peer is installed
    dist: str  # the package that provides it (pip, or Debian for Ice)
    about: str
    # loop name -> why this peer can't run on it (reported as skipped, never dropped)
    unsupported_loops: dict[str, str] = field(default_factory=dict)


PEERS: tuple[PeerSpec, ...] = (
    PeerSpec(
        "aiocomm",
        "aiocomm",
        "aiocomm",
        "this project as users write it: an `async def echo` servant, default options",
    ),
    PeerSpec(
        "aiocomm_plain",
        "aiocomm",
        "aiocomm",
        "this project with a plain `def echo` servant",
    ),
    PeerSpec(
        "aiocomm_yield",
        "aiocomm",
        "aiocomm",
        "this project with an `async def echo` that awaits asyncio.sleep(0) once: a suspension",
    ),
    PeerSpec(
        "aiocomm_io_reads",
        "aiocomm",
        "aiocomm",
        "this project with Communicator(loop_reads=False): the I/O threads read every socket",
    ),
    PeerSpec(
        "raw_streams",
        "asyncio",
        "(stdlib)",
        "baseline: asyncio streams, length-prefixed frames, one connection",
    ),
    PeerSpec("pyzmq", "zmq.asyncio", "pyzmq", "zmq.asyncio ROUTER server / DEALER client"),
    PeerSpec("grpc_aio", "grpc.aio", "grpcio", "grpc.aio generic handler, raw bytes"),
    PeerSpec("grpclib", "grpclib", "grpclib", "grpclib with a raw-bytes codec"),
    PeerSpec(
        "pycapnp",
        "capnp",
        "pycapnp",
        "Cap'n Proto RPC, schema bench/echo.capnp",
        unsupported_loops={
            "uvloop": "pycapnp 2.2.4's server dies with SIGSEGV on uvloop when the first "
            "request arrives (its KJ/asyncio bridge; the default loop works)",
        },
    ),
    PeerSpec(
        "ice",
        "Ice",
        "python3-zeroc-ice (Debian) / zeroc-ice",
        "ZeroC Ice 3.7 Blobject server, ice_invokeAsync client via Ice.wrap_future",
    ),
)

# python -m bench.tls (issue 15): every process gets --tls DIR, the test PKI's certificates.
TLS_PEERS: tuple[PeerSpec, ...] = (
    PeerSpec(
        "aiocomm_tls",
        "aiocomm",
        "aiocomm",
        "the headline over an ssl endpoint, server-only authentication",
    ),
    PeerSpec(
        "aiocomm",
        "aiocomm",
        "aiocomm",
        "the headline over tcp: what TLS costs aiocomm",
    ),
    PeerSpec(
        "raw_streams_tls",
        "asyncio",
        "(stdlib)",
        "raw_streams over asyncio's TLS (start_server / open_connection with ssl=), "
        "each loop iteration's frames in one write: the baseline of the target",
    ),
    PeerSpec(
        "raw_streams_tls_unbatched",
        "asyncio",
        "(stdlib)",
        "the same with one write (one TLS record, one send) per frame, as raw_streams",
    ),
    PeerSpec("grpc_aio_tls", "grpc.aio", "grpcio", "grpc_aio with ssl credentials"),
)

BASELINE = "raw_streams"
SUBJECT = "aiocomm"
TLS_SUBJECT = "aiocomm_tls"


def by_name(name: str) -> PeerSpec:
    for spec in (*PEERS, *TLS_PEERS):
        if spec.name == name:
            return spec
    raise KeyError(name)
