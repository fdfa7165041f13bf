//! Converters for ONNX ops that import as compositions of existing IR ops (exact rewrites of
//! the ONNX definitions): activations (`LogSoftmax`, `Clip`, `Softplus`, `HardSigmoid`, `Elu`,
//! `HardSwish`, ...), variadic `Sum`/`Mean`, `IsInf`, normalizations (`BatchNormalization`
//! inference, `InstanceNormalization`, `LpNormalization`, ...), the reductions ONNX names
//! separately (`ReduceL1`, `ReduceLogSumExp`, ...), `ArgMax`/`ArgMin`/`Hardmax`, losses
//! (`NegativeLogLikelihoodLoss`, `SoftmaxCrossEntropyLoss`), `Einsum`, layout ops
//! (`DepthToSpace`, `SpaceToDepth`, `EyeLike`), quantization (`DequantizeLinear`,
//! `QuantizeLinear`, `Round`), pooling and convolution (`MaxPool`, `AveragePool`, `Conv`, by
//! strided slices and one matmul), and ONNX's `SwiGLU` (our `swiglu` block when `alpha` is 1).
//!
//! The table lines are in [`super::OPS`]; pooling/convolution, `Einsum` and the losses live
//! in their own modules.

use crate::import::prelude::*;
use blockfuse_ir::blocks::SwiGlu;

impl Importer {
    // ---- activations (one method per ONNX op) ----

    /// `Softsign`: `x / (1 + |x|)`.
    pub(crate) fn softsign(&mut self, n: &NodeProto) -> R<()> {
        self.map1(n, |s, x| {
            let a = s.un(UnaryOp::Abs, x)?;
            let one = s.scalar_like(x, 1.0)?;
            let d = s.bin(BinaryOp::Add, a, one)?;
            s.bin(BinaryOp::Div, x, d)
        })
    }

    /// `Softplus`: `log(exp(x) + 1)`.
    pub(crate) fn softplus_node(&mut self, n: &NodeProto) -> R<()> {
        self.map1(n, |s, x| s.softplus(x))
    }

    /// `HardSigmoid`: `max(0, min(1, alpha·x + beta))`.
    pub(crate) fn hard_sigmoid_node(&mut self, n: &NodeProto) -> R<()> {
        let (a, b) = (attr_f(n, "alpha", 0.2) as f64, attr_f(n, "beta", 0.5) as f64);
        self.map1(n, |s, x| s.hard_sigmoid(x, a, b))
    }

    /// `HardSwish`: `x · hard_sigmoid(x)` with `alpha = 1/6`, `beta = 0.5`.
    pub(crate) fn hard_swish(&mut self, n: &NodeProto) -> R<()> {
        self.map1(n, |s, x| {
            let h = s.hard_sigmoid(x, 1.0 / 6.0, 0.5)?;
            s.bin(BinaryOp::Mul, x, h)
        })
    }

    /// `Elu`: `alpha·(exp(x) − 1)` below 0, else `x`.
    pub(crate) fn elu(&mut self, n: &NodeProto) -> R<()> {
        let alpha = attr_f(n, "alpha", 1.0) as f64;
        self.map1(n, |s, x| {
            let e = s.expm1_scaled(x, 1.0, alpha)?;
            s.select_neg(x, e)
        })
    }

    /// `Celu`: `alpha·(exp(x/alpha) − 1)` below 0, else `x`.
    pub(crate) fn celu(&mut self, n: &NodeProto) -> R<()> {
        let alpha = attr_f(n, "alpha", 1.0) as f64;
        if alpha == 0.0 {
            return Err(self.err("alpha must not be 0"));
        }
        self.map1(n, |s, x| {
            let e = s.expm1_scaled(x, 1.0 / alpha, alpha)?;
            s.select_neg(x, e)
        })
    }

    /// `Selu`: `gamma·(alpha·(exp(x) − 1))` below 0, else `gamma·x`.
    pub(crate) fn selu(&mut self, n: &NodeProto) -> R<()> {
        let alpha = attr_f(n, "alpha", 1.673_263_2) as f64;
        let gamma = attr_f(n, "gamma", 1.050_701) as f64;
        self.map1(n, |s, x| {
            let e = s.expm1_scaled(x, 1.0, alpha)?;
            let y = s.select_neg(x, e)?;
            let g = s.scalar_like(x, gamma)?;
            s.bin(BinaryOp::Mul, y, g)
        })
    }

    /// `LeakyRelu`: `alpha·x` below 0, else `x`.
    pub(crate) fn leaky_relu(&mut self, n: &NodeProto) -> R<()> {
        let alpha = attr_f(n, "alpha", 0.01) as f64;
        self.map1(n, |s, x| {
            let a = s.scalar_like(x, alpha)?;
            let ax = s.bin(BinaryOp::Mul, x, a)?;
            s.select_neg(x, ax)
        })
    }

    /// `ThresholdedRelu`: `x` above `alpha`, else 0.
    pub(crate) fn thresholded_relu(&mut self, n: &NodeProto) -> R<()> {
        let alpha = attr_f(n, "alpha", 1.0) as f64;
        self.map1(n, |s, x| {
            let a = s.scalar_like(x, alpha)?;
            let c = s.bin(BinaryOp::Greater, x, a)?;
            let z = s.scalar_like(x, 0.0)?;
            s.emit(Op::Where, &[c, x, z])
        })
    }

    /// `Swish`: `x · sigmoid(alpha·x)`.
    pub(crate) fn swish_node(&mut self, n: &NodeProto) -> R<()> {
        let alpha = attr_f(n, "alpha", 1.0) as f64;
        self.map1(n, |s, x| s.swish(x, alpha))
    }

    /// `Mish`: `x · tanh(softplus(x))`.
    pub(crate) fn mish(&mut self, n: &NodeProto) -> R<()> {
        self.map1(n, |s, x| {
            let sp = s.softplus(x)?;
            let t = s.un(UnaryOp::Tanh, sp)?;
            s.bin(BinaryOp::Mul, x, t)
        })
    }

    /// `Shrink`: `x + bias` below `−lambd`, `x − bias` above `lambd`, else 0.
    pub(crate) fn shrink_node(&mut self, n: &NodeProto) -> R<()> {
        let (bias, lambd) = (attr_f(n, "bias", 0.0) as f64, attr_f(n, "lambd", 0.5) as f64);
        self.map1(n, |s, x| s.shrink(x, bias, lambd))
    }

