"""Kernels per layer call from `ncu --print-summary per-kernel --csv` (benches/gpu_kv_run.sh):

  python3 benches/ncu_kernels.py CALLS FILE.csv [FILE.csv ...]

CALLS: layer calls the profiled process made (11 for `kv_bench --iters 1`, 5 for
`layer_kernel_profile.py --runs 2`). Kernels that only build the anchors' random weights
(MLX's rbitsc/erfinv chain, torch's normal_ and casts) are left out by name. Prints, per file,
one markdown row per kernel class: kernels per call and microseconds per call."""
import csv, io, re, sys

INIT = re.compile(r"rbitsc|ErfInv|binary_(sv|vs|ss)<mlx::\w+, float|copy_v<(float|unsigned int), "
                  r"|distribution_elementwise|AUnaryFunctor<float|FillFunctor|bfloat16_copy_kernel"
                  r"|exp_kernel_cuda|neg_kernel_cuda|arange_cuda_out|AUnaryFunctor<c10::BFloat16")
CLASSES = [  # first match wins
    ("attention", r"sdpa|fmha|flash|softmax|lean_reduction"),
    ("matmul", r"nvjet|gemm|gemv|splitKreduce|cutlass|internal::kernel<int, int, __nv_bfloat16"),
    ("norm", r"rms_norm|rsqrt"),
    ("rope (with cast/layout when fused)", r"rope|Cos|Sin|_cos_|_sin_"),
    ("mask, index bounds", r"_where_|LessEqual|OSelect|ILess|IGreater|IMaximum"),
    ("cache write, copies", r"copy|dynamic_offset|gather|scatter|slice"),
    ("other elementwise", r"."),
]


def rows(path):
    lines = open(path).read().split("\n")
    head = next(i for i, l in enumerate(lines) if l.startswith('"Process ID"'))
    for r in csv.DictReader(io.StringIO("\n".join(lines[head:]))):
        yield r["Kernel Name"], int(r["Invocations"]), float(r["Average"].replace(",", "")) / 1000


def summary(path, calls):
    acc = {name: [0, 0.0] for name, _ in CLASSES}
    for kernel, n, avg_us in rows(path):
        if INIT.search(kernel):
            continue
        cls = next(name for name, pat in CLASSES if re.search(pat, kernel))
        acc[cls][0] += n
        acc[cls][1] += n * avg_us
    print(f"\n{path} (per call of {calls})\n\n| kernel class | kernels | µs |\n|---|---|---|")
    total = [0, 0.0]
    for name, (n, us) in acc.items():
        print(f"| {name} | {n / calls:.1f} | {us / calls:.0f} |")
        total[0] += n; total[1] += us
    print(f"| **all** | {total[0] / calls:.1f} | {total[1] / calls:.0f} |")


calls = int(sys.argv[1])
for p in sys.argv[2:]:
    summary(p, calls)
