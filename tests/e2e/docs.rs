//! The docs' promises name real things:
//! - every test named in docs/architecture.md's "Guarantees" table is a function of the workspace, so a renamed or
//!   deleted test cannot leave a guarantee proved by nothing;
//! - every `producer` and `consumer` command that docs/operations.md's code blocks quote parses with the binaries'
//!   own command lines, so a renamed subcommand or flag cannot leave the runbook telling operators to type an error.

use clap::Parser;
use clap::error::ErrorKind;
use std::iter::Peekable;
use std::path::Path;
use std::str::Chars;

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

/// The lines of a markdown document's fenced code blocks, each with its line number (1-based); a line ending in
/// `\` is joined with the next, as the shell does.
fn code_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = !in_block;
            if let Some(unfinished) = pending.take() {
                lines.push(unfinished);
            }
            continue;
        }
        if !in_block {
            continue;
        }
        let (number, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        if !joined.is_empty() {
            joined.push(' ');
        }
        match trimmed.strip_suffix('\\') {
            Some(continued) => {
                joined.push_str(continued.trim_end());
                pending = Some((number, joined));
            }
            None => {
                joined.push_str(trimmed);
                lines.push((number, joined));
            }
        }
    }
    lines.extend(pending);
    lines
}

/// Whether `text` starts with the word `word` (followed by its end or a blank).
fn starts_with_word(text: &str, word: &str) -> bool {
    text.strip_prefix(word).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// The command line of a `producer` or `consumer` run quoted on a shell line, binary first: `op producer ...` (the
/// operator task), `producer ...` or `consumer ...` run locally, or `cargo run ... -p producer -- ...`.
fn quoted_command(line: &str) -> Option<Vec<String>> {
    const BINARIES: [&str; 2] = ["producer", "consumer"];
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    if BINARIES.iter().any(|binary| starts_with_word(line, binary)) {
        return Some(shell_words(line));
    }
    for (at, _) in line.match_indices("op ") {
        let after_a_separator = line[..at].chars().next_back().is_none_or(|c| c.is_whitespace() || ";&|(".contains(c));
        let rest = line[at + 3..].trim_start();
        if after_a_separator && BINARIES.iter().any(|binary| starts_with_word(rest, binary)) {
            return Some(shell_words(rest));
        }
    }
    let cargo = line.find("cargo run")?;
    let words = shell_words(&line[cargo..]);
    let package = words.windows(2).find(|pair| pair[0] == "-p" || pair[0] == "--package").map(|pair| &pair[1])?;
    if !BINARIES.contains(&package.as_str()) {
        return None;
    }
    let arguments = words.iter().position(|word| word == "--").map_or(&[][..], |dashes| &words[dashes + 1..]);
    Some(std::iter::once(package.clone()).chain(arguments.iter().cloned()).collect())
}

/// A plausible value for a shell variable the runbook leaves to the reader.
fn placeholder(name: &str) -> String {
    match name {
        "FROM" | "DATE" | "SINCE" | "DAY" => "2022-05-04",
        "OBJECTS" => "Account,Invoice",
        "OBJECT" => "Account",
        "QUEUE" => "jobs",
        "HOURS" => "48",
        "REQUEST" => r#"{"exportFromDate":"afterLastIncrement"}"#,
        _ => "value",
    }
    .to_owned()
}

/// What the shell makes of `$NAME`, `${NAME...}` or `$(...)` (the `$` already read): a placeholder.
fn expansion(chars: &mut Peekable<Chars<'_>>) -> String {
    match chars.peek().copied() {
        Some('(') => {
            chars.next();
            let (mut depth, mut quote, mut inner) = (1, None, String::new());
            for c in chars.by_ref() {
                match (quote, c) {
                    (Some(open), c) if c == open => quote = None,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '(') => depth += 1,
                    (None, ')') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                inner.push(c);
            }
            if inner.contains("date") { placeholder("DATE") } else { placeholder("") }
        }
        Some('{') => {
            chars.next();
            let inside: String = chars.by_ref().take_while(|&c| c != '}').collect();
            placeholder(inside.split(|c: char| ":-#%".contains(c)).next().unwrap_or_default())
        }
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    break;
                }
                name.push(c);
                chars.next();
            }
            placeholder(&name)
        }
        _ => "$".to_owned(),
    }
}

/// The words of one shell command, as the shell would pass them: quotes removed, variables replaced by
/// placeholders; it ends at a comment or at the first `;`, `&`, `|`, redirection or closing parenthesis.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            ';' | '&' | '|' | '>' | '<' | ')' => break,
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(escaped @ ('"' | '\\' | '$' | '`')) => word.push(escaped),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => word.push('\\'),
                        },
                        '$' => word.push_str(&expansion(&mut chars)),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(escaped) = chars.next() {
                    word.push(escaped);
                }
            }
            '$' => {
                in_word = true;
                word.push_str(&expansion(&mut chars));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn the_runbook_command_extraction_reads_shell_as_the_shell_does() {
    assert_eq!(
        quoted_command(r#"op producer redrive --queue jobs --dry-run        # or: --queue requests | lake"#),
        Some(["producer", "redrive", "--queue", "jobs", "--dry-run"].map(String::from).to_vec())
    );
    assert_eq!(
        quoted_command(r#"OP_CONFIG=full.toml op producer submit '{"exportFromDate":"beginning"}'"#),
        Some(["producer", "submit", r#"{"exportFromDate":"beginning"}"#].map(String::from).to_vec())
    );
    assert_eq!(
        quoted_command(r#"producer --config deploy.toml backfill --from "$FROM" --objects "${OBJECTS}""#),
        Some(
            ["producer", "--config", "deploy.toml", "backfill", "--from", "2022-05-04", "--objects", "Account,Invoice"]
                .map(String::from)
                .to_vec()
        )
    );
    assert_eq!(
        quoted_command("cargo run --release -p producer -- --config local.toml status --json"),
        Some(["producer", "--config", "local.toml", "status", "--json"].map(String::from).to_vec())
    );
    assert_eq!(quoted_command("cargo run --release -p local-export"), None);
    assert_eq!(quoted_command(r#"aws logs tail "$G" --log-stream-name-prefix producer --since 2h"#), None);
    assert_eq!(quoted_command("aws ecs stop-task --cluster c --task t"), None);
    assert_eq!(quoted_command("# producer status"), None);
}

#[test]
fn every_command_the_runbook_quotes_parses() {
    let runbook = test_support::tests_dir().join("../docs/operations.md");
    let text = std::fs::read_to_string(&runbook).unwrap();
    let mut parsed = 0;
    let mut failures = Vec::new();
    for (number, line) in code_lines(&text) {
        let Some(args) = quoted_command(&line) else { continue };
        let outcome = match args[0].as_str() {
            "producer" => producer::cli::Cli::try_parse_from(args.iter()).map(drop),
            _ => consumer::cli::Cli::try_parse_from(args.iter()).map(drop),
        };
        match outcome {
            Ok(()) => parsed += 1,
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => parsed += 1,
            Err(e) => failures.push(format!("docs/operations.md:{number}: {line}\n  parsed as {args:?}\n  {e}")),
        }
    }
    assert!(failures.is_empty(), "commands the runbook quotes that do not parse:\n{}", failures.join("\n"));
    assert!(parsed >= 8, "only {parsed} producer or consumer commands found in docs/operations.md's code blocks");
}
