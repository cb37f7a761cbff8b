//! House rules checked over the source tree (a "tidy" test): they are easy to break without
//! noticing and cheap to check by reading files.
//!
//! 1. Every path the codemap in `ARCHITECTURE.md` names exists, and every entry directly under
//!    `src/` and every `tests/*.rs` suite is named there.
//! 2. Only `src/bindings/` names `wasm_bindgen`, `js_sys`, `web_sys` or `serde_wasm_bindgen`
//!    (tests may use the `wasm_bindgen_test` harness).
//! 3. A source file under `src/` that is not a test file has at most [`MAX_LINES`] lines, except
//!    the files in [`LONG_FILES`], each held to its own cap. The list only shrinks: an entry
//!    whose file got short enough (or went away) must be removed.
//! 4. No two modules of the crate import each other, directly or through others (a type two
//!    layers need lives in the lower one).
//! 5. Public items carry docs: the `missing_docs` lint is on and the checks that run it refuse
//!    warnings, and every `pub` item in a non-test file has a `///` comment (this also covers
//!    items the lint cannot see, in modules that are not public).
//!
//! 6. The core decides by enums, never by the names JavaScript sees: outside `src/bindings/`,
//!    no non-test source file calls `Error::code()` (only `src/error.rs`, which defines it) or
//!    compares a `.name()` (a task state's, a breaker phase's) with `==`, `!=` or `matches!`
//!    (tests may: they check what JavaScript sees).
//! 7. The bindings only translate: nothing in `src/bindings/` reaches through the engine into
//!    its parts (`.tasks()`, `.controller()`, `.pool()`, `.runs()`, `.store()`, `.journal()`);
//!    what they need is an `Engine` method (`engine/lifecycle/driver.rs`).
//!
//! Each check is a function from file contents to a list of problems, so the claims at the end
//! of the file show that each one fails on a bad input.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

/// The longest a source file under `src/` may be, in lines.
const MAX_LINES: usize = 600;

/// How far above its file's length a cap in [`LONG_FILES`] may stay: room for work in flight,
/// not for a file to double.
const SLACK: usize = 100;

/// Files longer than [`MAX_LINES`] today: (path, cap in lines, why and what shrinks it).
/// Lower a cap when a file shrinks (a cap more than [`SLACK`] above its file fails); remove the
/// entry once the file is within [`MAX_LINES`].
const LONG_FILES: &[(&str, usize, &str)] = &[
    (
        "src/bindings/run.js",
        660,
        "run() and breaker() with their argument checks: split with the bindings",
    ),
    (
        "src/control/mod.rs",
        900,
        "the controller: admission, queues per lane and level, fairness debt; its tests are \
         already apart",
    ),
    (
        "src/engine/lifecycle.rs",
        1400,
        "the task lifecycle (restore is apart): to be split further by phase (admission, \
         prompt, completion)",
    ),
    (
        "src/engine/tasks.rs",
        800,
        "the task table: records, retention, counters and restore",
    ),
    (
        "src/host/fake.rs",
        630,
        "the seeded host simulator: sessions, turns, failures and events",
    ),
];

/// Identifiers only `src/bindings/` may name.
const JS_ONLY: &[&str] = &["wasm_bindgen", "js_sys", "web_sys", "serde_wasm_bindgen"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, as paths relative to the crate root with `/` separators, sorted.
fn files_under(dir: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &root().join(dir), &mut out);
    out.sort();
    out
}

/// Test-only files: `tests.rs` and anything under a `tests/` folder.
fn is_test_file(path: &str) -> bool {
    path.ends_with("/tests.rs") || path.contains("/tests/")
}

/// The codemap: the fenced block after the `## Codemap` heading.
fn codemap(architecture: &str) -> &str {
    let start = architecture
        .find("## Codemap")
        .expect("ARCHITECTURE.md has a `## Codemap` section");
    let rest = &architecture[start..];
    let open = rest.find("```\n").expect("the codemap is a fenced block") + 4;
    let close = rest[open..]
        .find("```")
        .expect("the codemap's block is closed");
    &rest[open..open + close]
}

