"""Finds which peers are installed, runs each peer's server and client processes, collects cells.

One server process and one client process per (peer, loop); the client runs every
(payload, in-flight) cell in turn over one connection and prints a JSON line per cell.
Every process has a hard deadline: its own watchdog and, past that, SIGKILL from here.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.peers import SUBJECT, PeerSpec

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
START_TIMEOUT = 30.0  # server: spawn to READY
SLACK = 30.0  # client: imports + connect, on top of the measured time
STOP_GRACE = 3.0


@dataclass
class Config:
    peers: list[PeerSpec]
    loops: list[str]
    payloads: list[int]
    inflight: list[int]
    seconds: float
    warmup: float
    strict_aiocomm: bool = False
    # Rounds over every (peer, loop), interleaved; each cell reports its
    # median round. A shared VM's speed drifts by 2x within minutes, and
    # interleaving lets every peer meet the same slow and fast phases.
    repeat: int = 1
    # Given to every peer process, server and client (bench.tls: ["--tls", DIR]).
    peer_args: list[str] = field(default_factory=list)


@dataclass
class PeerStatus:
    name: str
    status: str  # "present" | "missing"
    reason: str = ""
    python: str = ""
    version: str = ""
    skipped_loops: dict[str, str] = field(default_factory=dict)


@dataclass
class Cell:
    peer: str
    loop: str
    payload: int
    inflight: int
    status: str  # "ok" | "error" | "skipped"
    rps: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    requests: int | None = None
    reason: str = ""
    python: str = ""
    loop_impl: str = ""
    # The client's own counters over the measured window, for peers that
    # have them (aiocomm: comm.stats() deltas).
    counters: dict[str, int] = field(default_factory=dict)
    # req/s of every round, in order, when the run has several (--repeat).
    runs: list[float] = field(default_factory=list)


@dataclass
class Results:
    config: dict[str, Any]
    peers: list[PeerStatus]
    cells: list[Cell]
    started: float
    finished: float = 0.0

    def failed(self) -> list[Cell]:
        """Cells of present peers that crashed (what makes the run fail)."""
        return [cell for cell in self.cells if cell.status == "error"]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "started": self.started,
            "finished": self.finished,
            "peers": [asdict(peer) for peer in self.peers],
            "cells": [asdict(cell) for cell in self.cells],
        }


_PROBE = """
import importlib, importlib.metadata, json, sys
out = {"python": sys.version.split()[0]}
try:
    module = importlib.import_module(sys.argv[1])
    if getattr(module, "__file__", None) is None and hasattr(module, "__path__"):
        where = ", ".join(sorted(set(module.__path__)))
        raise ImportError(f"{sys.argv[1]} is only a namespace package here ({where}); not built?")
    version = ""
    try:
        version = importlib.metadata.version(sys.argv[2])
    except Exception:
        version = str(getattr(module, "__version__", "") or "")
    if not version and hasattr(module, "stringVersion"):
        version = module.stringVersion()
    out["version"] = version
except BaseException as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
try:
    import uvloop
    out["uvloop"] = uvloop.__version__
