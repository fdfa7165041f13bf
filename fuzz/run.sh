#!/usr/bin/env bash
# Runs one fuzz target niced for SECONDS (default 1200), new inputs into work/TARGET (the
# committed seeds in corpus/TARGET are read, not written), crashers into artifacts/TARGET,
# the log into work/TARGET.log. Needs nightly and `cargo install cargo-fuzz`.
#   fuzz/run.sh json_ir 1200
set -euo pipefail
cd "$(dirname "$0")"
target=$1
secs=${2:-1200}
mkdir -p "work/$target"
# -O: optimized; -a: debug assertions (integer overflow panics); -s none: no sanitizer
# (safe Rust; libFuzzer's coverage only).
nice -n 19 cargo +nightly fuzz run -O -a -s none "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=4096 -timeout=10 -print_final_stats=1 \
    >"work/$target.log" 2>&1
