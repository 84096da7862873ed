#!/usr/bin/env bash
# Prints the newest pyenv CPython of a minor version, e.g. `.ci/pyenv-python.sh 3.12`
# -> /root/.pyenv/versions/3.12.1/bin/python. The interpreter itself, not the
# shim: a shim resolves through pyenv's global/local settings, which differ by
# machine and directory.
set -euo pipefail

version=$1
root=${PYENV_ROOT:-$HOME/.pyenv}
python=$(ls -d "$root"/versions/"$version".*/bin/python 2>/dev/null | sort -V | tail -n 1)
[ -n "$python" ] || { echo "pyenv-python: no CPython $version under $root/versions" >&2; exit 1; }
echo "$python"
