//! The docs' promises name real tests: every test named in docs/architecture.md's "Guarantees" table is a function
//! of the workspace, so a renamed or deleted test cannot leave a guarantee proved by nothing.

use std::path::Path;

/// Every Rust source of the workspace, concatenated.
fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && !name.starts_with('.') && name != "target" {
            sources(&path, out);
        } else if name.ends_with(".rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn every_test_the_guarantees_table_names_exists() {
    let root = test_support::tests_dir().join("..");
    let architecture = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let table = architecture.split("## Guarantees").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut code = String::new();
    sources(&root, &mut code);
    let mut named = 0;
    for row in table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| guarantee")) {
        let proved_by = row.rsplit('|').nth(1).unwrap();
        let tests: Vec<&str> = proved_by
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| {
                word.len() > 24 && word.contains('_') && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
            .collect();
        assert!(!tests.is_empty() || proved_by.contains("docs/benchmarks.md"), "a guarantee proved by no test: {row}");
        for test in tests {
            assert!(code.contains(&format!("fn {test}(")), "no test named {test}");
            named += 1;
        }
    }
    assert!(named >= 10, "{named}");
}
