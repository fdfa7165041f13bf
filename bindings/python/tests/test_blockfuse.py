import glob
import os

import numpy as np
import pytest

import blockfuse

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "shared", "corpus")


def rms_graph(eps=1e-6):
    b = blockfuse.GraphBuilder()
    x = b.input("x", "f32", ["seq", 4])
    w = b.constant(np.arange(1, 5, dtype=np.float32), name="w")
    e = b.constant(np.array(eps, dtype=np.float32), name="eps")
    ms = b.op("reduce_mean", b.op("square", x), axes=[-1], keepdims=True)
    b.output("y", b.op("mul", w, b.op("mul", x, b.op("rsqrt", b.op("add", ms, e)))))
    return b.build()


def reference(x, eps=1e-6):
    return np.arange(1, 5) * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def test_build_run_optimize_matches_numpy():
    g = rms_graph()
    assert g.inputs == [("x", "f32", ["seq", "4"])] and g.outputs == ["y"]
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(g.run({"x": x})["y"], reference(x), rtol=1e-5)
    report = g.optimize()
    assert report["blocks"] == {"rms_norm": 1} and g.blocks == {"rms_norm": 1}
    assert report["nodes_after"] < report["nodes_before"]
    out = g.run({"x": x})["y"]
    assert out.dtype == np.float32 and out.shape == (5, 4)
    np.testing.assert_allclose(out, reference(x), rtol=1e-5)


def test_near_misses_are_in_the_report():
    # Any positive eps is a norm; a negative one is not, and the report says why.
    assert rms_graph(eps=0.5).optimize()["blocks"] == {"rms_norm": 1}
    report = rms_graph(eps=-0.5).optimize()
    assert report["blocks"] == {}
    reasons = [m["reason"] for m in report["near_misses"]]
    assert any("eps -0.5 is not a positive finite number" in r for r in reasons), report["near_misses"]


def test_json_round_trip_and_errors():
    g = rms_graph()
    again = blockfuse.from_json(g.to_json())
    x = np.ones((2, 4), dtype=np.float32)
    np.testing.assert_array_equal(again.run({"x": x})["y"], g.run({"x": x})["y"])
    bad = g.to_json().replace('"f32"', '"float32"', 1)
    with pytest.raises(ValueError, match=r"line \d+, column \d+, node 0 \"x\": unknown variant `float32`"):
        blockfuse.from_json(bad)
    with pytest.raises(RuntimeError, match="x"):
        g.run({})
    assert "$defs" in blockfuse.json_schema()


def test_bad_dtypes_and_missing_inputs():
    g = rms_graph()
    with pytest.raises(TypeError, match="complex64"):
        g.run({"x": np.zeros((2, 4), dtype=np.complex64)})


@pytest.mark.skipif(not glob.glob(os.path.join(CORPUS, "llama__sdpa__dynamo", "model.onnx")), reason="no corpus")
def test_onnx_round_trip_of_a_corpus_model(tmp_path):
    g = blockfuse.load_onnx(os.path.join(CORPUS, "llama__sdpa__dynamo", "model.onnx"))
    rng = np.random.default_rng(0)
    feeds = {}
    for name, dtype, dims in g.inputs:
        shape = [int(d) if d.isdigit() else 3 for d in dims]
        if dtype == "i64":
            feeds[name] = rng.integers(0, 3, size=shape).astype(np.int64)
            if name == "attention_mask":
                feeds[name] = np.ones(shape, dtype=np.int64)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    want = g.run(feeds)
    report = g.optimize()
    assert report["blocks"]["rms_norm"] == 5 and report["blocks"]["sdpa"] == 2, report["blocks"]
    path = tmp_path / "opt.onnx"
    g.write_onnx(path)
    back = blockfuse.load_onnx(path)
    got = back.run(feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_runs_on_mlx_like_on_the_fallback():
    names = blockfuse.backends()
    assert "fallback" in names and "mlx" in names, names
    g = rms_graph()
    g.optimize()
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    on_mlx = g.run({"x": x}, backend="mlx")["y"]
    np.testing.assert_allclose(on_mlx, g.run({"x": x})["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(on_mlx, reference(x), rtol=1e-5)
    with pytest.raises(ValueError, match=r'unknown backend "tpu" \(this build has: fallback, mlx'):
        g.run({"x": x}, backend="tpu")
