//! The rules of ARCHITECTURE.md, checked on the source of `host/src`: each
//! rule is a test that names the file and line that breaks it.
//!
//! The checker reads Rust source as tokens (comments, strings and character
//! literals skipped, so prose and messages never count), follows every path
//! — `use` trees with their `{…}` groups as well as `crate::a::b` and
//! `super::x` in expressions — and resolves `crate`, `self` and `super` to
//! the module they name. Its own tests (at the end) feed it small made-up
//! trees to show that every check fails when its rule is broken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Violations of a rule, as `file:line: what` lines.
type Findings = Vec<String>;

/// A source file: its path under `host/src` (with `/`) and its text.
struct SourceFile {
    path: String,
    text: String,
}

/// Every `.rs` file under `host/src`.
fn host_tree() -> Vec<SourceFile> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).expect("under the root");
                let path = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let text = std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
                out.push(SourceFile { path, text });
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    assert!(
        files.iter().any(|f| f.path == "lib.rs"),
        "no lib.rs under {}",
        root.display()
    );
    files
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// The tokens of `src` that matter for paths, each with its line (1-based).
/// Comments, string, byte-string, raw-string and character literals are
/// skipped; lifetimes and numbers are dropped.
fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |j: usize| c.get(j).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                line += usize::from(c[i] == '\n');
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped character literal: '\n', '\'', '\u{..}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or label: the name is lexed as an identifier
                // and is never followed by `::`.
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw_string = matches!(word.as_str(), "r" | "br" | "cr")
                && (at(i) == '"' || (at(i) == '#' && matches!(at(i + 1), '"' | '#')));
            if raw_string {
                let mut hashes = 0;
                while at(i) == '#' {
                    hashes += 1;
                    i += 1;
                }
                i += 1; // the opening quote
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            } else if word == "r" && at(i) == '#' {
                // A raw identifier, `r#type`: the `#` is skipped here and
                // the name lexed next.
                i += 1;
            } else {
                out.push((Tok::Ident(word), line));
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------- paths

/// One path as written: its segments (a `{…}` group gives one path per
/// member) and the line of its last segment.
#[derive(Debug, Clone)]
struct WrittenPath {
    segments: Vec<String>,
    line: usize,
    /// The module the path was written in (inline `mod x { … }` included),
    /// for resolving `self` and `super`.
    module: Vec<String>,
}

/// The paths starting at `toks[i]` (an identifier, `{` or `*`), and the
/// index after them.
fn path_tree(toks: &[(Tok, usize)], mut i: usize) -> (Vec<(Vec<String>, usize)>, usize) {
    match toks.get(i) {
        Some((Tok::Punct('{'), _)) => {
            let mut all = Vec::new();
            i += 1;
            loop {
                match toks.get(i) {
                    None => return (all, i),
                    Some((Tok::Punct('}'), _)) => return (all, i + 1),
                    Some((Tok::Punct(','), _)) => i += 1,
                    Some(_) => {
                        let (paths, j) = path_tree(toks, i);
                        all.extend(paths);
                        // Skip `as name` and anything else up to the next member.
                        i = j.max(i + 1);
                        while let Some((t, _)) = toks.get(i) {
                            if matches!(t, Tok::Punct(',') | Tok::Punct('}')) {
                                break;
                            }
                            i += 1;
                        }
                    }
                }
            }
        }
        Some((Tok::Punct('*'), line)) => (vec![(vec!["*".into()], *line)], i + 1),
        Some((Tok::Ident(s), line)) => {
            let head = s.clone();
            if matches!(toks.get(i + 1), Some((Tok::Sep, _)))
                && matches!(
                    toks.get(i + 2),
                    Some((Tok::Ident(_) | Tok::Punct('{') | Tok::Punct('*'), _))
                )
            {
                let (rest, j) = path_tree(toks, i + 2);
                let paths = rest
                    .into_iter()
                    .map(|(mut segs, l)| {
                        segs.insert(0, head.clone());
                        if segs.last().is_some_and(|s| s == "self") {
                            segs.pop();
                        }
                        (segs, l)
                    })
                    .collect();
                (paths, j)
            } else {
                (vec![(vec![head], *line)], i + 1)
            }
        }
        _ => (Vec::new(), i + 1),
    }
}

/// `host/src`-relative file path -> its module path (`runtime/mod.rs` ->
/// `runtime`, `runtime/processor/deliver.rs` -> `runtime::processor::deliver`).
fn module_of(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path.split('/').map(String::from).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// Every path written in `file`: those of `use` items, and every
/// `a::b` in code whose first segment is not itself after a `::`.
fn written_paths(file: &SourceFile) -> Vec<WrittenPath> {
    let toks = tokenize(&file.text);
    let base = module_of(&file.path);
    // Inline modules: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let module = || {
            let mut m = base.clone();
            m.extend(inline.iter().map(|(n, _)| n.clone()));
            m
        };
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(w) if w == "use" => {
                let m = module();
                let (paths, j) = path_tree(&toks, i + 1);
                out.extend(paths.into_iter().map(|(segments, line)| WrittenPath {
                    segments,
                    line,
                    module: m.clone(),
                }));
                i = j.max(i + 1);
            }
            Tok::Ident(_) => {
                let after_sep = i > 0 && matches!(toks[i - 1].0, Tok::Sep | Tok::Punct('$'));
                if !after_sep && matches!(toks.get(i + 1), Some((Tok::Sep, _))) {
                    let m = module();
                    let (paths, j) = path_tree(&toks, i);
                    out.extend(paths.into_iter().map(|(segments, line)| WrittenPath {
                        segments,
                        line,
                        module: m.clone(),
                    }));
                    i = j.max(i + 1);
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// What a written path names: an item of this crate (its absolute path),
/// or something outside it (the path as written: a crate, `std`, a local
/// name).
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Crate(Vec<String>),
    Outside(Vec<String>),
}

fn resolve(p: &WrittenPath) -> Target {
    let segs = &p.segments;
    match segs[0].as_str() {
        "crate" => Target::Crate(segs[1..].to_vec()),
        "self" => {
            let mut abs = p.module.clone();
            abs.extend_from_slice(&segs[1..]);
            Target::Crate(abs)
        }
        "super" => {
            let ups = segs.iter().take_while(|s| *s == "super").count();
            let keep = p.module.len().saturating_sub(ups);
            let mut abs = p.module[..keep].to_vec();
            abs.extend_from_slice(&segs[ups..]);
            Target::Crate(abs)
        }
        _ => Target::Outside(segs.clone()),
    }
}

/// A resolved path with where it was written.
struct Use {
    file: String,
    line: usize,
    target: Target,
}

fn uses(tree: &[SourceFile]) -> Vec<Use> {
    tree.iter()
        .flat_map(|f| {
            written_paths(f).into_iter().map(|p| Use {
                file: f.path.clone(),
                line: p.line,
                target: resolve(&p),
            })
        })
        .collect()
}

fn render(t: &Target) -> String {
    match t {
        Target::Crate(abs) => format!("crate::{}", abs.join("::")),
        Target::Outside(segs) => segs.join("::"),
    }
}

// ---------------------------------------------------------------- rules

/// `plugin/` names nothing of the crate outside itself but `util/`.
fn plugin_is_a_leaf(tree: &[SourceFile]) -> Findings {
    leaf(tree, "plugin", &["util"])
}

/// Files under `dir/` name nothing of the crate outside `dir` and `allowed`.
fn leaf(tree: &[SourceFile], dir: &str, allowed: &[&str]) -> Findings {
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

/// Only files under `dir` name the external crates `is_theirs` picks.
fn crates_only_in(tree: &[SourceFile], dir: &str, is_theirs: fn(&str) -> bool) -> Findings {
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

fn is_aws_crate(name: &str) -> bool {
    name.starts_with("aws_") || name == "lambda_runtime" || name == "aws_lambda_events"
}

fn is_sqlite_crate(name: &str) -> bool {
    name == "rusqlite" || name == "libsqlite3_sys"
}

/// The address types of `std::net`: values, not I/O.
const NET_VALUES: [&str; 7] = [
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "AddrParseError",
];

/// `std::path::Path` methods that ask the file system.
const PATH_IO_METHODS: [&str; 9] = [
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
fn io_in(segs: &[String], reads_allowed: bool) -> Option<String> {
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
fn io_in_plan_and_config(tree: &[SourceFile]) -> Findings {
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

/// The modules a tree defines (by its files), as module paths.
fn modules(tree: &[SourceFile]) -> BTreeSet<Vec<String>> {
    tree.iter().map(|f| module_of(&f.path)).collect()
}

/// Module `parent`'s children that import each other, directly or around a
/// longer loop: every edge `a -> b` between two children of one module
/// (`b` a module, not an item of the parent — a child may use its parent's
/// items, and the parent its children's), with a cycle reported once per
/// set of modules it joins.
fn cycles(tree: &[SourceFile]) -> Findings {
    let known = modules(tree);
    // (parent, from, to) -> the first place the edge is written.
    let mut edges: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    for u in uses(tree) {
        let Target::Crate(target) = &u.target else {
            continue;
        };
        let from = module_of(&u.file);
        let k = from.iter().zip(target).take_while(|(a, b)| a == b).count();
        if k >= from.len() || k >= target.len() {
            continue;
        }
        if !known.contains(&target[..=k]) {
            continue;
        }
        edges
            .entry((from[..k].to_vec(), from[k].clone(), target[k].clone()))
            .or_insert_with(|| format!("{}:{}", u.file, u.line));
    }
    let mut parents: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, from, to) in edges.keys() {
        parents
            .entry(parent.clone())
            .or_default()
            .entry(from.clone())
            .or_default()
            .insert(to.clone());
    }
    let mut found = Vec::new();
    for (parent, graph) in &parents {
        for component in strongly_connected(graph) {
            let place = if parent.is_empty() {
                "crate".to_string()
            } else {
                parent.join("::")
            };
            let mut lines = Vec::new();
            for from in &component {
                for to in graph.get(from).into_iter().flatten() {
                    if component.contains(to) {
                        let at = &edges[&(parent.clone(), from.clone(), to.clone())];
                        lines.push(format!("{from} -> {to} ({at})"));
                    }
                }
            }
            found.push(format!(
                "in {place}: {} import each other: {}",
                component.iter().cloned().collect::<Vec<_>>().join(", "),
                lines.join("; ")
            ));
        }
    }
    found
}

/// The strongly connected components of more than one node (Tarjan).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

// ---------------------------------------------------------------- the rules on host/src

/// Findings of `check` on host/src that are known and owned by a change in
/// flight: `(file, what)`. An entry that no longer occurs fails too, so the
/// list only shrinks.
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

// ---------------------------------------------------------------- the checker's own tests

fn fake(files: &[(&str, &str)]) -> Vec<SourceFile> {
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
