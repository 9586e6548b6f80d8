//! The module graph: which modules name which, and the loops in it.

use std::collections::{BTreeMap, BTreeSet};

use super::Findings;
use super::reader::{SourceFile, Target, module_of, uses};

/// The modules a tree defines (by its files), as module paths.
pub(super) fn modules(tree: &[SourceFile]) -> BTreeSet<Vec<String>> {
    tree.iter().map(|f| module_of(&f.path)).collect()
}

/// Module `parent`'s children that import each other, directly or around a
/// longer loop: every edge `a -> b` between two children of one module
/// (`b` a module, not an item of the parent — a child may use its parent's
/// items, and the parent its children's), with a cycle reported once per
/// set of modules it joins.
pub(super) fn cycles(tree: &[SourceFile]) -> Findings {
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
