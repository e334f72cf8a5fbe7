//! docs/reliability.md is kept true by the tests: every test its table names must exist, and
//! every row must name at least one. (Whether the tests pass is what the rest of the suite says.)

use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `` `FILE::test_name` `` references in a table row: FILE is a tests/tests/ file stem or a path
/// to a `.rs` file from the workspace root.
fn references(row: &str) -> Vec<(PathBuf, String)> {
    row.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|r| r.rsplit_once("::"))
        .map(|(file, test)| {
            let path = if file.ends_with(".rs") {
                workspace().join(file)
            } else {
                workspace().join("tests/tests").join(format!("{file}.rs"))
            };
            (path, test.to_string())
        })
        .collect()
}

#[test]
fn every_row_names_tests_that_exist() {
    let doc = workspace().join("docs/reliability.md");
    let text = fs::read_to_string(&doc).expect("docs/reliability.md");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| case"))
        .collect();
    assert!(
        rows.len() >= 12,
        "the table lists every case ({} rows)",
        rows.len()
    );
    let mut problems = Vec::new();
    for row in rows {
        let refs = references(row);
        if refs.is_empty() {
            problems.push(format!("no test named in: {row}"));
        }
        for (path, test) in refs {
            let src = fs::read_to_string(&path).unwrap_or_default();
            if !src.contains(&format!("fn {test}(")) {
                problems.push(format!("{}: no fn {test}", path.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn references_are_parsed_from_backticks() {
    let refs =
        references("| x | y | z | `vm_memres::aarch64_docker_memres`, `host/src/host_tar.rs::f` |");
    assert_eq!(refs.len(), 2);
    assert!(refs[0].0.ends_with("tests/tests/vm_memres.rs"));
    assert_eq!(refs[1].1, "f");
}
