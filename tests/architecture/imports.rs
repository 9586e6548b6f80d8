//! The import rules: which part of the crate may name which, and where the
//! outside crates and I/O may appear.

use super::Findings;
use super::graph::{defined_at, modules, reexports};
use super::reader::{SourceFile, Target, render, resolve, uses, written_paths};
use super::tokens::{Tok, tokenize};

/// `plugin/` names nothing of the crate outside itself but `util/`.
pub(super) fn plugin_is_a_leaf(tree: &[SourceFile]) -> Findings {
    leaf(tree, "plugin", &["util"])
}

/// Files under `dir/` name nothing of the crate outside `dir` and `allowed`.
pub(super) fn leaf(tree: &[SourceFile], dir: &str, allowed: &[&str]) -> Findings {
    let prefix = format!("{dir}/");
    uses(tree)
        .into_iter()
        .filter(|u| u.file.starts_with(&prefix))
        .filter(|u| {
            matches!(&u.target, Target::Crate(abs) if abs
                .first()
                .is_none_or(|m| m != dir && !allowed.contains(&m.as_str())))
        })
        .map(|u| {
            format!(
                "{}:{}: `{}` is outside {prefix}",
                u.file,
                u.line,
                render(&u.target)
            )
        })
        .collect()
}

/// Outside `backend/` and `cli/` (which picks the backend a plan names),
/// no code but tests names one backend (`backend::aws`, `backend::local`),
/// written so or through a re-export: the rest of the crate sees a backend
/// through `backend/`'s traits only. `allowed`: `(file, backend path)`
/// uses that are the point of their file.
pub(super) fn backends_named_outside(tree: &[SourceFile], allowed: &[(&str, &str)]) -> Findings {
    let known = modules(tree);
    let exports = reexports(tree, &known);
    uses(tree)
        .into_iter()
        .filter(|u| !u.file.starts_with("backend/") && !u.file.starts_with("cli/"))
        .filter(|u| !u.module.iter().any(|m| m == "tests"))
        .filter_map(|u| {
            let Target::Crate(written) = &u.target else {
                return None;
            };
            let target = defined_at(written, &exports, &known);
            let named = match target.as_slice() {
                [b, which, ..] if b == "backend" && (which == "aws" || which == "local") => {
                    target.join("::")
                }
                _ => return None,
            };
            let excused = allowed
                .iter()
                .any(|(file, path)| u.file == *file && named.starts_with(path));
            (!excused).then(|| format!("{}:{}: names `crate::{named}`", u.file, u.line))
        })
        .collect()
}

/// Files outside `dirs` that name the item `name` at all (in code, not in
/// comments or strings), test code included: e.g. only `backend/` (which
/// opens the provider a plan names), `plan/` and `cli/` see `BackendPlan`.
pub(super) fn named_only_in(tree: &[SourceFile], name: &str, dirs: &[&str]) -> Findings {
    tree.iter()
        .filter(|f| !dirs.iter().any(|d| f.path.starts_with(d)))
        .flat_map(|f| {
            tokenize(&f.text)
                .into_iter()
                .filter(|(t, _)| matches!(t, Tok::Ident(w) if w == name))
                .map(|(_, line)| format!("{}:{line}: names `{name}`", f.path))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Only files under `dir` name the external crates `is_theirs` picks.
pub(super) fn crates_only_in(
    tree: &[SourceFile],
    dir: &str,
    is_theirs: fn(&str) -> bool,
) -> Findings {
    uses(tree)
        .into_iter()
        .filter(|u| !u.file.starts_with(dir))
        .filter_map(|u| match &u.target {
            Target::Outside(segs) if is_theirs(&segs[0]) => Some(format!(
                "{}:{}: `{}` outside {dir}",
                u.file,
                u.line,
                segs.join("::")
            )),
            _ => None,
        })
        .collect()
}

pub(super) fn is_aws_crate(name: &str) -> bool {
    name.starts_with("aws_") || name == "lambda_runtime" || name == "aws_lambda_events"
}

pub(super) fn is_wasm_crate(name: &str) -> bool {
    name.starts_with("wasmtime") || name.starts_with("wit_") || name == "cranelift"
}

pub(super) fn is_sqlite_crate(name: &str) -> bool {
    name == "rusqlite" || name == "libsqlite3_sys"
}

/// The address types of `std::net`: values, not I/O.
pub(super) const NET_VALUES: [&str; 7] = [
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "AddrParseError",
];

/// `std::path::Path` methods that ask the file system.
pub(super) const PATH_IO_METHODS: [&str; 9] = [
    "exists",
    "try_exists",
    "is_file",
    "is_dir",
    "is_symlink",
    "metadata",
    "symlink_metadata",
    "canonicalize",
    "read_dir",
];

/// What of `segs` (an outside path) is I/O; `reads_allowed`: reading a
/// whole file (`std::fs::read`, `read_to_string`) is not counted.
pub(super) fn io_in(segs: &[String], reads_allowed: bool) -> Option<String> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let io = match s.as_slice() {
        ["std", "fs", "read" | "read_to_string"] => !reads_allowed,
        ["std" | "tokio", "fs", ..] => true,
        ["tokio", "net", ..] => true,
        ["std", "net", what, ..] => !NET_VALUES.contains(what),
        ["std", "net"] => true,
        _ => false,
    };
    io.then(|| s.join("::"))
}

/// `plan/` does no I/O; `config/` at most reads a file whole (where the
/// pipeline file is read belongs to config, the parsing step).
pub(super) fn io_in_plan_and_config(tree: &[SourceFile]) -> Findings {
    let mut found = Vec::new();
    for f in tree {
        let reads_allowed = if f.path.starts_with("plan/") {
            false
        } else if f.path.starts_with("config/") {
            true
        } else {
            continue;
        };
        for p in written_paths(f) {
            if let Target::Outside(segs) = resolve(&p)
                && let Some(what) = io_in(&segs, reads_allowed)
            {
                found.push(format!("{}:{}: `{what}` is I/O", f.path, p.line));
            }
        }
        let toks = tokenize(&f.text);
        for w in toks.windows(3) {
            if let [
                (Tok::Punct('.'), _),
                (Tok::Ident(m), line),
                (Tok::Punct('('), _),
            ] = w
                && PATH_IO_METHODS.contains(&m.as_str())
            {
                found.push(format!("{}:{line}: `.{m}()` asks the file system", f.path));
            }
        }
    }
    found
}
