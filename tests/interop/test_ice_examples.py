"""examples/ice_typed_client.py: aiocomm's typed proxy against a stock Ice 3.7
server that slice2py generated from the same examples/Hello.ice."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_typed_client_of_a_stock_ice_server(ice_peer: None) -> None:
    assert shutil.which("slice2py"), "slice2py (zeroc-ice-compilers) is not on PATH"
    done = subprocess.run([sys.executable, str(EXAMPLES / "ice_typed_client.py")],
                          capture_output=True, text=True, timeout=50, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "sayHello: Hello from Ice, aiocomm!" in output
    assert "greet   : Greeting(text='Ice greets aiocomm Ice greets aiocomm'" in output
    assert "mood=<Mood.cheerful: 5>, count=2)" in output
    assert "greet   : Greeting(text='Ice greets aiocomm', mood=<Mood.cheerful: 5>, count=1)" \
        in output
    assert "sayHello('') raised NoNameError(hint='Ice wants a name too')" in output
    assert "100 concurrent 4 KiB echoes intact: True" in output
