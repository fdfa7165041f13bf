#!/usr/bin/env bash
# The last device call of the KV-cache GPU bench (docs/performance.md, "KV-cache decoding on
# MLX"): run from the project root on the GPU machine after stage1 and stage2 were copied to
# ~/blockfuse-stage, with carry [".gpu/stage3", ".gpu/stage4", ".gpu/run"] (.gpu/run holds
# kv_bench, the anchors, decode_kernel_profile.py, cutlass_include.tar.xz and a copy of this
# script, run as .gpu/run/gpu_kv_run.sh).
# Results go to $OUT.
cd "$(dirname "$0")/../.."
cp -r .gpu/stage3/. ~/blockfuse-stage/
source .gpu/stage4/install.sh
R=.gpu/run
date -u | tee $OUT/machine.txt; nvidia-smi --query-gpu=name,driver_version --format=csv >> $OUT/machine.txt
# MLX's NVRTC JIT adds --include-path=<libmlx dir>/../include/cccl (and $CUDA_HOME/include):
# make that a folder of CUDA's CCCL entries plus CUTLASS's cute/ and cutlass/ (the quantized
# prefill kernels include cute).
mkdir -p ~/cutlass && tar xJf $R/cutlass_include.tar.xz -C ~/cutlass
inc=$MLX_PREFIX/mlx/include
rm -rf "$inc/cccl" && mkdir -p "$inc/cccl"
for e in "${CUDA_HOME:-/usr/local/cuda}"/include/cccl/*; do ln -sfn "$e" "$inc/cccl/"; done
ln -sfn ~/cutlass/include/cute "$inc/cccl/cute"; ln -sfn ~/cutlass/include/cutlass "$inc/cccl/cutlass"
timeout 240 $R/kv_bench --device gpu --iters 20 2>&1 | tee $OUT/kv_bench.txt
timeout 120 python3 $R/anchor_layer_bench.py 2>&1 | tee $OUT/anchor.txt
timeout 90 python3 $R/quantized_layer_anchor.py 2>&1 | tail -30 | tee $OUT/quant_anchor.txt
# Kernels per decode step (ncu; divide the invocation counts by the runs, see the doc).
NCU="ncu --metrics gpu__time_duration.sum --print-summary per-kernel --csv"
timeout 70 $NCU python3 $R/decode_kernel_profile.py --runs 2 > $OUT/ncu_anchor.csv 2>&1
timeout 90 $NCU $R/kv_bench --device gpu --case decode --rows "slice_update, optimized + fused projections, compiled" \
  --iters 1 > $OUT/ncu_ours.csv 2>&1
