"""Writes quantized-matmul models and their ONNX Runtime reference outputs for
tests/quantized_onnx.rs.

usage: make_models.py OUT_DIR

Each case is OUT_DIR/<case>/model.onnx, test_data_set_0/{input_0,output_0}.pb (the ONNX
backend-test layout) and expect.json: {"fused": fused count of quantized_matmul or quantized_embedding blocks, "near_miss": a
substring of the reason it did not fuse, or null}. Models come from ONNX Runtime's own
weight-only quantizer (MatMulNBitsQuantizer, MatMulNBits and QDQ forms) and from
onnx.helper (DequantizeLinear with block_size before MatMul / Gemm).
"""
import json
import logging
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantFormat
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

OPSET = 21
logging.disable(logging.INFO)


def float_matmul(k, n, seed):
    """x[2, 3, k] · W[k, n], W an initializer."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, n)) * 0.1).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, n])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")
    graph = helper.make_graph([node], "mm", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


VOCAB = 64


def embedding(d, seed):
    """Gather(table[VOCAB, d], x[2, 5]) → y[2, 5, d]."""
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((VOCAB, d)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.INT64, [2, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, d])
    node = helper.make_node("Gather", ["table", "x"], ["y"], name="embed", axis=0)
    graph = helper.make_graph([node], "emb", [x], [y], [numpy_helper.from_array(t, "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def ort_quantized_gather(d, seed, **kw):
    q = MatMulNBitsQuantizer(embedding(d, seed), op_types_to_quantize=("Gather",), quant_axes=(("Gather", 1),), **kw)
    q.process()
    return q.model.model


def ort_quantized(k, n, seed, **kw):
    q = MatMulNBitsQuantizer(float_matmul(k, n, seed), **kw)
    q.process()
    return q.model.model


def int4_tensor(name, values, signed):
    """An INT4/UINT4 initializer (onnx.helper packs two per byte, low nibble first)."""
    dt = TensorProto.INT4 if signed else TensorProto.UINT4
    return helper.make_tensor(name, dt, list(values.shape), values.flatten().tolist())


def dq_model(k, n, block, seed, signed, bits, gemm):
    """DequantizeLinear(q, s, zp; block_size) → MatMul, or → Gemm(transB = 1) with a bias."""
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    shape = (n, k) if gemm else (k, n)
    axis = 1 if gemm else 0
    blocks = (n, -(-k // block)) if gemm else (-(-k // block), n)
    q = rng.integers(lo, hi + 1, size=shape)
    zp = rng.integers(lo, hi + 1, size=blocks)
    s = rng.uniform(0.01, 0.05, size=blocks).astype(np.float32)
    if bits == 4:
        inits = [int4_tensor("q", q, signed), int4_tensor("zp", zp, signed)]
    else:
        dt = np.int8 if signed else np.uint8
        inits = [numpy_helper.from_array(q.astype(dt), "q"), numpy_helper.from_array(zp.astype(dt), "zp")]
    inits.append(numpy_helper.from_array(s, "s"))
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["w"], name="dq", axis=axis, block_size=block)]
    if gemm:
        inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "c"))
        nodes.append(helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="proj", transB=1))
        xs, ys = [6, k], [6, n]
    else:
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"], name="proj"))
        xs, ys = [2, 3, k], [2, 3, n]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)
    graph = helper.make_graph(nodes, "dq", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def write(out, name, model, fused, near_miss=None):
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    path = os.path.join(d, "model.onnx")
    onnx.save(model, path)
    # Without graph optimizations: ORT would otherwise rewrite DequantizeLinear → MatMul into
    # its own MatMulNBits with int8-quantized activations (errors of ~1e-2 here).
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    shape = [dim.dim_value for dim in model.graph.input[0].type.tensor_type.shape.dim]
    if model.graph.input[0].type.tensor_type.elem_type == TensorProto.INT64:
        x = np.random.default_rng(7).integers(-VOCAB, VOCAB, size=shape)  # negative ids count from the end
    else:
        x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    (y,) = sess.run(None, {"x": x})
    for kind, i, t in [("input", 0, numpy_helper.from_array(x, "x")), ("output", 0, numpy_helper.from_array(y, "y"))]:
        with open(os.path.join(d, "test_data_set_0", f"{kind}_{i}.pb"), "wb") as f:
            f.write(t.SerializeToString())
    ops = sorted({f"{n.domain + ':' if n.domain else ''}{n.op_type}" for n in model.graph.node})
    with open(os.path.join(d, "expect.json"), "w") as f:
        json.dump({"fused": fused, "near_miss": near_miss, "ops": ops}, f)
    return ops


def main():
    out = sys.argv[1]
    written = []
    for block in (32, 64):
        for sym in (True, False):
            tag = "sym" if sym else "asym"
            m = ort_quantized(128, 48, block, block_size=block, is_symmetric=sym)
            written.append(write(out, f"nbits_b{block}_{tag}", m, 1))
            m = ort_quantized(128, 48, block + 1, block_size=block, is_symmetric=sym, quant_format=QuantFormat.QDQ)
            written.append(write(out, f"qdq_b{block}_{tag}", m, 1))
    m = ort_quantized(128, 48, 5, bits=8, block_size=32, is_symmetric=False)
    written.append(write(out, "nbits_8bit_b32_asym", m, 1))
    # K = 80 is padded to 3 blocks of 32: MLX's groups must divide K.
    m = ort_quantized(80, 16, 6, block_size=32, is_symmetric=False)
    written.append(write(out, "nbits_k80_padded", m, 0, "K = 80 is not a multiple"))
    m = ort_quantized(128, 16, 8, block_size=16, is_symmetric=True)
    written.append(write(out, "nbits_b16", m, 0, "block size 16"))
    written.append(write(out, "dq_int4_matmul", dq_model(128, 40, 32, 9, True, 4, False), 1))
    written.append(write(out, "dq_uint4_gemm", dq_model(128, 40, 64, 10, False, 4, True), 1))
    written.append(write(out, "dq_uint8_matmul", dq_model(64, 24, 32, 11, False, 8, False), 1))
    written.append(write(out, "dq_int8_gemm", dq_model(128, 24, 128, 12, True, 8, True), 1))
    written.append(write(out, "dq_int4_b16", dq_model(64, 8, 16, 13, True, 4, False), 0, "block size 16"))
    for sym in (True, False):
        tag = "sym" if sym else "asym"
        m = ort_quantized_gather(64, 20, block_size=32, is_symmetric=sym)
        written.append(write(out, f"gather_b32_{tag}", m, 1))
    print(f"{len(written)} models: " + "; ".join(", ".join(o) for o in written))


main()
