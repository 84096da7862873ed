#!/usr/bin/env bash
# Fuzzing (issue 5, item 1): builds the libFuzzer targets of cpp/fuzz with
# clang under -fsanitize=fuzzer,address,undefined, replays the regression
# inputs, then runs each target for a bounded time from the committed seed
# corpus. Any crash, sanitizer report, leak or harness invariant failure
# fails the script; the failing input is saved under build/fuzz-artifacts/.
#
#   FUZZ_SECONDS   total fuzzing time, split between the targets (default 60)
#
# Needs clang and compiler-rt (libFuzzer); .ci/deps.sh installs them, and
# OpenSSL's headers for fuzz_tls (the TLS session layer).
#
# fuzz_typed (the binding's typed decoder over every descriptor of the test
# Slice files, issue 12 item 5) embeds CPython: it links the libpython of
# FUZZ_PYTHON (default /usr/bin/python3, Debian 12's 3.11; its headers and
# libpython3.11.so come from python3-dev, which .ci/deps.sh installs) and
# needs pybind11 >= 3 headers, which are pip-installed (pure headers, any
# interpreter's pip) into build/fuzz-pybind11 on the first run. Its seeds are
# generated here by the target itself (AIOCOMM_FUZZ_TYPED_SEEDS), not
# committed: they are the codec's own encodings of sample values of every
# descriptor, and the selector byte that picks the descriptor is its index in
# the sorted list, which moves whenever a test .ice file gains a type.
set -euo pipefail
cd "$(dirname "$0")/.."

total=${FUZZ_SECONDS:-60}
build=build/fuzz
work=build/fuzz-work
artifacts=build/fuzz-artifacts

python=${FUZZ_PYTHON:-/usr/bin/python3}
pybind11=build/fuzz-pybind11
if [ ! -d "$pybind11/pybind11" ]; then
  python3 -m pip install -q --disable-pip-version-check --target "$pybind11" "pybind11>=3.0"
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DAIOCOMM_BUILD_PYTHON=OFF -DAIOCOMM_BUILD_TESTS=OFF \
  -DAIOCOMM_FUZZ=ON -DAIOCOMM_SANITIZE=address,undefined \
  -DPython_EXECUTABLE="$python" -Dpybind11_DIR="$PWD/$pybind11/pybind11/share/cmake/pybind11" >/dev/null
cmake --build "$build" -j 2

export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# The committed seeds must be what the generator writes today (a protocol
# change that makes them stale should regenerate them).
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
"$build/fuzz_make_corpus" "$fresh" >/dev/null
if ! diff -r -q "$fresh" cpp/fuzz/corpus >/dev/null; then
  echo "fuzz: cpp/fuzz/corpus is stale; regenerate it: $build/fuzz_make_corpus cpp/fuzz/corpus" >&2
  diff -r -q "$fresh" cpp/fuzz/corpus >&2 || true
  exit 1
fi

# Regressions: inputs that once failed must pass. A typed-TARGET--LABEL
# input replays on that one fuzz_typed target, by name (its selector byte is
# ignored, so it stays on its descriptor when the test .ice files change).
shopt -s nullglob
for f in cpp/fuzz/regressions/message-* cpp/fuzz/regressions/stream-* cpp/fuzz/regressions/typed-*; do
  only=
  case $(basename "$f") in
    message-*) target=fuzz_message ;;
    stream-*) target=fuzz_server ;;
    typed-*) target=fuzz_typed; only=$(basename "$f"); only=${only#typed-}; only=${only%%--*} ;;
  esac
  AIOCOMM_FUZZ_TYPED_ONLY=$only "$build/$target" -malloc_limit_mb=64 "$f" >"$build/replay.log" 2>&1 ||
    { cat "$build/replay.log" >&2; echo "fuzz: regression $f fails again" >&2; exit 1; }
done
for f in cpp/fuzz/regressions/open/*; do
  [ "$(basename "$f")" = README.md ] && continue
  if "$build/fuzz_message" -malloc_limit_mb=64 "$f" >"$build/replay.log" 2>&1; then
    echo "fuzz: open regression $f passes now: move it to cpp/fuzz/regressions/message-$(basename "$f")"
  else
    echo "fuzz: open regression $f still fails ($(grep -m1 -o 'ERROR: .*' "$build/replay.log")); see cpp/fuzz/regressions/README.md"
  fi
done

rm -rf "$work" "$artifacts"
mkdir -p "$artifacts"
summary=()
run() {  # target seeds seconds [libFuzzer flags...]
  local target=$1 seeds=$2 seconds=$3 log="$build/$1.log"
  shift 3
  mkdir -p "$work/$target"
  echo "fuzz: $target for ${seconds}s"
  if ! "$build/$target" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 "$@" \
      -artifact_prefix="$artifacts/$target-" "$work/$target" "$seeds" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target FAILED; the input is in $artifacts/ (keep it in cpp/fuzz/regressions/)" >&2
    exit 1
  fi
  local runs corpus
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  corpus=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | grep -oE '(cov|corp): [^ ]*' | tr '\n' ' ' || true)
  summary+=("$target: $runs executions in ${seconds}s; final ${corpus:-corp: ?}(corpus entries/bytes); $(ls "$work/$target" | wc -l) inputs added to the seeds; peak RSS $(sed -n 's/^stat::peak_rss_mb: *//p' "$log") MB")
}
run fuzz_message cpp/fuzz/corpus/message $((total / 4))
run fuzz_server cpp/fuzz/corpus/stream $((total / 4))
# The codec's streams: no committed seeds (fuzz_make_corpus owns
# cpp/fuzz/corpus); libFuzzer starts from its working directory.
mkdir -p "$work/codec-seeds"
run fuzz_codec "$work/codec-seeds" $((total / 10))
# The TLS session layer (issue 15): hostile ciphertext in every role; it
# makes its own certificate and reaches the ClientHello parser through a
# real hello it mutates, so it needs no seeds.
mkdir -p "$work/tls-seeds"
run fuzz_tls "$work/tls-seeds" $((total * 3 / 20)) -malloc_limit_mb=512
# The typed decoder: seeds written by the target (each checked: it decodes,
# and re-encodes to the same bytes). -detect_leaks=0 turns off libFuzzer's
# leak check after each input, not LeakSanitizer: the interpreter's caches
# make nearly every input allocate more than it frees, and each check scans
# the whole interpreter heap (100 instead of ~10,000 executions/s); the
# check at exit still reports whatever the run leaked.
AIOCOMM_FUZZ_TYPED_SEEDS="$work/typed-seeds" "$build/fuzz_typed" >"$build/typed-seeds.log" 2>&1 ||
  { cat "$build/typed-seeds.log" >&2; echo "fuzz: fuzz_typed could not write its seeds" >&2; exit 1; }
run fuzz_typed "$work/typed-seeds" $((total - total / 4 * 2 - total / 10 - total * 3 / 20)) -detect_leaks=0 -malloc_limit_mb=64 -timeout=10
printf 'fuzz: %s\n' "${summary[@]}"
