"""Typed echo side by side (issue 12 item 6): aiocomm's typed proxies against IcePy's
generated code and against aiocomm's raw-bytes echo of the same encoded size.

    python -m bench.typed                       # 3 s cells, asyncio and uvloop
    python -m bench.typed --smoke               # 1.5 s cells
    python -m bench.typed --loops uvloop --seconds 5 --repeat 3

Workloads (``bench/typed_echo.ice``): ``Rec``, a struct of ten mixed fields (two ints,
two longs, two doubles, two strings, an enum, an eight-int sequence), echoed one at a
time (``echoRec``) and as a sequence of 1,000 (``echoRecs``), 64 calls in flight.
Peers: ``aiocomm_typed`` (``aiocomm.slice.load``), ``ice_typed`` (Ice 3.7's slice2py,
under ``/usr/bin/python3``), ``ice38_typed`` (the same module under
``AIOCOMM_ICE38_PYTHON`` when set), and ``aiocomm`` raw bytes sized as the typed request's
encapsulation content. The table gives each peer's calls/s and the issue's targets:
typed/raw >= 0.6 and typed/IcePy >= 5 for one Rec, typed/IcePy >= 3 for 1,000.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.peers import PeerSpec, by_name
from bench.peers.typed_common import encoded_size
from bench.runner import Cell, Config, PeerStatus, _probe_one, probe, run_pair

WORKLOADS = {"rec": 1, "recs1000": 1000}
INFLIGHT = 64
TYPED = PeerSpec("aiocomm_typed", "aiocomm", "aiocomm", "aiocomm typed proxies and servants")
ICE_TYPED = PeerSpec("ice_typed", "Ice", "python3-zeroc-ice", "IcePy with slice2py's code")
# (subject, peer, workload, target ratio)
TARGETS = [
    ("aiocomm_typed", "aiocomm", "rec", 0.6),
    ("aiocomm_typed", "ice_typed", "rec", 5.0),
    ("aiocomm_typed", "ice_typed", "recs1000", 3.0),
    ("aiocomm_typed", "ice38_typed", "rec", 5.0),  # when AIOCOMM_ICE38_PYTHON is set
    ("aiocomm_typed", "ice38_typed", "recs1000", 3.0),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each cell's median")
    parser.add_argument("--smoke", action="store_true", help="1.5 s cells, one round")
    parser.add_argument("--json", type=Path, default=Path("bench/results/typed.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.seconds, args.warmup, args.repeat = 1.5, 0.5, 1
    loops = [loop for loop in args.loops.split(",") if loop]
    plans: list[tuple[str, PeerSpec, PeerStatus, list[int]]] = []
    counts = list(WORKLOADS.values())
    for label, spec, payloads in (
        ("aiocomm_typed", TYPED, counts),
        ("ice_typed", ICE_TYPED, counts),
        ("aiocomm", by_name("aiocomm"), [encoded_size(n) for n in counts]),
    ):
        plans.append((label, spec, probe(spec, loops), payloads))
    ice38 = os.environ.get("AIOCOMM_ICE38_PYTHON")
    if ice38:
        found = _probe_one(ice38, ICE_TYPED)
        status = PeerStatus("ice_typed", "missing", reason=str(found.get("error")))
        if "error" not in found:
            status = PeerStatus("ice_typed", "present", python=ice38)
            for loop in loops:
                if loop == "uvloop" and "uvloop" not in found:
                    status.skipped_loops[loop] = f"uvloop not installed for {ice38}"
        plans.append(("ice38_typed", ICE_TYPED, status, counts))
    cells: dict[tuple[str, str, str], list[Cell]] = {}
    failed = False
    for _ in range(args.repeat):
        for label, spec, status, payloads in plans:
            if status.status != "present":
                print(f"{label}: missing: {status.reason}", file=sys.stderr)
                continue
            for loop in loops:
                config = Config([spec], [loop], payloads, [INFLIGHT], args.seconds, args.warmup)
                for cell, workload in zip(run_pair(spec, status, loop, config), WORKLOADS,
                                          strict=True):
                    cells.setdefault((label, loop, workload), []).append(cell)
                    if cell.status == "error":
                        failed = True
                        print(f"{label} {loop} {workload}: {cell.reason}", file=sys.stderr)

    def rps(label: str, loop: str, workload: str) -> float | None:
        values = [c.rps for c in cells.get((label, loop, workload), []) if c.rps is not None]
        return statistics.median(values) if values else None

    print(f"typed echo, {INFLIGHT} in flight, calls/s (median of {args.repeat} round(s))")
    labels = [label for label, *_ in plans]
    print(f"{'loop':8} {'workload':9} " + " ".join(f"{label:>14}" for label in labels))
    for loop in loops:
        for workload in WORKLOADS:
            row = [rps(label, loop, workload) for label in labels]
            print(f"{loop:8} {workload:9} " + " ".join(
                f"{v:14.0f}" if v is not None else f"{'-':>14}" for v in row))
    print("targets")
    report: list[dict[str, Any]] = []
    for subject, peer, workload, target in TARGETS:
        if peer not in labels:
            continue
        for loop in loops:
            a, b = rps(subject, loop, workload), rps(peer, loop, workload)
            peer_loop = loop
            if b is None and loop != "asyncio":
                # IcePy dispatches and reads on its own threads; where it cannot run on
                # this loop (no uvloop for its interpreter), compare with its asyncio cell.
                b, peer_loop = rps(peer, "asyncio", workload), "asyncio"
            ratio = a / b if a and b else None
            verdict = "-" if ratio is None else ("met" if ratio >= target else "MISSED")
            shown = f"{ratio:.2f}" if ratio is not None else "-"
            against = "" if peer_loop == loop else f" (peer on {peer_loop})"
            print(f"  {subject}/{peer} {workload} {loop}{against}: {shown} "
                  f"(target >= {target}) {verdict}")
            report.append({"subject": subject, "peer": peer, "workload": workload, "loop": loop,
                           "peer_loop": peer_loop, "ratio": ratio, "target": target})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "encoded_sizes": {w: encoded_size(n) for w, n in WORKLOADS.items()},
        "cells": [asdict(c) for runs in cells.values() for c in runs],
        "targets": report,
    }, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
