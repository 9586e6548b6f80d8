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
