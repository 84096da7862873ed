"""``python -m bench``: echo benchmark of aiocomm against the installed peers.

Exit status: 0 when every installed peer ran, 1 when a present peer crashed
(aiocomm crashing counts only with ``--require-aiocomm``), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import report
from bench.peers import PEERS, SUBJECT, by_name
from bench.peers.common import LOOPS
from bench.runner import Config, run

RESULTS = Path(__file__).resolve().parent / "results"
SMOKE_SECONDS = 0.3
SMOKE_WARMUP = 0.1


def _names(text: str) -> list[str]:
    names = [item.strip() for item in text.split(",") if item.strip()]
    known = [spec.name for spec in PEERS]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}; known: {', '.join(known)}")
    return names


def _loops(text: str) -> list[str]:
    loops = [item.strip() for item in text.split(",") if item.strip()]
    for loop in loops:
        if loop not in LOOPS:
            raise argparse.ArgumentTypeError(f"unknown loop {loop!r}; known: {', '.join(LOOPS)}")
    return loops


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError("expected positive integers, comma-separated")
    return values


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 120:
        raise argparse.ArgumentTypeError("expected 0 < seconds <= 120")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Echo RPC benchmark: aiocomm side by side with raw asyncio streams, "
        "pyzmq, grpc.aio, grpclib, pycapnp and ZeroC Ice (those installed).",
    )
    parser.add_argument(
        "--peers",
        type=_names,
        default=[spec.name for spec in PEERS],
        help="comma-separated subset of: " + ",".join(s.name for s in PEERS),
    )
    parser.add_argument(
        "--loops", type=_loops, default=list(LOOPS), help="comma-separated: asyncio,uvloop"
    )
    parser.add_argument(
        "--payloads",
        type=_positive_ints,
        default=None,
        help="payload sizes in bytes (default 16,4096,65536,1048576; smoke: 16,65536)",
    )
    parser.add_argument(
        "--inflight",
        type=_positive_ints,
        default=[1, 64],
        help="requests in flight per client (default 1,64)",
    )
    parser.add_argument(
        "--seconds", type=_seconds, default=3.0, help="measured duration of each cell (default 3)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="unmeasured warm-up before each cell (default 1, smoke 0.1)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="interleaved rounds over every peer; each cell reports its median round "
        "(default 1)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"quick pass over everything installed ({SMOKE_SECONDS} s per cell)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default bench/results/latest.json, smoke: smoke.json)",
    )
    parser.add_argument(
        "--png", type=Path, default=None, help="chart file (default next to the JSON file, .png)"
    )
    parser.add_argument("--no-png", action="store_true", help="don't draw the chart")
    parser.add_argument(
        "--require-aiocomm",
        action="store_true",
        help="fail (exit 1) when aiocomm is missing or crashes",
    )
    args = parser.parse_args(argv)
    if args.payloads is None:
        # A smoke window is too short for 64 MiB in flight; 64 KiB still
        # takes every peer through its large-message path.
        args.payloads = [16, 65536] if args.smoke else [16, 4096, 65536, 1 << 20]
    if args.smoke:
        args.seconds = SMOKE_SECONDS
    if args.warmup is None:
        args.warmup = SMOKE_WARMUP if args.smoke else 1.0
    if not 0 <= args.warmup <= 60:
        parser.error("--warmup must be within 0..60 s")
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be within 1..20")
    if args.json is None:
        args.json = RESULTS / ("smoke.json" if args.smoke else "latest.json")
    if args.png is None:
        args.png = args.json.with_suffix(".png")
    return args


# Native GIL takes per 1000 requests that --require-aiocomm tolerates (issue 4).
GIL_TAKES_MAX = 10


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(
        peers=[by_name(name) for name in args.peers],
        loops=args.loops,
        payloads=args.payloads,
        inflight=args.inflight,
        seconds=args.seconds,
        warmup=args.warmup,
        strict_aiocomm=args.require_aiocomm,
        repeat=args.repeat,
    )
    results = run(config)
    print(report.format_table(results))
    report.write_json(results, args.json)
    print(f"\nresults written to {args.json}")
    print("no PNG: --no-png" if args.no_png else report.write_png(results, args.png))

    failed = results.failed()
    subject_missing = any(p.name == SUBJECT and p.status == "missing" for p in results.peers)
    if failed:
        print(f"FAILED: {len(failed)} cell(s) of installed peers crashed", file=sys.stderr)
        return 1
    if args.require_aiocomm and subject_missing:
        print("FAILED: aiocomm is missing (--require-aiocomm)", file=sys.stderr)
        return 1
    if args.require_aiocomm:
        # A property, not a speed: native threads stay off the GIL under load.
        for cell in results.cells:
            if cell.peer != SUBJECT or cell.status != "ok" or not cell.requests:
                continue
            takes = 1000 * cell.counters.get("native_gil_acquisitions", 0) / cell.requests
            if takes >= GIL_TAKES_MAX:
                print(f"FAILED: aiocomm's native threads took the GIL {takes:.1f} times per 1000 "
                      f"requests ({cell.loop}, {cell.payload} B x{cell.inflight}); the limit is "
                      f"{GIL_TAKES_MAX}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
