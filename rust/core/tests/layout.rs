//! The crate's layout: the stages (the top-level modules: `model`, `input`, `parse`, `route`,
//! `output`, `compare`, and `error` and `split` beside them) must not depend on each other in
//! a circle, and neither may any two modules (files).
//!
//! Dependencies are read from the source text: every `crate::...` and `super::...` path
//! outside comments and `#[cfg(test)]` modules (a test may use any stage to build its inputs),
//! `use` trees included, resolved to the deepest module (file) it names. A module's use of
//! its own ancestors (`super::ExprError` in `route/expr/lexer.rs`) is not counted as a
//! module-level edge: items defined in a folder's `mod.rs` belong to the whole folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path, e.g. `["route", "expr", "eval"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// Where a dependency was seen: (file, the path as written).
type Evidence = (String, String);

struct Deps {
    /// Every module (file) of the crate.
    modules: BTreeSet<ModPath>,
    /// module → module it uses → one place it does.
    edges: BTreeMap<ModPath, BTreeMap<ModPath, Evidence>>,
    /// `crate::x` paths whose `x` is not a top-level module (e.g. a root re-export).
    stray: Vec<Evidence>,
}

fn module_of(rel: &str) -> ModPath {
    let rel = rel.strip_suffix(".rs").expect(".rs file");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source without comments and without the `#[cfg(test)]` module (always last in a file).
fn code_of(source: &str) -> String {
    let source = match source.find("#[cfg(test)]") {
        Some(at) => &source[..at],
        None => source,
    };
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the use tree (or plain path) at the start of `text` into its full paths, each as
/// the segments after the prefix already read.
fn expand(text: &str) -> Vec<Vec<String>> {
    fn tree(s: &[char], i: &mut usize) -> Vec<Vec<String>> {
        let mut prefix = Vec::new();
        loop {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == '{' {
                *i += 1;
                let mut out = Vec::new();
                loop {
                    for rest in tree(s, i) {
                        let mut p = prefix.clone();
                        p.extend(rest);
                        out.push(p);
                    }
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            return out;
                        }
                        _ => return out,
                    }
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&'}') {
                        *i += 1;
                        return out;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && is_ident(s[*i]) {
                *i += 1;
            }
            if start == *i {
                return vec![prefix]; // `*`, or the end of the path
            }
            prefix.push(s[start..*i].iter().collect());
            if s.get(*i) == Some(&':') && s.get(*i + 1) == Some(&':') {
                *i += 2;
            } else {
                return vec![prefix];
            }
        }
    }
    let chars: Vec<char> = text.chars().take(2000).collect();
    tree(&chars, &mut 0)
}

/// The deepest known module that `path` (from the crate root) names.
fn resolve(modules: &BTreeSet<ModPath>, path: &[String]) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .expect("the crate root is a module")
}

/// Reads the dependencies of `files` (path relative to `src/`, source text).
fn deps(files: &[(String, String)]) -> Deps {
    let modules: BTreeSet<ModPath> = files.iter().map(|(rel, _)| module_of(rel)).collect();
    let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, Evidence>> = BTreeMap::new();
    let mut stray = Vec::new();
    for (rel, source) in files {
        let here = module_of(rel);
        let code = code_of(source);
        for (at, _) in code.match_indices("::") {
            // The word before `::`, if it is `crate` or a chain of `super`s.
            let before = &code[..at];
            let word_start = before
                .rfind(|c: char| !is_ident(c) && c != ':')
                .map_or(0, |i| i + 1);
            let head = &before[word_start..];
            if code[at + 2..].starts_with("super::") {
                continue; // `super::super::`: read once, at its last `super`
            }
            let base: ModPath = if head == "crate" {
                Vec::new()
            } else if head.split("::").all(|w| w == "super") {
                // `super` is the parent of the module a file is; a folder's `mod.rs` is the
                // module itself, so its `super` is one level further up.
                let ups = head.split("::").count();
                let mut m = here.clone();
                for _ in 0..ups {
                    m.pop();
                }
                m
            } else {
                continue;
            };
            for rest in expand(&code[at + 2..]) {
                let mut full = base.clone();
                full.extend(rest);
                let written = format!("{head}::{}", full[base.len()..].join("::"));
                if head == "crate" && !modules.contains(&full[..1.min(full.len())]) {
                    stray.push((rel.clone(), written));
                    continue;
                }
                let target = resolve(&modules, &full);
                if target != here {
                    edges
                        .entry(here.clone())
                        .or_default()
                        .entry(target)
                        .or_insert_with(|| (rel.clone(), written));
                }
            }
        }
    }
    Deps {
        modules,
        edges,
        stray,
    }
}

/// A circle in `graph`, as the nodes along it (the first repeated at the end), if there is one.
fn find_cycle<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Option<Vec<N>> {
    fn visit<N: Ord + Clone>(
        n: &N,
        graph: &BTreeMap<N, BTreeSet<N>>,
        done: &mut BTreeSet<N>,
        stack: &mut Vec<N>,
    ) -> Option<Vec<N>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.clone());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.clone());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

/// Stage → stages it uses, with one place for each.
fn stage_graph(d: &Deps) -> BTreeMap<String, BTreeMap<String, Evidence>> {
    let mut g: BTreeMap<String, BTreeMap<String, Evidence>> = BTreeMap::new();
    for (from, tos) in &d.edges {
        for (to, why) in tos {
            if let (Some(a), Some(b)) = (from.first(), to.first()) {
                if a != b {
                    g.entry(a.clone())
                        .or_default()
                        .entry(b.clone())
                        .or_insert_with(|| why.clone());
                }
            }
        }
    }
    g
}