    /// `Sign`: 1, −1 or 0.
    pub(crate) fn sign(&mut self, n: &NodeProto) -> R<()> {
        self.map1(n, |s, x| {
            let z = s.scalar_like(x, 0.0)?;
            let (p, m) = (s.scalar_like(x, 1.0)?, s.scalar_like(x, -1.0)?);
            let neg = s.bin(BinaryOp::Less, x, z)?;
            let lo = s.emit(Op::Where, &[neg, m, z])?;
            let pos = s.bin(BinaryOp::Greater, x, z)?;
            s.emit(Op::Where, &[pos, p, lo])
        })
    }

    /// `Sinh` / `Cosh`: `(exp(x) ∓ exp(−x)) / 2`.
    pub(crate) fn sinh_cosh(&mut self, n: &NodeProto, sinh: bool) -> R<()> {
        self.map1(n, |s, x| {
            s.need_float(&s.vt(x))?;
            let e = s.un(UnaryOp::Exp, x)?;
            let nx = s.un(UnaryOp::Neg, x)?;
            let en = s.un(UnaryOp::Exp, nx)?;
            let t = s.bin(if sinh { BinaryOp::Sub } else { BinaryOp::Add }, e, en)?;
            let h = s.scalar_like(x, 0.5)?;
            s.bin(BinaryOp::Mul, t, h)
        })
    }

    /// `Tan`: `sin(x) / cos(x)`.
    pub(crate) fn tan(&mut self, n: &NodeProto) -> R<()> {
        self.map1(n, |s, x| {
            s.need_float(&s.vt(x))?;
            let (sn, cs) = (s.un(UnaryOp::Sin, x)?, s.un(UnaryOp::Cos, x)?);
            s.bin(BinaryOp::Div, sn, cs)
        })
    }

    /// `Asinh`, `Acosh`, `Atanh` through logarithms: `ln(x + √(x²+1))`, `ln(x + √(x²−1))`,
    /// `½·ln((1+x)/(1−x))`.
    pub(crate) fn inverse_hyperbolic(&mut self, n: &NodeProto) -> R<()> {
        let op = n.op_type().to_string();
        self.map1(n, |s, x| {
            s.need_float(&s.vt(x))?;
            let one = s.scalar_like(x, 1.0)?;
            if op == "Atanh" {
                let a = s.bin(BinaryOp::Add, one, x)?;
                let b = s.bin(BinaryOp::Sub, one, x)?;
                let q = s.bin(BinaryOp::Div, a, b)?;
                let l = s.un(UnaryOp::Log, q)?;
                let h = s.scalar_like(x, 0.5)?;
                return s.bin(BinaryOp::Mul, l, h);
            }
            let x2 = s.un(UnaryOp::Square, x)?;
            let r = s.bin(if op == "Asinh" { BinaryOp::Add } else { BinaryOp::Sub }, x2, one)?;
            let r = s.un(UnaryOp::Sqrt, r)?;
            let a = s.bin(BinaryOp::Add, x, r)?;
            s.un(UnaryOp::Log, a)
        })
    }

    /// `GroupNormalization` (opset 21: per-channel scale and bias): normalize each of
    /// `num_groups` channel groups over its channels and spatial positions.
    pub(crate) fn group_norm(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        self.need_float(&t)?;
        let dims = t
            .known_dims()
            .filter(|d| d.len() >= 3)
            .ok_or_else(|| self.err(format!("input must be [N, C, spatial…] of known size, got {t}")))?;
        let (nb, ch) = (self.at(&dims, 0)?, self.at(&dims, 1)?);
        let g = usize::try_from(attr_i(n, "num_groups", 0)).ok().filter(|&g| g > 0 && ch % g == 0);
        let g = g.ok_or_else(|| self.err(format!("num_groups must divide the {ch} channels")))?;
        let eps = attr_f(n, "epsilon", 1e-5) as f64;
        let rest: usize = dims.iter().skip(1).product::<usize>() / g;
        let xg = self.reshape_v(x, [nb, g, rest].map(Dim::Known).to_vec())?;
        let (c, var) = self.centered(xg, vec![2])?;
        let e = self.scalar_like(x, eps)?;
        let ve = self.bin(BinaryOp::Add, var, e)?;
        let sd = self.un(UnaryOp::Sqrt, ve)?;
        let y = self.bin(BinaryOp::Div, c, sd)?;
        let y = self.reshape_v(y, dims.iter().map(|&d| Dim::Known(d)).collect())?;
        let s = self.input_v(n, 1)?;
        let b = self.input_v(n, 2)?;
        if self.vt(s).numel() != Dim::Known(ch) {
            return Err(
                self.unsupported("GroupNormalization with per-group scale (opset 18) is not supported")
            );
        }
        let s = self.channel_param(s, dims.len(), t.dtype)?;
        let b = self.channel_param(b, dims.len(), t.dtype)?;
        let y = self.bin(BinaryOp::Mul, y, s)?;
        let y = self.bin(BinaryOp::Add, y, b)?;
        self.out(n, 0, y);
        Ok(())
    }

