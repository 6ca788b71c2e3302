//! The module graph of `src/` (the library) read from the source text: no cycle, and imports run one way
//! (control → feed → engine → verdict → deliver → mysql → the shared leaves). A newcomer who adds an
//! import the wrong way finds out here, with the two modules named. Needs no server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers from the bottom; a module may import its own layer and those below.
const LAYERS: &[(&str, u8)] = &[
    ("calendar", 0),
    ("clock", 0),
    ("config", 0),
    ("error", 0),
    ("key", 0),
    ("retry", 0),
    ("mysql", 1),
    ("deliver", 2),
    ("verdict", 3),
    ("engine", 4),
    ("feed", 5),
    ("control", 6),
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a library file (`feed/binlog/mod.rs` → `feed::binlog`); `None` for the binary's files.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts[0] == "cli" || parts == ["main"] || parts == ["lib"] {
        return None;
    }
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    // Test-only files (`compare/tests.rs`, `binlog/fixtures.rs`) may import anything.
    if parts.last().is_some_and(|l| l == "tests" || l == "fixtures") {
        return None;
    }
    Some(parts.join("::"))
}

/// The source without line comments and without the `#[cfg(test)] mod tests { … }` block at its end.
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every `crate::a::b::…` and `super::…` path in `code`, as module paths.
fn paths_in(code: &str, module: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let parent: Vec<String> = module.split("::").map(str::to_string).collect::<Vec<_>>();
    let parent = &parent[..parent.len().saturating_sub(1)];
    for (prefix, base) in [("crate::", &[][..]), ("super::", parent)] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':').collect();
            let mut parts: Vec<String> = base.to_vec();
            parts.extend(path.split("::").filter(|s| !s.is_empty()).map(str::to_string));
            out.push(parts);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let modules: BTreeMap<String, PathBuf> =
        files.iter().filter_map(|f| Some((module_of(&src, f)?, f.clone()))).collect();
    let mut edges = BTreeMap::new();
    for (m, file) in &modules {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let mut deps = BTreeSet::new();
        for mut p in paths_in(&code, m) {
            while !p.is_empty() && !modules.contains_key(&p.join("::")) {
                p.pop();
            }
            let d = p.join("::");
            if !p.is_empty() && d != *m {
                deps.insert(d);
            }
        }
        // A parent naming its child module (`assemble::Txn`) depends on it.
        for child in modules.keys().filter(|c| c.strip_prefix(&format!("{m}::")).is_some_and(|r| !r.contains("::"))) {
            let name = child.rsplit("::").next().unwrap();
            let used = code
                .match_indices(&format!("{name}::"))
                .any(|(i, _)| !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':'));
            if used {
                deps.insert(child.clone());
            }
        }
        edges.insert(m.clone(), deps);
    }
    edges
}

fn layer(module: &str) -> u8 {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().find(|(n, _)| *n == top).map(|(_, l)| *l).unwrap_or_else(|| {
        panic!("module `{module}` has no layer: add its top-level name to LAYERS in tests/it/layout.rs")
    })
}

#[test]
fn imports_run_one_way() {
    let edges = graph();
    let upward: Vec<String> = edges
        .iter()
        .flat_map(|(m, ds)| ds.iter().filter(|d| layer(d) > layer(m)).map(move |d| format!("{m} → {d}")))
        .collect();
    assert!(upward.is_empty(), "imports against the layering (a lower layer importing a higher one): {upward:?}");
}

#[test]
fn the_module_graph_has_no_cycle() {
    let edges = graph();
    assert!(edges.len() > 30, "the graph reader found only {} modules", edges.len());
    // Depth-first search; a back edge closes a cycle, reported with its path.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for d in edges.get(m).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == d).unwrap_or(0);
                    cycles.push(format!("{} → {d}", stack[from..].join(" → ")));
                }
                Some(_) => {}
                None => visit(d, edges, state, stack, cycles),
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
    }
    let (mut state, mut cycles) = (BTreeMap::new(), Vec::new());
    for m in edges.keys() {
        if !state.contains_key(m.as_str()) {
            visit(m, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:?}");
}

#[test]
fn the_graph_reader_sees_an_upward_import() {
    // The reader itself must find what it is there to find.
    let code = code_of("use crate::feed::binlog::Batch;\n// crate::control::api\nfn f() { super::x(); }\n");
    assert_eq!(paths_in(&code, "verdict::settle"), vec![vec!["feed", "binlog"], vec!["verdict", "x"]]);
}
