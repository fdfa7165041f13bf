"""blockfuse from Python: load ONNX or JSON IR, build IR, optimize, run, write ONNX/JSON.

Tensors go in and out as numpy arrays; the optimization report is a dict. Graphs run on
blockfuse's fallback evaluator (the reference CPU backend; MLX is not bound here yet).
"""

import base64
import json as _json

import numpy as np

from . import _native

__all__ = ["Graph", "GraphBuilder", "load_onnx", "load_json", "from_json", "json_schema"]

_NP = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "f64": np.dtype(np.float64),
    "i64": np.dtype(np.int64),
    "i32": np.dtype(np.int32),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}
try:  # bf16 has no numpy dtype of its own; ml_dtypes provides one when installed.
    import ml_dtypes

    _NP["bf16"] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - optional
    pass
_NAMES = {v: k for k, v in _NP.items()}


def _dtype_name(dtype):
    name = _NAMES.get(np.dtype(dtype))
    if name is None:
        raise TypeError(f"blockfuse has no dtype for numpy {np.dtype(dtype)} (known: {sorted(_NP)})")
    return name


def _raw(array):
    a = np.ascontiguousarray(array)
    return (_dtype_name(a.dtype), list(a.shape), a.tobytes())


class Graph:
    """An IR graph (wraps the Rust graph)."""

    def __init__(self, native):
        self._g = native

    def optimize(self):
        """Fuses in place with the default rules; returns the report as a dict
        (blocks, rules, near_misses with node and reason, node counts)."""
        return _json.loads(self._g.optimize())

    def run(self, inputs, backend="fallback"):
        """Runs on a backend (`fallback`; `mlx`, `mlx:cpu`, `mlx:gpu` where built: see
        `blockfuse.backends()`): {input name: array} -> {output name: array}."""
        raw = {name: _raw(a) for name, a in inputs.items()}
        out = {}
        for name, dtype, dims, data in self._g.run(raw, backend):
            out[name] = np.frombuffer(data, dtype=_NP[dtype]).reshape(dims).copy()
        return out

    @property
    def inputs(self):
        """[(name, dtype, [dims as strings])] in graph order."""
        return [(n, d, list(s)) for n, d, s in self._g.inputs()]

    @property
    def outputs(self):
        """Output names in order."""
        return list(self._g.outputs())

    @property
    def blocks(self):
        """{block kind: count}."""
        return dict(self._g.blocks())

    def to_json(self):
        """The graph as JSON IR text (docs/ir-format.md, schema docs/ir-schema.json)."""
        return self._g.to_json()

    def write_json(self, path):
        with open(path, "w") as f:
            f.write(self.to_json())

    def write_onnx(self, path):
        """Writes ONNX (opset 23): blocks as standard ops where exact, else model-local
        functions holding their fallback."""
        self._g.write_onnx(str(path))

    def dump(self):
        """The stable text dump."""
        return self._g.dump()

    def __repr__(self):
        return f"<blockfuse.Graph inputs={[i[0] for i in self.inputs]} outputs={self.outputs}>"


def backends():
    """The backends this build runs on: {name: description}."""
    return dict(_native.backends())


def load_onnx(path):
    """Imports an ONNX model file."""
    return Graph(_native.load_onnx(str(path)))


def from_json(text):
    """Reads JSON IR text."""
    return Graph(_native.from_json(text))


def load_json(path):
    """Reads a JSON IR file."""
    with open(path) as f:
        return from_json(f.read())


def json_schema():
    """The JSON Schema of the JSON IR, as a dict."""
    return _json.loads(_native.json_schema())


class GraphBuilder:
    """Builds a graph from Python by writing the JSON IR (the documented contract).

    Values are strings ("3" or "3:1" for output 1 of node 3), as in the JSON IR.
    """

    def __init__(self):
        self._nodes = []
        self._outputs = []

    def _add(self, node):
        node["id"] = len(self._nodes)
        self._nodes.append({k: v for k, v in node.items() if v is not None})
        return str(node["id"])

    def input(self, name, dtype, shape):
        """A graph input; dims are ints or symbols ("seq", "2*seq")."""
        return self._add({"op": "input", "name": name, "types": [{"dtype": dtype, "shape": list(shape)}]})

    def constant(self, array, name=None):
        """A constant from a numpy array."""
        dtype, dims, data = _raw(array)
        return self._add(
            {
                "op": "constant",
                "name": name,
                "attrs": {"dtype": dtype, "dims": dims},
                "data": base64.b64encode(data).decode(),
            }
        )

    def op(self, op, *args, name=None, **attrs):
        """A primitive op (`mul`, `reduce_mean`, ...) with JSON attributes as keywords."""
        return self._add({"op": op, "name": name, "attrs": attrs or None, "args": list(args)})

    def block(self, kind, *args, name=None, **attrs):
        """A block node (`rms_norm`, ...), attributes as docs/blocks.md lists them."""
        return self.op(f"block.{kind}", *args, name=name, **attrs)

    def output(self, name, value):
        self._outputs.append({"name": name, "value": value})

    def to_json(self):
        doc = {"format": "blockfuse-ir", "version": 1, "nodes": self._nodes, "outputs": self._outputs}
        return _json.dumps(doc)

    def build(self):
        """The graph (validated by the Rust reader: errors name the node)."""
        return from_json(self.to_json())
