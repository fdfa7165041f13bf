"""The hand-written decode step of ../shared/gpu/anchor_layer_bench.py (mx.fast, mx.compile'd):
one Llama-3-8B-dims layer, T=1 against a 4096-token cache, bf16, run `--runs N` times after 3
warm-up runs. For kernel profilers (`ncu --print-summary per-kernel`): divide the invocation
counts by runs + 3 to get the kernels of one decode step. See docs/performance.md."""
import math, sys
import mlx.core as mx

H, NQ, NKV, D, F = 4096, 32, 8, 128, 14336
EPS, BASE = 1e-5, 500000.0
runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
dt = mx.bfloat16
def w(*s): return (mx.random.normal(s) * 0.02).astype(dt)
Wq, Wk, Wv, Wo = w(H, NQ * D), w(H, NKV * D), w(H, NKV * D), w(NQ * D, H)
Wg, Wu, Wd = w(H, F), w(H, F), w(F, H)
g1, g2 = mx.ones((H,), dtype=dt), mx.ones((H,), dtype=dt)
kc, vc = w(1, NKV, 4096, D) * 50, w(1, NKV, 4096, D) * 50
x = mx.random.normal((1, 1, H)).astype(dt)
mx.eval(Wq, Wk, Wv, Wo, Wg, Wu, Wd, g1, g2, kc, vc, x)

def layer(x):
    B, T, _ = x.shape
    n = mx.fast.rms_norm(x, g1, EPS)
    q = (n @ Wq).reshape(B, T, NQ, D).transpose(0, 2, 1, 3)
    k = (n @ Wk).reshape(B, T, NKV, D).transpose(0, 2, 1, 3)
    v = (n @ Wv).reshape(B, T, NKV, D).transpose(0, 2, 1, 3)
    q = mx.fast.rope(q, D, traditional=False, base=BASE, scale=1.0, offset=4096)
    k = mx.fast.rope(k, D, traditional=False, base=BASE, scale=1.0, offset=4096)
    k = mx.concatenate([kc, k], axis=2); v = mx.concatenate([vc, v], axis=2)
    a = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(D), mask=None)
    h = x + a.transpose(0, 2, 1, 3).reshape(B, T, NQ * D) @ Wo
    n2 = mx.fast.rms_norm(h, g2, EPS)
    gt = n2 @ Wg
    return h + ((gt * mx.sigmoid(gt)) * (n2 @ Wu)) @ Wd

f = mx.compile(layer)
for _ in range(3 + runs):
    mx.eval(f(x))
mx.synchronize()
print(f"decode_kernel_profile: {3 + runs} runs")
