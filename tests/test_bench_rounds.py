"""bench --repeat: how a cell is chosen from its interleaved rounds (pure logic, no peers)."""

from __future__ import annotations

from bench.runner import Cell, _median_cell


def cell(rps: float | None, status: str = "ok", reason: str = "") -> Cell:
    return Cell(peer="aiocomm", loop="uvloop", payload=16, inflight=64, status=status,
                rps=rps, p50_us=1e6 / rps if rps else None, reason=reason)


def test_the_median_round_is_reported_with_every_round_kept() -> None:
    rounds = [cell(300.0), cell(100.0), cell(200.0)]
    chosen = _median_cell(rounds)
    assert chosen.rps == 200.0
    assert chosen.p50_us == 1e6 / 200.0  # latencies come from that same round
    assert chosen.runs == [300.0, 100.0, 200.0]


def test_an_even_count_takes_the_lower_middle_round() -> None:
    assert _median_cell([cell(4.0), cell(1.0), cell(3.0), cell(2.0)]).rps == 2.0


def test_a_crash_in_any_round_is_reported_not_hidden_by_the_others() -> None:
    chosen = _median_cell([cell(100.0), cell(None, "error", "server died"), cell(120.0)])
    assert chosen.status == "error"
    assert chosen.reason == "server died"


def test_a_single_round_carries_no_run_list() -> None:
    chosen = _median_cell([cell(50.0)])
    assert chosen.rps == 50.0
    assert chosen.runs == []


def test_skipped_rounds_stay_skipped() -> None:
    chosen = _median_cell([cell(None, "skipped", "no uvloop"), cell(None, "skipped", "no uvloop")])
    assert chosen.status == "skipped"
