#!/usr/bin/env bash
# Sanitizer builds (issue 5, item 2). Any sanitizer report fails the script.
#
#   1. The core's C++ tests (cpp/tests: protocol, lifecycle, concurrency)
#      under ASan+UBSan and under TSan, each in its own build dir (gcc).
#   2. The Python suite's core and lifecycle part against an ASan+UBSan build
#      of the extension, installed in its own venv (build/venv-asan) from its
#      own build dir; the interpreter is not instrumented, so the runtimes
#      are preloaded. TSan is not run under Python: an uninstrumented
#      CPython and uvloop make it report false races (and TSan cannot be
#      preloaded into a running interpreter reliably); the C++ tests in
#      step 1 are the lifecycle and concurrency tests under TSan.
#
#   SANITIZERS_PYTEST   the pytest arguments of step 2 (default below)
#   SANITIZERS_SKIP     "python" to skip step 2
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

reports=$PWD/build/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"

# Reports go to files (one per process, subprocesses included) as well as
# failing the process: the check at the end catches a report that a test
# swallowed (a child process whose exit status nobody looked at).
common=halt_on_error=1:abort_on_error=1:print_summary=1
export ASAN_OPTIONS="$common:detect_leaks=1:detect_stack_use_after_return=1:strict_init_order=1:log_path=$reports/asan"
export UBSAN_OPTIONS="$common:print_stacktrace=1:log_path=$reports/ubsan"
export TSAN_OPTIONS="$common:second_deadlock_stack=1:log_path=$reports/tsan"

fail_on_reports() {  # what
  if compgen -G "$reports/*" >/dev/null; then
    for f in "$reports"/*; do echo "=== $f"; cat "$f"; done >&2
    echo "sanitizers: $1: sanitizer reports above" >&2
    exit 1
  fi
}

# --- 1. C++ core tests ---
for sanitize in address,undefined thread; do
  dir=build/san-${sanitize//,/-}
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DAIOCOMM_BUILD_PYTHON=OFF -DAIOCOMM_BUILD_TESTS=ON -DAIOCOMM_SANITIZE="$sanitize" >/dev/null
  cmake --build "$dir" -j 2
  echo "sanitizers: C++ core tests under $sanitize"
  ctest --test-dir "$dir" --output-on-failure
  fail_on_reports "C++ core tests under $sanitize"
  echo "sanitizers: C++ under $sanitize done at ${SECONDS}s"
done

[ "${SANITIZERS_SKIP:-}" = python ] && exit 0

# --- 2. Python suite against an ASan+UBSan extension ---
venv=build/venv-asan
[ -x $venv/bin/python ] || python3 -m venv $venv
# Its own build dir, so the default editable build (build/{wheel_tag}) is
# left alone; RelWithDebInfo for stack traces with lines.
$venv/bin/python -m pip install -q -e ".[test]" \
  -Cbuild-dir="build/asan/{wheel_tag}" -Ccmake.build-type=RelWithDebInfo \
  -Ccmake.define.AIOCOMM_SANITIZE=address,undefined
echo "sanitizers: ASan+UBSan extension installed in $venv at ${SECONDS}s"

asan_lib=$(gcc -print-file-name=libasan.so)
ubsan_lib=$(gcc -print-file-name=libubsan.so)
[ -f "$asan_lib" ] && [ -f "$ubsan_lib" ] || { echo "sanitizers: no gcc libasan/libubsan" >&2; exit 1; }

# The interpreter is not instrumented: it must load the ASan runtime first.
# CPython frees some memory only at exit by design (and never some), so leak
# checking is off; PYTHONMALLOC=malloc sends Python's own allocations
# through ASan too, so the extension's use of a freed Python object is seen.
run_python() {
  LD_PRELOAD="$asan_lib $ubsan_lib" \
    ASAN_OPTIONS="$common:detect_leaks=0:log_path=$reports/asan" \
    PYTHONMALLOC=malloc "$venv/bin/python" "$@"
}

# A canary: the set-up must actually catch a report. A heap overflow through
# ctypes (memmove is ASan's interceptor here) must abort and leave a report.
if run_python -c '
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(8)
ctypes.memmove(p, b"x" * 16, 16)
' 2>/dev/null; then
  echo "sanitizers: the ASan canary did not fail: the Python step would miss reports" >&2
  exit 1
fi
compgen -G "$reports/asan.*" >/dev/null || { echo "sanitizers: the ASan canary left no report" >&2; exit 1; }
rm -f "$reports"/*
run_python -c 'import aiocomm._core'  # loads under the preloaded runtimes

# The core and lifecycle part of the suite (not the tests that measure RSS:
# ASan's shadow memory and quarantine make their figures meaningless).
default_tests="tests/test_lifecycle.py tests/test_lifecycle_deadlock.py tests/test_wire.py
  tests/test_dispatch.py tests/test_native_dispatch.py tests/test_adapter.py tests/test_proxy.py
  tests/test_loop_reads.py tests/test_exactly_once.py tests/test_destroy_ends.py
  tests/test_async_dispatch.py tests/test_codec.py tests/test_tls.py tests/test_large_bodies.py
  tests/test_large_requests.py"
# shellcheck disable=SC2086
echo "sanitizers: pytest under ASan+UBSan: ${SANITIZERS_PYTEST:-$default_tests}" | tr -s ' \n' ' '
echo
run_python -m pytest -q -p no:cacheprovider ${SANITIZERS_PYTEST:-$default_tests}
fail_on_reports "the Python suite under ASan+UBSan"
echo "sanitizers: no reports (done at ${SECONDS}s)"
