//! The rules of ARCHITECTURE.md, checked on the source of `host/src` (the
//! size rules on every shipped crate): each rule is a test that names the
//! file and line that breaks it.
//!
//! The checker reads Rust source as tokens (comments, strings and character
//! literals skipped, so prose and messages never count), follows every path
//! — `use` trees with their `{…}` groups as well as `crate::a::b` and
//! `super::x` in expressions — and resolves `crate`, `self` and `super` to
//! the module they name. Its own tests (`selftest.rs`) feed it small made-up
//! trees to show that every check fails when its rule is broken.
//!
//! `reader.rs` reads the source (`tokens.rs` is its lexer); `imports.rs` and
//! `graph.rs` hold the import rules, `size.rs` the size rules.

mod graph;
mod imports;
mod reader;
mod selftest;
mod size;
mod tokens;

use graph::cycles;
use imports::{
    backends_named_outside, crates_only_in, io_in_plan_and_config, is_aws_crate, is_sqlite_crate,
    is_wasm_crate, leaf, named_only_in, plugin_is_a_leaf,
};
use reader::host_tree;

/// Violations of a rule, as `file:line: what` lines.
type Findings = Vec<String>;

/// Fails with every finding of a rule but the allowed exceptions in
/// `pending`: `(file, what)`, known and owned by a change in flight. An
/// entry that no longer occurs fails too, so the list only shrinks.
fn assert_clean(rule: &str, findings: Findings, pending: &[(&str, &str)]) {
    let mut left: Vec<&String> = findings
        .iter()
        .filter(|f| {
            !pending
                .iter()
                .any(|(file, what)| f.starts_with(&format!("{file}:")) && f.contains(what))
        })
        .collect();
    // By file, then line as a number.
    left.sort_by_key(|f| {
        let mut parts = f.splitn(3, ':');
        let file = parts.next().unwrap_or_default().to_string();
        let line = parts.next().and_then(|l| l.parse::<usize>().ok());
        (file, line, f.to_string())
    });
    let stale: Vec<String> = pending
        .iter()
        .filter(|(file, what)| {
            !findings
                .iter()
                .any(|f| f.starts_with(&format!("{file}:")) && f.contains(what))
        })
        .map(|(file, what)| format!("{file}: {what}"))
        .collect();
    assert!(
        left.is_empty(),
        "ARCHITECTURE.md: {rule} — broken at:\n{}",
        left.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        stale.is_empty(),
        "{rule}: these allowed exceptions are gone; remove them from the test's list:\n{}",
        stale.join("\n")
    );
}

#[test]
fn plugin_imports_nothing_from_the_rest_of_the_crate() {
    assert_clean(
        "`plugin/` imports nothing from the rest of the crate",
        plugin_is_a_leaf(&host_tree()),
        &[],
    );
}

#[test]
fn util_imports_nothing_from_the_crate() {
    assert_clean(
        "`util/` (std-level helpers `plugin/` may use) imports nothing from the crate",
        leaf(&host_tree(), "util", &[]),
        &[],
    );
}

#[test]
fn only_backend_aws_knows_aws() {
    assert_clean(
        "only `backend/aws/` imports `aws_*`, `lambda_runtime`, `aws_lambda_events`",
        crates_only_in(&host_tree(), "backend/aws/", is_aws_crate),
        &[],
    );
}

#[test]
fn only_backend_local_knows_sqlite() {
    assert_clean(
        "only `backend/local/` knows SQLite (`rusqlite`)",
        crates_only_in(&host_tree(), "backend/local/", is_sqlite_crate),
        &[],
    );
}

#[test]
fn only_plugin_knows_wasmtime() {
    assert_clean(
        "only `plugin/` imports `wasmtime*`, `wit_*`",
        crates_only_in(&host_tree(), "plugin/", is_wasm_crate),
        &[],
    );
}

/// The Lambda role's event loop runs only on AWS's Lambda Runtime API: it
/// is `backend::aws::lambda`'s, and `runtime/lambda.rs` drives it.
const LAMBDA_ROLE: (&str, &str) = ("runtime/lambda.rs", "backend::aws::lambda");

#[test]
fn only_backend_and_cli_name_a_backend() {
    assert_clean(
        "outside `backend/` and `cli/`, no code but tests names `backend::aws` or `backend::local`",
        backends_named_outside(&host_tree(), &[LAMBDA_ROLE]),
        &[],
    );
}

#[test]
fn only_backend_plan_and_cli_match_on_the_backend_plan() {
    assert_clean(
        "what the runtime must know of a provider is a method of `Backend`, never a match \
         on the plan: only `backend/`, `plan/` and `cli/` name `BackendPlan`",
        named_only_in(&host_tree(), "BackendPlan", &["backend/", "plan/", "cli/"]),
        &[],
    );
}

#[test]
fn plan_and_config_do_no_io() {
    assert_clean(
        "`plan/` does no I/O (`config/` at most reads the pipeline file)",
        io_in_plan_and_config(&host_tree()),
        &[],
    );
}

#[test]
fn no_two_modules_import_each_other() {
    assert_clean(
        "no two modules import each other",
        cycles(&host_tree()),
        &[],
    );
}

#[test]
fn no_function_is_over_100_lines() {
    let tree = size::shipped_tree();
    let has = |path: &str| tree.iter().any(|f| f.path == path);
    assert!(has("host/src/lib.rs") && has("abi/src/lib.rs") && has("plugins/guest/src/lib.rs"));
    assert!(!tree.iter().any(|f| f.path.starts_with("plugins/testing/")));
    assert_clean(
        "no non-test function over 100 lines (host, abi, plugins)",
        size::long_functions(&tree),
        &[],
    );
}

#[test]
fn no_file_is_over_600_lines_besides_its_tests() {
    assert_clean(
        "no file over 600 lines besides its tests (host, abi, plugins)",
        size::long_files(&size::shipped_tree()),
        &[],
    );
}
