//! Causal-mask recognition in the `sdpa` rule: masks that provably equal the block's causal
//! mask (`k ≤ q + Tk − Tq`) become `mask=causal` with no operand; anything else (anti-causal,
//! off by one, causal combined with padding) stays an additive or boolean operand.

mod common;
use blockfuse_ir::blocks::MaskKind;
use blockfuse_ir::*;
use common::*;

/// A mask spelling: builds the mask for a sequence length.
type MaskSpelling = Box<dyn Fn(&mut Builder<'_>, &Dim) -> Value>;

fn t4(t: &Dim) -> TensorType {
    TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(2), t.clone(), Dim::Known(8)])
}

/// Eager attention whose mask `mask(b, T)` is built in the graph; `layers` attentions share it.
fn attention(t: Dim, layers: usize, mask: impl Fn(&mut Builder<'_>, &Dim) -> Value) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let q = b.input("q", t4(&t));
    let k = b.input("k", t4(&t));
    let v = b.input("v", t4(&t));
    let m = mask(&mut b, &t);
    let mut outs = vec![];
    for layer in 0..layers {
        let kt = b.transpose(k, &[0, 1, 3, 2]).unwrap();
        // A different scale per layer (on q), so CSE keeps the layers apart.
        let c = b.scalar(DType::F32, 1.0 / (8f64.sqrt() + layer as f64));
        let qs = b.mul(q, c).unwrap();
        let s = b.matmul(qs, kt).unwrap();
        let s = b.add2(s, m).unwrap();
        let p = b.softmax(s, -1).unwrap();
        outs.push(b.matmul(p, v).unwrap());
    }
    for (i, o) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), o);
    }
    g
}

fn range(b: &mut Builder<'_>, t: &Dim, shape: Vec<Dim>) -> Value {
    let r = b.add(Op::Range { start: 0.0, step: 1.0, len: t.clone(), dtype: DType::I64 }, &[]).unwrap();
    b.reshape(r, shape).unwrap()
}

/// `triu(full(f32::MIN), k)`: the additive mask written as the upper triangle from diagonal
/// `k` of a `{t, t}` tensor of the lowest f32.
fn triu_of_min(k: i64) -> impl Fn(&mut Builder<'_>, &Dim) -> Value {
    move |b, t| {
        let shape = vec![t.clone(), t.clone()];
        let low = b.add(Op::Full { shape, value: f32::MIN as f64, dtype: DType::F32 }, &[]).unwrap();
        b.add(Op::Trilu { upper: true, k }, &[low]).unwrap()
    }
}

/// The demo decoder's spelling: `where(cols op rows + offset, 0, f32::MIN)`.
fn range_mask(op: BinaryOp, offset: i64) -> impl Fn(&mut Builder<'_>, &Dim) -> Value {
    move |b, t| {
        let one = Dim::Known(1);
        let rows = range(b, t, vec![t.clone(), one.clone()]);
        let cols = range(b, t, vec![one, t.clone()]);
        let rows = if offset != 0 {
            let o = b.scalar(DType::I64, offset as f64);
            b.add2(rows, o).unwrap()
        } else {
            rows
        };
        let allowed = b.binary(op, cols, rows).unwrap();
        let zero = b.scalar(DType::F32, 0.0);
        let low = b.scalar(DType::F32, f32::MIN as f64);
        b.select(allowed, zero, low).unwrap()
    }
}

fn sdpa_masks(g: &Graph) -> Vec<(MaskKind, usize)> {
    g.node_ids()
        .filter_map(|id| {
            let blk = g.node(id).op.as_block()?;
            let s = blk.downcast_ref::<blocks::Sdpa>()?;
            Some((s.mask, g.node(id).operands.len()))
        })
        .collect()
}

fn seq() -> Dim {
    Dim::sym("seq")
}

