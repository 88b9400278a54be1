//! The module graph, checked: imports run one way, along the data, and no two modules
//! import each other (directly or round a loop).
//!
//! Every `crate::a::b::…` path in src/ (in `use` lines and inline) is an edge from the
//! file's module to the longest module it names. A module and its own parent or children
//! are not counted (a `mod.rs` re-exports its children, and they use its items).
//! `LAYERS` below is the architecture in one table: a module may import only modules of a
//! lower layer or of its own layer where the table allows it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer. A module may import only modules in earlier layers, and
/// within its own layer only the ones named after it.
const LAYERS: &[&[(&str, &[&str])]] = &[
    // leaves: what every stage shares
    &[("clock", &[]), ("files", &[]), ("frame", &[]), ("logging", &[])],
    &[("config", &[]), ("dataset", &[]), ("judge", &[])],
    &[("gpio", &[]), ("stats", &[])],
    // the process's health (watchdog, counters) that every stage reports to
    &[("service", &[])],
    // the line, in the data's order
    &[("source", &[])],
    &[("model", &[])],
    &[("preprocess", &[])],
    &[("actuate", &[]), ("record", &[])],
    &[("sinks", &[])],
    // composition: opens the live objects, then runs them
    &[("runtime", &[])],
    &[("pipeline", &[])],
    // the tools, apart
    &[("commands", &[])],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/source/v4l2/mod.rs` → `source::v4l2`; lib.rs and main.rs are the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    (parts != ["lib"] && parts != ["main"]).then(|| parts.join("::"))
}

/// The code of a file without comments and string literals' contents, roughly: enough
/// that a path in a doc comment or an error message does not count as an import.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module → the modules its code names through `crate::` or `super::` paths.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .filter_map(|f| module_of(src, f).map(|m| (m, f.clone())))
        .collect();
    let known: BTreeSet<&str> = modules.keys().map(String::as_str).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let mut targets = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let path: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            // the longest prefix that is a module
            if let Some(target) = (1..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|m| known.contains(m.as_str()))
            {
                targets.insert(target);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

fn related(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}::"));
    under(a, b) || under(b, a)
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_two_modules_import_each_other() {
    let graph = edges(&src_dir());
    // Depth-first search for a loop, at every level (source::supervise ↔ source::trigger
    // counts as much as config ↔ source).
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for t in graph.get(m).into_iter().flatten() {
            if related(m, t) {
                continue;
            }
            if let Some(c) = visit(t, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn imports_run_along_the_layers() {
    let graph = edges(&src_dir());
    let layer_of = |m: &str| {
        LAYERS
            .iter()
            .position(|l| l.iter().any(|(name, _)| *name == m))
            .unwrap_or_else(|| panic!("module {m} is not in tests/architecture.rs LAYERS: give it its place"))
    };
    let same_layer_allowed = |from: &str, to: &str| {
        LAYERS
            .iter()
            .flat_map(|l| l.iter())
            .any(|(name, may)| *name == from && may.contains(&to))
    };
    let mut wrong = Vec::new();
    for (m, targets) in &graph {
        for t in targets {
            let (from, to) = (top(m), top(t));
            if from == to {
                continue;
            }
            let (lf, lt) = (layer_of(from), layer_of(to));
            if lt > lf || (lt == lf && !same_layer_allowed(from, to)) {
                wrong.push(format!("{m} imports {t} ({from} is layer {lf}, {to} is layer {lt})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_checker_sees_a_cycle_and_a_wrong_way_import() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("frame.rs"), "use crate::source::Thing;\n").unwrap();
    std::fs::create_dir(src.join("source")).unwrap();
    std::fs::write(src.join("source/mod.rs"), "use crate::frame::Frame; // crate::judge\n").unwrap();
    let graph = edges(src);
    assert_eq!(graph["frame"], BTreeSet::from(["source".to_string()]));
    assert_eq!(
        graph["source"],
        BTreeSet::from(["frame".to_string()]),
        "comments do not count"
    );
}
