#!/usr/bin/env bash
# The device calls of the KV-cache GPU bench and its kernel profiles (docs/performance.md,
# "KV-cache decoding on MLX"). Run from the project root on the GPU machine after stage1 and
# stage2 were copied to ~/blockfuse-stage, as .gpu/run/gpu_kv_run.sh MODE, with carry
# [".gpu/stage3", ".gpu/stage4", ".gpu/run"] (.gpu/run holds kv_bench, the anchors,
# layer_kernel_profile.py, cutlass_include.tar.xz and a copy of
# this script). Results go to $OUT.
#   MODE bench:   kv_bench (every row) and the hand-written anchors, side by side (~4 min)
#   MODE profile-prefill, profile-decode: ncu kernel lists of blockfuse's best row,
#                 torch.compile(composed) and mx.compile(mx.fast) (≤ 9 min each); run them in
#                 the calls after `bench` while the machine is warm (MLX is installed already)
mode=${1:-bench}
cd "$(dirname "$0")/../.."
R=.gpu/run
if [[ -f ~/blockfuse-mlx/mlx/lib/libmlx.so && -d ~/cutlass/include ]]; then
  # Installed by an earlier call on this (still warm) machine: the environment install.sh sets.
  nv=$(python3 -c 'import os, nvidia; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null)/nvidia
  export MLX_PREFIX=~/blockfuse-mlx PYTHONPATH=~/blockfuse-mlx${PYTHONPATH:+:$PYTHONPATH}
  export LD_LIBRARY_PATH="$MLX_PREFIX/mlx/lib:$(ls -d "$nv"/*/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}"
else
  cp -r .gpu/stage3/. ~/blockfuse-stage/
  source .gpu/stage4/install.sh
  # MLX's NVRTC JIT adds --include-path=<libmlx dir>/../include/cccl (and $CUDA_HOME/include):
  # make that a folder of CUDA's CCCL entries plus CUTLASS's cute/ and cutlass/ (the quantized
  # prefill kernels include cute).
  mkdir -p ~/cutlass && tar xJf $R/cutlass_include.tar.xz -C ~/cutlass
  inc=$MLX_PREFIX/mlx/include
  rm -rf "$inc/cccl" && mkdir -p "$inc/cccl"
  for e in "${CUDA_HOME:-/usr/local/cuda}"/include/cccl/*; do ln -sfn "$e" "$inc/cccl/"; done
  ln -sfn ~/cutlass/include/cute "$inc/cccl/cute"; ln -sfn ~/cutlass/include/cutlass "$inc/cccl/cutlass"
fi
date -u | tee $OUT/machine-$mode.txt; nvidia-smi --query-gpu=name,driver_version --format=csv >> $OUT/machine-$mode.txt
if [[ $mode == bench ]]; then
  timeout 240 $R/kv_bench --device gpu --iters 20 2>&1 | tee $OUT/kv_bench.txt
  timeout 150 python3 $R/anchor_layer_bench.py 2>&1 | tee $OUT/anchor.txt
  exit 0
fi
# Kernels per layer call (ncu; divide the invocation counts by the runs, see the doc).
#   profile-prefill / profile-decode: ncu's defaults (kernel replay, caches flushed, clocks locked
#     to base): its times rank kernels, they are not the run's times; kernels that read arrays
#     uploaded from the host (blockfuse's weights and caches) come out 10-100x slower than in the
#     run under kernel replay (memory save/restore of MLX's managed memory), so use
#   profile-app: application replay, no cache flush, clocks as in a run, every case and framework.
case $mode in
  profile-app) NCU="ncu --replay-mode application --cache-control none --clock-control none"; cases="prefill decode" ;;
  *) NCU="ncu"; cases=${mode#profile-} ;;
esac
NCU="$NCU --metrics gpu__time_duration.sum --print-summary per-kernel --csv"
best="slice_update, optimized + fused projections, compiled"
tag=${mode#profile-}
for c in $cases; do
  timeout 170 $NCU $R/kv_bench --device gpu --case $c --rows "$best" --iters 1 > $OUT/ncu_${tag}_ours_$c.csv 2>&1
  timeout 200 $NCU python3 $R/layer_kernel_profile.py --impl torch-compile --case $c --runs 2 > $OUT/ncu_${tag}_torch_$c.csv 2>&1
  timeout 100 $NCU python3 $R/layer_kernel_profile.py --impl mlx-compile-fast --case $c --runs 2 > $OUT/ncu_${tag}_mlx_$c.csv 2>&1
done
ls -la $OUT