#[test]
fn fuses_causal_range_mask() {
    // Shared by two layers, so it enters as an additive mask, proven causal.
    let g = attention(seq(), 2, range_mask(BinaryOp::LessEqual, 0));
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("sdpa"), Some(&2), "{:?}\n{after}", report.near_misses);
    assert_eq!(sdpa_masks(&opt), vec![(MaskKind::Causal, 3); 2]);
    assert!(!after.contains("range"), "the mask computation should be gone:\n{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn causal_spellings_are_recognized() {
    let one = Dim::Known(1);
    // rows ≥ cols; cols < rows + 1; not(cols > rows) as a single-use boolean mask.
    let spellings: Vec<(&str, MaskSpelling)> = vec![
        (
            "rows >= cols",
            Box::new(|b, t| {
                let rows = range(b, t, vec![t.clone(), Dim::Known(1)]);
                let cols = range(b, t, vec![Dim::Known(1), t.clone()]);
                let keep = b.binary(BinaryOp::GreaterEqual, rows, cols).unwrap();
                let zero = b.scalar(DType::F32, 0.0);
                let low = b.scalar(DType::F32, -1e9);
                b.select(keep, zero, low).unwrap()
            }),
        ),
        ("cols < rows + 1", Box::new(range_mask(BinaryOp::Less, 1))),
        (
            "where(cols > rows, min, 0)",
            Box::new(|b, t| {
                let rows = range(b, t, vec![t.clone(), Dim::Known(1)]);
                let cols = range(b, t, vec![Dim::Known(1), t.clone()]);
                let drop = b.binary(BinaryOp::Greater, cols, rows).unwrap();
                let zero = b.scalar(DType::F32, 0.0);
                let low = b.scalar(DType::F32, f32::MIN as f64);
                b.select(drop, low, zero).unwrap()
            }),
        ),
        (
            "not(cols > rows), 4-D",
            Box::new(move |b, t| {
                let rows = range(b, t, vec![t.clone(), Dim::Known(1)]);
                let cols = range(b, t, vec![Dim::Known(1), t.clone()]);
                let drop = b.binary(BinaryOp::Greater, cols, rows).unwrap();
                let keep = b.unary(UnaryOp::Not, drop).unwrap();
                let keep = b.reshape(keep, vec![one.clone(), one.clone(), t.clone(), t.clone()]).unwrap();
                let zero = b.scalar(DType::F32, 0.0);
                let low = b.scalar(DType::F32, f32::MIN as f64);
                b.select(keep, zero, low).unwrap()
            }),
        ),
        (
            "the block's own: k + Tq <= q + Tk",
            Box::new(|b, t| {
                let rows = range(b, t, vec![t.clone(), Dim::Known(1)]);
                let cols = b
                    .add(Op::Range { start: 0.0, step: 1.0, len: t.clone(), dtype: DType::I64 }, &[])
                    .unwrap();
                let tq = b.add(Op::SymConst(vec![t.clone()]), &[]).unwrap();
                let tk = b.add(Op::SymConst(vec![t.clone()]), &[]).unwrap();
                let l = b.add2(cols, tq).unwrap();
                let r = b.add2(rows, tk).unwrap();
                let keep = b.binary(BinaryOp::LessEqual, l, r).unwrap();
                let zero = b.scalar(DType::F32, 0.0);
                let low = b.scalar(DType::F32, f32::MIN as f64);
                b.select(keep, zero, low).unwrap()
            }),
        ),
        (
            "cast(tril(ones), bool)",
            Box::new(|b, t| {
                let ones = b
                    .add(Op::Full { shape: vec![t.clone(), t.clone()], value: 1.0, dtype: DType::F32 }, &[])
                    .unwrap();
                let tri = b.add(Op::Trilu { upper: false, k: 0 }, &[ones]).unwrap();
                let keep = b.cast(tri, DType::Bool).unwrap();
                let zero = b.scalar(DType::F32, 0.0);
                let low = b.scalar(DType::F32, f32::MIN as f64);
                b.select(keep, zero, low).unwrap()
            }),
        ),
        ("triu(full(min), 1)", Box::new(triu_of_min(1))),
    ];
    for (what, mask) in &spellings {
        for (t, layers) in [(seq(), 1), (seq(), 2), (Dim::Known(5), 1), (Dim::Known(80), 2)] {
            let g = attention(t.clone(), layers, mask);
            let (_, after, report, opt) = fuse(&g);
            assert_eq!(report.blocks.get("sdpa"), Some(&layers), "{what} T={t}: {:?}", report.near_misses);
            assert_eq!(sdpa_masks(&opt), vec![(MaskKind::Causal, 3); layers], "{what} T={t}:\n{after}");
            assert_same_values(&g, &opt, 1e-5);
        }
    }
}

/// Masks that look causal but are not: each keeps its operand, with the same values.
#[test]
fn negative_near_causal_masks_stay_operands() {
    let padding = |b: &mut Builder<'_>, t: &Dim| {
        let causal = range_mask(BinaryOp::LessEqual, 0)(b, t);
        let pad = b.input(
            "pad",
            TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(1), Dim::Known(1), t.clone()]),
        );
        b.add2(causal, pad).unwrap()
    };
    let cases: Vec<(&str, MaskSpelling)> = vec![
        ("anti-causal cols >= rows", Box::new(range_mask(BinaryOp::GreaterEqual, 0))),
        ("off by one: cols <= rows + 1", Box::new(range_mask(BinaryOp::LessEqual, 1))),
        ("strict: cols < rows", Box::new(range_mask(BinaryOp::Less, 0))),
        ("causal + padding", Box::new(padding)),
        ("triu(full(min), 0)", Box::new(triu_of_min(0))),
        (
            "a soft bias -10 is not a drop",
            Box::new(|b, t| {
                let rows = range(b, t, vec![t.clone(), Dim::Known(1)]);
                let cols = range(b, t, vec![Dim::Known(1), t.clone()]);
                let keep = b.binary(BinaryOp::LessEqual, cols, rows).unwrap();
                let zero = b.scalar(DType::F32, 0.0);
                let low = b.scalar(DType::F32, -10.0);
                b.select(keep, zero, low).unwrap()
            }),
        ),
    ];
    for (what, mask) in &cases {
        for (t, layers) in [(seq(), 1), (seq(), 2), (Dim::Known(5), 2)] {
            let g = attention(t.clone(), layers, mask);
            let (_, after, _, opt) = fuse(&g);
            let masks = sdpa_masks(&opt);
            // (A single-use `where(keep, 0, -10)` is a boolean-mask near miss: no block.)
            assert!(masks.len() == layers || what.contains("soft"), "{what} T={t}: {masks:?}");
            assert!(
                masks.iter().all(|(k, n)| matches!(k, MaskKind::Additive | MaskKind::Boolean) && *n == 4),
                "{what} T={t}: {masks:?}\n{after}"
            );
            assert_same_values(&g, &opt, 1e-5);
        }
    }
}
