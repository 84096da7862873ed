"""Presents results: the text table, the JSON file and the PNG chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.peers import PEERS, SUBJECT, PeerSpec
from bench.runner import Cell, Results

RATIO_LABEL = "aiocomm/peer"
RATIO_NOTE = (
    f"{RATIO_LABEL} = aiocomm req/s / that peer's req/s in the same loop, payload and "
    "in-flight cell (>1: aiocomm is faster)."
)
ORDER = {spec.name: index for index, spec in enumerate(PEERS)}


def _order(peers: tuple[PeerSpec, ...]) -> dict[str, int]:
    return {spec.name: index for index, spec in enumerate(peers)}


def _key(cell: Cell) -> tuple[str, int, int]:
    return cell.loop, cell.payload, cell.inflight


def _sorted(cells: list[Cell], order: dict[str, int] = ORDER) -> list[Cell]:
    return sorted(cells, key=lambda c: (c.loop, c.payload, c.inflight, order.get(c.peer, 99)))


def _size(payload: int) -> str:
    return f"{payload // 1024} KiB" if payload >= 1024 and payload % 1024 == 0 else f"{payload} B"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _megabytes(cell: Cell) -> str:
    """Payload bytes echoed per second (one way), in MB (10^6 bytes)."""
    return "-" if cell.rps is None else f"{cell.rps * cell.payload / 1e6:,.1f}"


def format_table(results: Results, subject_name: str = SUBJECT,
                 peers: tuple[PeerSpec, ...] = PEERS) -> str:
    """The table; the ratio column divides ``subject_name``'s req/s by each peer's,
    rows in the order of ``peers`` (bench.tls: aiocomm_tls against TLS_PEERS)."""
    order = _order(peers)
    subject = {_key(c): c.rps for c in results.cells
               if c.peer == subject_name and c.status == "ok"}
    ratio_label = RATIO_LABEL.replace(SUBJECT, subject_name)
    header = [
        "peer",
        "loop",
        "payload",
        "in-flight",
        "req/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        ratio_label,
        "note",
    ]
    rows: list[list[str]] = []
    previous: tuple[str, int, int] | None = None
    for cell in _sorted(results.cells, order):
        if previous is not None and _key(cell) != previous:
            rows.append([])
        previous = _key(cell)
        ratio = "-"
        base = subject.get(_key(cell))
        if cell.peer == subject_name and cell.status == "ok":
            ratio = "(self)"
        elif base and cell.rps:
            ratio = f"{base / cell.rps:.2f}x"
        note = "" if cell.status == "ok" else f"{cell.status}: {cell.reason[:70]}"
        rows.append(
            [
                cell.peer,
                cell.loop,
                _size(cell.payload),
                str(cell.inflight),
                _number(cell.rps),
                _megabytes(cell),
                _number(cell.p50_us, 1),
                _number(cell.p99_us, 1),
                ratio,
                note,
            ]
        )
    widths = [max([len(header[i])] + [len(r[i]) for r in rows if r]) for i in range(len(header))]
    right = {3, 4, 5, 6, 7, 8}

    def line(values: list[str]) -> str:
        cells = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) if r else "" for r in rows]
    out += ["", RATIO_NOTE.replace(SUBJECT, subject_name)]
    out += _round_notes(results, subject_name, order)
    out += _counter_notes(results, subject_name, order)
    out += _notes(results)
    return "\n".join(out)


# aiocomm's client-side counters, per 1000 requests of the measured window.
COUNTERS = (("native_gil_acquisitions", "GIL takes"), ("inbox_wakeups", "loop wake-ups"),
            ("write_calls", "writes"), ("read_calls", "reads"))


def _round_notes(results: Results, subject: str = SUBJECT,
                 order: dict[str, int] = ORDER) -> list[str]:
    repeat = int(results.config.get("repeat", 1))
    if repeat <= 1:
        return []
    out = ["", f"Each cell is the median of {repeat} interleaved rounds; {subject}'s rounds "
           "(req/s, in order; every peer's are in the JSON):"]
    for c in _sorted([c for c in results.cells if c.peer == subject and c.runs], order):
        out.append(f"  {c.loop} {_size(c.payload)} x{c.inflight}: "
                   + " ".join(_number(rps) for rps in c.runs))
    return out


def _counter_notes(results: Results, subject: str = SUBJECT,
                   order: dict[str, int] = ORDER) -> list[str]:
    rows = [c for c in _sorted(results.cells, order)
            if c.peer == subject and c.status == "ok" and c.counters and c.requests]
    if not rows:
        return []
    out = ["", f"{subject} client counters per 1000 requests (comm.stats(), measured window):"]
    for c in rows:
        per = {label: 1000 * c.counters.get(key, 0) / (c.requests or 1) for key, label in COUNTERS}
        text = ", ".join(f"{label} {value:.1f}" for label, value in per.items())
        out.append(f"  {c.loop} {_size(c.payload)} x{c.inflight}: {text}")
    return out


def _notes(results: Results) -> list[str]:
    out: list[str] = []
    missing = [p for p in results.peers if p.status == "missing"]
    if missing:
        out += ["", "Missing peers (not run):"]
        out += [f"  {p.name}: {p.reason}" for p in missing]
    skipped = [(p.name, loop, why) for p in results.peers for loop, why in p.skipped_loops.items()]
    if skipped:
        out += ["", "Skipped:"]
        out += [f"  {name} on {loop}: {why}" for name, loop, why in skipped]
    errors = [c for c in results.cells if c.status == "error"]
    if errors:
        out += ["", "Errors (present peer crashed):"]
        out += [f"  {c.peer} {c.loop} {_size(c.payload)} x{c.inflight}: {c.reason}" for c in errors]
    present = [p for p in results.peers if p.status == "present"]
    if present:
        out += ["", "Peers run:"]
        runner = results.config.get("runner_python", sys.executable)
        for p in present:
            where = "" if p.python == runner else f" under {p.python}"
            out.append(f"  {p.name} {p.version}{where}".rstrip())
    return out


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.to_json(), indent=2) + "\n")


def write_png(results: Results, path: Path, peers_order: tuple[PeerSpec, ...] = PEERS) -> str:
    """Draw req/s bars per peer; returns a line saying what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # optional dependency
        return f"no PNG: matplotlib is not importable ({type(exc).__name__}: {exc})"
    ok = [c for c in results.cells if c.status == "ok" and c.rps]
    if not ok:
        return "no PNG: no successful cell to draw"
    loops = sorted({c.loop for c in ok})
    payloads = sorted({c.payload for c in ok})
    inflights = sorted({c.inflight for c in ok})
    order = _order(peers_order)
    peers = sorted({c.peer for c in ok}, key=lambda name: order.get(name, 99))
    by_key = {(c.peer, c.loop, c.payload, c.inflight): c for c in ok}
    figure, axes = plt.subplots(
        len(loops), len(payloads), squeeze=False, figsize=(5.5 * len(payloads), 3.8 * len(loops))
    )
    width = 0.8 / len(peers)
    for row, loop in enumerate(loops):
        for col, payload in enumerate(payloads):
            ax = axes[row][col]
            for index, peer in enumerate(peers):
                xs, ys = [], []
                for group, inflight in enumerate(inflights):
                    cell = by_key.get((peer, loop, payload, inflight))
                    if cell is not None and cell.rps is not None:
                        xs.append(group + (index - (len(peers) - 1) / 2) * width)
                        ys.append(cell.rps)
                ax.bar(xs, ys, width=width, label=peer)
            ax.set_xticks(range(len(inflights)), [f"{n} in flight" for n in inflights])
            ax.set_yscale("log")
            ax.set_ylabel("req/s (log)")
            ax.set_title(f"{loop}, {_size(payload)} payload")
            ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(f"echo req/s, {results.config.get('seconds')} s per cell (higher is better)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"chart written to {path}"
