//! The CLI contract: every subcommand, good and bad input, exit codes and one-line errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn blockfuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blockfuse")).args(args).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status 2 and exactly one line on stderr naming the problem.
fn assert_bad(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one-line error expected, got:\n{err}");
    assert!(err.contains(needle), "error should mention {needle:?}: {err}");
}

/// A fresh file per call: tests run in parallel.
/// The count in the first text-report row `NAME   COUNT` (columns padded to the longest name).
fn table_row(out: &str, name: &str) -> Option<u64> {
    out.lines().find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
        [k, n] if k == name => n.parse().ok(),
        _ => None,
    })
}

fn temp(name: &str, contents: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("blockfuse-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// A small graph as JSON: the demo decoder's IR written by `optimize -o` of itself is too
/// big for a fixture, so this is an RMSNorm in exporter spelling.
fn rms_norm_json() -> PathBuf {
    let g = blockfuse_models::rms_norm_graph(8).unwrap();
    temp("rms.json", &blockfuse::ir::json::to_json(&g).unwrap())
}

/// The [`rms_norm_json`] file, an input `x` `{rows, 8}` of `i · step − shift`, and the
/// fallback evaluator's outputs on it (the values the CLI's runs are checked against).
fn rms_norm_case(
    rows: usize,
    step: f32,
    shift: f32,
) -> (PathBuf, blockfuse::ir::HostTensor, Vec<blockfuse::ir::HostTensor>) {
    let p = rms_norm_json();
    let g = blockfuse::load_model(&p).unwrap();
    let v: Vec<f32> = (0..rows * 8).map(|i| i as f32 * step - shift).collect();
    let x = blockfuse::ir::HostTensor::from_f32(vec![rows, 8], &v);
    let want = blockfuse::run_backend(&g, std::slice::from_ref(&x), "fallback").unwrap();
    (p, x, want)
}

/// An RMSNorm in exporter spelling whose eps is a graph input: the rule refuses it (the block
/// needs a constant eps) with a near-miss.
fn rms_norm_with_eps_input_json() -> PathBuf {
    use blockfuse::ir::*;
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(8)]));
    let eps = b.input("eps", TensorType::new(DType::F32, []));
    let two = b.scalar(DType::F32, 2.0);
    let sq = b.binary(BinaryOp::Pow, x, two).unwrap();
    let m = b.mean_last(sq).unwrap();
    let a = b.add2(m, eps).unwrap();
    let r = b.unary(UnaryOp::Rsqrt, a).unwrap();
    let y = b.mul(x, r).unwrap();
    g.add_output("y", y);
    temp("rms_eps_input.json", &json::to_json(&g).unwrap())
}

