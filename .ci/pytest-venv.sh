#!/usr/bin/env bash
# The README's test command on another CPython from pyenv, in its own venv:
#
#   .ci/pytest-venv.sh 3.12 [pytest args...]
#
# The venv is build/venv-<version>; `pip install -e ".[test]"` builds the
# extension in build/{wheel_tag}, which is per ABI, so venvs of different
# versions never share a build dir.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

version=$1
shift
python=$(bash .ci/pyenv-python.sh "$version")

venv=build/venv-$version
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "pytest-venv: $("$venv/bin/python" --version) in $venv"
"$venv/bin/python" -m pip install -q -e ".[test]"
"$venv/bin/python" -m pytest "$@"