/// A path the codemap names, with the folders it may be relative to (an entry: the root, or
/// its directory; a word in a description: the entry's folder or any folder above it).
struct Named {
    path: String,
    bases: Vec<String>,
}

impl Named {
    fn exists(&self, exists: &dyn Fn(&str) -> bool) -> bool {
        self.bases
            .iter()
            .any(|b| exists(&format!("{b}{}", self.path)))
    }

    fn shown(&self) -> String {
        format!("{}{}", self.bases[0], self.path)
    }
}

/// The folder `path` is in and every folder above it, nearest first, each ending in `/` (the
/// root is "").
fn folders_above(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(i) = rest[..rest.len().saturating_sub(1)].rfind('/') {
        rest = &rest[..=i];
        out.push(rest.to_string());
    }
    out.push(String::new());
    out
}

/// The paths the codemap names. An entry starts a line: at column 0 (relative to the root), or
/// indented by two under the last directory entry (relative to it). A word ending in a source
/// extension inside an entry's description is a file relative to the entry's folder or a folder
/// above it.
fn codemap_paths(map: &str) -> Vec<Named> {
    const EXTENSIONS: &[&str] = &[".rs", ".ts", ".js", ".mjs", ".sh", ".toml", ".json"];
    let mut paths = Vec::new();
    let mut dir = String::new(); // the last top-level directory entry
    let mut base = String::new(); // the folder descriptions are relative to
    for line in map.lines() {
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start();
        let first = body.split_whitespace().next().unwrap_or("");
        let is_entry = (indent == 0 || indent == 2)
            && !first.is_empty()
            && (first.ends_with('/') || EXTENSIONS.iter().any(|e| first.ends_with(e)));
        let description = if is_entry {
            let path = if indent == 0 {
                first.to_string()
            } else {
                format!("{dir}{first}")
            };
            if indent == 0 {
                dir = if path.ends_with('/') {
                    path.clone()
                } else {
                    String::new()
                };
            }
            base = if path.ends_with('/') {
                path.clone()
            } else {
                folders_above(&path)[0].clone()
            };
            paths.push(Named {
                path,
                bases: vec![String::new()],
            });
            &body[first.len()..]
        } else {
            body
        };
        for word in description.split(|c: char| !(c.is_alphanumeric() || "._/-".contains(c))) {
            let word = word.trim_end_matches('.');
            if EXTENSIONS.iter().any(|e| word.ends_with(e)) && !word.starts_with('.') {
                let mut bases = folders_above(&format!("{base}x"));
                if base.is_empty() {
                    bases.truncate(1);
                }
                paths.push(Named {
                    path: word.to_string(),
                    bases,
                });
            }
        }
    }
    paths
}

/// Problems of the codemap against the tree: named paths that do not exist, and entries of
/// `src/` and `tests/*.rs` suites it does not name.
fn check_codemap(map: &str, exists: &dyn Fn(&str) -> bool, required: &[String]) -> Vec<String> {
    let named = codemap_paths(map);
    let mut problems: Vec<String> = named
        .iter()
        .filter(|n| !n.exists(exists))
        .map(|n| format!("ARCHITECTURE.md names {}, which does not exist", n.shown()))
        .collect();
    for path in required {
        if !named.iter().any(|n| n.bases == [""] && n.path == *path) {
            problems.push(format!("ARCHITECTURE.md's codemap does not name {path}"));
        }
    }
    problems
}

/// Whether `text` names one of [`JS_ONLY`] as a whole identifier.
fn js_names(text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if let Some(name) = JS_ONLY.iter().find(|n| **n == word) {
            if !found.contains(name) {
                found.push(*name);
            }
        }
    }
    found
}

