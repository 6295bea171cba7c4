#!/usr/bin/env bash
# Build the libFuzzer targets (the fuzz preset: clang-14, ASan + UBSan, in
# build-fuzz/) and run each one for a bounded time, one after the other.
#
#   scripts/fuzz.sh            45 s per target
#   scripts/fuzz.sh 600        10 minutes per target
#
# Each target starts from a copy of its seed corpus (fuzz/corpus/<target>/), so
# nothing is written into the repository. A crash, sanitizer report, leak or
# hang (an input taking over 10 s) fails the run, naming the target; the input
# that caused it is kept in build-fuzz/findings/ for `build-fuzz/bin/<target> FILE`.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

seconds=${1:-45}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [seconds per target]" >&2
  exit 2
fi
readonly TARGETS=(fuzz_message fuzz_frame fuzz_server_config fuzz_client_config)

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
ntp_deps build fuzz

cmake --preset fuzz
cmake --build --preset fuzz

work=$(mktemp -d "${TMPDIR:-/tmp}/ntp-fuzz.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
findings=build-fuzz/findings
failed=()
for target in "${TARGETS[@]}"; do
  cp -r "fuzz/corpus/$target" "$work/$target"
  mkdir -p "$work/$target.artifacts"
  echo "== $target: ${seconds} s"
  status=0
  # -max_len: a frame body is at most 64 KiB, and the configs are small files;
  # deep nesting needs long inputs, so the fuzzer may grow them that far.
  "build-fuzz/bin/$target" "$work/$target" \
    -dict="fuzz/$target.dict" -max_total_time="$seconds" -max_len=70000 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$target.artifacts/" \
    >"$work/$target.log" 2>&1 || status=$?
  grep -E '^(#[0-9]+.*DONE|Done|stat::number_of_executed_units)' "$work/$target.log" | sed 's/^/   /' || true
  if [[ $status -ne 0 ]]; then
    echo "fuzz: $target FAILED (exit $status); its report:" >&2
    # From the first line of the report on (the reason, then the stack), not
    # libFuzzer's progress lines; a stack overflow's stack is cut at 80 lines.
    awk '/ERROR: |terminate called|runtime error|^fuzz_[a-z_]+: |^INFO: .*(leak|timeout)/ { on = 1 }
         on && n++ < 80' "$work/$target.log" >&2
    mkdir -p "$findings"
    for f in "$work/$target.artifacts"/*; do
      [[ -e $f ]] || continue
      cp -- "$f" "$findings/$target-$(basename -- "$f")"
      echo "fuzz: $target: input kept as $findings/$target-$(basename -- "$f")" >&2
    done
    failed+=("$target")
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ran ${seconds} s each without a finding"
