//! The architecture, checked: the library's layers (the table in `lib.rs`'s
//! crate doc) import only layers below them, so the module graph has no cycle;
//! and no product source file or function grows past what a reader can hold.
//!
//! Read from the sources as text: every `crate::LAYER` path outside comments and
//! test code counts as an import of LAYER.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// The layers, bottom first, as `lib.rs` documents them.
const LAYERS: &[&str] = &[
    "wire", "filter", "frame", "ring", "tx", "poller", "app", "capture", "sys", "stack",
];

/// Longest product source file and function, in lines (tests aside).
const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Test code: a file of tests, or under a `tests` directory.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

/// The file's code without its inline `#[cfg(test)] mod tests { ... }` (always
/// last, by convention here) and without comment lines.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests {").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The layers `code` names as `crate::LAYER`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    // `use crate::{a::x, b::y}`: the names right inside the braces.
    let mut rest = code;
    while let Some(i) = rest.find("crate::{") {
        rest = &rest[i + "crate::{".len()..];
        let mut depth = 1;
        let mut token = String::new();
        for c in rest.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            if depth == 1 && (c.is_ascii_alphanumeric() || c == '_') {
                token.push(c);
            } else {
                if !token.is_empty() && depth == 1 && c == ':' {
                    out.insert(token.clone());
                }
                if c == ',' || c == '}' || c.is_whitespace() {
                    // A bare name at depth 1 (`crate::{wire, frame::X}`).
                    if !token.is_empty() && depth == 1 {
                        out.insert(token.clone());
                    }
                }
                if c != ':' {
                    token.clear();
                }
            }
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_layers_are_the_modules_of_lib_rs() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let layers: BTreeSet<&str> = LAYERS.iter().copied().collect();
    assert_eq!(
        declared, layers,
        "lib.rs's modules and the layer list differ"
    );
    for layer in LAYERS {
        assert!(
            lib.contains(&format!("[`{layer}`]")),
            "lib.rs's layer table lacks {layer}"
        );
    }
}

#[test]
fn no_layer_imports_a_higher_one() {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let mut edges = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let rel = file.strip_prefix(src()).unwrap();
        let Some(own) = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy())
        else {
            continue;
        };
        let own = own.trim_end_matches(".rs").to_string();
        let Some(own_rank) = rank(&own) else {
            assert_eq!(own, "lib", "{} is in no layer", rel.display());
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        for import in imports(&code(&text)) {
            let Some(r) = rank(&import) else { continue };
            if r != own_rank {
                edges.insert((own.clone(), import.clone()));
            }
            if r > own_rank {
                wrong.push(format!("{} imports {import}", rel.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports of higher layers:\n{}",
        wrong.join("\n")
    );
    // Ranked edges all point down, so the graph is acyclic; say what it is.
    let graph: Vec<String> = edges.iter().map(|(a, b)| format!("{a} -> {b}")).collect();
    println!("module graph (acyclic):\n{}", graph.join("\n"));
    assert!(
        edges.contains(&("stack".into(), "sys".into())),
        "the check reads nothing: {graph:?}"
    );
}

/// Lines of each function body in `text`: from its `fn` line to the brace that
/// closes it (braces in strings and chars are rare enough here to count).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let Some(pos) = t.find("fn ") else { continue };
        let head = &t[..pos];
        let is_fn = head.split_whitespace().all(|w| {
            matches!(w, "pub" | "const" | "unsafe" | "async" | "extern") || w.starts_with("pub(")
        });
        if !is_fn || t.starts_with("//") {
            continue;
        }
        let name: String = t[pos + 3..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let mut depth = 0i64;
        let mut opened = false;
        for (j, l) in lines.iter().enumerate().skip(i) {
            for c in l.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if !opened && l.trim_end().ends_with(';') {
                break;
            }
            if opened && depth == 0 {
                out.push((name.clone(), j - i + 1));
                break;
            }
        }
    }
    out
}

#[test]
fn product_files_and_functions_stay_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in ["userspace/src", "cli/src", "xdp-ebpf/src"] {
        rs_files(&root.join(dir), &mut files);
    }
    let mut long = Vec::new();
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        if rel.ends_with("corpus.rs") {
            continue; // the XDP program's test-frame corpus: data
        }
        let text = fs::read_to_string(file).unwrap();
        let code_text = &text[..text.find("#[cfg(test)]\nmod tests {").unwrap_or(text.len())];
        let n = code_text.lines().count();
        if n > MAX_FILE_LINES {
            long.push(format!("{rel}: {n} lines"));
        }
        for (name, n) in function_lengths(code_text) {
            if n > MAX_FN_LINES {
                long.push(format!("{rel}: fn {name} has {n} lines"));
            }
        }
    }
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
}

#[test]
fn function_lengths_are_measured() {
    let text = "fn a() {\n    x;\n}\npub(crate) fn b(\n    y: u8,\n) -> u8 {\n    if y { 1 } else { 2 }\n}\nfn c();\n";
    assert_eq!(
        function_lengths(text),
        vec![("a".to_string(), 3), ("b".to_string(), 5)]
    );
}

#[test]
fn imports_are_read_from_paths_and_use_lists() {
    let code = "use crate::{\n    frame::{A, B},\n    wire,\n};\nfn f() { crate::tx::add(); }";
    let got = imports(code);
    for m in ["frame", "wire", "tx"] {
        assert!(got.contains(m), "{m} in {got:?}");
    }
    assert!(!got.contains("A"), "{got:?}");
}
