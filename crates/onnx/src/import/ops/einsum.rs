//! `Einsum` without repeated labels in one operand (no diagonals): every operand is
//! transposed and reshaped onto the joint label order, the operands are multiplied with
//! broadcasting, the labels not in the output are summed, and the result is transposed into
//! the output order.

use crate::import::prelude::*;

/// The labels of one operand (ellipsis axes become labels `'\u{1}'`, `'\u{2}'`, …, aligned to
/// the right so that they broadcast like numpy).
fn labels(term: &str, rank: usize, ell: &mut usize) -> Result<Vec<char>, String> {
    let letters = term.replace("...", "");
    if !letters.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!("bad term '{term}'"));
    }
    let named = letters.chars().count();
    if !term.contains("...") {
        if named != rank {
            return Err(format!("term '{term}' has {named} labels for an operand of rank {rank}"));
        }
        return Ok(letters.chars().collect());
    }
    let k =
        rank.checked_sub(named).ok_or_else(|| format!("term '{term}' has more labels than rank {rank}"))?;
    *ell = (*ell).max(k);
    let (pre, post) = term.split_once("...").ok_or_else(|| format!("term '{term}' has no '...'"))?;
    let mut out: Vec<char> = pre.chars().collect();
    // Right-aligned: the last ellipsis axis is always '\u{1}'.
    out.extend((0..k).rev().map(|i| char::from(1 + i as u8)));
    out.extend(post.chars());
    Ok(out)
}

impl Importer {
    pub(crate) fn einsum_node(&mut self, n: &NodeProto) -> R<()> {
        let eq: String =
            attr_s(n, "equation").unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
        let names: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        let mut vals = vec![];
        for name in &names {
            vals.push(self.value(name)?);
        }
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        let terms: Vec<&str> = lhs.split(',').collect();
        if terms.len() != vals.len() {
            return Err(self.err(format!(
                "equation '{eq}' has {} terms for {} inputs",
                terms.len(),
                vals.len()
            )));
        }
        let mut ell = 0;
        let mut per = vec![];
        for (t, v) in terms.iter().zip(&vals) {
            let ls = labels(t, self.vt(*v).rank(), &mut ell).map_err(|e| self.err(e))?;
            let mut seen = std::collections::HashSet::new();
            if !ls.iter().all(|c| seen.insert(*c)) {
                return Err(self.unsupported(format!(
                    "Einsum with a repeated label in '{t}' (a diagonal) is not supported"
                )));
            }
            per.push(ls);
        }
        let ell_labels: Vec<char> = (0..ell).rev().map(|i| char::from(1 + i as u8)).collect();
        // Joint order: ellipsis labels first, then letters in order of first appearance.
        let mut all: Vec<char> = ell_labels.clone();
        for ls in &per {
            for c in ls {
                if !all.contains(c) {
                    all.push(*c);
                }
            }
        }
        let out: Vec<char> = match rhs {
            Some(r) => {
                let r = r.replace("...", &ell_labels.iter().collect::<String>());
                let o: Vec<char> = r.chars().collect();
                if let Some(c) = o.iter().find(|c| !all.contains(c)) {
                    return Err(self.err(format!("output label '{c}' is not in any input")));
                }
                o
            }
            None => {
                let mut letters: Vec<char> = all
                    .iter()
                    .copied()
                    .filter(|c| {
                        c.is_ascii_alphabetic() && per.iter().flatten().filter(|d| *d == c).count() == 1
                    })
                    .collect();
                letters.sort_unstable();
                ell_labels.iter().copied().chain(letters).collect()
            }
        };
        // The size of every label (1 where an operand broadcasts it).
        let mut size: Vec<Dim> = vec![Dim::Known(1); all.len()];
        for (ls, v) in per.iter().zip(&vals) {
            let t = self.vt(*v);
            for (c, d) in ls.iter().zip(t.shape.iter()) {
                // (`all` holds every label of every operand.)
                let slot = all.iter().position(|a| a == c).and_then(|j| size.get_mut(j));
                let slot = slot.ok_or_else(|| self.err(format!("label '{c}' is not in the joint order")))?;
                if *d != Dim::Known(1) {
                    *slot = d.clone();
                }
            }
        }
        // Each operand on the joint order, then the product.
        let mut acc: Option<Value> = None;
        for (ls, v) in per.iter().zip(&vals) {
            let mut order: Vec<usize> = (0..ls.len()).collect();
            order.sort_by_key(|&i| ls.get(i).and_then(|l| all.iter().position(|a| a == l)));
            let mut x = *v;
            if order.iter().enumerate().any(|(i, &p)| i != p) {
                x = self.emit(Op::Transpose { perm: order.clone() }, &[x])?;
            }
            let t = self.vt(x);
            let shape: Option<Vec<Dim>> = all
                .iter()
                .map(|c| match ls.iter().position(|l| l == c) {
                    Some(_) => {
                        let k = order.iter().position(|&i| ls.get(i) == Some(c))?;
                        t.shape.get(k).cloned()
                    }
                    None => Some(Dim::Known(1)),
                })
                .collect();
            let shape = shape.ok_or_else(|| self.err("an operand's labels do not match its rank"))?;
            x = self.reshape_v(x, shape)?;
            acc = Some(match acc {
                Some(a) => self.bin(BinaryOp::Mul, a, x)?,
                None => x,
            });
        }
        let mut y = acc.ok_or_else(|| self.err("Einsum needs at least one input"))?;
        let summed: Vec<i64> =
            all.iter().enumerate().filter(|(_, c)| !out.contains(c)).map(|(j, _)| j as i64).collect();
        let kept: Vec<char> = all.iter().copied().filter(|c| out.contains(c)).collect();
        if !summed.is_empty() {
            y = self.reduce_v(ReduceOp::Sum, y, summed, false)?;
        } else {
            // Labels broadcast by every operand keep their size.
            let full: Vec<Dim> = size.clone();
            if self.vt(y).shape.to_vec() != full {
                y = self.emit(Op::Expand { shape: full }, &[y])?;
            }
        }
        // (Every output label is in `all`, so in `kept`.)
        let perm: Option<Vec<usize>> = out.iter().map(|c| kept.iter().position(|k| k == c)).collect();
        let perm = perm.ok_or_else(|| self.err("an output label is not kept"))?;
        if perm.iter().enumerate().any(|(i, &p)| i != p) {
            y = self.emit(Op::Transpose { perm }, &[y])?;
        }
        self.out(n, 0, y);
        Ok(())
    }
}
