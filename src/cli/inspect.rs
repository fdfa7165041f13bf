//! `blockfuse inspect MODEL`: the text IR and statistics.

use super::{load, Failure};
use blockfuse_ir::{text, Dim, Graph, Op};
use std::path::PathBuf;

/// Arguments of `inspect`.
#[derive(clap::Args)]
pub(super) struct Args {
    /// A `.json` blockfuse IR or an `.onnx` model.
    model: PathBuf,
    /// Statistics only, without the text dump.
    #[arg(long)]
    stats_only: bool,
}

pub(super) fn run(a: Args) -> Result<(), Failure> {
    let g = load(&a.model)?;
    if !a.stats_only {
        print!("{}", text::dump(&g)?);
        println!();
    }
    print!("{}", statistics(&g));
    Ok(())
}

/// The statistics block of `inspect`: node, constant, symbol and dtype counts and the op
/// histogram.
pub(super) fn statistics(g: &Graph) -> String {
    let mut dtypes = std::collections::BTreeMap::new();
    let mut symbols = std::collections::BTreeSet::new();
    let (mut const_bytes, mut consts) = (0usize, 0usize);
    for id in g.node_ids() {
        let n = g.node(id);
        for t in &n.types {
            *dtypes.entry(t.dtype.name()).or_insert(0usize) += 1;
            for d in &t.shape {
                if let Dim::Sym(_) = d {
                    symbols.extend(d.symbols().map(|s| s.to_string()));
                }
            }
        }
        if let Op::Constant(t) = &n.op {
            consts += 1;
            const_bytes += t.bytes().len();
        }
    }
    let mut s = String::new();
    s += &format!("nodes: {} ({} inputs, {} outputs)\n", g.node_count(), g.inputs().len(), g.outputs().len());
    s += &format!("constants: {consts}, {const_bytes} bytes\n");
    s += &format!("symbolic dims: {}\n", symbols.into_iter().collect::<Vec<_>>().join(", "));
    s += &format!(
        "dtypes (values): {}\n",
        dtypes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );
    s += &format!("\n{:<24} {:>6}\n", "op", "count");
    for (op, n) in g.op_histogram() {
        s += &format!("{op:<24} {n:>6}\n");
    }
    s
}
