//! The Rust-source reader: the files of a tree, their tokens, and every
//! path they write, resolved to an item of the crate or something outside it.

use std::path::{Path, PathBuf};

use super::tokens::{Tok, tokenize};

/// A source file: its path under the tree's root (with `/`) and its text.
pub(super) struct SourceFile {
    pub(super) path: String,
    pub(super) text: String,
}

/// The workspace's root (the host crate's parent).
pub(super) fn workspace_root() -> PathBuf {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent()
        .expect("host/ is in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `host/src`, named by its path there.
pub(super) fn host_tree() -> Vec<SourceFile> {
    let root = workspace_root().join("host/src");
    let files = rust_files(&root, "");
    assert!(
        files.iter().any(|f| f.path == "lib.rs"),
        "no lib.rs under {}",
        root.display()
    );
    files
}

/// Every `.rs` file under `dir`, sorted, named `prefix` + its path under `dir`.
pub(super) fn rust_files(dir: &Path, prefix: &str) -> Vec<SourceFile> {
    fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<SourceFile>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, prefix, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).expect("under the root");
                let path = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let text = std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
                out.push(SourceFile {
                    path: format!("{prefix}{path}"),
                    text,
                });
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, prefix, &mut files);
    files
}

// ---------------------------------------------------------------- paths

/// One path as written: its segments (a `{…}` group gives one path per
/// member) and the line of its last segment.
#[derive(Debug, Clone)]
pub(super) struct WrittenPath {
    pub(super) segments: Vec<String>,
    pub(super) line: usize,
    /// The module the path was written in (inline `mod x { … }` included),
    /// for resolving `self` and `super`.
    pub(super) module: Vec<String>,
    /// For a path of a `pub use` (any `pub(…)` too): the name it is
    /// re-exported as (its alias, else its last segment).
    pub(super) exported_as: Option<String>,
}

/// One path of a path tree: its segments, the line of its last segment,
/// and its `as` alias.
type Piece = (Vec<String>, usize, Option<String>);

/// The paths starting at `toks[i]` (an identifier, `{` or `*`), and the
/// index after them.
pub(super) fn path_tree(toks: &[(Tok, usize)], mut i: usize) -> (Vec<Piece>, usize) {
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
                        let (mut paths, j) = path_tree(toks, i);
                        if let (Some(alias), [one]) = (alias_at(toks, j), paths.as_mut_slice()) {
                            one.2 = Some(alias);
                        }
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
        Some((Tok::Punct('*'), line)) => (vec![(vec!["*".into()], *line, None)], i + 1),
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
                    .map(|(mut segs, l, alias)| {
                        segs.insert(0, head.clone());
                        if segs.last().is_some_and(|s| s == "self") {
                            segs.pop();
                        }
                        (segs, l, alias)
                    })
                    .collect();
                (paths, j)
            } else {
                (vec![(vec![head], *line, None)], i + 1)
            }
        }
        _ => (Vec::new(), i + 1),
    }
}

/// The alias of `as name` at `toks[i]`, if that is what is there.
fn alias_at(toks: &[(Tok, usize)], i: usize) -> Option<String> {
    match (toks.get(i), toks.get(i + 1)) {
        (Some((Tok::Ident(w), _)), Some((Tok::Ident(name), _))) if w == "as" => Some(name.clone()),
        _ => None,
    }
}

/// Whether the `use` at `toks[i]` is public: `pub use` or `pub(…) use`.
fn is_public_use(toks: &[(Tok, usize)], i: usize) -> bool {
    let ident = |k: usize, word: &str| matches!(toks.get(k), Some((Tok::Ident(w), _)) if w == word);
    if i >= 1 && ident(i - 1, "pub") {
        return true;
    }
    if i < 2 || !matches!(toks[i - 1].0, Tok::Punct(')')) {
        return false;
    }
    let open = (0..i - 1)
        .rev()
        .find(|&k| matches!(toks[k].0, Tok::Punct('(')));
    open.is_some_and(|k| k >= 1 && ident(k - 1, "pub"))
}

/// `host/src`-relative file path -> its module path (`runtime/mod.rs` ->
/// `runtime`, `runtime/processor/deliver.rs` -> `runtime::processor::deliver`).
pub(super) fn module_of(path: &str) -> Vec<String> {
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
pub(super) fn written_paths(file: &SourceFile) -> Vec<WrittenPath> {
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
                let public = is_public_use(&toks, i);
                let (mut paths, j) = path_tree(&toks, i + 1);
                if let (Some(alias), [one]) = (alias_at(&toks, j), paths.as_mut_slice()) {
                    one.2 = Some(alias);
                }
                out.extend(paths.into_iter().map(|(segments, line, alias)| {
                    let name = alias.or_else(|| segments.last().cloned());
                    WrittenPath {
                        exported_as: name.filter(|_| public),
                        segments,
                        line,
                        module: m.clone(),
                    }
                }));
                i = j.max(i + 1);
            }
            Tok::Ident(_) => {
                let after_sep = i > 0 && matches!(toks[i - 1].0, Tok::Sep | Tok::Punct('$'));
                if !after_sep && matches!(toks.get(i + 1), Some((Tok::Sep, _))) {
                    let m = module();
                    let (paths, j) = path_tree(&toks, i);
                    out.extend(paths.into_iter().map(|(segments, line, _)| WrittenPath {
                        segments,
                        line,
                        module: m.clone(),
                        exported_as: None,
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
pub(super) enum Target {
    Crate(Vec<String>),
    Outside(Vec<String>),
}

pub(super) fn resolve(p: &WrittenPath) -> Target {
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
pub(super) struct Use {
    pub(super) file: String,
    pub(super) line: usize,
    pub(super) target: Target,
    /// The module it is written in (inline modules included).
    pub(super) module: Vec<String>,
}

pub(super) fn uses(tree: &[SourceFile]) -> Vec<Use> {
    tree.iter()
        .flat_map(|f| {
            written_paths(f).into_iter().map(|p| Use {
                file: f.path.clone(),
                line: p.line,
                target: resolve(&p),
                module: p.module,
            })
        })
        .collect()
}

pub(super) fn render(t: &Target) -> String {
    match t {
        Target::Crate(abs) => format!("crate::{}", abs.join("::")),
        Target::Outside(segs) => segs.join("::"),
    }
}
