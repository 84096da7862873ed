#!/usr/bin/env bash
# The Ice 3.8 interop peer for tests/interop (test_ice_interop.py,
# test_ice38_interop.py, the typed and IceGrid tests): ZeroC Ice 3.8 for
# Python in a venv of its own (default build/venv-ice38), made from pyenv's
# CPython 3.12:
#
#   .ci/ice38-peer.sh [venv]
#
# The peer runs as a separate process: it needs no aiocomm, and the test
# interpreter (3.11 to 3.13) needs no Ice, so the test venvs stay what
# `pip install -e ".[test]"` makes and the peer can be any 3.12.
# It comes from the prebuilt wheel in ../shared/wheels/ (seconds) when CI puts
# one beside the clone, else from PyPI, which builds it from source (10-25
# minutes on 2 cores). Nothing is installed when the venv already has it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

ice=3.8.3
venv=${1:-build/venv-ice38}
# The shared wheel is built for CPython 3.12, hence the interpreter.
wheel=../shared/wheels/zeroc_ice-$ice-cp312-cp312-linux_x86_64.whl

ice_version() {
  "$venv/bin/python" -c "import Ice; print(Ice.stringVersion())"
}

if [ ! -x "$venv/bin/python" ]; then
  python=$(bash .ci/pyenv-python.sh 3.12)
  "$python" -m venv "$venv"
fi
if [ "$(ice_version 2>/dev/null)" != "$ice" ]; then
  if [ -f "$wheel" ]; then
    "$venv/bin/python" -m pip install -q "$wheel"
  else
    echo "ice38-peer: no $wheel; building zeroc-ice $ice from source (10-25 minutes)" >&2
    "$venv/bin/python" -m pip install -q "zeroc-ice==$ice"
  fi
fi
# Checked, not assumed: a wheel that installs but does not import fails here.
installed=$(ice_version)
[ "$installed" = "$ice" ] || { echo "ice38-peer: $venv has Ice $installed, not $ice" >&2; exit 1; }
echo "ice38-peer: Ice $installed in $venv"
