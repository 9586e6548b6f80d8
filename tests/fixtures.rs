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
    let (code, stdout) = run_fixture(
        "wrong.toml",
        &format!(
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
    );
    assert_eq!(code, Some(1), "{stdout}");
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
    assert!(
        stdout.contains("--plugin-dir") && stdout.contains("relative to the fixture file"),
        "says where names are looked up and how to point elsewhere: {stdout}"
    );
    assert_eq!(tally(&stdout), (0, 1));
}

const TRADE: &str = "2026-11-23T08:00:00Z,AAPL,189.23,300,187.50,NASDAQ";

/// `pipehost test` on a fixture file `name` holding `body`, with the
/// shipped plugins: its exit code and stdout.
fn run_fixture(name: &str, body: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join(name);
    std::fs::write(&fixture, body).unwrap();
    pipehost_test(&fixture, &[])
}

/// `pipehost test FIXTURE --plugin-dir <shipped plugins> EXTRA…`.
fn pipehost_test(fixture: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let plugins = plugin_dir();
    let mut args = vec![
        "test",
        fixture.to_str().unwrap(),
        "--plugin-dir",
        plugins.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = pipehost(&args);
    (out.status.code(), text(&out.stdout))
}

/// Issue #16: every differing record is shown (not only the first), and a
/// value of another type is named as such.
#[test]
fn every_differing_record_is_shown_and_type_differences_are_named() {
    let (code, stdout) = run_fixture(
        "two-wrong.toml",
        &format!(
            r#"
plugin = "stock_parser"
world = "parser"

[[case]]
name = "two of three records wrong"
input = [ {{ data = '{TRADE}' }}, {{ data = '{TRADE}' }}, {{ data = '{TRADE}' }} ]
expect = [
    {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, fields = {{ price = 1.0, volume = 300, prev_close = 187.5, exchange = "NASDAQ" }} }} ] }},
    {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, fields = {{ price = 189.23, volume = 300, prev_close = 187.5, exchange = "NASDAQ" }} }} ] }},
    {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, fields = {{ price = 189.23, volume = 300.0, prev_close = 187.5, exchange = "NASDAQ" }} }} ] }},
]
"#
        ),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(tally(&stdout), (0, 1), "{stdout}");
    assert!(stdout.contains("records 1, 3 differ"), "{stdout}");
    assert!(stdout.contains("-    price = 1.0"), "{stdout}");
    assert!(stdout.contains("-    volume = 300.0"), "{stdout}");
    assert!(
        stdout.contains("note: field `volume`: integer 300, expected float 300.0"),
        "{stdout}"
    );
    assert!(!stdout.contains("record 2"), "record 2 matches: {stdout}");
}

/// Issue #16: a case that cannot be read fails on its own, naming its line
/// and key, while the file's other cases run.
#[test]
fn a_malformed_case_fails_alone_and_the_others_run() {
    let (code, stdout) = run_fixture(
        "one-bad.toml",
        &format!(
            r#"plugin = "stock_parser"
world = "parser"

[[case]]
name = "good"
input = [ {{ data = '{TRADE}' }} ]
expect = [ {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, fields = {{ price = 189.23, volume = 300, prev_close = 187.5, exchange = "NASDAQ" }} }} ] }} ]

[[case]]
name = "typo"
inptu = [ {{ data = '{TRADE}' }} ]
expect = [ {{ error = "x" }} ]

[[case]]
name = "one expectation short"
input = [ {{ data = '{TRADE}' }}, {{ data = '{TRADE}' }} ]
expect = [ {{ error = "x" }} ]
"#
        ),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(tally(&stdout), (1, 2), "{stdout}");
    assert!(
        stdout.contains("ok   ") && stdout.contains(":: good"),
        "{stdout}"
    );
    assert!(
        stdout.contains(":: typo: the case cannot be read"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 11") && stdout.contains("inptu"),
        "{stdout}"
    );
    assert!(
        stdout.contains(":: one expectation short: the case cannot be read")
            && stdout.contains("2 inputs but 1 expectations"),
        "{stdout}"
    );
}