/// Lines of `text` (the file `path`) where the core decides by a JS-facing string: an error's
/// code, or a state's or phase's name compared (rule 6).
fn string_protocols(path: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim() == "#[cfg(test)]" {
            break; // an inline test module, at the end of its file
        }
        let code = line.contains(".code()") && path != "src/error.rs";
        let name = line.contains(".name()")
            && (line.contains("==") || line.contains("!=") || line.contains("matches!"));
        if code || name {
            problems.push(format!(
                "{path}:{}: `{}` decides by a JS-facing string: match the enum (strings belong \
                 to src/bindings/)",
                n + 1,
                line.trim()
            ));
        }
    }
    problems
}

/// The engine's parts the bindings must not reach into (rule 7).
const PARTS: &[&str] = &[
    ".tasks()",
    ".controller()",
    ".controller_mut()",
    ".pool()",
    ".runs()",
    ".runs_mut()",
    ".store()",
    ".journal()",
];

/// Lines of `text` (the file `path`) that reach into one of [`PARTS`].
fn reaches_in(path: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(part) = PARTS.iter().find(|p| line.contains(**p)) {
            problems.push(format!(
                "{path}:{}: reaches into the engine's `{part}`: ask the engine instead",
                n + 1
            ));
        }
    }
    problems
}

/// Problems of file lengths against [`MAX_LINES`] and the allow-list.
fn check_lengths(files: &[(String, usize)], allowed: &[(&str, usize, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, lines) in files {
        match allowed.iter().find(|(p, _, _)| p == path) {
            Some((_, cap, _)) if lines > cap => problems.push(format!(
                "{path} has {lines} lines, over its cap of {cap} in LONG_FILES: split it"
            )),
            Some((_, _, _)) if *lines <= MAX_LINES => problems.push(format!(
                "{path} has {lines} lines, within {MAX_LINES}: remove it from LONG_FILES"
            )),
            Some((_, cap, _)) if cap - lines > SLACK => problems.push(format!(
                "{path} has {lines} lines: lower its cap in LONG_FILES from {cap}"
            )),
            Some(_) => {}
            None if *lines > MAX_LINES => problems.push(format!(
                "{path} has {lines} lines, over {MAX_LINES}: split it by concept"
            )),
            None => {}
        }
    }
    for (path, _, _) in allowed {
        if !files.iter().any(|(p, _)| p == path) {
            problems.push(format!("{path} is in LONG_FILES but is not a source file"));
        }
    }
    problems
}

/// `pub` items of one file without a `///` comment: lines starting with `pub` and an item
/// keyword or a field name, whose preceding lines (attributes skipped) are not doc comments.
/// `pub use` is a re-export and carries its target's docs; `pub mod m;` may be documented by
/// the module's own `//!` header instead (`has_header` tells).
fn undocumented(path: &str, text: &str, has_header: &dyn Fn(&str) -> bool) -> Vec<String> {
    const ITEMS: &[&str] = &[
        "fn ", "struct ", "enum ", "trait ", "const ", "static ", "type ", "mod ", "union ",
    ];
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut in_tests = false;
    // Whether the struct whose fields these lines are is `pub` (fields of a `pub(crate)` struct
    // are not public items).
    let mut public_struct = false;
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start();
        if body.starts_with("#[cfg(test)]") {
            in_tests = true; // test modules sit at the end of a file
        }
        if body.contains("struct ") && body.ends_with('{') {
            public_struct = body.starts_with("pub struct ");
        }
        let Some(rest) = body.strip_prefix("pub ") else {
            continue;
        };
        if in_tests {
            continue;
        }
        let rest = rest
            .trim_start_matches("unsafe ")
            .trim_start_matches("async ");
        let is_item = ITEMS.iter().any(|k| rest.starts_with(k));
        let is_field = public_struct
            && rest
                .split_once(':')
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_alphanumeric() || c == '_'));
        if !is_item && !is_field {
            continue;
        }
        let documented = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim_start())
            .find(|l| !(l.starts_with("#[") || l.starts_with(")]") || l.starts_with('"')))
            .is_some_and(|l| l.starts_with("///") || l.starts_with("#[doc"));
        let module_header = rest
            .strip_prefix("mod ")
            .and_then(|m| m.strip_suffix(';'))
            .is_some_and(has_header);
        if !documented && !module_header {
            problems.push(format!("{path}:{}: `{}` has no doc comment", i + 1, body));
        }
    }
    problems
}

