//! The command line: help everywhere, inspect.

use crate::util::{pipehost, plugin_path, text};

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["test", "--help"],
        vec!["inspect", "--help"],
        vec!["run", "--help"],
        vec!["check", "--help"],
        vec!["ls", "--help"],
        vec!["cat", "--help"],
        vec!["dlq", "--help"],
        vec!["dlq", "list", "--help"],
        vec!["dlq", "redrive", "--help"],
    ] {
        let out = pipehost(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("Usage: pipehost"), "{args:?}");
    }
}

#[test]
fn inspect_names_the_world_and_exports() {
    let path = plugin_path("stock_transform");
    let out = pipehost(&["inspect", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("world:   transform-plugin"), "{stdout}");
    assert!(
        stdout.contains("pipehost:plugin/transformer@0.2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("pipehost:plugin/host@0.2.0"), "{stdout}");
    assert!(
        stdout.contains("contract: pipehost:plugin@0.2.0\n"),
        "{stdout}"
    );
}

#[test]
fn inspect_shows_the_contract_version_a_plugin_speaks() {
    let legacy = plugin_path("legacy_parser");
    let future = plugin_path("future_version");
    let out = pipehost(&[
        "inspect",
        legacy.to_str().unwrap(),
        future.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("contract: pipehost:plugin@0.1.0\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("contract: pipehost:plugin@0.3.0 (not spoken by this host)"),
        "{stdout}"
    );
}

/// `pipehost ls … | head`, `pipehost cat … | head`: the reader goes away
/// after one line, and the command ends quietly with success, as `ls` or
/// `rg` do (it used to panic: "failed printing to stdout: Broken pipe").
/// The output is far larger than a pipe's buffer (64 KiB), so the command
/// is still writing when the pipe closes.
#[test]
fn output_into_a_closed_pipe_ends_quietly_with_success() {
    use pipehost::backend::PutObject;
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let pipeline = crate::pipeline::write_pipeline(dir.path(), "{}", "");
    let backend = crate::pipeline::local_backend(&dir.path().join("state"));
    let put = |key: String, body: Vec<u8>| PutObject {
        key,
        body,
        content_type: "application/x-ndjson".into(),
        content_encoding: None,
        metadata: Default::default(),
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        // 500 listing lines of ~300 bytes: ~150 KB.
        for i in 0..500 {
            let key = format!(
                "dataset=pipe/{}/{}-{i:05}.jsonl",
                "k".repeat(200),
                "l".repeat(40)
            );
            backend.store.put(put(key, b"{}\n".to_vec())).await.unwrap();
        }
        let big: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("{{\"line\":{i:020}}}\n").into_bytes())
            .collect(); // ~1.2 MB
        backend
            .store
            .put(put("big.jsonl".into(), big))
            .await
            .unwrap();
    });
    drop(backend);
    let pipeline = pipeline.to_str().unwrap();
    for args in [
        vec!["ls", "-c", pipeline],
        vec!["ls", "-c", pipeline, "dataset=pipe/"],
        vec!["cat", "-c", pipeline, "big.jsonl"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipehost"))
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{args:?}: printed nothing");
        // The reader (and with it the pipe's read end) is dropped here.
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: not quiet: {stderr}");
    }
}

/// Logs written to a file or a pipe carry no terminal colour codes (they
/// did: every level and target was wrapped in ANSI escapes).
#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let parser = plugin_path("forex_parser");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .args(["inspect", parser.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .output()
        .expect("run pipehost");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("DEBUG"), "no log lines to check: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in: {stderr}");
}
