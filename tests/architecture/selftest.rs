//! The checker's own tests: small made-up trees that show every rule fails
//! when it is broken (and the reader reads what it should).

use super::assert_clean;
use super::graph::cycles;
use super::imports::{
    backends_named_outside, crates_only_in, io_in_plan_and_config, is_aws_crate, is_sqlite_crate,
    is_wasm_crate, leaf, named_only_in, plugin_is_a_leaf,
};
use super::reader::{SourceFile, render, uses};
use super::size;

pub(super) fn fake(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(path, text)| SourceFile {
            path: path.to_string(),
            text: text.to_string(),
        })
        .collect()
}

#[test]
fn paths_in_groups_expressions_and_nested_modules_resolve() {
    let tree = fake(&[(
        "runtime/feeds.rs",
        "use crate::{plan::{self, Plan}, wire::aggregate as agg};\n\
         use super::{blocking, stats::*};\n\
         // crate::web::nothing in a comment\n\
         fn f() { let s = \"crate::web::in_a_string\"; crate::backend::open(x); std::fs::read(p); }\n\
         mod tests { use super::*; use super::super::bridge::Settings; }\n",
    )]);
    let got: Vec<String> = uses(&tree)
        .iter()
        .map(|u| format!("{}@{}", render(&u.target), u.line))
        .collect();
    assert_eq!(
        got,
        [
            "crate::plan@1",
            "crate::plan::Plan@1",
            "crate::wire::aggregate@1",
            "crate::runtime::blocking@2",
            "crate::runtime::stats::*@2",
            "crate::backend::open@4",
            "std::fs::read@4",
            "crate::runtime::feeds::*@5",
            "crate::runtime::bridge::Settings@5",
        ]
    );
}

#[test]
fn lifetimes_chars_and_raw_strings_do_not_confuse_the_reader() {
    let tree = fake(&[(
        "web/x.rs",
        "fn f<'a>(x: &'a str) -> char { let _ = r#\"crate::runtime::x \"quoted\"\"#; \
         let _ = b\"crate::runtime::y\"; let _ = '{'; let _ = '\\''; crate::wire::m::f(); 'x' }\n\
         /* crate::runtime /* nested */ still a comment */ use crate::telemetry::stats;",
    )]);
    let got: Vec<String> = uses(&tree).iter().map(|u| render(&u.target)).collect();
    assert_eq!(got, ["crate::wire::m::f", "crate::telemetry::stats"]);
}

#[test]
fn a_plugin_file_using_the_crate_fails() {
    let tree = fake(&[
        (
            "plugin/mod.rs",
            "use crate::plugin::batch; use self::load::x;",
        ),
        (
            "plugin/load.rs",
            "fn f() { super::super::backend::open(); }",
        ),
        (
            "plugin/batch.rs",
            "use crate::{plugin::error, event::format_ms};",
        ),
        ("plugin/cache.rs", "use crate::util::hex;"),
        (
            "util/hex.rs",
            "use crate::plugin::Plugin; use super::backoff;",
        ),
    ]);
    assert_eq!(
        plugin_is_a_leaf(&tree),
        [
            "plugin/load.rs:1: `crate::backend::open` is outside plugin/",
            "plugin/batch.rs:1: `crate::event::format_ms` is outside plugin/",
        ]
    );
    assert_eq!(
        leaf(&tree, "util", &[]),
        ["util/hex.rs:1: `crate::plugin::Plugin` is outside util/"]
    );
}

