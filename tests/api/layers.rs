//! The layer rule of `src/lib.rs`, enforced: every `crate::` path in the
//! production code of `src/` must point to a module in a lower layer.
//!
//! The layers are read from the table in `src/lib.rs`'s docs, so the rule
//! written there and the rule checked here cannot drift apart. Test code
//! (`#[cfg(test)]` items) may reach anywhere. Run with `--nocapture` to see
//! every edge, layer by layer:
//! `cargo test --test api layers -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module name → layer number, from the `//! | N | `a`, `b` | … |` rows.
fn layers(lib_rs: &str) -> BTreeMap<String, u32> {
    let mut layers = BTreeMap::new();
    for line in lib_rs.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(Ok(layer)) = cells.first().map(|c| c.parse::<u32>()) else {
            continue;
        };
        for module in cells[1].split(',') {
            layers.insert(module.trim().trim_matches('`').to_string(), layer);
        }
    }
    layers
}

/// The source with comments, the contents of string and character literals
/// and `#[cfg(test)]` items removed.
fn production_code(source: &str) -> String {
    let mut code = strip_comments_and_literals(source);
    while let Some(start) = code.find("#[cfg(test)]") {
        let end = item_end(&code, start);
        code.replace_range(start..end, "");
    }
    code
}

/// `source` without comments, with every string literal emptied (`""`) and
/// every character literal blanked (`' '`), so that neither a `crate::` nor
/// a brace inside them counts.
fn strip_comments_and_literals(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            i += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            i += find(rest, b"*/").map_or(rest.len(), |end| end + 2);
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = [&b"\""[..], &vec![b'#'; hashes]].concat();
            let body = &rest[hashes + 2..];
            i += hashes + 2 + find(body, &close).map_or(body.len(), |end| end + close.len());
            out.extend_from_slice(b"\"\"");
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            i += j + 1;
            out.extend_from_slice(b"\"\"");
        } else if rest[0] == b'\'' && rest.get(1) == Some(&b'\\') {
            // '\n', '\'', '\u{7f}'
            i += 2 + rest[2..]
                .iter()
                .position(|&b| b == b'\'')
                .map_or(0, |end| end + 1);
            out.extend_from_slice(b"' '");
        } else if rest[0] == b'\'' && rest.get(2) == Some(&b'\'') {
            i += 3; // 'x'; a lifetime ('a) has no closing quote
            out.extend_from_slice(b"' '");
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The number of `#`s of a raw string literal starting here (`r"`, `r#"`).
fn raw_string_start(rest: &[u8]) -> Option<usize> {
    let hashes = rest.get(1..)?.iter().take_while(|&&b| b == b'#').count();
    (rest[0] == b'r' && rest.get(1 + hashes) == Some(&b'"')).then_some(hashes)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where the item starting at `start` ends: after its matching `}`, or its
/// `;` when it has no body (`#[cfg(test)] use …;`).
fn item_end(code: &str, start: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in code[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return start + i + 1;
                }
            }
            ';' if depth == 0 => return start + i + 1,
            _ => {}
        }
    }
    code.len()
}

/// The top-level modules named by `crate::` paths (and by `super::` paths
/// that climb to the crate root) in `code`, which lives at `depth` below
/// the crate root (1 for `src/x.rs` and `src/x/mod.rs`).
fn imported_modules(code: &str, depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let root_prefix = "super::".repeat(depth);
    for prefix in ["crate::", root_prefix.as_str()] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            rest = &rest[at + prefix.len()..];
            if preceded_by_ident && prefix != "crate::" {
                continue; // a deeper `super::super::…` chain, counted at its start
            }
            if rest.starts_with("super::") {
                continue;
            }
            match rest.strip_prefix('{') {
                Some(group) => found.extend(group_heads(group)),
                None => found.extend(ident(rest)),
            }
        }
    }
    found
}

/// The first path segment of each item in a `{a::b, c, d::{e, f}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if at_item_start && !c.is_whitespace() => {
                at_item_start = false;
                heads.extend(ident(&group[i..]));
            }
            _ => {}
        }
    }
    heads
}

