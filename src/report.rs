//! Reports people and tools read: the `--report json` object and the aligned text table.

use crate::BLOCK_KINDS;
use blockfuse_patterns::Report;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The JSON report: `nodes_before`, `nodes_after`, `elapsed_ms`, `blocks` (every kind, 0
/// when absent), `rules`, `near_misses` (`{rule, node, reason}`), plus `rounds`.
pub fn json_report(r: &Report) -> serde_json::Value {
    let mut blocks: BTreeMap<String, usize> = BLOCK_KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    for (k, n) in &r.blocks {
        blocks.insert(k.clone(), *n);
    }
    json!({
        "nodes_before": r.nodes_before,
        "nodes_after": r.nodes_after,
        "elapsed_ms": r.elapsed_ms,
        "blocks": blocks,
        "rules": r.rules,
        "near_misses": r.near_misses,
        "rounds": r.rounds,
    })
}

/// The text report: a table by block kind, one by rule, then near-misses grouped by reason.
pub fn text_report(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "nodes: {} -> {} ({:.1} ms, {} rounds)",
        r.nodes_before, r.nodes_after, r.elapsed_ms, r.rounds
    );
    // Columns as wide as the longest name, so that every count lines up.
    let extra = r.blocks.keys().filter(|k| !BLOCK_KINDS.contains(&k.as_str()));
    let w =
        BLOCK_KINDS.iter().copied().chain(extra.clone().map(String::as_str)).map(str::len).max().unwrap_or(0);
    let _ = writeln!(out, "\n{:<w$} {:>6}", "block", "count");
    for &k in BLOCK_KINDS {
        let _ = writeln!(out, "{:<w$} {:>6}", k, r.blocks.get(k).copied().unwrap_or(0));
    }
    for k in extra {
        let _ = writeln!(out, "{:<w$} {:>6}", k, r.blocks[k]);
    }
    let w = r.rules.keys().map(String::len).max().unwrap_or(0).max(4);
    let _ = writeln!(out, "\n{:<w$} {:>6}", "rule", "fired");
    for (k, n) in &r.rules {
        let _ = writeln!(out, "{:<w$} {:>6}", k, n);
    }
    let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for m in &r.near_misses {
        groups.entry((m.rule.as_str(), m.reason.as_str())).or_default().push(m.node.as_str());
    }
    if groups.is_empty() {
        out.push_str("\nno near-misses\n");
    } else {
        out.push_str("\nnear-misses:\n");
        for ((rule, reason), nodes) in groups {
            let _ = writeln!(
                out,
                "  {} {rule} candidate{} not fused: {reason} (e.g. {})",
                nodes.len(),
                if nodes.len() == 1 { "" } else { "s" },
                nodes[0]
            );
        }
    }
    out
}
