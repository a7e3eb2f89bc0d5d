//! The layering docs/architecture.md draws, checked on the source: each
//! module imports only the layers below it, and no stage imports another.
//! Test modules (after `#[cfg(test)]`) may build fixtures with any stage.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's top-level modules each layer may import (besides itself).
fn allowed(layer: &str) -> &'static [&'static str] {
    match layer {
        "metrics" | "progress" | "data" => &[],
        "plot" => &["metrics"],
        "model" => &["data", "metrics", "plot", "progress"],
        "stages" | "eval" => &["data", "model", "metrics", "plot", "progress"],
        "pipeline" => &[
            "data", "model", "metrics", "plot", "progress", "stages", "eval",
        ],
        other => panic!(
            "src/{other}: a new top-level module; add it to this test and to docs/architecture.md"
        ),
    }
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

/// `crate::a::b` paths in the non-test part of a file, as (a, b).
fn crate_paths(source: &str) -> Vec<(String, String)> {
    let code = source.split("#[cfg(test)]").next().unwrap_or("");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    code.match_indices("crate::")
        .map(|(i, _)| {
            let rest = &code[i + "crate::".len()..];
            let first = ident(rest);
            let second = rest[first.len()..]
                .strip_prefix("::")
                .map(ident)
                .unwrap_or_default();
            (first, second)
        })
        .collect()
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let mut parts = relative
            .iter()
            .map(|p| p.to_string_lossy().replace(".rs", ""));
        let layer = parts.next().unwrap();
        if ["main", "lib", "cli"].contains(&layer.as_str()) {
            continue; // the binary's wiring uses every layer
        }
        let stage = parts.next().filter(|_| layer == "stages");
        for (target, module) in crate_paths(&std::fs::read_to_string(file).unwrap()) {
            let upward = target != layer && !allowed(&layer).contains(&target.as_str());
            let sideways = stage.as_deref().is_some_and(|own| {
                target == "stages" && !module.is_empty() && module != own && own != "mod"
            });
            if upward || sideways {
                violations.insert(format!("{}: crate::{target}::{module}", relative.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering: {violations:#?}"
    );
}

#[test]
fn the_checker_sees_an_upward_and_a_sideways_import() {
    let paths = crate_paths(
        "use crate::stages::synth::SynthTurn;\nfn f() { crate::eval::run(); }\n#[cfg(test)]\nuse crate::pipeline::x;",
    );
    assert_eq!(
        paths,
        [
            ("stages".into(), "synth".into()),
            ("eval".into(), "run".into())
        ]
    );
}
