#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (issue 5, hostile input), each for a bounded time, and
# reports executions and findings. Not part of .ci/run (a fuzzing budget is not a CI step); run
# it by hand, or from a scheduled job.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      # default: 60 s each, every target
#   fuzz/run.sh 120                                   # both targets, two minutes each
#   fuzz/run.sh 600 signature                         # one target
#
# Targets (fuzz/fuzz_targets/):
#   envelope   raw bytes -> Envelope::parse: no panic, only MalformedBody (400) or InvalidField
#              (422, a known field path), and an accepted envelope agrees with its JSON.
#   signature  bytes split into webhook-/svix- id, timestamp and signature headers and a body ->
#              Verifier::verify: no panic, only Unauthorized (401), and Ok(true) only when an
#              independent HMAC-SHA256 matches a v1 entry within the tolerance.
#
# Inputs found are kept in fuzz/corpus/<target>/ (git-ignored, reused by the next run, which
# also starts from the committed fuzz/seeds/<target>/). A crash, panic, timeout or out-of-memory
# input is written to fuzz/artifacts/<target>/ and makes the script exit 1 after every target
# has run; replay one with `cargo fuzz run <target> fuzz/artifacts/<target>/<file>` (with the
# same RUSTC_BOOTSTRAP as below) or shrink it with `cargo fuzz tmin <target> <file>`.
#
# Toolchain: cargo fuzz builds with nightly-only rustc flags (-Zsanitizer=address and the
# sanitizer-coverage passes). A nightly toolchain works as is; on a stable toolchain (what CI and
# a new machine have) RUSTC_BOOTSTRAP=1 makes rustc accept them, which this script sets unless
# the active rustc is a nightly. cargo-fuzz itself is installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET=${1:-60}
shift || true
if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(envelope signature)

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
echo "fuzz: $(rustc --version), $(cargo fuzz --version)${RUSTC_BOOTSTRAP:+, RUSTC_BOOTSTRAP=1}"

# Optimised, with debug assertions and AddressSanitizer (cargo fuzz's default sanitizer).
BUILD_FLAGS=(--release --debug-assertions)
for target in "${TARGETS[@]}"; do
    cargo fuzz build "${BUILD_FLAGS[@]}" "$target"
done

summary=()
found=0
for target in "${TARGETS[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    log="artifacts/$target.log"
    echo "fuzz: $target for $SECONDS_PER_TARGET s (log: fuzz/$log)"
    rc=0
    cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    corpus=$(find "corpus/$target" -type f | wc -l)
    new=$(($(find "artifacts/$target" -type f | wc -l) - before))
    if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
        found=1
        echo "fuzz: $target FOUND a failing input (exit $rc); the end of its log:"
        grep -v '^#' "$log" | tail -n 40
        summary+=("$target: ${execs:-?} executions, FAILING INPUT in fuzz/artifacts/$target/")
    else
        summary+=("$target: ${execs:-?} executions (${speed:-?}/s), corpus $corpus inputs, nothing found")
    fi
done

echo
echo "fuzz: summary ($SECONDS_PER_TARGET s per target)"
printf '  %s\n' "${summary[@]}"
exit "$found"