/// Problems with how the `missing_docs` lint is run: it must be on in `Cargo.toml`, and the
/// clippy and rustdoc runs of `scripts/test.sh` must refuse warnings.
fn check_docs_lint(cargo_toml: &str, test_sh: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let lint_on = cargo_toml.lines().any(|l| {
        let l = l.replace(' ', "");
        l == "missing_docs=\"warn\"" || l == "missing_docs=\"deny\""
    });
    if !lint_on {
        problems.push("Cargo.toml: [lints.rust] missing_docs is not \"warn\" or \"deny\"".into());
    }
    for (what, needle) in [
        ("clippy", "cargo clippy --all-targets -- -D warnings"),
        (
            "clippy wasm32",
            "cargo clippy --target wasm32-unknown-unknown -- -D warnings",
        ),
        ("rustdoc", "RUSTDOCFLAGS=\"-D warnings\" cargo doc"),
    ] {
        if !test_sh.contains(needle) {
            problems.push(format!(
                "scripts/test.sh: the {what} run does not refuse warnings"
            ));
        }
    }
    problems
}

/// The crate's import graph: for each module directly under `src/`, the other such modules its
/// non-test code names as `crate::name`.
fn import_graph() -> Vec<(String, Vec<String>)> {
    let mut graph: Vec<(String, Vec<String>)> = Vec::new();
    for path in files_under("src") {
        if !path.ends_with(".rs") || is_test_file(&path) || path == "src/lib.rs" {
            continue;
        }
        let module = path["src/".len()..]
            .split(['/', '.'])
            .next()
            .unwrap()
            .to_string();
        let text = read(&root().join(&path));
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut uses: Vec<String> = code
            .split("crate::")
            .skip(1)
            .map(|rest| {
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap()
                    .to_string()
            })
            .filter(|m| *m != module && !m.is_empty())
            .collect();
        match graph.iter_mut().find(|(m, _)| *m == module) {
            Some((_, all)) => all.append(&mut uses),
            None => graph.push((module, uses)),
        }
    }
    for (_, uses) in &mut graph {
        uses.sort();
        uses.dedup();
    }
    graph
}