except BaseException as exc:
    out["uvloop_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _interpreters() -> list[str]:
    candidates = [sys.executable]
    if os.path.exists(SYSTEM_PYTHON) and os.path.realpath(SYSTEM_PYTHON) != os.path.realpath(
        sys.executable
    ):
        candidates.append(SYSTEM_PYTHON)
    return candidates


def _probe_one(python: str, spec: PeerSpec) -> dict[str, Any]:
    dist = spec.dist.split()[0]
    try:
        done = subprocess.run(
            [python, "-c", _PROBE, spec.imports, dist],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": "import timed out after 60 s"}
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"probe failed (rc={done.returncode}): {_tail(done.stderr)}"}
    return result


def probe(spec: PeerSpec, loops: list[str]) -> PeerStatus:
    """Which interpreter has the peer's library (first wins) and which loops it can run."""
    reasons: dict[str, list[str]] = {}
    for python in _interpreters():
        found = _probe_one(python, spec)
        if "error" in found:
            reasons.setdefault(str(found["error"]), []).append(python)
            continue
        version = str(found.get("version", "")) or f"(Python {found.get('python', '?')})"
        status = PeerStatus(spec.name, "present", python=python, version=version)
        for loop in loops:
            if loop in spec.unsupported_loops:
                status.skipped_loops[loop] = spec.unsupported_loops[loop]
            elif loop == "uvloop" and "uvloop" not in found:
                status.skipped_loops[loop] = (
                    f"uvloop not installed for {python} ({found.get('uvloop_error', '')})"
                )
        return status
    reason = "; ".join(f"{error} [{', '.join(pythons)}]" for error, pythons in reasons.items())
    return PeerStatus(spec.name, "missing", reason=f"not importable: {reason}")


def _tail(text: str, lines: int = 4) -> str:
    """The last meaningful lines of a child's stderr (traceback decoration dropped)."""
    kept = []
    for line in text.strip().splitlines():
        line = line.strip().lstrip("|+ ").strip()
        if line and set(line) - set("^~-+| "):
            kept.append(line)
    return " | ".join(kept[-lines:])[-1000:]


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group we created for this child (start_new_session)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _read_lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


class _Server:
    """A peer's server process; ``start`` returns (host, port) from its READY line."""

    def __init__(self, argv: list[str], lifetime: float) -> None:
        self.argv = [*argv, "--max-seconds", f"{lifetime:.0f}"]
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> tuple[str, int]:
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        threading.Thread(
            target=_read_lines, args=(self.process.stdout, self.lines), daemon=True
        ).start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"server not ready after {START_TIMEOUT:.0f} s: {self.stderr_tail()}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait(timeout=10)
                raise RuntimeError(
                    f"server exited (rc={self.process.returncode}) before "
                    f"READY: {self.stderr_tail()}"
                )
            words = line.split()
            if len(words) == 3 and words[0] == "READY":
                return words[1], int(words[2])

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return _tail(self.stderr.read()) or "(no stderr)"

    def died(self) -> str:
        if self.process is not None and self.process.poll() is not None:
            return f"server died (rc={self.process.returncode}): {self.stderr_tail()}"
        return ""

    def stop(self) -> None:
        if self.process is not None:
            if self.process.stdin is not None:
                try:
                    self.process.stdin.close()  # the server exits on stdin EOF
                except OSError:
                    pass
            try:
                self.process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
            _kill_group(self.process)
        self.stderr.close()


def _run_client(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    """Run a client to completion; (returncode or None on timeout, stdout, stderr)."""
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate()
        return None, out, err + f"\nclient killed after {timeout:.0f} s"
    finally:
        _kill_group(process)


def run_pair(spec: PeerSpec, status: PeerStatus, loop: str, config: Config) -> list[Cell]:
    """All (payload, in-flight) cells of one peer on one loop."""
    wanted = [(size, inflight) for size in config.payloads for inflight in config.inflight]

    def cell(size: int, inflight: int, **values: Any) -> Cell:
        return Cell(spec.name, loop, size, inflight, python=status.python, **values)

    if loop in status.skipped_loops:
        return [cell(s, n, status="skipped", reason=status.skipped_loops[loop]) for s, n in wanted]

    module = f"bench.peers.{spec.name}"
    client_budget = len(wanted) * (config.seconds + config.warmup) + SLACK
    server = _Server(
        [status.python, "-m", module, "server", "--loop", loop, *config.peer_args],
        lifetime=START_TIMEOUT + client_budget + 30,
    )
    try:
        try:
            host, port = server.start()
        except Exception as exc:
            return [cell(s, n, status="error", reason=str(exc)) for s, n in wanted]
        argv = [
            status.python,
            "-m",
            module,
            "client",
            "--loop",
            loop,
            "--host",
            host,
            "--port",
            str(port),
            "--payloads",
            ",".join(map(str, config.payloads)),
            "--inflight",
            ",".join(map(str, config.inflight)),
            "--seconds",
            repr(config.seconds),
            "--warmup",
            repr(config.warmup),
            "--max-seconds",
            f"{client_budget + 10:.0f}",
            *config.peer_args,
        ]
        returncode, out, err = _run_client(argv, client_budget + 15)
        server_note = server.died()
    finally:
        server.stop()

    got: dict[tuple[int, int], dict[str, Any]] = {}
    for line in out.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "payload" in item and "inflight" in item:
            got[(int(item["payload"]), int(item["inflight"]))] = item
    suffix = f"; {server_note}" if server_note else ""
    cells = []
    earlier_failed = False
    for size, inflight in wanted:
        item = got.get((size, inflight))
        if item is None:
            why = (
                "not run: an earlier cell failed"
                if earlier_failed
                else f"no result (client rc={returncode}): {_tail(err)}"
            )
            cells.append(cell(size, inflight, status="error", reason=why + suffix))
            earlier_failed = True
        elif "error" in item:
            cells.append(cell(size, inflight, status="error", reason=item["error"] + suffix))
            earlier_failed = True
        else:
            cells.append(
                cell(
                    size,
                    inflight,
                    status="ok",
                    rps=item["rps"],
                    p50_us=item["p50_us"],
                    p99_us=item["p99_us"],
                    requests=item["requests"],
                    loop_impl=item.get("loop_impl", ""),
                    counters=item.get("counters", {}),
                )
            )
    return cells


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(config: Config) -> Results:
    results = Results(
        config={
            "peers": [spec.name for spec in config.peers],
            "loops": config.loops,
            "payloads": config.payloads,
            "inflight": config.inflight,
            "seconds": config.seconds,
            "warmup": config.warmup,
            "repeat": config.repeat,
            **({"peer_args": config.peer_args} if config.peer_args else {}),
            "runner_python": sys.executable,
            "cpus": os.cpu_count(),
        },
        peers=[],
        cells=[],
        started=time.time(),
    )
    statuses = {}
    for spec in config.peers:
        status = probe(spec, config.loops)
        statuses[spec.name] = status
        results.peers.append(status)
        where = f"{status.python} {status.version}" if status.status == "present" else status.reason
        _log(f"peer {spec.name}: {status.status} ({where})")
    jobs = [
        (spec, loop)
        for loop in config.loops
        for spec in config.peers
        if statuses[spec.name].status == "present"
    ]
    rounds: dict[tuple[str, str, int, int], list[Cell]] = {}
    step, steps = 0, len(jobs) * config.repeat
    for round_number in range(1, config.repeat + 1):
        for spec, loop in jobs:
            step += 1
            of_round = f", round {round_number}/{config.repeat}" if config.repeat > 1 else ""
            _log(f"[{step}/{steps}] {spec.name} on {loop}{of_round}")
            cells = run_pair(spec, statuses[spec.name], loop, config)
            reasons: dict[str, list[str]] = {}
            for bad in (c for c in cells if c.status == "error"):
                reasons.setdefault(bad.reason, []).append(f"{bad.payload} B x{bad.inflight}")
            for reason, which in reasons.items():
                _log(f"  error ({', '.join(which)}): {reason}")
            for cell in cells:
                key = (cell.peer, cell.loop, cell.payload, cell.inflight)
                rounds.setdefault(key, []).append(cell)
    results.cells.extend(_median_cell(cells) for cells in rounds.values())
    _demote_broken_subject(results, config)
    results.finished = time.time()
    return results


def _median_cell(rounds: list[Cell]) -> Cell:
    """One cell from its rounds: the first error if any round crashed, else the round
    with the median req/s (the lower middle one for an even count), whose latencies and
    counters come from that same run, with every round's req/s in ``runs``."""
    errors = [cell for cell in rounds if cell.status == "error"]
    if errors:
        return errors[0]
    measured = sorted((cell for cell in rounds if cell.status == "ok" and cell.rps),
                      key=lambda cell: cell.rps or 0.0)
    if not measured:
        return rounds[0]
    median = measured[(len(measured) - 1) // 2]
    if len(rounds) > 1:
        median.runs = [cell.rps for cell in rounds if cell.rps is not None]
    return median


def _demote_broken_subject(results: Results, config: Config) -> None:
    """aiocomm that crashes is reported as missing (it may not work yet), unless strict."""
    if config.strict_aiocomm:
        return
    broken = [c for c in results.cells if c.peer == SUBJECT and c.status == "error"]
    if not broken:
        return
    for status in results.peers:
        if status.name == SUBJECT:
            status.status = "missing"
            status.reason = f"broken at run time: {broken[0].reason}"
    results.cells = [c for c in results.cells if c.peer != SUBJECT]