fn ident(text: &str) -> Option<String> {
    let name: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// (module, depth below the crate root) of a file under `src`.
fn module_of(src: &Path, file: &Path) -> Option<(String, usize)> {
    let relative = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let top = parts[0].trim_end_matches(".rs").to_string();
    if parts.len() == 1 && (top == "lib" || top == "main") {
        return None;
    }
    let is_mod_rs = parts.last().is_some_and(|p| p == "mod.rs");
    let depth = parts.len() - usize::from(is_mod_rs);
    Some((top, depth))
}

/// Every (from, to) module edge of the production code under `src`.
fn edges(src: &Path) -> BTreeSet<(String, String)> {
    let mut edges = BTreeSet::new();
    for file in rust_files(src) {
        let Some((module, depth)) = module_of(src, &file) else {
            continue;
        };
        let code = production_code(&std::fs::read_to_string(&file).unwrap());
        for target in imported_modules(&code, depth) {
            if target != module {
                edges.insert((module.clone(), target));
            }
        }
    }
    edges
}

/// The edges that do not run downward, and modules missing from the table.
fn violations(layers: &BTreeMap<String, u32>, edges: &BTreeSet<(String, String)>) -> Vec<String> {
    let mut problems = Vec::new();
    for (from, to) in edges {
        match (layers.get(from), layers.get(to)) {
            (Some(a), Some(b)) if b < a => {}
            (Some(a), Some(b)) => problems.push(format!(
                "{from} (layer {a}) imports {to} (layer {b}): imports must run downward"
            )),
            (None, _) => problems.push(format!("module {from} is not in lib.rs's layer table")),
            (_, None) => problems.push(format!("module {to} is not in lib.rs's layer table")),
        }
    }
    problems
}

#[test]
fn every_import_runs_to_a_lower_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let layers = layers(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(
        layers.len() >= 10,
        "the layer table was not found: {layers:?}"
    );
    let edges = edges(&src);
    let mut by_layer: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (from, to) in &edges {
        let layer = layers.get(from).copied().unwrap_or(u32::MAX);
        by_layer
            .entry(layer)
            .or_default()
            .push(format!("{from} → {to}"));
    }
    for (layer, edges) in by_layer.iter().rev() {
        println!("layer {layer}: {}", edges.join(", "));
    }
    let modules: BTreeSet<String> = rust_files(&src)
        .iter()
        .filter_map(|f| module_of(&src, f))
        .map(|(m, _)| m)
        .collect();
    let mut problems = violations(&layers, &edges);
    for module in &modules {
        if !layers.contains_key(module) {
            problems.push(format!("module {module} is not in lib.rs's layer table"));
        }
    }
    for module in layers.keys() {
        if !modules.contains(module) {
            problems.push(format!(
                "lib.rs's layer table names {module}, which does not exist"
            ));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_every_form_of_import_and_skips_test_code() {
    let code = production_code(
        "use crate::json::Json;\n\
         use crate::{cds::Hook, fhir::{PatientRecord, RecordSources}};\n\
         fn f() { crate::metrics::count(); super::super::store::Store::x(); }\n\
         // use crate::server::Server;\n\
         #[cfg(test)]\nmod tests { use crate::http::router; fn g() { let _ = (\"{\", '{', b'\"'); } }\n\
         #[cfg(test)]\nuse crate::cli::run;\n\
         use crate::rules::RuleSet;\n",
    );
    let found = imported_modules(&code, 2);
    let expected = ["cds", "fhir", "json", "metrics", "rules", "store"];
    assert_eq!(found, expected.iter().map(|m| m.to_string()).collect());
}

#[test]
fn an_upward_or_sideways_import_is_a_violation() {
    let layers = layers("//! | 2 | `engine` | x |\n//! | 1 | `rules`, `fhir` | y |\n");
    let edge = |a: &str, b: &str| (a.to_string(), b.to_string());
    let edges = BTreeSet::from([
        edge("engine", "rules"),
        edge("rules", "engine"),
        edge("rules", "fhir"),
        edge("rules", "nowhere"),
    ]);
    let problems = violations(&layers, &edges);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("rules (layer 1) imports engine (layer 2)"));
    assert!(problems[1].contains("rules (layer 1) imports fhir (layer 1)"));
    assert!(problems[2].contains("nowhere"));
}
