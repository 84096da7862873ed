#!/usr/bin/env bash
# Fuzzing (issue 5, item 1): builds the libFuzzer targets of cpp/fuzz with
# clang under -fsanitize=fuzzer,address,undefined, replays the regression
# inputs, then runs each target for a bounded time from the committed seed
# corpus. Any crash, sanitizer report, leak or harness invariant failure
# fails the script; the failing input is saved under build/fuzz-artifacts/.
#
#   FUZZ_SECONDS   total fuzzing time, split between the targets (default 60)
#
# Needs clang and compiler-rt (libFuzzer); .ci/deps.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

total=${FUZZ_SECONDS:-60}
build=build/fuzz
work=build/fuzz-work
artifacts=build/fuzz-artifacts

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DAIOCOMM_BUILD_PYTHON=OFF -DAIOCOMM_BUILD_TESTS=OFF \
  -DAIOCOMM_FUZZ=ON -DAIOCOMM_SANITIZE=address,undefined >/dev/null
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

# Regressions: inputs that once failed must pass.
shopt -s nullglob
for f in cpp/fuzz/regressions/message-* cpp/fuzz/regressions/stream-*; do
  case $(basename "$f") in
    message-*) target=fuzz_message ;;
    stream-*) target=fuzz_server ;;
  esac
  "$build/$target" -malloc_limit_mb=64 "$f" >"$build/replay.log" 2>&1 ||
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
run() {  # target seeds seconds
  local target=$1 seeds=$2 seconds=$3 log="$build/$1.log"
  mkdir -p "$work/$target"
  echo "fuzz: $target for ${seconds}s"
  if ! "$build/$target" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
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
run fuzz_message cpp/fuzz/corpus/message $((total * 2 / 5))
run fuzz_server cpp/fuzz/corpus/stream $((total * 2 / 5))
# The codec's streams: no committed seeds (fuzz_make_corpus owns
# cpp/fuzz/corpus); libFuzzer starts from its working directory.
mkdir -p "$work/codec-seeds"
run fuzz_codec "$work/codec-seeds" $((total - total * 4 / 5))
printf 'fuzz: %s\n' "${summary[@]}"
