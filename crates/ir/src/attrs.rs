//! Ops as `(name, attributes)`: the one encoding shared by the JSON format and the text dump.

use crate::block::{BlockRegistry, DecodeError};
use crate::dtype::DType;
use crate::op::{BinaryOp, Bound, Op, ReduceOp, SliceSpec, UnaryOp};
use crate::shape::Dim;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value as Json};

/// Why an op could not be decoded.
#[derive(Debug)]
pub enum OpDecodeError {
    /// Not an op name we know.
    UnknownOp(String),
    /// A block kind missing from the registry.
    UnknownBlock {
        /// The kind.
        kind: String,
        /// The registered kinds.
        known: String,
    },
    /// A missing or ill-typed attribute.
    BadAttr(String),
}

/// A float as JSON: a number, or `"inf"`, `"-inf"`, `"nan"`.
pub fn f64_to_json(v: f64) -> Json {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("nan")
    } else if v > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

fn f64_from_json(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            "nan" => Some(f64::NAN),
            _ => None,
        },
        _ => None,
    }
}

fn bound_to_json(b: &Bound) -> Json {
    match b {
        Bound::Const(i) => json!(i),
        Bound::Dim(d) => json!(d.to_string()),
    }
}

/// The attributes of an op (constants: dtype and dims only; their data is the caller's).
pub fn op_attrs(op: &Op) -> Map<String, Json> {
    let v = match op {
        Op::Input | Op::Unary(_) | Op::Binary(_) | Op::Where | Op::MatMul => json!({}),
        Op::Constant(t) => json!({"dtype": t.dtype(), "dims": t.dims()}),
        Op::SymConst(values) => json!({ "values": values }),
        Op::Cast(d) => json!({ "to": d }),
        Op::Reduce { axes, keepdims, .. } => json!({"axes": axes, "keepdims": keepdims}),
        Op::Softmax { axis } | Op::Concat { axis } | Op::Gather { axis } | Op::SliceUpdate { axis } => {
            json!({ "axis": axis })
        }
        Op::Transpose { perm } => json!({ "perm": perm }),
        Op::Reshape { shape } | Op::Expand { shape } => json!({ "shape": shape }),
        Op::Slice(s) => json!({
            "axes": s.axes,
            "starts": s.starts.iter().map(bound_to_json).collect::<Vec<_>>(),
            "ends": s.ends.iter().map(bound_to_json).collect::<Vec<_>>(),
            "steps": s.steps,
        }),
        Op::Split { axis, sizes } => json!({"axis": axis, "sizes": sizes}),
        Op::Range { start, step, len, dtype } => {
            json!({"start": f64_to_json(*start), "step": f64_to_json(*step), "len": len, "dtype": dtype})
        }
        Op::Full { shape, value, dtype } => {
            json!({"shape": shape, "value": f64_to_json(*value), "dtype": dtype})
        }
        Op::Trilu { upper, k } => json!({"upper": upper, "k": k}),
        Op::Block(b) => b.attrs(),
    };
    match v {
        Json::Object(m) => m,
        other => Map::from_iter([("value".to_string(), other)]),
    }
}

struct Attrs<'a> {
    map: &'a Map<String, Json>,
}

impl Attrs<'_> {
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, OpDecodeError> {
        let v =
            self.map.get(key).ok_or_else(|| OpDecodeError::BadAttr(format!("missing attribute '{key}'")))?;
        serde_json::from_value(v.clone())
            .map_err(|e| OpDecodeError::BadAttr(format!("attribute '{key}': {e}")))
    }

    fn float(&self, key: &str) -> Result<f64, OpDecodeError> {
        let v =
            self.map.get(key).ok_or_else(|| OpDecodeError::BadAttr(format!("missing attribute '{key}'")))?;
        f64_from_json(v).ok_or_else(|| OpDecodeError::BadAttr(format!("attribute '{key}' is not a number")))
    }

    fn bounds(&self, key: &str) -> Result<Vec<Bound>, OpDecodeError> {
        let raw: Vec<Json> = self.get(key)?;
        raw.iter()
            .map(|v| match v {
                Json::Number(n) => n.as_i64().map(Bound::Const),
                Json::String(s) => Dim::parse(s).ok().map(Bound::Dim),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| OpDecodeError::BadAttr(format!("attribute '{key}' must hold integers or dims")))
    }
}

/// Rebuilds a non-constant op from its name and attributes (`block.<kind>` through the
/// registry). Constants are decoded by the JSON reader, which owns their data.
pub fn decode_op(name: &str, map: &Map<String, Json>, registry: &BlockRegistry) -> Result<Op, OpDecodeError> {
    let a = Attrs { map };
    if let Some(kind) = name.strip_prefix("block.") {
        let attrs = Json::Object(map.clone());
        return registry.decode(kind, attrs).map(Op::Block).map_err(|e| match e {
            DecodeError::UnknownKind { known } => {
                OpDecodeError::UnknownBlock { kind: kind.to_string(), known }
            }
            DecodeError::BadAttrs(r) => OpDecodeError::BadAttr(format!("block.{kind}: {r}")),
        });
    }
    if let Some(u) = UnaryOp::from_name(name) {
        return Ok(Op::Unary(u));
    }
    if let Some(b) = BinaryOp::from_name(name) {
        return Ok(Op::Binary(b));
    }
    if let Some(op) = ReduceOp::from_name(name) {
        return Ok(Op::Reduce { op, axes: a.get("axes")?, keepdims: a.get("keepdims")? });
    }
    Ok(match name {
        "where" => Op::Where,
        "matmul" => Op::MatMul,
        "sym_const" => Op::SymConst(a.get("values")?),
        "cast" => Op::Cast(a.get::<DType>("to")?),
        "softmax" => Op::Softmax { axis: a.get("axis")? },
        "concat" => Op::Concat { axis: a.get("axis")? },
        "gather" => Op::Gather { axis: a.get("axis")? },
        "slice_update" => Op::SliceUpdate { axis: a.get("axis")? },
        "transpose" => Op::Transpose { perm: a.get("perm")? },
        "reshape" => Op::Reshape { shape: a.get("shape")? },
        "expand" => Op::Expand { shape: a.get("shape")? },
        "slice" => Op::Slice(SliceSpec {
            axes: a.get("axes")?,
            starts: a.bounds("starts")?,
            ends: a.bounds("ends")?,
            steps: a.get("steps")?,
        }),
        "split" => Op::Split { axis: a.get("axis")?, sizes: a.get("sizes")? },
        "range" => Op::Range {
            start: a.float("start")?,
            step: a.float("step")?,
            len: a.get("len")?,
            dtype: a.get("dtype")?,
        },
        "full" => Op::Full { shape: a.get("shape")?, value: a.float("value")?, dtype: a.get("dtype")? },
        "trilu" => Op::Trilu { upper: a.get("upper")?, k: a.get("k")? },
        other => return Err(OpDecodeError::UnknownOp(other.to_string())),
    })
}
