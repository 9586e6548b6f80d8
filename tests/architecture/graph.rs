//! The module graph: which modules name which, and the loops in it.

use std::collections::{BTreeMap, BTreeSet};

use super::Findings;
use super::reader::{SourceFile, Target, module_of, resolve, uses, written_paths};

/// The modules a tree defines (by its files), as module paths.
pub(super) fn modules(tree: &[SourceFile]) -> BTreeSet<Vec<String>> {
    tree.iter().map(|f| module_of(&f.path)).collect()
}

/// Module `parent`'s children that import each other, directly or around a
/// longer loop: every edge `a -> b` between two children of one module
/// (`b` a module, not an item of the parent — a child may use its parent's
/// items, and the parent its children's), with a cycle reported once per
/// set of modules it joins. A name the parent re-exports (`pub use
/// pipeline::Pipeline;` in `runtime`) counts as the child that defines it:
/// `super::Pipeline` in `runtime/run.rs` is an edge `run -> pipeline`. A
/// path written in an inline `mod tests` is test code, not an edge.
pub(super) fn cycles(tree: &[SourceFile]) -> Findings {
    let known = modules(tree);
    let exports = reexports(tree, &known);
    // (parent, from, to) -> the first place the edge is written.
    let mut edges: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    for u in uses(tree) {
        let Target::Crate(written) = &u.target else {
            continue;
        };
        let target = &defined_at(written, &exports, &known);
        let from = module_of(&u.file);
        if u.module[from.len()..].iter().any(|m| m == "tests") {
            continue;
        }
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

/// Every name a module re-exports (`pub use`, `pub(…) use`), by its
/// path through that module (`runtime::Pipeline`; `backend::*` for a glob),
/// with the path it stands for (`runtime::pipeline::Pipeline`). A `use`
/// path that starts at a child module (`pub use run::run;`) is resolved
/// against the module it is written in.
pub(super) fn reexports(
    tree: &[SourceFile],
    known: &BTreeSet<Vec<String>>,
) -> BTreeMap<Vec<String>, Vec<String>> {
    let mut out = BTreeMap::new();
    for p in tree.iter().flat_map(written_paths) {
        let Some(name) = &p.exported_as else {
            continue;
        };
        let target = match resolve(&p) {
            Target::Crate(abs) => abs,
            Target::Outside(segs) => {
                let mut abs = p.module.clone();
                abs.push(segs[0].clone());
                if !known.contains(&abs) {
                    continue;
                }
                abs.extend_from_slice(&segs[1..]);
                abs
            }
        };
        let mut at = p.module.clone();
        at.push(name.clone());
        if target.last().is_some_and(|s| s == "*") {
            at.pop();
            at.push("*".into());
        }
        out.insert(at, target);
    }
    out
}

/// The path where the item `path` names is defined: re-exports followed
/// (a glob's too, for a name that is no module of its own) until the path
/// goes through none. A loop of re-exports, which rustc rejects, stops
/// after a few rounds.
pub(super) fn defined_at(
    path: &[String],
    exports: &BTreeMap<Vec<String>, Vec<String>>,
    known: &BTreeSet<Vec<String>>,
) -> Vec<String> {
    let mut path = path.to_vec();
    'round: for _ in 0..16 {
        for n in (1..=path.len()).rev() {
            let prefix = &path[..n];
            let glob = || {
                let mut g = prefix[..n - 1].to_vec();
                g.push("*".into());
                exports
                    .get(&g)
                    .filter(|_| !known.contains(prefix) && prefix[n - 1] != "*")
            };
            let replaced = match exports.get(prefix) {
                Some(target) => target.clone(),
                None => match glob() {
                    Some(target) => {
                        let mut t = target[..target.len() - 1].to_vec();
                        t.push(prefix[n - 1].clone());
                        t
                    }
                    None => continue,
                },
            };
            let mut next = replaced;
            next.extend_from_slice(&path[n..]);
            if next == path {
                break 'round;
            }
            path = next;
            continue 'round;
        }
        break;
    }
    path
}

/// The strongly connected components of more than one node (Tarjan).
pub(super) fn strongly_connected(
    graph: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<BTreeSet<String>> {
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
