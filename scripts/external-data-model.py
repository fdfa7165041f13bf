#!/usr/bin/env python3
"""Writes ONNX models whose weights are ONNX external data (one weights file beside the model).

  external-data-model.py small DIR
      A 2-layer MLP (f32, x: [2, 4] -> [2, 3]) with its weights in DIR/weights.bin, written by
      onnx.save_model(save_as_external_data=True), plus DIR/test_data_set_0/{input,output}_0.pb
      (numpy reference). Used by crates/onnx/tests/external_data.rs.

  external-data-model.py llama DIR [--layers 4] [--seq 8] [--hidden 4096] [--embedded]
      A decoder stack at Llama-3-8B dims (hidden 4096, 32 query / 8 KV heads of 128, FFN 14336,
      RMSNorm, SiLU-gated MLP), bf16 weights written tensor by tensor into DIR/weights.bin
      (about 436 MB per layer; 4 layers = 1.75 GB) so that this script holds one tensor at a time.
      Input hidden states [1, seq, 4096] bf16. With --hidden H the dims scale down (H/128 heads of
      128 clamped to at least 1 head of H, FFN 3.5 H); --embedded keeps the weights inside
      model.onnx (raw_data) instead (the "128-layer tiny file": --layers 128 --hidden 64
      --embedded). For the import bench (crates/onnx/benches/import.rs); write it under
      target/, never commit it.

Needs onnx and numpy (the venv of scripts/onnx-node-tests.sh: target/onnx-venv/bin/python).
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def small(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((4, 8)).astype(np.float32)
    b1 = rng.standard_normal((8,)).astype(np.float32)
    w2 = rng.standard_normal((8, 3)).astype(np.float32)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    y = np.maximum(x @ w1 + b1, 0) @ w2
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="add1"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["y"], name="mm2"),
    ]
    g = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    onnx.save_model(m, os.path.join(d, "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    td = os.path.join(d, "test_data_set_0")
    os.makedirs(td, exist_ok=True)
    with open(os.path.join(td, "input_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(x, "x").SerializeToString())
    with open(os.path.join(td, "output_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(y.astype(np.float32), "y").SerializeToString())


class Weights:
    """Appends bf16 tensors to one external-data file, one at a time."""

    def __init__(self, d, embedded=False):
        self.embedded = embedded
        self.f = None if embedded else open(os.path.join(d, "weights.bin"), "wb")
        self.off = 0
        self.rng = np.random.default_rng(0)
        self.inits = []

    def add(self, name, shape, scale):
        n = int(np.prod(shape))
        # Random bf16 bit patterns with the exponent pinned near `scale` (fast: integer ops
        # only, no NaN/Inf): sign and 7 mantissa bits random, |w| in [scale, 2 scale).
        e = int(np.float32(scale).view(np.uint32) >> 16) & 0x7F80
        r = self.rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
        b = ((r & 0x807F) | e).astype(np.uint16).tobytes()
        t = TensorProto()
        t.name = name
        t.data_type = TensorProto.BFLOAT16
        t.dims.extend(shape)
        self.inits.append(t)
        if self.embedded:
            t.raw_data = b
            self.off += len(b)
            return name
        self.f.write(b)
        t.data_location = TensorProto.EXTERNAL
        for k, val in (("location", "weights.bin"), ("offset", str(self.off)), ("length", str(len(b)))):
            e = t.external_data.add()
            e.key, e.value = k, val
        self.off += len(b)
        return name


def llama(d, layers=4, seq=8, hidden=4096, embedded=False):
    os.makedirs(d, exist_ok=True)
    H = hidden
    HD = min(128, H)
    NQ = max(1, H // HD)
    NKV = max(1, NQ // 4)
    F = H * 7 // 2
    w = Weights(d, embedded)
    nodes = []
    consts = [
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
        numpy_helper.from_array(np.array(1e-5, dtype=np.float32), "eps"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
    ]

    def rms(x, p, scale):
        f = lambda s: f"{p}.{s}"
        nodes.extend([
            helper.make_node("Cast", [x], [f("xf")], to=TensorProto.FLOAT),
            helper.make_node("Pow", [f("xf"), "two"], [f("sq")]),
            helper.make_node("ReduceMean", [f("sq"), "last"], [f("ms")], keepdims=1),
            helper.make_node("Add", [f("ms"), "eps"], [f("mse")]),
            helper.make_node("Sqrt", [f("mse")], [f("rt")]),
            helper.make_node("Div", [f("xf"), f("rt")], [f("n")]),
            helper.make_node("Cast", [f("n")], [f("nb")], to=TensorProto.BFLOAT16),
            helper.make_node("Mul", [f("nb"), scale], [f("out")]),
        ])
        return f("out")

    x = "hidden"
    for i in range(layers):
        p = f"l{i}"
        h = rms(x, f"{p}.ln1", w.add(f"{p}.ln1.w", [H], 1.0))
        q = w.add(f"{p}.q", [H, NQ * HD], 0.02)
        k = w.add(f"{p}.k", [H, NKV * HD], 0.02)
        v = w.add(f"{p}.v", [H, NKV * HD], 0.02)
        o = w.add(f"{p}.o", [NQ * HD, H], 0.02)
        for name, wt in (("q", q), ("k", k), ("v", v)):
            nodes.append(helper.make_node("MatMul", [h, wt], [f"{p}.{name}p"]))
        # Attention stand-in for the bench (weights are what matters): mix q with k/v sums.
        nodes.extend([
            helper.make_node("ReduceSum", [f"{p}.kp", "last"], [f"{p}.ks"], keepdims=1),
            helper.make_node("ReduceSum", [f"{p}.vp", "last"], [f"{p}.vs"], keepdims=1),
            helper.make_node("Mul", [f"{p}.qp", f"{p}.ks"], [f"{p}.a0"]),
            helper.make_node("Add", [f"{p}.a0", f"{p}.vs"], [f"{p}.a1"]),
            helper.make_node("MatMul", [f"{p}.a1", o], [f"{p}.att"]),
            helper.make_node("Add", [x, f"{p}.att"], [f"{p}.r1"]),
        ])
        h2 = rms(f"{p}.r1", f"{p}.ln2", w.add(f"{p}.ln2.w", [H], 1.0))
        gate = w.add(f"{p}.gate", [H, F], 0.02)
        up = w.add(f"{p}.up", [H, F], 0.02)
        down = w.add(f"{p}.down", [F, H], 0.02)
        nodes.extend([
            helper.make_node("MatMul", [h2, gate], [f"{p}.g"]),
            helper.make_node("Sigmoid", [f"{p}.g"], [f"{p}.gs"]),
            helper.make_node("Mul", [f"{p}.g", f"{p}.gs"], [f"{p}.silu"]),
            helper.make_node("MatMul", [h2, up], [f"{p}.u"]),
            helper.make_node("Mul", [f"{p}.silu", f"{p}.u"], [f"{p}.gu"]),
            helper.make_node("MatMul", [f"{p}.gu", down], [f"{p}.mlp"]),
            helper.make_node("Add", [f"{p}.r1", f"{p}.mlp"], [f"{p}.out"]),
        ])
        x = f"{p}.out"
    if w.f:
        w.f.close()
    nodes.append(helper.make_node("Identity", [x], ["out"]))
    g = helper.make_graph(
        nodes,
        "llama_dims",
        [helper.make_tensor_value_info("hidden", TensorProto.BFLOAT16, [1, seq, H])],
        [helper.make_tensor_value_info("out", TensorProto.BFLOAT16, [1, seq, H])],
        consts + w.inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(m.SerializeToString())
    where = "model.onnx" if embedded else "weights.bin"
    print(f"{d}: {layers} layers, hidden {H}, {w.off / 1e6:.1f} MB of bf16 weights in {where}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("small", "llama"):
        sys.exit(__doc__)
    if sys.argv[1] == "small":
        small(sys.argv[2])
    else:
        args = sys.argv[3:]
        opt = lambda k, dflt: int(args[args.index(k) + 1]) if k in args else dflt
        llama(sys.argv[2], opt("--layers", 4), opt("--seq", 8), opt("--hidden", 4096), "--embedded" in args)