    /// `HannWindow`, `HammingWindow`, `BlackmanWindow`: a constant of the known `size`.
    pub(crate) fn window(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in_req(n, 0)?;
        let size = self.known_req(&name, "size")?.consts().and_then(|v| v.first().copied());
        let size = size
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v <= 1 << 24)
            .ok_or_else(|| self.err("size must be a non-negative constant up to 2^24"))?;
        let to = attr_i(n, "output_datatype", 1) as i32;
        let dt = dtype_from_onnx(to)
            .ok_or_else(|| OnnxError::UnsupportedDtype { tensor: self.out_label(n), data_type: to })?;
        let periodic = attr_i(n, "periodic", 1) != 0;
        let n1 = if periodic { size as f64 } else { size as f64 - 1.0 };
        let tau = 2.0 * std::f64::consts::PI;
        let kind = n.op_type().to_string();
        let vals: Vec<f64> = (0..size)
            .map(|i| {
                let c = |k: f64| (k * tau * i as f64 / n1).cos();
                match kind.as_str() {
                    "HannWindow" => (std::f64::consts::PI * i as f64 / n1).sin().powi(2),
                    "HammingWindow" => 25.0 / 46.0 - (1.0 - 25.0 / 46.0) * c(1.0),
                    _ => 0.42 - 0.5 * c(1.0) + 0.08 * c(2.0),
                }
            })
            .collect();
        let y = self.emit(Op::Constant(HostTensor::from_f64(dt, vec![size], &vals)), &[])?;
        self.out(n, 0, y);
        Ok(())
    }

    /// `Round`: to nearest, ties to even.
    pub(crate) fn round(&mut self, n: &NodeProto) -> R<()> {
        self.map1(n, |s, x| s.round_half_even(x))
    }
    // ---- small helpers ----

    pub(crate) fn vt(&self, v: Value) -> TensorType {
        self.g.value_type(v).clone()
    }

    pub(crate) fn un(&mut self, op: UnaryOp, x: Value) -> R<Value> {
        self.emit(Op::Unary(op), &[x])
    }

    /// A scalar constant of `like`'s dtype.
    pub(crate) fn scalar_like(&mut self, like: Value, v: f64) -> R<Value> {
        let dt = self.g.value_type(like).dtype;
        self.scalar_of(dt, v)
    }

    pub(crate) fn scalar_of(&mut self, dt: DType, v: f64) -> R<Value> {
        self.emit(Op::Constant(HostTensor::scalar(dt, v)), &[])
    }

    /// Input `i` as an IR value.
    pub(crate) fn input_v(&mut self, n: &NodeProto, i: usize) -> R<Value> {
        let name = self.in_req(n, i)?;
        self.value(&name)
    }

    /// Optional input `i`, cast to `dt` when given.
    pub(crate) fn opt_input_as(&mut self, n: &NodeProto, i: usize, dt: DType) -> R<Option<Value>> {
        let Some(name) = inp(n, i) else { return Ok(None) };
        let v = self.value(name)?;
        Ok(Some(self.cast_to(v, dt)?))
    }

    pub(crate) fn cast_to(&mut self, v: Value, dt: DType) -> R<Value> {
        if self.g.value_type(v).dtype == dt {
            Ok(v)
        } else {
            self.emit(Op::Cast(dt), &[v])
        }
    }

    pub(crate) fn reduce_v(&mut self, op: ReduceOp, x: Value, axes: Vec<i64>, keepdims: bool) -> R<Value> {
        self.emit(Op::Reduce { op, axes, keepdims }, &[x])
    }

    /// A float-only unary op's input check, as a named error.
    pub(crate) fn need_float(&self, v: &TensorType) -> R<()> {
        if v.dtype.is_float() {
            Ok(())
        } else {
            Err(self.err(format!("needs a float input, got {}", v.dtype)))
        }
    }

    /// One input, one output: `y = f(x)`.
    /// 16-bit floats compute in f32 and round once at the end.
    pub(crate) fn map1(&mut self, n: &NodeProto, f: impl FnOnce(&mut Self, Value) -> R<Value>) -> R<()> {
        let x = self.input_v(n, 0)?;
        let dt = self.vt(x).dtype;
        let low = matches!(dt, DType::F16 | DType::BF16);
        let xc = if low { self.cast_to(x, DType::F32)? } else { x };
        let y = f(self, xc)?;
        let y = if low && self.vt(y).dtype == DType::F32 { self.cast_to(y, dt)? } else { y };
        self.out(n, 0, y);
        Ok(())
    }

    pub(crate) fn axis_of(&self, axis: i64, rank: usize) -> R<usize> {
        normalize_axis(axis, rank)
            .ok_or_else(|| self.err(format!("axis {axis} is out of range for rank {rank}")))
    }

    /// `0, 1, …, len−1` (i64) laid along `axis` of a rank-`rank` tensor (1 elsewhere).
    pub(crate) fn iota_along(&mut self, len: Dim, axis: usize, rank: usize) -> R<Value> {
        let r = self.emit(Op::Range { start: 0.0, step: 1.0, len: len.clone(), dtype: DType::I64 }, &[])?;
        let mut shape = vec![Dim::Known(1); rank];
        *self.at_mut(&mut shape, axis)? = len;
        self.reshape_v(r, shape)
    }

    /// A vector parameter `[C]` reshaped to `[C, 1, …]` for an `[N, C, …]` operand.
    pub(crate) fn channel_param(&mut self, p: Value, rank: usize, dt: DType) -> R<Value> {
        let p = self.cast_to(p, dt)?;
        let t = self.vt(p);
        if t.rank() != 1 {
            return Err(self.err(format!("a per-channel parameter must have 1 axis, got {t}")));
        }
        let mut shape = vec![self.at(&t.shape, 0)?];
        shape.resize(rank.saturating_sub(1).max(1), Dim::Known(1));
        self.reshape_v(p, shape)
    }

    // ---- activations ----

    pub(crate) fn log_softmax(&mut self, x: Value, axis: i64) -> R<Value> {
        self.need_float(&self.vt(x))?;
        let m = self.reduce_v(ReduceOp::Max, x, vec![axis], true)?;
        let d = self.bin(BinaryOp::Sub, x, m)?;
        let e = self.un(UnaryOp::Exp, d)?;
        let s = self.reduce_v(ReduceOp::Sum, e, vec![axis], true)?;
        let l = self.un(UnaryOp::Log, s)?;
        self.bin(BinaryOp::Sub, d, l)
    }

    pub(crate) fn log_softmax_node(&mut self, n: &NodeProto) -> R<()> {
        let axis = attr_i(n, "axis", -1);
        self.map1(n, |s, x| s.log_softmax(x, axis))
    }

    /// `Clip`: `min(max(x, lo), hi)` (all values become `hi` when `lo > hi`, as ONNX says).
    pub(crate) fn clip(&mut self, n: &NodeProto) -> R<()> {
        let mut y = self.input_v(n, 0)?;
        let dt = self.vt(y).dtype;
        let lo = match self.opt_input_as(n, 1, dt)? {
            Some(v) => Some(v),
            None => match n.attr("min").and_then(|a| a.as_float()) {
                Some(f) => Some(self.scalar_of(dt, f as f64)?),
                None => None,
            },
        };
        let hi = match self.opt_input_as(n, 2, dt)? {
            Some(v) => Some(v),
            None => match n.attr("max").and_then(|a| a.as_float()) {
                Some(f) => Some(self.scalar_of(dt, f as f64)?),
                None => None,
            },
        };
        if let Some(lo) = lo {
            y = self.bin(BinaryOp::Max, y, lo)?;
        }
        if let Some(hi) = hi {
            y = self.bin(BinaryOp::Min, y, hi)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// Variadic `Sum` (pairwise adds) and `Mean` (the sum divided by the operand count).
    pub(crate) fn variadic(&mut self, n: &NodeProto, mean: bool) -> R<()> {
        let names: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        if names.is_empty() {
            return Err(self.err("expects at least 1 input, got 0"));
        }
        let Some((first, rest)) = names.split_first() else {
            return Err(self.err("expects at least 1 input, got 0"));
        };
        let mut acc = self.value(first)?;
        let dt = self.vt(acc).dtype;
        for name in rest {
            let b = self.value(name)?;
            let b = self.cast_to(b, dt)?;
            acc = self.bin(BinaryOp::Add, acc, b)?;
        }
        if mean && names.len() > 1 {
            let k = self.scalar_of(dt, names.len() as f64)?;
            acc = self.bin(BinaryOp::Div, acc, k)?;
        }
        self.out(n, 0, acc);
        Ok(())
    }

    /// `log(exp(x) + 1)`, as ONNX defines Softplus.
    pub(crate) fn softplus(&mut self, x: Value) -> R<Value> {
        self.need_float(&self.vt(x))?;
        let e = self.un(UnaryOp::Exp, x)?;
        let one = self.scalar_like(x, 1.0)?;
        let s = self.bin(BinaryOp::Add, e, one)?;
        self.un(UnaryOp::Log, s)
    }

    /// `max(0, min(1, alpha·x + beta))`.
    pub(crate) fn hard_sigmoid(&mut self, x: Value, alpha: f64, beta: f64) -> R<Value> {
        let a = self.scalar_like(x, alpha)?;
        let b = self.scalar_like(x, beta)?;
        let ax = self.bin(BinaryOp::Mul, x, a)?;
        let y = self.bin(BinaryOp::Add, ax, b)?;
        let one = self.scalar_like(x, 1.0)?;
        let zero = self.scalar_like(x, 0.0)?;
        let y = self.bin(BinaryOp::Min, y, one)?;
        self.bin(BinaryOp::Max, y, zero)
    }

    /// `scale·(exp(k·x) − 1)`.
    pub(crate) fn expm1_scaled(&mut self, x: Value, k: f64, scale: f64) -> R<Value> {
        self.need_float(&self.vt(x))?;
        let kx = if k == 1.0 {
            x
        } else {
            let kv = self.scalar_like(x, k)?;
            self.bin(BinaryOp::Mul, x, kv)?
        };
        let e = self.un(UnaryOp::Exp, kx)?;
        let one = self.scalar_like(x, 1.0)?;
        let d = self.bin(BinaryOp::Sub, e, one)?;
        let s = self.scalar_like(x, scale)?;
        self.bin(BinaryOp::Mul, d, s)
    }

    /// `neg_value` where `x < 0`, else `x`.
    pub(crate) fn select_neg(&mut self, x: Value, neg_value: Value) -> R<Value> {
        let z = self.scalar_like(x, 0.0)?;
        let c = self.bin(BinaryOp::Less, x, z)?;
        self.emit(Op::Where, &[c, neg_value, x])
    }

    pub(crate) fn prelu(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let slope = self.input_v(n, 1)?;
        let slope = self.cast_to(slope, self.vt(x).dtype)?;
        let sx = self.bin(BinaryOp::Mul, x, slope)?;
        let y = self.select_neg(x, sx)?;
        self.out(n, 0, y);
        Ok(())
    }

    /// `x · sigmoid(alpha·x)`.
    pub(crate) fn swish(&mut self, x: Value, alpha: f64) -> R<Value> {
        let ax = if alpha == 1.0 {
            x
        } else {
            let a = self.scalar_like(x, alpha)?;
            self.bin(BinaryOp::Mul, x, a)?
        };
        let s = self.un(UnaryOp::Sigmoid, ax)?;
        self.bin(BinaryOp::Mul, x, s)
    }

    /// `x + bias` below `−lambd`, `x − bias` above `lambd`, else 0.
    pub(crate) fn shrink(&mut self, x: Value, bias: f64, lambd: f64) -> R<Value> {
        let (nl, l) = (self.scalar_like(x, -lambd)?, self.scalar_like(x, lambd)?);
        let b = self.scalar_like(x, bias)?;
        let z = self.scalar_like(x, 0.0)?;
        let lo = self.bin(BinaryOp::Less, x, nl)?;
        let hi = self.bin(BinaryOp::Greater, x, l)?;
        let xp = self.bin(BinaryOp::Add, x, b)?;
        let xm = self.bin(BinaryOp::Sub, x, b)?;
        let mid = self.emit(Op::Where, &[hi, xm, z])?;
        self.emit(Op::Where, &[lo, xp, mid])
    }

    pub(crate) fn is_inf(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        self.need_float(&t)?;
        let (pos, neg) = (attr_i(n, "detect_positive", 1) != 0, attr_i(n, "detect_negative", 1) != 0);
        let mut y: Option<Value> = None;
        for (on, v) in [(pos, f64::INFINITY), (neg, f64::NEG_INFINITY)] {
            if on {
                let c = self.scalar_like(x, v)?;
                let e = self.bin(BinaryOp::Equal, x, c)?;
                y = Some(match y {
                    Some(p) => self.bin(BinaryOp::Or, p, e)?,
                    None => e,
                });
            }
        }
        let y = match y {
            Some(y) => y,
            None => self.emit(Op::Full { shape: t.shape.to_vec(), value: 0.0, dtype: DType::Bool }, &[])?,
        };
        self.out(n, 0, y);
        Ok(())
    }

    /// Round half to even, exactly: `floor(x)` plus 1 above the half, plus `floor(x) mod 2` at it.
    pub(crate) fn round_half_even(&mut self, x: Value) -> R<Value> {
        self.need_float(&self.vt(x))?;
        let f = self.un(UnaryOp::Floor, x)?;
        let d = self.bin(BinaryOp::Sub, x, f)?;
        let (half, one, two) =
            (self.scalar_like(x, 0.5)?, self.scalar_like(x, 1.0)?, self.scalar_like(x, 2.0)?);
        let up = self.bin(BinaryOp::Add, f, one)?;
        let odd = self.bin(BinaryOp::Mod, f, two)?;
        let tie = self.bin(BinaryOp::Add, f, odd)?;
        let above = self.bin(BinaryOp::Greater, d, half)?;
        let below = self.bin(BinaryOp::Less, d, half)?;
        let t = self.emit(Op::Where, &[below, f, tie])?;
        self.emit(Op::Where, &[above, up, t])
    }

    // ---- normalizations and reductions ----

    /// `BatchNormalization` in inference mode: `(x − mean)/√(var + ε)·scale + B`.
    pub(crate) fn batch_norm(&mut self, n: &NodeProto) -> R<()> {
        if attr_i(n, "training_mode", 0) != 0 || (1..n.output.len()).any(|i| self.output_used(n, i)) {
            return self.batch_norm_training(n);
        }
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        self.need_float(&t)?;
        let eps = attr_f(n, "epsilon", 1e-5) as f64;
        let mut p = vec![];
        for i in 1..5 {
            let v = self.input_v(n, i)?;
            p.push(self.channel_param(v, t.rank(), t.dtype)?);
        }
        let e = self.scalar_like(x, eps)?;
        let &[scale, bias, mean, var] = p.as_slice() else {
            return Err(self.err("needs scale, B, input_mean and input_var"));
        };
        let ve = self.bin(BinaryOp::Add, var, e)?;
        let sd = self.un(UnaryOp::Sqrt, ve)?;
        let c = self.bin(BinaryOp::Sub, x, mean)?;
        let y = self.bin(BinaryOp::Div, c, sd)?;
        let y = self.bin(BinaryOp::Mul, y, scale)?;
        let y = self.bin(BinaryOp::Add, y, bias)?;
        self.out(n, 0, y);
        Ok(())
    }

    /// `BatchNormalization` in training mode (opset 14+): normalized with the batch statistics
    /// (population variance over every axis but 1); outputs 1 and 2 are the running mean and
    /// variance, `running·momentum + batch·(1 − momentum)`.
    fn batch_norm_training(&mut self, n: &NodeProto) -> R<()> {
        if n.output.len() > 3 {
            return Err(self.unsupported("BatchNormalization with saved mean/variance outputs (opset < 14)"));
        }
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        self.need_float(&t)?;
        if t.rank() < 2 {
            return Err(self.err(format!("input must have at least 2 axes, got {t}")));
        }
        let (eps, mom) = (attr_f(n, "epsilon", 1e-5) as f64, attr_f(n, "momentum", 0.9) as f64);
        let axes: Vec<i64> = (0..t.rank() as i64).filter(|&a| a != 1).collect();
        let (c, var) = self.centered(x, axes)?;
        let e = self.scalar_like(x, eps)?;
        let ve = self.bin(BinaryOp::Add, var, e)?;
        let sd = self.un(UnaryOp::Sqrt, ve)?;
        let y = self.bin(BinaryOp::Div, c, sd)?;
        let (s, b) = (self.input_v(n, 1)?, self.input_v(n, 2)?);
        let s = self.channel_param(s, t.rank(), t.dtype)?;
        let b = self.channel_param(b, t.rank(), t.dtype)?;
        let y = self.bin(BinaryOp::Mul, y, s)?;
        let y = self.bin(BinaryOp::Add, y, b)?;
        self.out(n, 0, y);
        let (m, om) = (self.scalar_like(x, mom)?, self.scalar_like(x, 1.0 - mom)?);
        let shape = vec![self.at(&t.shape, 1)?];
        let mean =
            self.reduce_v(ReduceOp::Mean, x, (0..t.rank() as i64).filter(|&a| a != 1).collect(), false)?;
        let var = self.reshape_v(var, shape.clone())?;
        for (i, batch) in [(3, mean), (4, var)] {
            let run = self.input_v(n, i)?;
            let run = self.cast_to(run, t.dtype)?;
            let run = self.reshape_v(run, shape.clone())?;
            let a = self.bin(BinaryOp::Mul, run, m)?;
            let bb = self.bin(BinaryOp::Mul, batch, om)?;
            let v = self.bin(BinaryOp::Add, a, bb)?;
            self.out(n, i - 2, v);
        }
        Ok(())
    }

    /// `(x − mean)` and the mean of its square over `axes`, both keeping the axes.
    pub(crate) fn centered(&mut self, x: Value, axes: Vec<i64>) -> R<(Value, Value)> {
        let m = self.reduce_v(ReduceOp::Mean, x, axes.clone(), true)?;
        let c = self.bin(BinaryOp::Sub, x, m)?;
        let c2 = self.bin(BinaryOp::Mul, c, c)?;
        let var = self.reduce_v(ReduceOp::Mean, c2, axes, true)?;
        Ok((c, var))
    }

    pub(crate) fn instance_norm(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        self.need_float(&t)?;
        if t.rank() < 3 {
            return Err(self.err(format!("input must have at least 3 axes, got {t}")));
        }
        let eps = attr_f(n, "epsilon", 1e-5) as f64;
        let (c, var) = self.centered(x, (2..t.rank() as i64).collect())?;
        let e = self.scalar_like(x, eps)?;
        let ve = self.bin(BinaryOp::Add, var, e)?;
        let sd = self.un(UnaryOp::Sqrt, ve)?;
        let y = self.bin(BinaryOp::Div, c, sd)?;
        let s = self.input_v(n, 1)?;
        let s = self.channel_param(s, t.rank(), t.dtype)?;
        let b = self.input_v(n, 2)?;
        let b = self.channel_param(b, t.rank(), t.dtype)?;
        let y = self.bin(BinaryOp::Mul, y, s)?;
        let y = self.bin(BinaryOp::Add, y, b)?;
        self.out(n, 0, y);
        Ok(())
    }

    /// `(x − mean)/(√var + 1e-9)` over `axes` (default `[0, 2, 3]`).
    pub(crate) fn mvn(&mut self, n: &NodeProto) -> R<()> {
        let axes = attr_ints(n, "axes").unwrap_or_else(|| vec![0, 2, 3]);
        self.map1(n, |s, x| {
            s.need_float(&s.vt(x))?;
            let (c, var) = s.centered(x, axes)?;
            let sd = s.un(UnaryOp::Sqrt, var)?;
            let e = s.scalar_like(x, 1e-9)?;
            let d = s.bin(BinaryOp::Add, sd, e)?;
            s.bin(BinaryOp::Div, c, d)
        })
    }

    /// `x / ‖x‖_p` along `axis` (0 where the norm is 0).
    pub(crate) fn lp_norm(&mut self, n: &NodeProto) -> R<()> {
        let (axis, p) = (attr_i(n, "axis", -1), attr_i(n, "p", 2));
        if p != 1 && p != 2 {
            return Err(self.unsupported(format!("LpNormalization with p = {p} (only 1 and 2)")));
        }
        self.map1(n, |s, x| {
            s.need_float(&s.vt(x))?;
            let norm = if p == 1 {
                let a = s.un(UnaryOp::Abs, x)?;
                s.reduce_v(ReduceOp::Sum, a, vec![axis], true)?
            } else {
                let q = s.un(UnaryOp::Square, x)?;
                let q = s.reduce_v(ReduceOp::Sum, q, vec![axis], true)?;
                s.un(UnaryOp::Sqrt, q)?
            };
            let z = s.scalar_like(x, 0.0)?;
            let is0 = s.bin(BinaryOp::Equal, norm, z)?;
            let y = s.bin(BinaryOp::Div, x, norm)?;
            s.emit(Op::Where, &[is0, z, y])
        })
    }

    pub(crate) fn global_pool(&mut self, n: &NodeProto, op: ReduceOp) -> R<()> {
        self.map1(n, |s, x| {
            let r = s.vt(x).rank();
            if r < 3 {
                return Err(s.err(format!("input must have at least 3 axes, got rank {r}")));
            }
            s.reduce_v(op, x, (2..r as i64).collect(), true)
        })
    }

    /// `ReduceL1`, `ReduceL2`, `ReduceLogSum`, `ReduceLogSumExp`, `ReduceSumSquare`.
    pub(crate) fn reduce_named(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let axes = self.axes(n, 1)?.unwrap_or_default();
        if axes.is_empty() && attr_i(n, "noop_with_empty_axes", 0) != 0 {
            // The reduction of nothing: each op's elementwise part only.
            let y = match n.op_type() {
                "ReduceL1" | "ReduceL2" => self.un(UnaryOp::Abs, x)?,
                "ReduceSumSquare" => self.un(UnaryOp::Square, x)?,
                "ReduceLogSum" => self.un(UnaryOp::Log, x)?,
                _ => x,
            };
            self.out(n, 0, y);
            return Ok(());
        }
        let keep = attr_i(n, "keepdims", 1) != 0;
        let sum = |s: &mut Self, v: Value| s.reduce_v(ReduceOp::Sum, v, axes.clone(), keep);
        let y = match n.op_type() {
            "ReduceL1" => {
                let a = self.un(UnaryOp::Abs, x)?;
                sum(self, a)?
            }
            "ReduceL2" => {
                let q = self.un(UnaryOp::Square, x)?;
                let q = sum(self, q)?;
                if self.vt(q).dtype.is_float() {
                    self.un(UnaryOp::Sqrt, q)?
                } else {
                    return Err(self.unsupported("ReduceL2 of integers is not supported"));
                }
            }
            "ReduceSumSquare" => {
                let q = self.un(UnaryOp::Square, x)?;
                sum(self, q)?
            }
            "ReduceLogSum" => {
                self.need_float(&self.vt(x))?;
                let s = sum(self, x)?;
                self.un(UnaryOp::Log, s)?
            }
            _ => {
                self.need_float(&self.vt(x))?;
                let e = self.un(UnaryOp::Exp, x)?;
                let s = sum(self, e)?;
                self.un(UnaryOp::Log, s)?
            }
        };
        self.out(n, 0, y);
        Ok(())
    }

    /// The index of the first (or last) maximum (or minimum) of `x` along `axis`, kept as
    /// size 1: the smallest (largest) index where `x` equals its reduction.
    pub(crate) fn arg_extreme(&mut self, x: Value, axis: i64, max: bool, last: bool) -> R<Value> {
        let t = self.vt(x);
        let a = self.axis_of(axis, t.rank())?;
        let red = if max { ReduceOp::Max } else { ReduceOp::Min };
        let m = self.reduce_v(red, x, vec![a as i64], true)?;
        let eq = self.bin(BinaryOp::Equal, x, m)?;
        let len = self.at(&t.shape, a)?;
        let idx = self.iota_along(len.clone(), a, t.rank())?;
        let len = len.known().map(|k| k as f64).unwrap_or(i64::MAX as f64);
        let miss = self.scalar_of(DType::I64, if last { -1.0 } else { len })?;
        let cand = self.emit(Op::Where, &[eq, idx, miss])?;
        self.reduce_v(if last { ReduceOp::Max } else { ReduceOp::Min }, cand, vec![a as i64], true)
    }

    pub(crate) fn arg_node(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        if t.dtype == DType::Bool {
            return Err(self.err("needs numbers, got bool"));
        }
        let axis = attr_i(n, "axis", 0);
        let last = attr_i(n, "select_last_index", 0) != 0;
        let mut y = self.arg_extreme(x, axis, n.op_type() == "ArgMax", last)?;
        if attr_i(n, "keepdims", 1) == 0 {
            let a = self.axis_of(axis, t.rank())?;
            let mut shape = t.shape.to_vec();
            shape.remove(a);
            y = self.reshape_v(y, shape)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// 1 at the first maximum along `axis`, 0 elsewhere.
    pub(crate) fn hardmax(&mut self, n: &NodeProto) -> R<()> {
        let axis = attr_i(n, "axis", -1);
        self.map1(n, |s, x| {
            let t = s.vt(x);
            let a = s.axis_of(axis, t.rank())?;
            let am = s.arg_extreme(x, a as i64, true, false)?;
            let idx = s.iota_along(s.at(&t.shape, a)?, a, t.rank())?;
            let eq = s.bin(BinaryOp::Equal, idx, am)?;
            s.emit(Op::Cast(t.dtype), &[eq])
        })
    }

    // ---- layout ----

    pub(crate) fn depth_space(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        let b = usize::try_from(attr_i(n, "blocksize", 0))
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| self.err("blocksize must be a positive integer"))?;
        let Some(&[nb, c, h, w]) = t.known_dims().as_deref() else {
            return Err(self.err(format!("input must have 4 axes of known size, got {t}")));
        };
        let k = |v: &[usize]| v.iter().map(|&d| Dim::Known(d)).collect::<Vec<_>>();
        let (mid, perm, fin) = if n.op_type() == "DepthToSpace" {
            if c % (b * b) != 0 {
                return Err(self.err(format!("channels {c} are not a multiple of blocksize² {}", b * b)));
            }
            let cb = c / (b * b);
            let crd = attr_s(n, "mode").as_deref() == Some("CRD");
            let (mid, perm) = if crd {
                (vec![nb, cb, b, b, h, w], vec![0, 1, 4, 2, 5, 3])
            } else {
                (vec![nb, b, b, cb, h, w], vec![0, 3, 4, 1, 5, 2])
            };
            (mid, perm, vec![nb, cb, h * b, w * b])
        } else {
            if h % b != 0 || w % b != 0 {
                return Err(self.err(format!("spatial dims {h}×{w} are not multiples of blocksize {b}")));
            }
            let perm = if attr_s(n, "mode").as_deref() == Some("CRD") {
                vec![0, 1, 3, 5, 2, 4]
            } else {
                vec![0, 3, 5, 1, 2, 4]
            };
            (vec![nb, c, h / b, b, w / b, b], perm, vec![nb, c * b * b, h / b, w / b])
        };
        let y = self.reshape_v(x, k(&mid))?;
        let y = self.emit(Op::Transpose { perm }, &[y])?;
        let y = self.reshape_v(y, k(&fin))?;
        self.out(n, 0, y);
        Ok(())
    }

    pub(crate) fn eye_like(&mut self, n: &NodeProto) -> R<()> {
        let t = self.ty(&self.in_req(n, 0)?)?;
        let dims = t
            .known_dims()
            .filter(|d| d.len() == 2)
            .ok_or_else(|| self.err(format!("input must have 2 axes of known size, got {t}")))?;
        let dt = match n.attr("dtype").and_then(|a| a.as_int()) {
            Some(d) => crate::tensor::dtype_from_onnx(d as i32).ok_or_else(|| {
                crate::error::OnnxError::UnsupportedDtype { tensor: self.out_label(n), data_type: d as i32 }
            })?,
            None => t.dtype,
        };
        let k = attr_i(n, "k", 0);
        let &[r, c] = dims.as_slice() else {
            return Err(self.err(format!("input must have 2 axes of known size, got {t}")));
        };
        let vals: Vec<f64> =
            (0..r * c).map(|i| ((i % c) as i64 - (i / c) as i64 == k) as u8 as f64).collect();
        let y = self.emit(Op::Constant(HostTensor::from_f64(dt, dims, &vals)), &[])?;
        self.out(n, 0, y);
        Ok(())
    }

    // ---- quantization ----

    /// A scale or zero point as a tensor broadcastable to `x`: a scalar stays, a vector goes
    /// along `axis`, a blocked one is repeated `block` times along it.
    pub(crate) fn quant_param(&mut self, p: Value, x: &TensorType, axis: i64, block: usize) -> R<Value> {
        let pt = self.vt(p);
        if pt.numel() == Dim::Known(1) {
            return self.reshape_v(p, vec![]);
        }
        let a = self.axis_of(axis, x.rank())?;
        if block == 0 {
            if pt.rank() != 1 {
                return Err(self.err(format!("per-axis scale must have 1 axis, got {pt}")));
            }
            let mut shape = vec![Dim::Known(1); x.rank()];
            *self.at_mut(&mut shape, a)? = self.at(&pt.shape, 0)?;
            return self.reshape_v(p, shape);
        }
        let dims = pt.known_dims().filter(|d| d.len() == x.rank()).ok_or_else(|| {
            self.err(format!("blocked scale must have the input's rank and known dims, got {pt}"))
        })?;
        let xa =
            self.at(&x.shape, a)?.known().ok_or_else(|| self.err("blocked axis must have a known size"))?;
        let da = self.at(&dims, a)?;
        let mut up: Vec<Dim> = dims.iter().map(|&d| Dim::Known(d)).collect();
        up.insert(a + 1, Dim::Known(1));
        let v = self.reshape_v(p, up.clone())?;
        *self.at_mut(&mut up, a + 1)? = Dim::Known(block);
        let v = self.emit(Op::Expand { shape: up }, &[v])?;
        let mut flat: Vec<Dim> = dims.iter().map(|&d| Dim::Known(d)).collect();
        *self.at_mut(&mut flat, a)? = Dim::Known(da * block);
        let v = self.reshape_v(v, flat)?;
        self.slice_axis_v(v, a, 0, xa as i64, 1)
    }

    pub(crate) fn dequantize(&mut self, n: &NodeProto) -> R<()> {
        if let block @ 1.. = self.block_size(n)? {
            return self.dequantize_blocked(n, block);
        }
        let x = self.input_v(n, 0)?;
        let xt = self.vt(x);
        let scale = self.input_v(n, 1)?;
        let st = self.vt(scale).dtype;
        let (axis, block) = (attr_i(n, "axis", 1), self.block_size(n)?);
        let xf = self.cast_to(x, DType::F32)?;
        let s = self.cast_to(scale, DType::F32)?;
        let s = self.quant_param(s, &xt, axis, block)?;
        let mut c = xf;
        if let Some(z) = self.opt_input_as(n, 2, DType::F32)? {
            let z = self.quant_param(z, &xt, axis, block)?;
            c = self.bin(BinaryOp::Sub, c, z)?;
        }
        let y = self.bin(BinaryOp::Mul, c, s)?;
        let out_dt = match attr_i(n, "output_dtype", 0) {
            0 => st,
            d => crate::tensor::dtype_from_onnx(d as i32).ok_or_else(|| {
                crate::error::OnnxError::UnsupportedDtype { tensor: self.out_label(n), data_type: d as i32 }
            })?,
        };
        let y = self.cast_to(y, out_dt)?;
        self.out(n, 0, y);
        Ok(())
    }

    pub(crate) fn block_size(&self, n: &NodeProto) -> R<usize> {
        usize::try_from(attr_i(n, "block_size", 0)).map_err(|_| self.err("block_size must not be negative"))
    }

    /// `saturate(round_half_even(x / scale) + zero_point)` into int8 or uint8.
    pub(crate) fn quantize(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let xt = self.vt(x);
        let (axis, block) = (attr_i(n, "axis", 1), self.block_size(n)?);
        let zp = match inp(n, 2) {
            Some(z) => Some(self.value(z)?),
            None => None,
        };
        let out_dt = match (zp, attr_i(n, "output_dtype", 0)) {
            (Some(z), _) => self.vt(z).dtype,
            (None, 0) => DType::U8,
            (None, d) => crate::tensor::dtype_from_onnx(d as i32).ok_or_else(|| {
                crate::error::OnnxError::UnsupportedDtype { tensor: self.out_label(n), data_type: d as i32 }
            })?,
        };
        let (lo, hi) = match out_dt {
            DType::U8 => (0.0, 255.0),
            DType::I8 => (-128.0, 127.0),
            DType::I32 => (i32::MIN as f64, i32::MAX as f64),
            d => return Err(self.unsupported(format!("QuantizeLinear to {d} is not supported"))),
        };
        let xf = self.cast_to(x, DType::F32)?;
        let s = self.input_v(n, 1)?;
        let s = self.cast_to(s, DType::F32)?;
        let s = self.quant_param(s, &xt, axis, block)?;
        let q = self.bin(BinaryOp::Div, xf, s)?;
        let mut q = self.round_half_even(q)?;
        if let Some(z) = zp {
            let z = self.cast_to(z, DType::F32)?;
            let z = self.quant_param(z, &xt, axis, block)?;
            q = self.bin(BinaryOp::Add, q, z)?;
        }
        let (l, h) = (self.scalar_of(DType::F32, lo)?, self.scalar_of(DType::F32, hi)?);
        let q = self.bin(BinaryOp::Max, q, l)?;
        let q = self.bin(BinaryOp::Min, q, h)?;
        let y = self.emit(Op::Cast(out_dt), &[q])?;
        self.out(n, 0, y);
        Ok(())
    }

    /// Operand `i` as i32 minus the optional zero point `zi` (numpy broadcasting, as ONNX's
    /// reference subtracts it).
    fn int32_centered(&mut self, n: &NodeProto, i: usize, zi: usize) -> R<Value> {
        let v = self.input_v(n, i)?;
        let v = self.cast_to(v, DType::I32)?;
        match self.opt_input_as(n, zi, DType::I32)? {
            Some(z) => self.bin(BinaryOp::Sub, v, z),
            None => Ok(v),
        }
    }

    /// `MatMulInteger`: `(A − a_zp) @ (B − b_zp)` in i32.
    pub(crate) fn matmul_integer(&mut self, n: &NodeProto) -> R<()> {
        let a = self.int32_centered(n, 0, 2)?;
        let b = self.int32_centered(n, 1, 3)?;
        let y = self.emit(Op::MatMul, &[a, b])?;
        self.out(n, 0, y);
        Ok(())
    }

    /// `QLinearMatMul`: the i32 product of the centered operands, scaled by
    /// `a_scale·b_scale/y_scale`, rounded half to even, plus `y_zp`, saturated.
    pub(crate) fn qlinear_matmul(&mut self, n: &NodeProto) -> R<()> {
        let a = self.int32_centered(n, 0, 2)?;
        let b = self.int32_centered(n, 3, 5)?;
        let c = self.emit(Op::MatMul, &[a, b])?;
        let c = self.cast_to(c, DType::F64)?;
        let mut s = self.input_v(n, 1)?;
        for (i, op) in [(4, BinaryOp::Mul), (6, BinaryOp::Div)] {
            let v = self.input_v(n, i)?;
            let v = self.cast_to(v, self.vt(s).dtype)?;
            s = self.bin(op, s, v)?;
        }
        let s = self.cast_to(s, DType::F64)?;
        let d = self.bin(BinaryOp::Mul, c, s)?;
        let (d, dt) = match inp(n, 7) {
            Some(name) => {
                let z = self.value(name)?;
                let dt = self.vt(z).dtype;
                let z = self.cast_to(z, DType::F64)?;
                (self.bin(BinaryOp::Add, d, z)?, dt)
            }
            None => {
                let a0 = self.input_v(n, 0)?;
                (d, self.vt(a0).dtype)
            }
        };
        let (lo, hi) = match dt {
            DType::U8 => (0.0, 255.0),
            DType::I8 => (-128.0, 127.0),
            d => return Err(self.unsupported(format!("QLinearMatMul to {d} is not supported"))),
        };
        let q = self.round_half_even(d)?;
        let (l, h) = (self.scalar_of(DType::F64, lo)?, self.scalar_of(DType::F64, hi)?);
        let q = self.bin(BinaryOp::Max, q, l)?;
        let q = self.bin(BinaryOp::Min, q, h)?;
        let y = self.cast_to(q, dt)?;
        self.out(n, 0, y);
        Ok(())
    }

    /// `DynamicQuantizeLinear`: uint8 quantization with the scale and zero point of the
    /// input's range (including 0), as ONNX defines it.
    pub(crate) fn dynamic_quantize(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let xt = self.vt(x);
        self.need_float(&xt)?;
        let xf = self.cast_to(x, DType::F32)?;
        let z = self.scalar_of(DType::F32, 0.0)?;
        let mx = self.reduce_v(ReduceOp::Max, xf, vec![], false)?;
        let mx = self.bin(BinaryOp::Max, mx, z)?;
        let mn = self.reduce_v(ReduceOp::Min, xf, vec![], false)?;
        let mn = self.bin(BinaryOp::Min, mn, z)?;
        let range = self.bin(BinaryOp::Sub, mx, mn)?;
        let same = self.bin(BinaryOp::Equal, mx, mn)?;
        let one = self.scalar_of(DType::F32, 1.0)?;
        let range = self.emit(Op::Where, &[same, one, range])?;
        let q = self.scalar_of(DType::F32, 255.0)?;
        let scale = self.bin(BinaryOp::Div, range, q)?;
        let izp = self.bin(BinaryOp::Div, mn, scale)?;
        let izp = self.un(UnaryOp::Neg, izp)?;
        let izp = self.bin(BinaryOp::Max, izp, z)?;
        let izp = self.bin(BinaryOp::Min, izp, q)?;
        let zp = self.round_half_even(izp)?;
        let v = self.bin(BinaryOp::Div, xf, scale)?;
        let v = self.round_half_even(v)?;
        let v = self.bin(BinaryOp::Add, v, zp)?;
        let v = self.bin(BinaryOp::Max, v, z)?;
        let v = self.bin(BinaryOp::Min, v, q)?;
        let y = self.cast_to(v, DType::U8)?;
        let scale = self.cast_to(scale, xt.dtype)?;
        let zp = self.cast_to(zp, DType::U8)?;
        self.out(n, 0, y);
        self.out(n, 1, scale);
        self.out(n, 2, zp);
        Ok(())
    }

    /// ONNX `SwiGLU(a, b) = a·sigmoid(alpha·a)·b`: our `swiglu` block when `alpha` is 1.
    pub(crate) fn swiglu_node(&mut self, n: &NodeProto) -> R<()> {
        let a = self.input_v(n, 0)?;
        let b = self.input_v(n, 1)?;
        let (at, bt) = (self.vt(a), self.vt(b));
        if at != bt {
            return Err(self.err(format!("inputs must have the same type, got {at} and {bt}")));
        }
        let alpha = attr_f(n, "alpha", 1.0) as f64;
        let y = if alpha == 1.0 {
            self.emit(Op::Block(Arc::new(SwiGlu::new())), &[a, b])?
        } else {
            let s = self.swish(a, alpha)?;
            self.bin(BinaryOp::Mul, s, b)?
        };
        self.out(n, 0, y);
        Ok(())
    }

    /// `x[start:end:step]` along one axis.
    pub(crate) fn slice_axis_v(
        &mut self,
        x: Value,
        axis: usize,
        start: i64,
        end: i64,
        step: i64,
    ) -> R<Value> {
        use blockfuse_ir::{Bound, SliceSpec};
        self.emit(
            Op::Slice(SliceSpec {
                axes: vec![axis as i64],
                starts: vec![Bound::Const(start)],
                ends: vec![Bound::Const(end)],
                steps: vec![step],
            }),
            &[x],
        )
    }
}
