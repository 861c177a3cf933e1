//! The manager's shape, checked: diesel lives in `app/src/db/` only (repositories); everything
//! else reaches the database through their functions. A `diesel::` path, a `use diesel` or a
//! `<table>::table` anywhere else in `app/src` fails this test, naming the file and line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

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

/// Lines of `text` that use diesel, ignoring comments.
fn diesel_uses(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = l.split("//").next().unwrap_or("");
            code.contains("diesel") || code.contains("::table")
        })
        .map(|(i, l)| (i + 1, l.trim().to_owned()))
        .collect()
}

#[test]
fn no_diesel_outside_the_repositories() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let db = src.join("db");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "walked too few files: {files:?}");
    let mut offenders = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&db)) {
        for (line, code) in diesel_uses(&std::fs::read_to_string(f).unwrap()) {
            offenders.push(format!("{}:{line}: {code}", f.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "diesel outside app/src/db/ (move the query into a repository):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_check_sees_what_it_must() {
    // The detector itself: it must flag each form and skip comments.
    assert_eq!(diesel_uses("use diesel::prelude::*;").len(), 1);
    assert_eq!(diesel_uses("users::table.filter(x)").len(), 1);
    assert_eq!(diesel_uses("let n = diesel::insert_into(t);").len(), 1);
    assert!(diesel_uses("// diesel is used in db/ only").is_empty());
    assert!(diesel_uses("let table = 3;").is_empty());
}

#[test]
fn every_declared_endpoint_is_routed_exactly_once() {
    use patch_manager::api::ROUTES;
    for (method, path) in shared::api::ALL {
        let n = ROUTES
            .iter()
            .filter(|r| r.method.as_str() == method.as_str() && r.path == *path)
            .count();
        assert_eq!(n, 1, "{} {path} is routed {n} times", method.as_str());
    }
    assert_eq!(
        ROUTES.len(),
        shared::api::ALL.len(),
        "a route exists that shared::api does not declare"
    );
}
