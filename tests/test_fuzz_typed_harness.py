"""The Python half of the typed decoder's fuzz target (cpp/fuzz/typed_harness.py),
against the installed extension: every descriptor's seeds decode and re-encode
to the same bytes, and every cut of every seed decodes or raises MarshalError.

.ci/fuzz.sh runs the harness under ASan in an embedded interpreter; this keeps
it (and the encoders that write its seeds) from rotting between fuzz runs. It
runs in a subprocess: loading the test Slice files again re-registers their
classes and exceptions with the codec, which must not leak into other tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    sys.path.insert(0, sys.argv[1])
    import aiocomm
    import typed_harness

    h = typed_harness.harness()
    try:
        targets = dict(h.targets(None))
        width = h.selector_width()
        names = sorted(targets)
        assert len(names) > 150, len(names)
        # Every kind of descriptor is there.
        for part in ("._t_", "._r_", "._p_", "._b_", ".in", ".out", ".exc"):
            assert any(part in n for n in names), part
        count = h.write_seeds(sys.argv[2])
        seeds = sorted(Path(sys.argv[2]).iterdir())
        assert count == len(seeds) >= len(names), (count, len(seeds))
        covered = set()
        cuts = 0
        for seed in seeds:
            data = seed.read_bytes()
            name = names[int.from_bytes(data[:width], "big") % len(names)]
            assert seed.name.startswith(name + "."), (seed.name, name)
            covered.add(name)
            body = data[width:]
            for cut in range(len(body)):
                cuts += 1
                try:
                    targets[name](body[:cut])
                except aiocomm.MarshalError:
                    pass
        assert covered == set(names), set(names) - covered
        print(f"ok {len(names)} targets, {count} seeds, {cuts} cuts")
    finally:
        typed_harness.destroy()
""")


def test_every_descriptor_has_seeds_and_every_cut_is_a_marshal_error_or_a_value(
        tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "cpp" / "fuzz"), str(tmp_path / "seeds")],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.startswith("ok "), result.stdout