#[test]
fn a_near_miss_names_a_node_id_that_the_dump_shows() {
    let p = rms_norm_with_eps_input_json();
    let out_path = p.with_file_name("rms_eps_input.opt.json");
    let o =
        blockfuse(&["optimize", p.to_str().unwrap(), "--report", "json", "-o", out_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let miss = report["near_misses"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["rule"] == "rms_norm"))
        .unwrap_or_else(|| panic!("no rms_norm near-miss: {report}"));
    assert!(miss["reason"].as_str().unwrap().contains("eps is not a constant"), "{miss}");
    let id = miss["node"].as_str().unwrap().split(' ').next().unwrap().to_string();
    assert!(id.starts_with('%'), "{miss}");
    // The same `%N` heads a node line in the dump of the input and of the optimized file.
    for file in [&p, &out_path] {
        let dump = stdout(&blockfuse(&["inspect", file.to_str().unwrap()]));
        assert!(dump.contains(&format!("  {id} = ")), "{id} is not a node of {}:\n{dump}", file.display());
    }
}

#[test]
fn help_lists_every_subcommand() {
    let o = blockfuse(&["--help"]);
    assert!(o.status.success());
    for sub in ["inspect", "optimize", "run", "demo", "bench", "generate", "backends"] {
        assert!(stdout(&o).contains(sub), "--help lacks {sub}");
    }
}

#[test]
fn bad_flags_and_subcommands_exit_2() {
    assert_bad(&blockfuse(&["frobnicate"]), "unrecognized subcommand");
    assert_bad(&blockfuse(&["optimize", "--no-such-flag", "x.json"]), "--no-such-flag");
    assert_bad(&blockfuse(&["optimize", "x.json", "--report", "xml"]), "xml");
    assert_bad(&blockfuse(&["run", "x.json", "--backend", "tpu"]), "tpu");
    assert_bad(&blockfuse(&["inspect"]), "required");
}

#[test]
fn bad_paths_exit_2() {
    assert_bad(&blockfuse(&["inspect", "/no/such/graph.json"]), "/no/such/graph.json");
    assert_bad(&blockfuse(&["optimize", "/no/such/model.onnx"]), "/no/such/model.onnx");
    assert_bad(&blockfuse(&["run", "/no/such/model.onnx"]), "/no/such/model.onnx");
    assert_bad(&blockfuse(&["bench", "/no/such/model.json"]), "/no/such/model.json");
    assert_bad(&blockfuse(&["inspect", "graph.txt"]), "unknown model type");
}

#[test]
fn malformed_files_exit_2() {
    let p = temp("broken.json", "{\"format\": \"blockfuse-ir\", \"version\": 1, \"nodes\": [");
    assert_bad(&blockfuse(&["inspect", p.to_str().unwrap()]), "malformed JSON");
    let p = temp("other.json", "{\"format\": \"something-else\", \"version\": 1}");
    assert_bad(&blockfuse(&["optimize", p.to_str().unwrap()]), "not a blockfuse-ir document");
    let p = temp("garbage.onnx", "this is not protobuf");
    assert_bad(&blockfuse(&["inspect", p.to_str().unwrap()]), "garbage.onnx");
    let p = temp(
        "unknown_op.json",
        r#"{"format":"blockfuse-ir","version":1,"nodes":[{"id":0,"op":"warp","args":[]}],"outputs":[]}"#,
    );
    assert_bad(&blockfuse(&["optimize", p.to_str().unwrap()]), "unknown op 'warp'");
}

#[test]
fn inspect_prints_dump_and_statistics() {
    let p = rms_norm_json();
    let o = blockfuse(&["inspect", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("reduce_mean{axes=[-1], keepdims=true}"), "{out}");
    assert!(out.contains("symbolic dims: batch"), "{out}");
    assert!(out.contains("constants:"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("pow") && l.trim_end().ends_with('1')), "{out}");
}

#[test]
fn optimize_json_report_follows_the_contract() {
    let p = rms_norm_json();
    let out_path = p.with_file_name("rms.opt.json");
    let o = blockfuse(&[
        "optimize",
        p.to_str().unwrap(),
        "--report",
        "json",
        "--verify",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(stdout(&o).trim()).expect("one JSON object on stdout");
    for key in ["nodes_before", "nodes_after", "elapsed_ms", "blocks", "rules", "near_misses"] {
        assert!(report.get(key).is_some(), "report lacks {key}: {report}");
    }
    for kind in blockfuse::BLOCK_KINDS {
        assert!(report["blocks"][kind].is_u64(), "blocks lacks {kind}");
    }
    assert_eq!(report["blocks"]["rms_norm"], 1);
    assert_eq!(report["verify"]["ok"], true);
    // The written IR reads back and holds the block.
    let o = blockfuse(&["inspect", out_path.to_str().unwrap(), "--stats-only"]);
    assert!(stdout(&o).contains("block.rms_norm"), "{}", stdout(&o));
}

#[test]
fn optimize_text_report_and_disable() {
    let p = rms_norm_json();
    let o = blockfuse(&["optimize", p.to_str().unwrap(), "--disable", "rms_norm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(table_row(&stdout(&o), "rms_norm") == Some(0), "{}", stdout(&o));
    assert_bad(&blockfuse(&["optimize", p.to_str().unwrap(), "--disable", "nope"]), "no such rule");
}

#[test]
fn optimize_writes_dot() {
    let p = rms_norm_json();
    let dot = p.with_file_name("after.dot");
    let o = blockfuse(&["optimize", p.to_str().unwrap(), "--dot-after", dot.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(dot).unwrap();
    assert!(text.starts_with("digraph") && text.contains("block.rms_norm"), "{text}");
}

#[test]
fn run_on_both_backends() {
    let p = rms_norm_json();
    for backend in ["fallback", "mlx"] {
        let o = blockfuse(&["run", p.to_str().unwrap(), "--optimize", "--backend", backend]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        assert!(stdout(&o).contains("y: f32[4, 8]"), "{}", stdout(&o));
    }
    assert_bad(&blockfuse(&["run", p.to_str().unwrap(), "--backend", "mlx", "--device", "gpu"]), "");
}

#[test]
fn run_check_bad_directory_exits_2() {
    let p = rms_norm_json();
    assert_bad(&blockfuse(&["run", p.to_str().unwrap(), "--check", "/no/such/dir"]), "/no/such/dir");
}

#[test]
fn bench_prints_side_by_side_ratio() {
    let p = rms_norm_json();
    let o = blockfuse(&["bench", p.to_str().unwrap(), "--runs", "2", "--sym-size", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("optimized") && stdout(&o).contains("ratio"), "{}", stdout(&o));
}

#[test]
fn run_check_passes_on_the_truth_and_fails_on_a_lie() {
    use blockfuse::ir::HostTensor;
    use blockfuse::onnx::test_data::write_tensor_pb;
    let (p, x, truth) = rms_norm_case(3, 0.25, 3.0);
    let good = p.with_file_name("good");
    let bad = p.with_file_name("bad");
    for (dir, out) in [(&good, truth[0].clone()), (&bad, HostTensor::from_f32(vec![3, 8], &[0.0; 24]))] {
        std::fs::create_dir_all(dir).unwrap();
        write_tensor_pb(dir.join("input_0.pb"), "x", &x).unwrap();
        write_tensor_pb(dir.join("output_0.pb"), "y", &out).unwrap();
    }
    for backend in ["fallback", "mlx"] {
        let o = blockfuse(&[
            "run",
            p.to_str().unwrap(),
            "--optimize",
            "--backend",
            backend,
            "--check",
            good.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{backend}: {}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("y: max_abs") && stdout(&o).contains("ok"), "{}", stdout(&o));
        let o =
            blockfuse(&["run", p.to_str().unwrap(), "--backend", backend, "--check", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{backend}: {}", stderr(&o));
        assert!(stdout(&o).contains("MISMATCH"), "{}", stdout(&o));
    }
}

#[test]
fn demo_fuses_and_agrees_across_backends() {
    let o = blockfuse(&["demo", "--layers", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for (kind, n) in [("rms_norm", 1), ("residual_rms_norm", 2), ("rope", 2), ("sdpa", 1), ("swiglu", 1)] {
        assert_eq!(table_row(&out, kind), Some(n), "demo output's {kind} row:\n{out}");
    }
    assert!(out.contains("no near-misses"), "{out}");
    // Every backend/graph row reports an error against the reference below 1e-4.
    let rows: Vec<&str> =
        out.lines().filter(|l| l.starts_with("fallback") || l.starts_with("mlx-cpu")).collect();
    assert_eq!(rows.len(), 4, "{out}");
    for row in rows {
        let err: f64 = row.split_whitespace().last().unwrap().parse().unwrap();
        assert!(err < 1e-4, "{row}");
    }
    let path = temp("dec.json", "");
    let o = blockfuse(&["demo", "--layers", "1", "--export", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = blockfuse::load_model(&path).unwrap();
    assert!(g.node_count() > 50);
}

/// `run --check` on a real export, as imported and optimized, on both backends.
#[test]
fn run_check_on_a_corpus_model() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/llama__sdpa__dynamo");
    if !dir.exists() {
        eprintln!("!!! SKIPPED: ../shared/corpus not found !!!");
        return;
    }
    let model = dir.join("model.onnx");
    for set in ["test_data_set_0", "test_data_set_1"] {
        for backend in ["fallback", "mlx"] {
            for optimize in [false, true] {
                let mut args = vec!["run", model.to_str().unwrap(), "--backend", backend];
                if optimize {
                    args.push("--optimize");
                }
                let check = dir.join(set);
                args.extend(["--check", check.to_str().unwrap()]);
                let o = blockfuse(&args);
                assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
                assert!(stdout(&o).starts_with("out: max_abs"), "{}", stdout(&o));
            }
        }
    }
}

#[test]
fn backends_lists_the_registry_with_capabilities() {
    let o = blockfuse(&["backends"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in ["fallback", "mlx:cpu", "mlx:gpu"] {
        assert!(out.lines().any(|l| l.starts_with(name)), "{name} missing:\n{out}");
    }
    // MLX lowers the built-in blocks natively; the fallback evaluator lowers none.
    let mlx = out.lines().find(|l| l.starts_with("mlx:cpu")).unwrap();
    assert!(mlx.contains("RmsNorm") && mlx.contains("Sdpa") && mlx.contains("bf16"), "{mlx}");
    let fb = out.lines().find(|l| l.starts_with("fallback")).unwrap();
    assert!(fb.trim_end().ends_with('-'), "{fb}");
}

#[test]
fn verify_against_a_backend_by_name() {
    let p = rms_norm_json();
    for against in ["fallback", "mlx", "mlx:cpu"] {
        let o = blockfuse(&["optimize", p.to_str().unwrap(), "--verify", "--against", against]);
        assert!(o.status.success(), "{against}: {}", stderr(&o));
        assert!(stdout(&o).contains(&format!("verify ({against})")), "{}", stdout(&o));
    }
    assert_bad(
        &blockfuse(&["optimize", p.to_str().unwrap(), "--verify", "--against", "tpu"]),
        "no such backend",
    );
    assert_bad(&blockfuse(&["optimize", p.to_str().unwrap(), "--verify", "--against", "mlx:gpu"]), "gpu");
}

#[test]
fn run_binds_symbolic_sizes() {
    let p = rms_norm_json();
    let o = blockfuse(&["run", p.to_str().unwrap(), "--bind", "batch=7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "y: f32[7, 8]");
    assert_bad(&blockfuse(&["run", p.to_str().unwrap(), "--bind", "batch"]), "NAME=SIZE");
}

/// The tiny KV-cache Llama built through the builder, written as JSON, decodes 32 tokens on
/// MLX's CPU with every step's logits equal to the fallback evaluator's; the session plans
/// its lowering twice (the prefill shape and the decode shape), not once per token.
#[test]
fn generate_decodes_32_tokens_on_mlx_equal_to_the_fallback() {
    let path = temp("kv.json", "");
    let o = blockfuse(&["demo", "--export", path.to_str().unwrap(), "--kv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let args = ["generate", path.to_str().unwrap(), "--prompt-len", "6", "--tokens", "32"];
    let o = blockfuse(&[&args[..], &["--backend", "mlx", "--check"]].concat());
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("cache pairs: 4"), "{out}");
    assert!(out.contains("check: 33 steps equal to the fallback evaluator's"), "{out}");
    let lowerings = out.lines().find(|l| l.starts_with("lowerings")).unwrap();
    assert_eq!(lowerings.split_whitespace().last(), Some("2"), "{out}");
    for row in ["prefill ms", "decode ms/token", "tokens/s"] {
        assert!(out.contains(row), "{out}");
    }
    // The same tokens come out of the fallback evaluator, unoptimized.
    let tokens = |o: &Output| stdout(o).lines().find(|l| l.starts_with("tokens:")).unwrap().to_string();
    let plain = blockfuse(&[&args[..], &["--no-optimize"]].concat());
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_eq!(tokens(&plain), tokens(&o));
}

/// The concat-form cache (`present = concat(past, new)`, growing by one token per step)
/// decodes on MLX's CPU equal to the fallback evaluator; every cache length is a new input
/// shape, so the session plans one lowering per step.
#[test]
fn generate_decodes_a_concat_form_cache_on_mlx_equal_to_the_fallback() {
    let args =
        ["generate", "tiny-kv-concat", "--prompt-len", "5", "--tokens", "8", "--backend", "mlx", "--check"];
    let o = blockfuse(&args);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("cache pairs: 4"), "{out}");
    assert!(out.contains("check: 9 steps equal to the fallback evaluator's"), "{out}");
    let lowerings = out.lines().find(|l| l.starts_with("lowerings")).unwrap();
    assert_eq!(lowerings.split_whitespace().last(), Some("9"), "{out}");
}

#[test]
fn generate_rejects_models_without_a_cache() {
    let p = rms_norm_json();
    assert_bad(&blockfuse(&["generate", p.to_str().unwrap()]), "no cache pairs");
    let o = blockfuse(&["generate", "tiny-kv", "--prompt-len", "60", "--tokens", "10"]);
    assert_bad(&o, "the cache holds 64 positions");
    let o = blockfuse(&["generate", "tiny-kv", "--cache-pair", "nope=logits"]);
    assert_bad(&o, "no input \"nope\"");
}

/// `run --inputs DIR` (`.npy` named after the inputs) and `--outputs DIR` (`.npy` per
/// output): the written output equals the fallback evaluator's, on both backends.
#[test]
fn run_reads_and_writes_npy_values() {
    let (p, x, want) = rms_norm_case(2, 0.5, 4.0);
    let inputs = p.with_file_name("npy_in");
    std::fs::create_dir_all(&inputs).unwrap();
    // f64 on disk: cast to the graph input's f32 when read.
    blockfuse::values::write_npy(&inputs.join("x.npy"), &x.cast(blockfuse::ir::DType::F64)).unwrap();
    for backend in ["fallback", "mlx"] {
        let outputs = p.with_file_name(format!("npy_out_{backend}"));
        let o = blockfuse(&[
            "run",
            p.to_str().unwrap(),
            "--optimize",
            "--backend",
            backend,
            "--inputs",
            inputs.to_str().unwrap(),
            "--outputs",
            outputs.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), "y: f32[2, 8]");
        let y = blockfuse::values::read_npy(&outputs.join("y.npy")).unwrap();
        let c = blockfuse::compare::compare(
            &y,
            &want[0],
            blockfuse::compare::Tolerance { rtol: 1e-6, atol: 1e-6 },
        );
        assert!(c.passed(), "{backend}: {c:?}");
    }
    let empty = p.with_file_name("npy_missing");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("other.npy"), b"").unwrap();
    assert_bad(
        &blockfuse(&["run", p.to_str().unwrap(), "--inputs", empty.to_str().unwrap()]),
        "graph input \"x\"",
    );
}

/// `optimize --quantize` reports what it packed, and `-o *.onnx` writes ONNX that reads back.
#[test]
fn optimize_quantizes_and_writes_onnx() {
    let dec = temp("qdec.json", "");
    let o = blockfuse(&["demo", "--layers", "1", "--export", dec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q = dec.with_file_name("q.json");
    let o = blockfuse(&["optimize", dec.to_str().unwrap(), "--quantize", "8:64", "-o", q.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("quantize 8-bit, groups of 64: 7 matmul(s)"), "{}", stderr(&o));
    let o = blockfuse(&["inspect", q.to_str().unwrap(), "--stats-only"]);
    assert!(stdout(&o).contains("block.quantized_matmul"), "{}", stdout(&o));
    assert!(blockfuse(&["run", q.to_str().unwrap()]).status.success());
    assert_bad(&blockfuse(&["optimize", dec.to_str().unwrap(), "--quantize", "3"]), "bits");
    let onnx = dec.with_file_name("dec.onnx");
    let o = blockfuse(&["optimize", dec.to_str().unwrap(), "-o", onnx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = blockfuse(&["inspect", onnx.to_str().unwrap(), "--stats-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `optimize --fuse-projections`: q/k/v and gate/up of the demo layer become one matmul each,
/// the blocks stay the same, and `--verify` finds the same values.
#[test]
fn optimize_fuses_projections_on_request() {
    let dec = temp("pdec.json", "");
    let o = blockfuse(&["demo", "--layers", "1", "--export", dec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["optimize", dec.to_str().unwrap(), "--report", "json", "--verify"];
        args.extend_from_slice(extra);
        let o = blockfuse(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(stdout(&o).trim()).expect("one JSON object on stdout")
    };
    let (plain, fused) = (report(&[]), report(&["--fuse-projections"]));
    assert_eq!(plain["rules"].get("fuse_projections"), None);
    assert_eq!(fused["rules"]["fuse_projections"], 2);
    assert_eq!(fused["blocks"], plain["blocks"]);
    // 5 matmuls (q, k, v; gate, up) become 2 matmuls and 2 splits.
    let nodes = |r: &serde_json::Value| r["nodes_after"].as_u64().unwrap();
    assert_eq!(nodes(&plain) - nodes(&fused), 1);
    assert_eq!(fused["verify"]["ok"], true);
}

/// `y = Reshape(x, shape)` with `shape` a graph input, as an `.onnx` file: its output shape
/// depends on the value of `shape`.
fn reshape_by_input_onnx() -> PathBuf {
    use blockfuse::onnx::build::{model, node, opset, value_info_fixed as vi};
    use blockfuse::onnx::proto::{tensor_proto::DataType, GraphProto};
    let graph = GraphProto {
        node: vec![node("Reshape", "r", &["x", "shape"], &["y"])],
        input: vec![vi("x", DataType::Float, &[2, 3]), vi("shape", DataType::Int64, &[2])],
        output: vec![vi("y", DataType::Float, &[])],
        ..Default::default()
    };
    let model = model(10, vec![opset("", 21)], graph);
    let p = temp("reshape.onnx", "");
    blockfuse::onnx::model::save_model(&p, &model).unwrap();
    p
}

/// `run --inputs` / `--check` on a model whose shapes depend on an input's value: the CLI
/// specializes the graph on that value and says so; without values it names what to give.
#[test]
fn run_specializes_on_shape_inputs() {
    use blockfuse::ir::HostTensor;
    use blockfuse::onnx::test_data::write_tensor_pb;
    let p = reshape_by_input_onnx();
    let x = HostTensor::from_f32(vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // .npy inputs; the written output has the specialized shape and the data.
    let inputs = p.with_file_name("spec_in");
    std::fs::create_dir_all(&inputs).unwrap();
    blockfuse::values::write_npy(&inputs.join("x.npy"), &x).unwrap();
    blockfuse::values::write_npy(&inputs.join("shape.npy"), &HostTensor::from_i64(vec![2], &[3, 2])).unwrap();
    let outputs = p.with_file_name("spec_out");
    let o = blockfuse(&[
        "run",
        p.to_str().unwrap(),
        "--optimize",
        "--inputs",
        inputs.to_str().unwrap(),
        "--outputs",
        outputs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("specialized the graph on the values of inputs shape"), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "y: f32[3, 2]");
    let y = blockfuse::values::read_npy(&outputs.join("y.npy")).unwrap();
    assert_eq!((y.dims(), y.to_f64_vec()), (&[3usize, 2][..], x.to_f64_vec()));
    // A test-data directory (unnamed inputs, by position): checked against its reference.
    for (dir, shape, want) in [("spec_good", [6i64, 1], vec![6usize, 1]), ("spec_bad", [1, 6], vec![6, 1])] {
        let dir = p.with_file_name(dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_tensor_pb(dir.join("input_0.pb"), "", &x).unwrap();
        write_tensor_pb(dir.join("input_1.pb"), "", &HostTensor::from_i64(vec![2], &shape)).unwrap();
        write_tensor_pb(dir.join("output_0.pb"), "y", &x.reshaped(want).unwrap()).unwrap();
        let o = blockfuse(&["run", p.to_str().unwrap(), "--check", dir.to_str().unwrap()]);
        assert!(stderr(&o).contains("specialized the graph on the values of inputs shape"), "{}", stderr(&o));
        let code = if shape[0] == 6 { 0 } else { 1 };
        assert_eq!(o.status.code(), Some(code), "{}{}", stdout(&o), stderr(&o));
    }
    // No values: the refusal names the operand and how to give it.
    let o = blockfuse(&["run", p.to_str().unwrap()]);
    assert_bad(&o, "give them with --inputs DIR or --check DIR");
    assert!(stderr(&o).contains("'shape'"), "{}", stderr(&o));
    // A value of the wrong rank is refused, naming the input.
    blockfuse::values::write_npy(&inputs.join("shape.npy"), &HostTensor::from_i64(vec![1, 2], &[3, 2]))
        .unwrap();
    assert_bad(&blockfuse(&["run", p.to_str().unwrap(), "--inputs", inputs.to_str().unwrap()]), "shape");
}

/// Resource limits (issue 14): `--max-tensor-bytes` / `--max-constant-bytes` bound what a
/// model may make the loaders allocate, and `run`'s random inputs; each refusal names the node
/// or input.
#[test]
fn limit_flags_bound_loading_and_random_inputs() {
    let p = rms_norm_json();
    let path = p.to_str().unwrap();
    // The weight is f32[8]: 32 bytes.
    assert_bad(
        &blockfuse(&["inspect", path, "--max-tensor-bytes", "31"]),
        "over the limit max_tensor_bytes = 31",
    );
    assert_bad(&blockfuse(&["run", path, "--max-constant-bytes", "16"]), "max_constant_bytes = 16");
    let o = blockfuse(&["run", path, "--max-tensor-bytes", "64", "--bind", "batch=2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // batch = 3 makes x f32[3, 8] = 96 bytes: refused before it is made.
    let o = blockfuse(&["run", path, "--max-tensor-bytes", "64", "--bind", "batch=3"]);
    assert_bad(&o, "input \"x\": f32[batch, 8] takes 96 bytes");
    // A size whose byte count overflows is refused, not allocated, under the default limits.
    let o = blockfuse(&["run", path, "--bind", &format!("batch={}", usize::MAX)]);
    assert_bad(&o, "input \"x\"");
    assert_bad(&blockfuse(&["run", path, "--max-tensor-bytes", "lots"]), "lots");
}

/// `run` refuses inputs whose shape or dtype disagrees with the graph, naming the input, on
/// both backends.
#[test]
fn run_refuses_inputs_that_disagree_with_the_graph() {
    use blockfuse::ir::HostTensor;
    let p = rms_norm_json();
    let dir = p.with_file_name("npy_wrong");
    std::fs::create_dir_all(&dir).unwrap();
    // x is f32[batch, 8]: a [2, 7] array does not fit.
    blockfuse::values::write_npy(&dir.join("x.npy"), &HostTensor::from_f32(vec![2, 7], &[0.0; 14])).unwrap();
    for backend in ["fallback", "mlx"] {
        let o =
            blockfuse(&["run", p.to_str().unwrap(), "--backend", backend, "--inputs", dir.to_str().unwrap()]);
        assert_bad(&o, "\"x\": expected f32[batch, 8], got f32[2, 7]");
    }
    let rank = p.with_file_name("npy_rank");
    std::fs::create_dir_all(&rank).unwrap();
    blockfuse::values::write_npy(&rank.join("x.npy"), &HostTensor::from_f32(vec![8], &[0.0; 8])).unwrap();
    let o = blockfuse(&["run", p.to_str().unwrap(), "--inputs", rank.to_str().unwrap()]);
    assert_bad(&o, "input \"x\"");
}
