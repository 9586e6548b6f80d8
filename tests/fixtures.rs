//! `pipehost test`: every shipped fixture passes; a wrong expectation fails
//! with a diff and exit status 1; a broken fixture file is named.

use crate::util::{pipehost, plugin_dir, root, text};

/// The closing `N passed, N failed` line, parsed.
fn tally(stdout: &str) -> (usize, usize) {
    let last = stdout.lines().last().unwrap_or_default();
    let words: Vec<&str> = last.split_whitespace().collect();
    assert!(
        words.len() == 4 && words[1] == "passed," && words[3] == "failed",
        "closing line is `N passed, N failed`: {last:?}"
    );
    (words[0].parse().unwrap(), words[2].parse().unwrap())
}

#[test]
fn every_shipped_plugin_has_fixtures_and_they_pass() {
    let out = pipehost(&["test", "plugins"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let (passed, failed) = tally(&stdout);
    assert_eq!(failed, 0, "{stdout}");
    for plugin in [
        "forex/generator",
        "forex/parser",
        "forex/transform",
        "stock/generator",
        "stock/parser",
        "stock/transform",
        "news/generator",
        "news/parser",
        "news/transform",
    ] {
        assert!(
            stdout.contains(&format!("plugins/{plugin}/fixtures/")),
            "{plugin} has fixtures:\n{stdout}"
        );
    }
    assert_eq!(
        passed,
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        "one line per case"
    );
    // Malformed input is covered for every parser.
    for parser in ["forex/parser", "stock/parser", "news/parser"] {
        let dir = root().join("plugins").join(parser).join("fixtures");
        let all: String = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert!(
            all.contains("error ="),
            "{parser} fixtures cover rejected records"
        );
    }
}

const GOOD_LINE: &str =
    r#"{"pair":"EUR/USD","bid":1.0841,"ask":1.0843,"ts":"2026-11-23T08:00:00.123Z","venue":"EBS"}"#;

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("wrong.toml");
    std::fs::write(
        &fixture,
        format!(
            r#"
plugin = "forex_parser"
world = "parser"

[[case]]
name = "bid is wrong on purpose"
input = [ {{ data = '{GOOD_LINE}' }} ]
expect = [ {{ events = [ {{ dataset = "forex", partition_key = "EUR/USD", event_time = 2026-11-23T08:00:00.123Z, fields = {{ bid = 9.99, ask = 1.0843, venue = "EBS" }} }} ] }} ]

[[case]]
name = "a record that should be rejected is not"
input = [ {{ data = '{GOOD_LINE}' }} ]
expect = [ {{ error = "no such error" }} ]
"#
        ),
    )
    .unwrap();
    let out = pipehost(&[
        "test",
        fixture.to_str().unwrap(),
        "--plugin-dir",
        plugin_dir().to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(tally(&stdout), (0, 2), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("bid is wrong on purpose"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-    bid = 9.99"),
        "expected side of the diff:\n{stdout}"
    );
    assert!(
        stdout.contains("+    bid = 1.0841"),
        "actual side of the diff:\n{stdout}"
    );
    assert!(
        stdout.contains("+events:") || stdout.contains("+  event"),
        "{stdout}"
    );
}

#[test]
fn a_broken_fixture_file_is_named_with_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("typo.toml");
    std::fs::write(
        &fixture,
        "plugin = \"forex_parser\"\nworld = \"parser\"\n\n[[case]]\nname = \"x\"\ninptu = []\nexpect = []\n",
    )
    .unwrap();
    let out = pipehost(&["test", fixture.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("typo.toml"), "{stdout}");
    assert!(stdout.contains("inptu"), "names the key: {stdout}");
    assert!(stdout.contains("line 6"), "names the line: {stdout}");
}

#[test]
fn a_missing_plugin_fails_every_case_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("missing.toml");
    std::fs::write(
        &fixture,
        "plugin = \"no_such_plugin\"\nworld = \"parser\"\n[[case]]\nname = \"a\"\ninput = [ { data = 'x' } ]\nexpect = [ { error = \"x\" } ]\n",
    )
    .unwrap();
    let out = pipehost(&["test", fixture.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("no_such_plugin.wasm"), "{stdout}");
    assert_eq!(tally(&stdout), (0, 1));
}
