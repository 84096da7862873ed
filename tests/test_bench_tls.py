"""bench.tls: how the issue's targets are judged from cells (pure logic, no peers)."""

from __future__ import annotations

import importlib.util

import pytest

from bench.peers import TLS_PEERS, TLS_SUBJECT
from bench.peers.common import parse_args
from bench.runner import Cell
from bench.tls import Verdict, evaluate, format_targets


def cell(peer: str, loop: str, rps: float | None, payload: int = 16, inflight: int = 64,
         status: str = "ok") -> Cell:
    return Cell(peer=peer, loop=loop, payload=payload, inflight=inflight, status=status, rps=rps)


def verdict(verdicts: list[Verdict], target: int, loop: str, payload: int = 16) -> Verdict:
    [found] = [v for v in verdicts if v.target == target and v.loop == loop
               and v.payload == payload and not v.reference]
    return found


def test_each_target_is_judged_on_its_own_cells() -> None:
    cells = [
        cell(TLS_SUBJECT, "uvloop", 40_000.0), cell("raw_streams_tls", "uvloop", 20_000.0),
        cell(TLS_SUBJECT, "uvloop", 9_000.0, payload=4096),
        cell("raw_streams_tls", "uvloop", 5_000.0, payload=4096),
        cell("aiocomm", "uvloop", 50_000.0),  # 40k / 50k = 0.8
        cell(TLS_SUBJECT, "asyncio", 30_000.0), cell("aiocomm", "asyncio", 41_000.0),  # 0.73
        # Other cells don't count: 1 in flight, and raw TLS streams on asyncio.
        cell(TLS_SUBJECT, "uvloop", 1.0, inflight=1), cell("raw_streams_tls", "uvloop", 9e9,
                                                           inflight=1),
        cell("raw_streams_tls", "asyncio", 9e9),
    ]
    verdicts = evaluate(cells)
    first = verdict(verdicts, 1, "uvloop")
    assert first.ratio == 2.0 and first.met  # exactly the target meets it
    assert verdict(verdicts, 2, "uvloop").ratio == pytest.approx(0.8)
    assert verdict(verdicts, 2, "uvloop").met
    assert verdict(verdicts, 2, "asyncio").met is False
    assert {(v.target, v.loop) for v in verdicts if not v.reference} == {
        (1, "uvloop"), (2, "uvloop"), (2, "asyncio")}
    # Target 1 is judged at 16 B; every payload, its ceiling and the
    # one-write-per-frame peer are shown beside it, never judged.
    references = {(v.subject, v.peer, v.payload): v.ratio for v in verdicts if v.reference}
    assert all(v.met is None for v in verdicts if v.reference)
    assert references[(TLS_SUBJECT, "raw_streams_tls", 4096)] == pytest.approx(1.8)
    assert references[("aiocomm", "raw_streams_tls", 16)] == pytest.approx(2.5)
    assert references[(TLS_SUBJECT, "raw_streams_tls_unbatched", 16)] is None
    text = format_targets(verdicts)
    assert text.count("uvloop 16 B x64: 2.00 met") == 1
    assert "uvloop 4 KiB x64: 1.80\n" in text  # a reference: no verdict
    assert "MISSED" not in text.split("(2)")[0]
    assert "asyncio 16 B x64: 0.73 MISSED" in text


def test_a_crashed_or_absent_cell_is_not_measured_rather_than_missed() -> None:
    verdicts = evaluate([
        cell(TLS_SUBJECT, "uvloop", 40_000.0),
        cell("raw_streams_tls", "uvloop", None, status="error"),
    ])
    assert verdict(verdicts, 1, "uvloop").ratio is None
    assert verdict(verdicts, 1, "uvloop").met is None
    assert verdict(verdicts, 2, "asyncio").met is None  # aiocomm over tcp never ran
    assert "uvloop 16 B x64: not measured" in format_targets(verdicts)


def test_every_tls_peer_is_a_module_and_peers_take_the_certificates() -> None:
    for spec in TLS_PEERS:
        assert importlib.util.find_spec(f"bench.peers.{spec.name}") is not None, spec.name
    assert parse_args(["server", "--tls", "/pki"]).tls == "/pki"
    assert parse_args(["server"]).tls is None