#[test]
fn aws_and_sqlite_crates_outside_their_backend_fail() {
    let tree = fake(&[
        (
            "backend/aws/lambda.rs",
            "use lambda_runtime::run; use aws_sdk_s3::Client;",
        ),
        ("backend/local/db.rs", "use rusqlite::Connection;"),
        (
            "runtime/lambda.rs",
            "use aws_lambda_events::event::sqs::SqsEvent;\nfn f() { lambda_runtime::run(); }",
        ),
        (
            "web/requestlog/sqlite.rs",
            "use rusqlite::{Connection, params};",
        ),
        ("cli.rs", "fn aws_region() { let aws_x = 1; x.aws_y(); }"),
    ]);
    assert_eq!(
        crates_only_in(&tree, "backend/aws/", is_aws_crate),
        [
            "runtime/lambda.rs:1: `aws_lambda_events::event::sqs::SqsEvent` outside backend/aws/",
            "runtime/lambda.rs:2: `lambda_runtime::run` outside backend/aws/",
        ]
    );
    assert_eq!(
        crates_only_in(&tree, "backend/local/", is_sqlite_crate),
        [
            "web/requestlog/sqlite.rs:1: `rusqlite::Connection` outside backend/local/",
            "web/requestlog/sqlite.rs:1: `rusqlite::params` outside backend/local/",
        ]
    );
}

#[test]
fn wasmtime_outside_plugin_fails() {
    let tree = fake(&[
        ("plugin/engine.rs", "use wasmtime::{Config, Engine};"),
        (
            "runtime/engine.rs",
            "fn f() { wasmtime::Engine::default(); }",
        ),
        ("lambda.rs", "use wasmtime_wasi::p2::WasiCtx;"),
    ]);
    assert_eq!(
        crates_only_in(&tree, "plugin/", is_wasm_crate),
        [
            "runtime/engine.rs:1: `wasmtime::Engine::default` outside plugin/",
            "lambda.rs:1: `wasmtime_wasi::p2::WasiCtx` outside plugin/",
        ]
    );
}

/// A backend named outside `backend/` and `cli/`, written out or through a
/// re-export, fails; test code and the allowed uses do not.
#[test]
fn a_backend_named_outside_backend_and_cli_fails() {
    let tree = fake(&[
        (
            "backend/mod.rs",
            "pub mod local; pub mod aws; pub use local::LocalBackend as Embedded;",
        ),
        ("backend/local/mod.rs", "pub struct LocalBackend;"),
        ("runtime/run.rs", "use crate::backend::local::LocalBackend;"),
        (
            "web/logs.rs",
            "fn f() { crate::backend::Embedded::open(); }",
        ),
        ("web/tests.rs", "use crate::backend::local::LocalBackend;"),
        (
            "runtime/pipeline.rs",
            "mod tests { use crate::backend::local::Names; }",
        ),
        (
            "runtime/lambda.rs",
            "use crate::backend::aws::lambda::serve;",
        ),
        (
            "cli/run.rs",
            "fn f() { crate::backend::aws::lambda::check_environment(); }",
        ),
    ]);
    assert_eq!(
        backends_named_outside(&tree, &[("runtime/lambda.rs", "backend::aws::lambda")]),
        [
            "runtime/run.rs:1: names `crate::backend::local::LocalBackend`",
            "web/logs.rs:1: names `crate::backend::local::LocalBackend::open`",
        ]
    );
    assert_eq!(backends_named_outside(&tree, &[]).len(), 3);
}

#[test]
fn a_match_on_the_backend_plan_outside_backend_plan_and_cli_fails() {
    let tree = fake(&[
        (
            "backend/mod.rs",
            "fn open(p: &Plan) { match p { BackendPlan::Aws(a) => {} } }",
        ),
        ("cli/run.rs", "use crate::plan::BackendPlan;"),
        (
            "runtime/mod.rs",
            "// BackendPlan in a comment\nfn f() { let s = \"BackendPlan\"; }\n\
             fn g(p: &Plan) { if let crate::plan::BackendPlan::Aws(_) = p.backend {} }",
        ),
    ]);
    assert_eq!(
        named_only_in(&tree, "BackendPlan", &["backend/", "plan/", "cli/"]),
        ["runtime/mod.rs:3: names `BackendPlan`"]
    );
}

