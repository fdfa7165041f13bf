"""Hand-written anchor for blockfuse's quantized decode (issue: quantized weights), run on the GPU
machine after ../shared/gpu/install.sh, in the same device call as blockfuse's own bench.

One Llama-3-8B-dims decoder layer (hidden 4096, 32 q / 8 kv heads, head dim 128, MLP 14336),
activations bf16, written with mx.fast kernels, its seven projection weights either bf16 or
quantized with mx.quantize (affine, 4 or 8 bits, group 64) and applied with
mx.quantized_matmul. Cases: decode T=1 against a 4096-token KV cache, and prefill T=2048.
Prints median ms per variant, with and without mx.compile.
"""
import math
import sys
import time

import mlx.core as mx

H, NQ, NKV, D, F = 4096, 32, 8, 128, 14336
EPS, BASE, GROUP = 1e-5, 500000.0, 64


def median_ms(fn, x, iters=30, warmup=5):
    for _ in range(warmup):
        mx.eval(fn(x))
    mx.synchronize()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        mx.eval(fn(x))
        mx.synchronize()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2] * 1e3


def projections(bits):
    """The seven weights as `y = x @ W` callables: bf16 matmuls, or quantized ones."""
    mx.random.seed(0)
    shapes = {"q": (H, NQ * D), "k": (H, NKV * D), "v": (H, NKV * D), "o": (NQ * D, H),
              "gate": (H, F), "up": (H, F), "down": (F, H)}
    out = {}
    for name, (k, n) in shapes.items():
        w = (mx.random.normal((k, n)) * 0.02).astype(mx.bfloat16)
        if bits is None:
            mx.eval(w)
            out[name] = (lambda w: lambda x: x @ w)(w)
        else:
            wq, s, b = mx.quantize(w.T, group_size=GROUP, bits=bits)  # rows = output channels
            mx.eval(wq, s, b)
            out[name] = (lambda wq, s, b: lambda x: mx.quantized_matmul(
                x, wq, s, b, transpose=True, group_size=GROUP, bits=bits))(wq, s, b)
    return out


def layer_fn(p, kc, vc, off):
    g1 = mx.ones((H,), dtype=mx.bfloat16)
    g2 = mx.ones((H,), dtype=mx.bfloat16)

    def layer(x):
        B, T, _ = x.shape
        n = mx.fast.rms_norm(x, g1, EPS)
        q = p["q"](n).reshape(B, T, NQ, D).transpose(0, 2, 1, 3)
        k = p["k"](n).reshape(B, T, NKV, D).transpose(0, 2, 1, 3)
        v = p["v"](n).reshape(B, T, NKV, D).transpose(0, 2, 1, 3)
        q = mx.fast.rope(q, D, traditional=False, base=BASE, scale=1.0, offset=off)
        k = mx.fast.rope(k, D, traditional=False, base=BASE, scale=1.0, offset=off)
        if kc is not None:
            k = mx.concatenate([kc, k], axis=2)
            v = mx.concatenate([vc, v], axis=2)
        a = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(D),
                                                 mask="causal" if T > 1 else None)
        h = x + p["o"](a.transpose(0, 2, 1, 3).reshape(B, T, NQ * D))
        n2 = mx.fast.rms_norm(h, g2, EPS)
        gt = p["gate"](n2)
        return h + p["down"]((gt * mx.sigmoid(gt)) * p["up"](n2))

    return layer


def main():
    print("MLX", mx.__version__, "device", mx.default_device())
    kc = (mx.random.normal((1, NKV, 4096, D)) * 1.0).astype(mx.bfloat16)
    vc = (mx.random.normal((1, NKV, 4096, D)) * 1.0).astype(mx.bfloat16)
    cases = {"decode T=1, KV 4096": (mx.random.normal((1, 1, H)).astype(mx.bfloat16), kc, vc, 4096),
             "prefill T=2048": (mx.random.normal((1, 2048, H)).astype(mx.bfloat16), None, None, 0)}
    rows = []
    for bits in (None, 8, 4):
        p = projections(bits)
        label = "bf16 weights" if bits is None else f"{bits}-bit g{GROUP} quantized_matmul"
        for case, (x, k, v, off) in cases.items():
            mx.eval(x)
            f = layer_fn(p, k, v, off)
            rows.append((case, label + " (mx.fast)", median_ms(f, x)))
            rows.append((case, label + " (compiled)", median_ms(mx.compile(f), x)))
    print(f"{'case':<22} {'variant':<44} {'median_ms':>10}")
    for r in rows:
        print(f"{r[0]:<22} {r[1]:<44} {r[2]:10.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
