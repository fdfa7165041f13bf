//! Binding a graph's symbolic dims from the actual inputs, checking the inputs on the way.

use crate::error::{MlxError, Result};
use blockfuse_ir::shape::join_dims;
use blockfuse_ir::{Bindings, DType, Dim, Graph, HostTensor, TensorType};

/// Checks `inputs` against the graph inputs (count, dtype, rank, known dims) and binds every
/// symbol of their types from the actual dims. Single symbols (`seq`) bind directly;
/// products (`2*seq`, `batch*seq`) bind their one unbound symbol once the others are known.
/// Every dim is then checked under the bindings; errors name the input and the axis.
pub fn bind_inputs(g: &Graph, inputs: &[HostTensor]) -> Result<Bindings> {
    let shapes: Vec<(DType, &[usize])> = inputs.iter().map(|t| (t.dtype(), t.dims())).collect();
    bind_shapes(g, &shapes)
}

/// A graph input's type and name, and the actual dtype and dims given for it.
type Typed<'a> = (&'a TensorType, String, &'a (DType, &'a [usize]));

/// [`bind_inputs`] from the inputs' dtypes and dims alone (e.g. of MLX arrays).
pub(crate) fn bind_shapes(g: &Graph, inputs: &[(DType, &[usize])]) -> Result<Bindings> {
    let ids = g.inputs();
    if inputs.len() != ids.len() {
        return Err(MlxError::Input {
            index: usize::MAX,
            name: String::new(),
            reason: format!("the graph takes {} input(s), {} were given", ids.len(), inputs.len()),
        });
    }
    let typed: Vec<Typed<'_>> = ids
        .iter()
        .zip(inputs)
        .map(|(&id, t)| {
            let node = g.node(id);
            (&node.types[0], node.name.clone().unwrap_or_default(), t)
        })
        .collect();
    let err =
        |index: usize, name: &str, reason: String| MlxError::Input { index, name: name.to_string(), reason };
    let shown = |t: &(DType, &[usize])| {
        let dims: Vec<Dim> = t.1.iter().map(|&d| Dim::Known(d)).collect();
        format!("{}[{}]", t.0, join_dims(&dims))
    };
    for (i, (ty, name, t)) in typed.iter().enumerate() {
        if ty.dtype != t.0 || ty.rank() != t.1.len() {
            return Err(err(i, name, format!("expected {ty}, got {}", shown(t))));
        }
        for (axis, (d, &n)) in ty.shape.iter().zip(t.1).enumerate() {
            if let Some(k) = d.known() {
                if k != n {
                    return Err(err(
                        i,
                        name,
                        format!("expected {ty}, got {}: axis {axis} must be {k}", shown(t)),
                    ));
                }
            }
        }
    }

    let mut b = Bindings::new();
    // Solve dims with exactly one unbound symbol (appearing once) until nothing changes.
    loop {
        let mut progress = false;
        for (ty, _, t) in &typed {
            for (d, &n) in ty.shape.iter().zip(t.1) {
                // A size no value solves (`past+seq` shorter than `seq`, `2*seq` odd) is
                // reported below as unbindable, with the axis.
                let Some((sym, v)) = d.solve(&b, n) else { continue };
                b.insert(sym, v);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    for (i, (ty, name, t)) in typed.iter().enumerate() {
        for (axis, (d, &n)) in ty.shape.iter().zip(t.1).enumerate() {
            match d.eval(&b) {
                Some(v) if v == n => {}
                Some(v) => {
                    let vals: Vec<String> = d.symbols().map(|s| format!("{s} = {}", b[s])).collect();
                    let single = vals.len() == 1 && d.symbols().all(|s| d.is_symbol(s));
                    let shown_dim = if single {
                        vals[0].clone()
                    } else {
                        format!("{d} = {v} (with {})", vals.join(", "))
                    };
                    return Err(err(
                        i,
                        name,
                        format!("axis {axis} is {shown_dim}, got size {n} (expected {ty}, got {})", shown(t)),
                    ));
                }
                None => {
                    return Err(err(
                        i,
                        name,
                        format!("cannot bind the symbols of axis {axis} ({d}) from size {n}"),
                    ))
                }
            }
        }
    }
    Ok(b)
}

/// The dims of `shape` under `bindings`, as MLX's `i32`s.
pub(crate) fn eval_dims(shape: &[Dim], bindings: &Bindings) -> Result<Vec<i32>> {
    shape.iter().map(|d| eval_dim(d, bindings)).collect()
}

/// One dim under `bindings`, as an `i32`.
pub(crate) fn eval_dim(d: &Dim, bindings: &Bindings) -> Result<i32> {
    let v = d.eval(bindings).ok_or_else(|| {
        let missing: Vec<String> =
            d.symbols().filter(|s| !bindings.contains_key(*s)).map(|s| s.to_string()).collect();
        MlxError::Graph(format!(
            "dim {d}: symbol(s) {} are not bound by the graph inputs",
            missing.join(", ")
        ))
    })?;
    i32::try_from(v).map_err(|_| MlxError::Binding(format!("dim {d} = {v} exceeds i32")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn graph(types: &[TensorType]) -> Graph {
        let mut g = Graph::new();
        for (i, t) in types.iter().enumerate() {
            g.add_input(&format!("in{i}"), t.clone());
        }
        g
    }

    fn t(dims: &[usize]) -> HostTensor {
        HostTensor::from_f64(DType::F32, dims.to_vec(), &vec![0.0; dims.iter().product()])
    }

    #[test]
    fn binds_symbols_and_products() {
        let seq = Dim::sym("seq");
        let batch = Dim::sym("batch");
        let g = graph(&[
            TensorType::new(DType::F32, [batch.mul(&seq), Dim::Known(4)]),
            TensorType::new(DType::F32, [seq.clone(), Dim::Known(2).mul(&seq)]),
            TensorType::new(DType::F32, [Dim::sym("past").add(&seq).unwrap()]),
        ]);
        let b = bind_inputs(&g, &[t(&[6, 4]), t(&[3, 6]), t(&[8])]).unwrap();
        assert_eq!(b[&Arc::from("seq")], 3);
        assert_eq!(b[&Arc::from("batch")], 2);
        assert_eq!(b[&Arc::from("past")], 5);
        let e = bind_inputs(&g, &[t(&[6, 4]), t(&[3, 6]), t(&[2])]).unwrap_err();
        assert!(e.to_string().contains("cannot bind the symbols of axis 0 (past+seq) from size 2"), "{e}");
    }

    #[test]
    fn mismatches_name_the_input() {
        let seq = Dim::sym("seq");
        let g = graph(&[
            TensorType::new(DType::F32, [seq.clone(), Dim::Known(4)]),
            TensorType::new(DType::F32, [seq.clone()]),
        ]);
        let e = bind_inputs(&g, &[t(&[3, 4]), t(&[5])]).unwrap_err();
        assert!(
            matches!(&e, MlxError::Input { index: 1, name, reason } if name == "in1" && reason.contains("seq = 3")),
            "{e}"
        );
        let e = bind_inputs(&g, &[t(&[3, 5]), t(&[3])]).unwrap_err();
        assert!(e.to_string().contains("axis 1 must be 4"), "{e}");
        let f16 = HostTensor::from_f64(DType::F16, vec![3, 4], &[0.0; 12]);
        let e = bind_inputs(&g, &[f16, t(&[3])]).unwrap_err();
        assert!(e.to_string().contains("expected f32[seq, 4], got f16[3, 4]"), "{e}");
        assert!(bind_inputs(&g, &[t(&[3, 4])]).is_err());
    }
}