#[test]
fn io_in_plan_or_config_fails() {
    let tree = fake(&[
        (
            "plan/mod.rs",
            "use std::net::SocketAddr;\nuse std::{fs, net::TcpStream};\n\
             fn f(p: &Path) { p.is_file(); tokio::fs::read(p); }",
        ),
        (
            "config/mod.rs",
            "fn f() { std::fs::read_to_string(p); std::fs::write(p, b); }",
        ),
        (
            "runtime/x.rs",
            "fn f() { std::fs::write(p, b); p.exists(); }",
        ),
    ]);
    assert_eq!(
        io_in_plan_and_config(&tree),
        [
            "plan/mod.rs:2: `std::fs` is I/O",
            "plan/mod.rs:2: `std::net::TcpStream` is I/O",
            "plan/mod.rs:3: `tokio::fs::read` is I/O",
            "plan/mod.rs:3: `.is_file()` asks the file system",
            "config/mod.rs:1: `std::fs::write` is I/O",
        ]
    );
}

#[test]
fn modules_that_import_each_other_fail() {
    let tree = fake(&[
        ("lib.rs", "pub mod runtime; pub mod web; pub mod wire;"),
        (
            "web/mod.rs",
            "use crate::{wire::message, runtime::stats::Stats};",
        ),
        (
            "runtime/mod.rs",
            "mod processor; mod reload; fn f() { crate::web::start(); }",
        ),
        (
            "runtime/processor.rs",
            "use super::reload::Chains; use super::blocking;",
        ),
        (
            "runtime/reload.rs",
            "use super::{processor::FeedChain, bridge};",
        ),
        ("runtime/bridge.rs", "fn f() { super::processor::x(); }"),
        ("wire/mod.rs", "pub mod message;"),
        ("wire/message.rs", "use super::aggregate;"),
    ]);
    assert_eq!(
        cycles(&tree),
        [
            "in crate: runtime, web import each other: \
             runtime -> web (runtime/mod.rs:1); web -> runtime (web/mod.rs:1)",
            "in runtime: bridge, processor, reload import each other: \
             bridge -> processor (runtime/bridge.rs:1); processor -> reload (runtime/processor.rs:1); \
             reload -> bridge (runtime/reload.rs:1); reload -> processor (runtime/reload.rs:1)",
        ]
    );
    let fixed = fake(&[
        ("web/mod.rs", "use crate::wire::message;"),
        ("runtime/mod.rs", "fn f() { crate::web::start(); }"),
        ("runtime/chains.rs", ""),
        ("runtime/processor.rs", "use super::chains::Chains;"),
        (
            "runtime/reload.rs",
            "use super::{chains::FeedChain, processor};",
        ),
        ("wire/message.rs", ""),
    ]);
    assert_eq!(cycles(&fixed), Vec::<String>::new());
}

/// Siblings that reach each other through names their parent re-exports
/// (plain, aliased, `pub(crate)`, a glob) import each other all the same;
/// an inline `mod tests` using a sibling is test code, not an edge.
#[test]
fn modules_that_import_each_other_through_re_exports_fail() {
    let tree = fake(&[
        (
            "runtime/mod.rs",
            "mod pipeline; mod run; mod serve; mod types;
             pub use pipeline::{Pipeline, StartOptions};
             pub(crate) use run::run as run_pipeline;
             pub use self::types::*;",
        ),
        ("runtime/pipeline.rs", "fn f() { super::run_pipeline(); }"),
        (
            "runtime/run.rs",
            "use super::Pipeline;
mod tests { use super::super::serve::x; }",
        ),
        ("runtime/serve.rs", "use super::{Stages, StartOptions};"),
        (
            "runtime/types.rs",
            "fn f() { crate::runtime::serve::go(); }",
        ),
    ]);
    assert_eq!(
        cycles(&tree),
        [
            "in runtime: pipeline, run import each other: \
             pipeline -> run (runtime/pipeline.rs:1); run -> pipeline (runtime/run.rs:1)",
            "in runtime: serve, types import each other: \
             serve -> types (runtime/serve.rs:1); types -> serve (runtime/types.rs:1)",
        ]
    );
    // A name the parent defines itself is no edge to a child, nor is a
    // path in a test module.
    let fixed = fake(&[
        (
            "runtime/mod.rs",
            "mod run; pub use run::run; pub struct Pipeline;",
        ),
        (
            "runtime/pipeline.rs",
            "fn f() { super::Pipeline::new(); super::run(); }",
        ),
        (
            "runtime/run.rs",
            "use super::Pipeline;\nmod tests { use super::super::pipeline::f; }",
        ),
    ]);
    assert_eq!(cycles(&fixed), Vec::<String>::new());
}

