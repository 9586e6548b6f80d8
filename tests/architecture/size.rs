//! The size rules: no function over `MAX_FN_LINES` lines and no file over
//! `MAX_FILE_LINES` lines besides its tests, in the code that ships (the
//! host, the contract crate, the plugins and their SDK).
//!
//! Test code is not counted: a `#[cfg(test)]` item (an inline test module,
//! a test-only function), a file named `tests.rs`, and the test-only plugins
//! under `plugins/testing/`. Generated files (an `@generated` marker in
//! their first lines) are not counted either.

use std::path::Path;

use super::Findings;
use super::reader::{SourceFile, rust_files, workspace_root};
use super::tokens::{Tok, tokenize};

/// A function may be this long, counted from its `fn` to its closing brace.
pub(super) const MAX_FN_LINES: usize = 100;

/// A file may be this long, not counting its `#[cfg(test)]` items.
pub(super) const MAX_FILE_LINES: usize = 600;

/// Every `.rs` file that ships, named by its path in the workspace:
/// `host/src`, `abi/src`, and the `src` of every crate under `plugins/`
/// but the test-only ones in `plugins/testing/`.
pub(super) fn shipped_tree() -> Vec<SourceFile> {
    let root = workspace_root();
    let mut files = rust_files(&root.join("host/src"), "host/src/");
    files.extend(rust_files(&root.join("abi/src"), "abi/src/"));
    for krate in plugin_crates(&root.join("plugins")) {
        let rel = krate.strip_prefix(&root).expect("under the workspace");
        let prefix = format!("{}/src/", rel.to_string_lossy().replace('\\', "/"));
        files.extend(rust_files(&krate.join("src"), &prefix));
    }
    files
}

/// The crates (a `Cargo.toml` beside a `src/`) under `dir`, but none under
/// `plugins/testing/`.
fn plugin_crates(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if dir.join("Cargo.toml").is_file() && dir.join("src").is_dir() {
        out.push(dir.to_path_buf());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| matches!(n.to_str(), Some("testing" | "src" | "target")))
        })
        .collect();
    entries.sort();
    for p in entries {
        out.extend(plugin_crates(&p));
    }
    out
}

/// A file that is test code as a whole.
fn is_test_file(path: &str) -> bool {
    path == "tests.rs" || path.ends_with("/tests.rs")
}

/// A generated file: `@generated` in its first five lines (rustfmt's and
/// most generators' marker).
fn is_generated(text: &str) -> bool {
    text.lines().take(5).any(|l| l.contains("@generated"))
}

/// The index of the token that ends the item whose tokens start at `i`:
/// the `;` of a bodiless item, or the brace closing its body (its first
/// `{` outside parentheses and brackets).
fn item_end(toks: &[(Tok, usize)], i: usize) -> usize {
    let mut nesting = 0usize;
    let mut j = i;
    while j < toks.len() {
        match toks[j].0 {
            Tok::Punct('(' | '[') => nesting += 1,
            Tok::Punct(')' | ']') => nesting = nesting.saturating_sub(1),
            Tok::Punct(';') if nesting == 0 => return j,
            Tok::Punct('{') if nesting == 0 => return matching_brace(toks, j),
            _ => {}
        }
        j += 1;
    }
    toks.len().saturating_sub(1)
}

/// The index of the `}` that closes the `{` at `open`.
fn matching_brace(toks: &[(Tok, usize)], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, (t, _)) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len().saturating_sub(1)
}

/// The `#[cfg(test)]` items of a file, as token ranges (from the `#` to the
/// item's end).
fn test_items(toks: &[(Tok, usize)]) -> Vec<(usize, usize)> {
    let is_cfg_test = |w: &[(Tok, usize)]| {
        let want = ["#", "[", "cfg", "(", "test", ")", "]"];
        w.iter().zip(want).all(|((t, _), s)| match t {
            Tok::Punct(c) => s.len() == 1 && s.starts_with(*c),
            Tok::Ident(x) => x == s,
            Tok::Sep => false,
        })
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i + 7 <= toks.len() {
        if is_cfg_test(&toks[i..i + 7]) {
            let end = item_end(toks, i + 7);
            out.push((i, end));
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// A function with a body: its name and the lines of its `fn` and of its
/// closing brace.
struct Function {
    name: String,
    first: usize,
    last: usize,
}

/// The functions with a body in a file's tokens, but those in test items.
fn functions(toks: &[(Tok, usize)]) -> Vec<Function> {
    let tests = test_items(toks);
    let mut out = Vec::new();
    for (i, w) in toks.windows(2).enumerate() {
        let [(Tok::Ident(kw), first), (Tok::Ident(name), _)] = w else {
            continue;
        };
        if kw != "fn" || tests.iter().any(|(a, b)| (*a..=*b).contains(&i)) {
            continue;
        }
        let end = item_end(toks, i);
        if matches!(toks[end].0, Tok::Punct('}')) {
            out.push(Function {
                name: name.clone(),
                first: *first,
                last: toks[end].1,
            });
        }
    }
    out
}

/// The files that count: neither test files nor generated ones.
fn counted(tree: &[SourceFile]) -> impl Iterator<Item = &SourceFile> {
    tree.iter()
        .filter(|f| !is_test_file(&f.path) && !is_generated(&f.text))
}

/// Every non-test function over `MAX_FN_LINES` lines.
pub(super) fn long_functions(tree: &[SourceFile]) -> Findings {
    let mut found = Vec::new();
    for f in counted(tree) {
        for func in functions(&tokenize(&f.text)) {
            let lines = func.last - func.first + 1;
            if lines > MAX_FN_LINES {
                found.push(format!(
                    "{}:{}: fn `{}` is {lines} lines (over {MAX_FN_LINES})",
                    f.path, func.first, func.name
                ));
            }
        }
    }
    found
}

/// Every file over `MAX_FILE_LINES` lines besides its `#[cfg(test)]` items.
pub(super) fn long_files(tree: &[SourceFile]) -> Findings {
    let mut found = Vec::new();
    for f in counted(tree) {
        let toks = tokenize(&f.text);
        let test_lines: usize = test_items(&toks)
            .iter()
            .map(|(a, b)| toks[*b].1 - toks[*a].1 + 1)
            .sum();
        let lines = f.text.lines().count() - test_lines;
        if lines > MAX_FILE_LINES {
            found.push(format!(
                "{}: {lines} lines besides its tests (over {MAX_FILE_LINES})",
                f.path
            ));
        }
    }
    found
}