/// The import cycles of a graph, each shown as `a → b → a` (one per module it passes through).
fn cycles(graph: &[(String, Vec<String>)]) -> Vec<String> {
    fn visit(graph: &[(String, Vec<String>)], path: &mut Vec<String>, found: &mut Vec<String>) {
        let last = path.last().unwrap().clone();
        let Some((_, uses)) = graph.iter().find(|(m, _)| *m == last) else {
            return;
        };
        for next in uses {
            if *next == path[0] {
                found.push(format!("{} → {next}", path.join(" → ")));
            } else if !path.contains(next) {
                path.push(next.clone());
                visit(graph, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    for (module, _) in graph {
        visit(graph, &mut vec![module.clone()], &mut found);
    }
    found
}

fn report(problems: Vec<String>) {
    assert!(problems.is_empty(), "tidy:\n  {}", problems.join("\n  "));
}

#[test]
fn codemap_matches_the_tree() {
    let architecture = read(&root().join("ARCHITECTURE.md"));
    let mut required: Vec<String> = fs::read_dir(root().join("src"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                format!("src/{name}/")
            } else {
                format!("src/{name}")
            }
        })
        .collect();
    required.extend(
        files_under("tests")
            .into_iter()
            .filter(|p| p.ends_with(".rs") && p.matches('/').count() == 1),
    );
    required.sort();
    report(check_codemap(
        codemap(&architecture),
        &|p| root().join(p).exists(),
        &required,
    ));
}

#[test]
fn only_bindings_name_the_js_crates() {
    let problems = files_under("src")
        .into_iter()
        .filter(|p| p.ends_with(".rs") && !p.starts_with("src/bindings/"))
        .flat_map(|p| {
            js_names(&read(&root().join(&p)))
                .into_iter()
                .map(move |name| format!("{p} names `{name}`: only src/bindings/ may"))
        })
        .collect();
    report(problems);
}

#[test]
fn the_core_matches_enums_not_strings() {
    let problems = files_under("src")
        .into_iter()
        .filter(|p| p.ends_with(".rs") && !is_test_file(p) && !p.starts_with("src/bindings/"))
        .flat_map(|p| string_protocols(&p, &read(&root().join(&p))))
        .collect();
    report(problems);
}

#[test]
fn bindings_reach_no_engine_part() {
    let problems = files_under("src/bindings")
        .into_iter()
        .filter(|p| p.ends_with(".rs"))
        .flat_map(|p| reaches_in(&p, &read(&root().join(&p))))
        .collect();
    report(problems);
}

#[test]
fn source_files_stay_short() {
    let files: Vec<(String, usize)> = files_under("src")
        .into_iter()
        .filter(|p| !is_test_file(p) && (p.ends_with(".rs") || p.ends_with(".js")))
        .map(|p| {
            let lines = read(&root().join(&p)).lines().count();
            (p, lines)
        })
        .collect();
    report(check_lengths(&files, LONG_FILES));
}

#[test]
fn public_items_have_docs() {
    let mut problems = check_docs_lint(
        &read(&root().join("Cargo.toml")),
        &read(&root().join("scripts/test.sh")),
    );
    for path in files_under("src") {
        if !path.ends_with(".rs") || is_test_file(&path) {
            continue;
        }
        let file = root().join(&path);
        let dir = file.parent().unwrap().to_path_buf();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        // `mod m;` in `a/mod.rs` or `lib.rs` is `a/m.rs` or `a/m/mod.rs`; in `a/b.rs`, `a/b/m.rs`.
        let module_dir = if stem == "mod" || stem == "lib" {
            dir
        } else {
            dir.join(&stem)
        };
        let has_header = |m: &str| {
            [
                module_dir.join(format!("{m}.rs")),
                module_dir.join(m).join("mod.rs"),
            ]
            .iter()
            .any(|f| fs::read_to_string(f).is_ok_and(|t| t.starts_with("//!")))
        };
        problems.extend(undocumented(&path, &read(&file), &has_header));
    }
    report(problems);
}

#[test]
fn modules_import_in_one_direction() {
    report(
        cycles(&import_graph())
            .into_iter()
            .map(|c| format!("import cycle: {c}"))
            .collect(),
    );
}

// The checks fail on bad input.

#[test]
fn codemap_check_refuses_a_missing_path_and_an_unnamed_entry() {
    let map = "src/lib.rs     crate docs\nsrc/gone/      a folder:\n  mod.rs       see old.rs\n";
    let exists = |p: &str| p == "src/lib.rs";
    let problems = check_codemap(map, &exists, &["src/lib.rs".into(), "src/new.rs".into()]);
    assert_eq!(
        problems,
        [
            "ARCHITECTURE.md names src/gone/, which does not exist",
            "ARCHITECTURE.md names src/gone/mod.rs, which does not exist",
            "ARCHITECTURE.md names src/gone/old.rs, which does not exist",
            "ARCHITECTURE.md's codemap does not name src/new.rs",
        ]
    );
}

#[test]
fn js_names_are_found_as_whole_identifiers_only() {
    assert_eq!(js_names("use wasm_bindgen::prelude::*;"), ["wasm_bindgen"]);
    assert_eq!(js_names("let a = js_sys::Array::new();"), ["js_sys"]);
    assert!(js_names("use wasm_bindgen_test::wasm_bindgen_test as test;").is_empty());
}

#[test]
fn string_check_refuses_codes_and_compared_names() {
    let matched = "match r {\n    Err(e) if e.code() == \"BREAKER_OPEN\" => {}\n}\n";
    assert_eq!(
        string_protocols("src/engine/a.rs", matched),
        [
            "src/engine/a.rs:2: `Err(e) if e.code() == \"BREAKER_OPEN\" => {}` decides by a \
          JS-facing string: match the enum (strings belong to src/bindings/)"
        ]
    );
    assert_eq!(
        string_protocols("src/a.rs", "if matches!(e.state.name(), \"failed\") {}").len(),
        1
    );
    assert_eq!(
        string_protocols("src/a.rs", "x.name() != \"open\"").len(),
        1
    );
    // Naming a value (for a message) and the definition itself are fine.
    assert!(string_protocols("src/a.rs", "write!(f, \"{}\", op.name())").is_empty());
    assert!(string_protocols("src/error.rs", "Error::X => self.code(),").is_empty());
    assert!(string_protocols("src/a.rs", "Err(Error::BreakerOpen { .. }) => {}").is_empty());
    assert!(
        string_protocols(
            "src/a.rs",
            "#[cfg(test)]\nmod tests {\n    e.code() == \"X\"\n}"
        )
        .is_empty()
    );
}

#[test]
fn reach_check_refuses_a_chain_through_the_engine() {
    assert_eq!(
        reaches_in(
            "src/bindings/a.rs",
            "let h = o.tasks().store().journal().head();"
        ),
        ["src/bindings/a.rs:1: reaches into the engine's `.tasks()`: ask the engine instead"]
    );
    assert_eq!(
        reaches_in("a.rs", "o.controller_mut().observe_memory(now, r);").len(),
        1
    );
    assert!(reaches_in("a.rs", "let head = o.journal_head();").is_empty());
}

#[test]
fn length_check_refuses_growth_and_stale_entries() {
    let allowed = [("src/big.rs", 800, "why"), ("src/small.rs", 700, "why")];
    let files = [
        ("src/big.rs".to_string(), 801),
        ("src/small.rs".to_string(), 600),
        ("src/new.rs".to_string(), 601),
        ("src/ok.rs".to_string(), 600),
    ];
    assert_eq!(check_lengths(&files, &allowed).len(), 3);
    assert_eq!(
        check_lengths(&[("src/big.rs".into(), 650)], &allowed[..1]),
        ["src/big.rs has 650 lines: lower its cap in LONG_FILES from 800"]
    );
    assert!(check_lengths(&[("src/big.rs".into(), 750)], &allowed[..1]).is_empty());
}

#[test]
fn docs_check_refuses_an_undocumented_item_and_field() {
    let no_header = |_: &str| false;
    let text = "/// Doc.\n#[derive(Debug)]\npub struct A {\n    pub x: u32,\n}\npub fn f() {}\n\
                pub(crate) struct B {\n    pub y: u32,\n}\n";
    assert_eq!(
        undocumented("a.rs", text, &no_header),
        [
            "a.rs:4: `pub x: u32,` has no doc comment",
            "a.rs:6: `pub fn f() {}` has no doc comment"
        ]
    );
    assert!(undocumented("a.rs", "pub use b::C;\n/// Doc.\npub mod m;\n", &no_header).is_empty());
    assert!(undocumented("a.rs", "pub mod m;\n", &|m| m == "m").is_empty());
    assert!(!check_docs_lint("missing_docs = \"allow\"", "").is_empty());
}

#[test]
fn cycle_check_finds_a_loop_through_three_modules() {
    let graph = [
        ("a".to_string(), vec!["b".to_string()]),
        ("b".to_string(), vec!["c".to_string()]),
        ("c".to_string(), vec!["a".to_string(), "d".to_string()]),
        ("d".to_string(), vec![]),
    ];
    assert_eq!(
        cycles(&graph),
        ["a → b → c → a", "b → c → a → b", "c → a → b → c"]
    );
    assert!(cycles(&graph[1..]).is_empty());
}