#[test]
fn an_allowed_exception_that_is_gone_fails() {
    let stale = std::panic::catch_unwind(|| {
        assert_clean("rule", vec![], &[("plan/mod.rs", "`std::fs`")]);
    });
    assert!(stale.is_err());
    let broken = std::panic::catch_unwind(|| {
        assert_clean("rule", vec!["plan/x.rs:1: `std::fs` is I/O".into()], &[]);
    });
    assert!(broken.is_err());
    assert_clean(
        "rule",
        vec!["plan/mod.rs:3: `std::fs::read` is I/O".into()],
        &[("plan/mod.rs", "`std::fs")],
    );
}

/// A function of `lines` lines (from `fn` to its closing brace) named `name`.
fn function(name: &str, lines: usize) -> String {
    format!(
        "pub fn {name}(x: &[u8; 4]) -> [u8; 4] {{\n{}}}\n",
        "    let _ = \"}\"; let _ = '{'; call(|| { x });\n".repeat(lines - 2)
    )
}

#[test]
fn a_function_over_100_lines_fails() {
    let tree = fake(&[
        (
            "host/src/runtime/x.rs",
            &format!(
                "{}trait T {{ fn declared(&self); }}\n{}",
                function("long", 101),
                function("just_fits", 100)
            ),
        ),
        (
            "abi/src/lib.rs",
            &format!("fn outer() {{\n{}}}\n", function("inner", 99)),
        ),
        (
            "plugins/guest/src/lib.rs",
            &format!(
                "#[cfg(test)]\nmod tests {{\n{}}}\n#[cfg(test)]\n{}{}",
                function("in_a_test_module", 150),
                function("test_only", 150),
                function("shipped", 150)
            ),
        ),
        ("host/src/web/tests.rs", &function("in_a_test_file", 150)),
        (
            "host/src/gen.rs",
            &format!("// @generated\n{}", function("generated", 150)),
        ),
    ]);
    assert_eq!(
        size::long_functions(&tree),
        [
            "host/src/runtime/x.rs:1: fn `long` is 101 lines (over 100)",
            "abi/src/lib.rs:1: fn `outer` is 101 lines (over 100)",
            "plugins/guest/src/lib.rs:305: fn `shipped` is 150 lines (over 100)",
        ]
    );
}

#[test]
fn a_file_over_600_lines_besides_its_tests_fails() {
    let body = |lines: usize| "const X: u8 = 1;\n".repeat(lines);
    let tests = format!(
        "#[cfg(test)]\nmod tests {{\n{}}}\n",
        function("a_test", 300)
    );
    let tree = fake(&[
        ("host/src/long.rs", &body(601)),
        ("host/src/fits.rs", &format!("{}{tests}", body(600))),
        (
            "host/src/tests_in_the_middle.rs",
            &format!("{}{tests}{}", body(300), body(301)),
        ),
        ("host/src/x/tests.rs", &body(900)),
        ("abi/src/gen.rs", &format!("// @generated\n{}", body(900))),
    ]);
    assert_eq!(
        size::long_files(&tree),
        [
            "host/src/long.rs: 601 lines besides its tests (over 600)",
            "host/src/tests_in_the_middle.rs: 601 lines besides its tests (over 600)",
        ]
    );
}
