"""One Llama-3-8B-dims layer (hidden 4096, 32 q / 8 kv heads, head dim 128, MLP 14336, bf16), the
same math as ../shared/gpu/anchor_layer_bench.py, run `3 + --runs N` times for a kernel profiler
(`ncu --print-summary per-kernel`: divide the invocation counts by 3 + N for one layer call).

  python3 layer_kernel_profile.py --impl torch-compile --case prefill --runs 2
  python3 layer_kernel_profile.py --impl mlx-compile-fast --case decode --runs 2

--impl torch-compile: torch.compile of the anchor's composed layer (HF-style attention with an
additive causal mask, composed RMSNorm and RoPE); mlx-compile-fast: mx.compile of the anchor's
mx.fast layer. --case prefill: T = 2048, no cache; decode: T = 1 against a 4096-token cache.
docs/performance.md ("Where the time goes") reads the profiles this feeds."""
import math, sys

H, NQ, NKV, D, F = 4096, 32, 8, 128, 14336
EPS, BASE = 1e-5, 500000.0


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


impl, case, runs = arg("--impl", "torch-compile"), arg("--case", "prefill"), int(arg("--runs", "2"))
T, CACHE = (2048, 0) if case == "prefill" else (1, 4096)


def torch_layer():
    import torch
    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    def w(*s): return (torch.randn(*s, device=dev) * 0.02).to(dt)
    Wq, Wk, Wv, Wo = w(H, NQ * D), w(H, NKV * D), w(H, NKV * D), w(NQ * D, H)
    Wg, Wu, Wd = w(H, F), w(H, F), w(F, H)
    g1 = torch.ones(H, device=dev, dtype=dt); g2 = g1.clone()
    inv = torch.exp(-torch.arange(D // 2, device=dev, dtype=torch.float32) * (math.log(BASE) / (D // 2)))
    kc = w(1, NKV, CACHE, D) * 50 if CACHE else None
    vc = w(1, NKV, CACHE, D) * 50 if CACHE else None

    def rms(x, g):
        xf = x.float(); return g * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype)

    def rope(x):
        ang = torch.arange(CACHE, CACHE + T, device=dev, dtype=torch.float32)[:, None] * inv[None, :]
        ang = torch.cat([ang, ang], -1); c, s = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return x * c + torch.cat([-x2, x1], -1) * s

    def layer(x):
        B = x.shape[0]
        n = rms(x, g1)
        q = (n @ Wq).view(B, T, NQ, D).transpose(1, 2)
        k = (n @ Wk).view(B, T, NKV, D).transpose(1, 2)
        v = (n @ Wv).view(B, T, NKV, D).transpose(1, 2)
        q, k = rope(q), rope(k)
        if kc is not None:
            k = torch.cat([kc, k], 2); v = torch.cat([vc, v], 2)
        k2 = k.repeat_interleave(NQ // NKV, 1); v2 = v.repeat_interleave(NQ // NKV, 1)
        s = (q @ k2.transpose(-1, -2)) / math.sqrt(D)
        if T > 1:
            Tk = k2.shape[2]
            m = torch.arange(Tk, device=dev)[None, :] <= (torch.arange(T, device=dev)[:, None] + (Tk - T))
            s = s + torch.where(m, 0.0, torch.finfo(torch.float32).min).to(s.dtype)
        a = torch.softmax(s.float(), -1).to(q.dtype) @ v2
        h = x + a.transpose(1, 2).reshape(B, T, NQ * D) @ Wo
        n2 = rms(h, g2)
        return h + (torch.nn.functional.silu(n2 @ Wg) * (n2 @ Wu)) @ Wd

    f = torch.compile(layer)
    x = torch.randn(1, T, H, device=dev).to(dt)
    with torch.no_grad():
        for _ in range(3 + runs):
            f(x)
    torch.cuda.synchronize()


def mlx_layer():
    import mlx.core as mx
    dt = mx.bfloat16
    def w(*s): return (mx.random.normal(s) * 0.02).astype(dt)
    Wq, Wk, Wv, Wo = w(H, NQ * D), w(H, NKV * D), w(H, NKV * D), w(NQ * D, H)
    Wg, Wu, Wd = w(H, F), w(H, F), w(F, H)
    g1, g2 = mx.ones((H,), dtype=dt), mx.ones((H,), dtype=dt)
    kc = w(1, NKV, CACHE, D) * 50 if CACHE else None
    vc = w(1, NKV, CACHE, D) * 50 if CACHE else None
    x = mx.random.normal((1, T, H)).astype(dt)
    mx.eval(Wq, Wk, Wv, Wo, Wg, Wu, Wd, g1, g2, x, *([kc, vc] if CACHE else []))

    def layer(x):
        B = x.shape[0]
        n = mx.fast.rms_norm(x, g1, EPS)
        q = (n @ Wq).reshape(B, T, NQ, D).transpose(0, 2, 1, 3)
        k = (n @ Wk).reshape(B, T, NKV, D).transpose(0, 2, 1, 3)
        v = (n @ Wv).reshape(B, T, NKV, D).transpose(0, 2, 1, 3)
        q = mx.fast.rope(q, D, traditional=False, base=BASE, scale=1.0, offset=CACHE)
        k = mx.fast.rope(k, D, traditional=False, base=BASE, scale=1.0, offset=CACHE)
        if CACHE:
            k = mx.concatenate([kc, k], axis=2); v = mx.concatenate([vc, v], axis=2)
        a = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(D),
                                                 mask="causal" if T > 1 else None)
        h = x + a.transpose(0, 2, 1, 3).reshape(B, T, NQ * D) @ Wo
        n2 = mx.fast.rms_norm(h, g2, EPS)
        gt = n2 @ Wg
        return h + ((gt * mx.sigmoid(gt)) * (n2 @ Wu)) @ Wd

    f = mx.compile(layer)
    for _ in range(3 + runs):
        mx.eval(f(x))
    mx.synchronize()


{"torch-compile": torch_layer, "mlx-compile-fast": mlx_layer}[impl]()
print(f"layer_kernel_profile: {impl} {case}, {3 + runs} runs")