/// Module → modules it uses, without the uses of its own ancestors (see the file's doc).
fn module_graph(d: &Deps) -> BTreeMap<ModPath, BTreeMap<ModPath, Evidence>> {
    let mut g: BTreeMap<ModPath, BTreeMap<ModPath, Evidence>> = BTreeMap::new();
    for (from, tos) in &d.edges {
        for (to, why) in tos {
            if !from.starts_with(to) {
                g.entry(from.clone())
                    .or_default()
                    .insert(to.clone(), why.clone());
            }
        }
    }
    g
}

/// The circle, spelled out with the place each step is taken.
fn explain<N: Ord + Clone + std::fmt::Debug>(
    cycle: &[N],
    g: &BTreeMap<N, BTreeMap<N, Evidence>>,
) -> String {
    cycle
        .windows(2)
        .map(|w| {
            let (file, path) = &g[&w[0]][&w[1]];
            format!("{:?} -> {:?} ({file}: {path})", w[0], w[1])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn keys_only<N: Ord + Clone>(g: &BTreeMap<N, BTreeMap<N, Evidence>>) -> BTreeMap<N, BTreeSet<N>> {
    g.iter()
        .map(|(k, v)| (k.clone(), v.keys().cloned().collect()))
        .collect()
}

/// Problems with the layout of `files`: circles between stages or modules, stray paths.
fn check(files: &[(String, String)]) -> Vec<String> {
    let d = deps(files);
    let mut problems = Vec::new();
    for (file, path) in &d.stray {
        problems.push(format!(
            "{file}: {path} is not a path through a top-level module; name the stage"
        ));
    }
    let stages = stage_graph(&d);
    if let Some(c) = find_cycle(&keys_only(&stages)) {
        problems.push(format!(
            "stages in a circle: {}\n{}",
            c.join(" -> "),
            explain(&c, &stages)
        ));
    }
    let modules = module_graph(&d);
    if let Some(c) = find_cycle(&keys_only(&modules)) {
        problems.push(format!(
            "modules in a circle: {}\n{}",
            c.iter()
                .map(|m| m.join("::"))
                .collect::<Vec<_>>()
                .join(" -> "),
            explain(&c, &modules)
        ));
    }
    problems
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under src");
            let rel = rel.to_str().expect("UTF-8 path").replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).expect("UTF-8 source")));
        }
    }
}

#[test]
fn no_circles_between_stages_or_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "read the crate's sources: {}",
        files.len()
    );
    let d = deps(&files);
    // The reading finds the dependencies that are there (so an empty graph cannot pass).
    let stages = stage_graph(&d);
    for (from, to) in [("split", "input"), ("input", "parse"), ("parse", "model")] {
        assert!(stages[from].contains_key(to), "{from} -> {to} not seen");
    }
    assert!(d
        .modules
        .contains(&vec!["route".into(), "expr".into(), "eval".into()]));
    let problems = check(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

fn fixture(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

/// The circle this layout was made to break: `error` writing reject records with the
/// serializer, which uses `parse`, which uses `error`.
#[test]
fn finds_the_old_error_circle() {
    let files = fixture(&[
        (
            "lib.rs",
            "pub mod error;\npub mod output;\npub mod parse;\n",
        ),
        (
            "error.rs",
            "use crate::output::serialize::write_str;\npub enum Reason {}\n",
        ),
        ("output/mod.rs", "pub mod serialize;\n"),
        (
            "output/serialize.rs",
            "use crate::parse::{RawLine, Shape};\npub fn write_str() {}\n",
        ),
        (
            "parse/mod.rs",
            "use crate::error::{ParseError, Reason};\npub struct RawLine;\n",
        ),
    ]);
    let problems = check(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("stages in a circle: error -> output -> parse -> error")),
        "{problems:?}"
    );
    // Without the serializer in error.rs, no circle.
    let mut fixed = files.clone();
    fixed[1].1 = "pub enum Reason {}\n".into();
    assert_eq!(check(&fixed), Vec::<String>::new());
}

#[test]
fn finds_module_circles_inside_a_stage_but_not_uses_of_a_parent() {
    let files = fixture(&[
        ("lib.rs", "pub mod route;\n"),
        (
            "route/mod.rs",
            "mod eval;\nmod parser;\npub struct ExprError;\n",
        ),
        (
            "route/eval.rs",
            "use super::parser::{Node};\nuse super::ExprError;\n",
        ),
        (
            "route/parser.rs",
            "use super::ExprError;\nfn f() { let _ = super::eval::order(); }\n\
             #[cfg(test)]\nmod tests { use crate::route::eval; }\n",
        ),
    ]);
    let problems = check(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("modules in a circle: route::eval -> route::parser -> route::eval")
    );
    // Uses from comments and test modules do not count.
    let mut quiet = files.clone();
    quiet[3].1 = "// super::eval::order\n#[cfg(test)]\nmod tests { use super::eval; }\n".into();
    assert_eq!(check(&quiet), Vec::<String>::new());
}

#[test]
fn use_trees_expand_to_every_path() {
    let got = expand("model::{binary, number::{self, Decimal}, value::*};");
    let want: Vec<Vec<String>> = [
        vec!["model", "binary"],
        vec!["model", "number", "self"],
        vec!["model", "number", "Decimal"],
        vec!["model", "value"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, want);
}

#[test]
fn root_re_exports_are_not_stage_paths() {
    let files = fixture(&[
        ("lib.rs", "pub mod model;\npub use model::Value;\n"),
        (
            "model/mod.rs",
            "pub struct Value;\nfn f(_: crate::Value) {}\n",
        ),
    ]);
    assert_eq!(check(&files).len(), 1);
}
