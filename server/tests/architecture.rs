//! The import rules of the server's modules: each module may use only modules of a lower
//! layer, so faces never reach the store or each other, the Tinkerbell backend never reaches
//! the machine domain, and no import circle can form. Read from the source, not the binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first. A module may import only modules of strictly lower layers; modules in one
/// layer are independent of each other.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "words and tools",
        &["vocab", "clock", "memory", "secrets", "tls"],
    ),
    ("settings", &["config"]),
    (
        "storage, publishing, the boot directory, metrics, DHCP status, Tinkerbell",
        &[
            "store",
            "events",
            "artefact",
            "metrics",
            "dhcp_status",
            "tinkerbell",
        ],
    ),
    ("the HTTP error boundary (it maps store errors)", &["error"]),
    ("the listener", &["listener"]),
    ("the domain", &["machines", "auth"]),
    ("domain ↔ install engine", &["provision"]),
    ("the handlers' state", &["state"]),
    ("faces", &["api", "ui", "boot"]),
    ("the crate root: build_state, router, serve", &["lib"]),
    ("the offline subcommands", &["cli"]),
];

/// Lower modules some modules may not reach even so: the faces go through the domain's
/// services, never to the store, the change hub or the Tinkerbell backend directly.
const NEVER: &[(&str, &str)] = &[
    ("api", "store"),
    ("ui", "store"),
    ("boot", "store"),
    ("api", "events"),
    ("ui", "events"),
    ("boot", "events"),
    ("api", "tinkerbell"),
    ("ui", "tinkerbell"),
    ("boot", "tinkerbell"),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

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

/// The top-level module a file belongs to (`api/agent.rs` → `api`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code without comments (a doc comment may name any module).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module named through `crate::`, including inside `use crate::{a, b::c}`.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = j;
                    break;
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The modules `lib.rs` declares; any other name after `crate::` is an item of the root.
fn modules() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("pub mod ").or(l.strip_prefix("mod ")))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

/// Every import of the server that breaks a rule, as `file: from → to (why)`.
fn violations() -> Vec<String> {
    let modules = modules();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.retain(|f| !f.ends_with("main.rs"));
    let mut bad = Vec::new();
    for file in files {
        let from = module_of(&file);
        let Some(from_layer) = layer_of(&from) else {
            bad.push(format!("{}: module `{from}` has no layer", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for to in crate_modules(&code(&text)) {
            let to = if modules.contains(&to) {
                to
            } else {
                "lib".into()
            };
            if to == from {
                continue;
            }
            let Some(to_layer) = layer_of(&to) else {
                bad.push(format!("{}: `{to}` has no layer", file.display()));
                continue;
            };
            if NEVER.contains(&(from.as_str(), to.as_str())) {
                bad.push(format!(
                    "{}: {from} → {to} (faces use the domain's services)",
                    file.strip_prefix(src()).unwrap().display()
                ));
            } else if to_layer >= from_layer {
                bad.push(format!(
                    "{}: {from} ({}) → {to} ({})",
                    file.strip_prefix(src()).unwrap().display(),
                    LAYERS[from_layer].0,
                    LAYERS[to_layer].0
                ));
            }
        }
    }
    bad
}

#[test]
fn every_import_points_down_the_layers() {
    let bad = violations();
    assert!(bad.is_empty(), "forbidden imports:\n{}", bad.join("\n"));
}

#[test]
fn every_module_of_the_crate_has_a_layer() {
    for m in modules() {
        assert!(layer_of(&m).is_some(), "module `{m}` has no layer");
    }
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let found = crate_modules(
        "use crate::{machines::{Machines, State}, store::Db};\nfn f() { crate::ui::x(); }",
    );
    let want: BTreeSet<String> = ["machines", "store", "ui"].map(String::from).into();
    assert_eq!(found, want);
    // A face reaching the store, or the Tinkerbell backend reaching the domain, is refused.
    assert!(layer_of("store") < layer_of("api"));
    assert!(layer_of("tinkerbell") < layer_of("machines"));
}
