"""Checks ONNX files written by blockfuse with onnx.checker and ONNX Runtime.

usage: ort_check.py CASES.json
CASES.json: [{"model": path, "sets": [dir, ...]}, ...]; each set dir holds the backend-test
layout (input_<i>.pb / output_<j>.pb, TensorProtos named after the graph's inputs/outputs).
Prints one line per model and exits 1 when any check fails.
"""
import glob
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def read(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t.name, numpy_helper.to_array(t)


def tolerance(dtype):
    return 1e-2 if dtype in (np.float16,) or str(dtype) == "bfloat16" else 1e-4


def check(case):
    model = onnx.load(case["model"])
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(case["model"], opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for d in case["sets"]:
        feeds = dict(read(p) for p in sorted(glob.glob(os.path.join(d, "input_*.pb"))))
        want = dict(read(p) for p in sorted(glob.glob(os.path.join(d, "output_*.pb"))))
        names = [o.name for o in sess.get_outputs()]
        got = dict(zip(names, sess.run(names, {i.name: feeds[i.name] for i in sess.get_inputs()})))
        for name, ref in want.items():
            out = got[name]
            if out.shape != ref.shape:
                return f"{name}: shape {out.shape} != {ref.shape} ({d})"
            a, b = out.astype(np.float64), ref.astype(np.float64)
            tol = tolerance(ref.dtype)
            bad = np.abs(a - b) > tol + tol * np.abs(b)
            worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)))
            if bad.any():
                return f"{name}: {int(bad.sum())} elements off, max |diff| {worst:.3e} ({d})"
    return f"ok (max |diff| {worst:.2e})"


def main():
    cases = json.load(open(sys.argv[1]))
    failed = 0
    for case in cases:
        try:
            msg = check(case)
        except Exception as e:  # the checker's and ORT's own messages
            msg = f"error: {type(e).__name__}: {str(e)[:400]}"
        ok = msg.startswith("ok")
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {os.path.basename(case['model'])}: {msg}", flush=True)
    print(f"{len(cases) - failed}/{len(cases)} written models pass onnx.checker and ONNX Runtime")
    sys.exit(1 if failed else 0)


main()
