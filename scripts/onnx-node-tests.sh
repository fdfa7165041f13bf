#!/usr/bin/env bash
# Writes the ONNX operator ("node") conformance tests, in the ONNX backend-test layout
# (<case>/model.onnx, <case>/test_data_set_<k>/{input,output}_<i>.pb), into
# target/onnx-node-tests, using ../shared/onnx-node-tests/generate.py and the onnx wheel.
#
# Usage: scripts/onnx-node-tests.sh [VENV_DIR]     (default VENV_DIR: target/onnx-venv)
# Environment: ONNX_NODE_TESTS_OUT overrides the output directory.
#
# Idempotent and quiet: does nothing when the output is already complete (a .complete stamp
# is written last, so an interrupted run is redone); otherwise prints one summary line.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/target/onnx-venv}"
out="${ONNX_NODE_TESTS_OUT:-$root/target/onnx-node-tests}"
gen="$root/../shared/onnx-node-tests/generate.py"
onnx_version="1.23.2"

if [[ -f "$out/.complete" ]]; then
    exit 0
fi
if [[ ! -f "$gen" ]]; then
    echo "onnx-node-tests: $gen not found (shared/ missing?)" >&2
    exit 1
fi

python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$venv/bin/python" -c "import onnx, numpy, sys; sys.exit(onnx.__version__ != '$onnx_version')" \
        >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet "onnx==$onnx_version" numpy
fi

# Generate into a scratch directory, then move it into place, so that `out` is all or nothing.
tmp="$out.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
log="$("$venv/bin/python" "$gen" "$tmp" 2>&1)" || { echo "$log" >&2; exit 1; }
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
count="$(find "$out" -mindepth 1 -maxdepth 1 -type d | wc -l)"
skipped="$(sed -n 's/.*(\([0-9]* with non-tensor inputs skipped\)).*/\1/p' <<<"$log")"
echo "onnx-node-tests: $count test dirs in ${out#"$root"/}${skipped:+ ($skipped)}"