/// Issue #16: `has` checks only the fields it names; a wrong one shows in
/// the diff without the fields `has` ignores.
#[test]
fn has_checks_only_the_fields_it_names() {
    let (code, stdout) = run_fixture(
        "subset.toml",
        &format!(
            r#"
plugin = "stock_parser"
world = "parser"

[[case]]
name = "price only"
input = [ {{ data = '{TRADE}' }} ]
expect = [ {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, has = {{ price = 189.23 }} }} ] }} ]

[[case]]
name = "wrong exchange"
input = [ {{ data = '{TRADE}' }} ]
expect = [ {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, has = {{ exchange = "NYSE", venue = "X" }} }} ] }} ]

[[case]]
name = "both forms"
input = [ {{ data = '{TRADE}' }} ]
expect = [ {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, has = {{ price = 1.0 }}, fields = {{ price = 1.0 }} }} ] }} ]
"#
        ),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(tally(&stdout), (1, 2), "{stdout}");
    assert!(
        stdout.contains("ok   ") && stdout.contains(":: price only"),
        "{stdout}"
    );
    assert!(stdout.contains("-    exchange = \"NYSE\""), "{stdout}");
    assert!(stdout.contains("+    exchange = \"NASDAQ\""), "{stdout}");
    assert!(stdout.contains("+    venue = (missing)"), "{stdout}");
    assert!(
        !stdout.contains("price = 189.23"),
        "ignored fields stay out: {stdout}"
    );
    assert!(
        stdout.contains("`fields` (exactly these) or `has`"),
        "{stdout}"
    );
}

/// Issue #16: `--accept` rewrites a failing case's `expect` from the
/// plugin's answer, leaving the rest of the file as written; the file then
/// passes as it is.
#[test]
fn accept_rewrites_failing_expectations_from_the_answers_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("accept.toml");
    let original = format!(
        r#"# a comment that stays
plugin = "stock_parser"
world = "parser"

[[case]]
name = "passes already" # stays too
input = [ {{ data = '{TRADE}' }} ]
expect = [ {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, has = {{ price = 189.23 }} }} ] }} ]

[[case]]
name = "a field added since"
input = [ {{ data = '{TRADE}' }}, {{ data = 'not,a,trade' }} ]
expect = [
    # written before `exchange` existed
    {{ events = [ {{ dataset = "stock", partition_key = "AAPL", event_time = 2026-11-23T08:00:00Z, fields = {{ price = 189.23 }} }} ] }},
    {{ error = "no such reason" }},
]
"#
    );
    std::fs::write(&fixture, &original).unwrap();
    let (code, stdout) = pipehost_test(&fixture, &["--accept"]);
    assert_eq!(code, Some(0), "every failure accepted: {stdout}");
    assert!(stdout.contains("records 1, 2 differ"), "{stdout}");
    assert!(stdout.contains("accepted 1 case(s)"), "{stdout}");
    assert!(
        stdout.contains("1 passed, 1 failed (1 accepted: expectations rewritten)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-    # written before `exchange` existed"),
        "{stdout}"
    );
    let rewritten = std::fs::read_to_string(&fixture).unwrap();
    assert!(
        rewritten.starts_with("# a comment that stays\n"),
        "{rewritten}"
    );
    assert!(rewritten.contains(r#"name = "passes already" # stays too"#));
    assert!(
        rewritten.contains(r#"has = { price = 189.23 }"#),
        "{rewritten}"
    );
    assert!(rewritten.contains(r#"exchange = "NASDAQ""#), "{rewritten}");
    assert!(!rewritten.contains("no such reason"), "{rewritten}");
    let (code, stdout) = pipehost_test(&fixture, &[]);
    assert_eq!(
        code,
        Some(0),
        "the rewritten file passes:\n{stdout}\n{rewritten}"
    );
    assert_eq!(tally(&stdout), (2, 0), "{stdout}");
}
