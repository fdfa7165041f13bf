#!/usr/bin/env bash
# Runs one fuzz target niced for SECONDS (default 1200), new inputs into work/TARGET (the
# committed seeds in corpus/TARGET are read, not written), crashers into artifacts/TARGET,
# the log into work/TARGET.log (with the UTC start and end times, for docs/reliability.md's
# run table). Needs nightly and `cargo install cargo-fuzz`.
#   fuzz/run.sh json_ir 1200
# FUZZ_NO_BUILD=1 runs the binary already built (`cargo +nightly fuzz build -O -a -s none`):
# a chain of runs then fuzzes the sources as they were when it started, not a half-edited tree.
set -euo pipefail
cd "$(dirname "$0")"
target=$1
secs=${2:-1200}
mkdir -p "work/$target" "artifacts/$target"
# -O: optimized; -a: debug assertions (integer overflow panics); -s none: no sanitizer
# (safe Rust; libFuzzer's coverage only).
if [[ -z ${FUZZ_NO_BUILD:-} ]]; then
    nice -n 19 cargo +nightly fuzz build -O -a -s none "$target"
fi
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release/$target"
# -fork=1 -ignore_crashes=1: a crash is saved and the run goes on, so that one bug does not end
# a 20-minute run (each crash input lands in artifacts/TARGET; the log counts them).
{
    echo "start $(date -u +%FT%TZ)"
    nice -n 19 "$bin" "work/$target" "corpus/$target" -artifact_prefix="artifacts/$target/" \
        -fork=1 -ignore_crashes=1 -max_total_time="$secs" -rss_limit_mb=2048 -max_len=4096 \
        -timeout=10 -print_final_stats=1 || echo "exit status $?"
    echo "end $(date -u +%FT%TZ)"
} >"work/$target.log" 2>&1
