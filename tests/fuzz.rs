//! Fuzzing every decoder of untrusted bytes: aggregated stream records,
//! queue messages, the column checks of plugin output, fixture files and
//! pipeline.toml.
//!
//! Each target takes bytes and must return (a value or an error), never
//! panic, within a time budget and without an allocation out of proportion
//! to its input; where there is an encoder, decoding what it wrote gives
//! the value back. Two ways in, both in every `./x test`:
//!
//! - `corpus_replays_…`: every file under `tests/corpus/<target>/` (valid
//!   inputs, truncations, each distinct error found, past crashers);
//! - `fuzz_<target>`: proptest cases, raw bytes or a corpus file mutated
//!   (bit flips, cuts, repeats, tokens of the format), a bounded number
//!   per target so that the whole module takes seconds in a debug build.
//!   `PIPEHOST_FUZZ_CASES=N` runs N cases per target instead,
//!   `PIPEHOST_FUZZ_SECONDS=S` (`./x fuzz TARGET S`) rounds of them for S
//!   seconds; a failure's shrunk input is saved under
//!   `target/fuzz-crashers/`. With
//!   `PIPEHOST_FUZZ_SAVE=1` a case whose outcome (ok, or an error message
//!   with its numbers blanked) no corpus file has yet is saved to the corpus.
//!
//! The targets are in `fuzz/targets.rs`; the plugin column targets build
//! the contract's column structs from the bytes (`fuzz/columns.rs`): counts and offsets mostly near the lengths they index
//! (so the checks are passed often enough to reach the readers behind them),
//! sometimes past them or wild.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

mod columns;
mod targets;

// ---------------------------------------------------------------------
// Allocation accounting: per thread, only while a target runs.

struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ACTIVE.try_with(|a| {
        if a.get() {
            LARGEST.with(|l| l.set(l.get().max(size)));
            TOTAL.with(|t| t.set(t.get().saturating_add(size)));
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged; the
// accounting only reads the sizes, in const-initialised thread-locals
// that never allocate.
#[allow(unsafe_code, reason = "a GlobalAlloc impl is unsafe by definition")]
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        note(new);
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// ---------------------------------------------------------------------
// The targets (`fuzz/targets.rs`), their budgets and case counts.

use targets::*;

type Run = fn(&[u8]) -> Result<String, String>;

struct Target {
    name: &'static str,
    run: Run,
    /// Cases per `./x test` run.
    cases: u32,
    /// Longest raw input proptest makes.
    max_len: usize,
    /// Tokens a mutation may insert (text formats).
    tokens: &'static [&'static str],
    /// Of all bytes allocated while decoding, at most this many per input
    /// byte (plus 1 MiB); `None` where only single allocations are bounded.
    total_per_byte: Option<usize>,
}

const TOML_TOKENS: &[&str] = &[
    "\n",
    "=",
    "\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "[[",
    "]]",
    "'''",
    "\"\"\"",
    "#",
    "0",
    "-1",
    "1e400",
    "nan",
    "inf",
    "true",
    "0s",
    "\"1ms\"",
    "\"99999999999h\"",
    "\"1.5GiB\"",
    "\"18446744073709551616\"",
    "\"..\"",
    "\"é\"",
    "\"{shard}\"",
    "\"{\"",
    "\"}\"",
    "\"\\u0000\"",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "1979-05-27",
    "9999-12-31T23:59:59.999999999-23:59",
    "4294967296",
    "9223372036854775807",
];

const TARGETS: &[Target] = &[
    Target {
        name: "aggregate",
        run: aggregate_target,
        cases: 3000,
        max_len: 600,
        tokens: &[],
        total_per_byte: Some(64),
    },
    Target {
        name: "message",
        run: message_target,
        cases: 1500,
        max_len: 600,
        tokens: &[
            "\"", "{", "}", "[", "]", ",", ":", "\"b64\"", "\"data\"", "null", "9PVQSEE",
        ],
        // Unpacking copies the record's key and sequence per line (issue
        // #14, item 9): only single allocations are bounded here.
        total_per_byte: None,
    },
    Target {
        name: "event-columns",
        run: event_columns_target,
        cases: 4000,
        max_len: 400,
        tokens: &[],
        total_per_byte: Some(256),
    },
    Target {
        name: "parsed",
        run: parsed_target,
        cases: 3000,
        max_len: 400,
        tokens: &[],
        total_per_byte: Some(256),
    },
    Target {
        name: "transformed",
        run: transformed_target,
        cases: 3000,
        max_len: 400,
        tokens: &[],
        total_per_byte: Some(256),
    },
    Target {
        name: "generated",
        run: generated_target,
        cases: 3000,
        max_len: 400,
        tokens: &[],
        total_per_byte: Some(64),
    },
    Target {
        name: "fixture",
        run: fixture_target,
        cases: 1000,
        max_len: 600,
        tokens: TOML_TOKENS,
        total_per_byte: Some(1024),
    },
    Target {
        name: "pipeline",
        run: pipeline_target,
        cases: 800,
        max_len: 600,
        tokens: TOML_TOKENS,
        total_per_byte: Some(1024),
    },
];

// ---------------------------------------------------------------------
// Running a target: budgets, corpus, proptest.

/// Runs `target` on `data` within its budgets; the outcome's class.
fn run_bounded(target: &Target, data: &[u8]) -> String {
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|t| t.set(0));
    ACTIVE.with(|a| a.set(true));
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(data)));
    let elapsed = started.elapsed();
    ACTIVE.with(|a| a.set(false));
    let outcome = match outcome {
        Ok(o) => o,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let (largest, total) = (LARGEST.with(Cell::get), TOTAL.with(Cell::get));
    let shown = || String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
    assert!(
        elapsed < Duration::from_secs(2),
        "{}: {elapsed:?} for {} bytes: {:?}",
        target.name,
        data.len(),
        shown()
    );
    assert!(
        largest <= (1 << 20) + 64 * data.len(),
        "{}: one allocation of {largest} bytes for {} bytes of input: {:?}",
        target.name,
        data.len(),
        shown()
    );
    if let Some(per_byte) = target.total_per_byte {
        assert!(
            total <= (1 << 20) + per_byte * data.len(),
            "{}: {total} bytes allocated for {} bytes of input: {:?}",
            target.name,
            data.len(),
            shown()
        );
    }
    class(&outcome)
}

/// An outcome with its numbers blanked: `ok` or the error's words.
fn class(outcome: &Result<String, String>) -> String {
    match outcome {
        Ok(what) if what.starts_with("0 ") => "ok-empty".into(),
        Ok(_) => "ok".into(),
        Err(e) => {
            // A TOML error quotes the source; its last line says what.
            let e = e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            // Quoted input and hex digits are not part of the class.
            let (mut words, mut quote) = (String::new(), None);
            for c in e.chars() {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if matches!(c, '"' | '`' | '\'') => quote = Some(c),
                    None if c.is_ascii_lowercase() => words.push(c),
                    None => words.push('-'),
                }
            }
            let hex = |w: &str| w.bytes().all(|b| b.is_ascii_hexdigit());
            let mut words: Vec<&str> = (words.split('-'))
                .filter(|w| w.len() > 2 && !hex(w))
                .collect();
            words.truncate(6);
            match words.join("-").to_lowercase() {
                w if w.is_empty() => "error".into(),
                w => w,
            }
        }
    }
}

fn corpus_dir(target: &Target) -> PathBuf {
    crate::util::root()
        .join("tests")
        .join("corpus")
        .join(target.name)
}

fn corpus(target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    files.sort();
    files
}

/// Bytes from a proptest case: raw, or a corpus file mutated.
fn mutate(seeds: &[Vec<u8>], tokens: &[&str], case: &Case) -> Vec<u8> {
    let pick = case.seed.index(seeds.len() + 1);
    if pick == seeds.len() {
        return case.raw.clone();
    }
    let mut data = seeds[pick].clone();
    for (op, at, arg, other) in &case.edits {
        let at = at.index(data.len() + 1);
        let len = usize::from(*arg % 32);
        let end = (at + len).min(data.len());
        match op {
            0 => {
                if let Some(b) = data.get_mut(at) {
                    *b ^= 1 << (arg % 8);
                }
            }
            1 => {
                data.drain(at..end);
            }
            2 => data.truncate(at),
            3 => {
                let piece = data[at..end].to_vec();
                data.splice(at..at, piece);
            }
            4 if !tokens.is_empty() => {
                let token = tokens[other.index(tokens.len())].as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            _ => data.insert(at, *arg),
        }
    }
    data
}

#[derive(Debug, Clone)]
struct Case {
    seed: Index,
    raw: Vec<u8>,
    edits: Vec<(u8, Index, u8, Index)>,
}

fn cases(max_len: usize) -> impl Strategy<Value = Case> {
    (
        any::<Index>(),
        proptest::collection::vec(any::<u8>(), 0..max_len),
        proptest::collection::vec((0u8..6, any::<Index>(), any::<u8>(), any::<Index>()), 0..6),
    )
        .prop_map(|(seed, raw, edits)| Case { seed, raw, edits })
}

fn fuzz(name: &str) {
    let target = TARGETS.iter().find(|t| t.name == name).expect("a target");
    let files = corpus(target);
    let seeds: Vec<Vec<u8>> = files.iter().map(|(_, d)| d.clone()).collect();
    let save = std::env::var_os("PIPEHOST_FUZZ_SAVE").is_some();
    let known: std::collections::HashSet<String> = if save {
        seeds.iter().map(|d| run_bounded(target, d)).collect()
    } else {
        Default::default()
    };
    let cases_n = std::env::var("PIPEHOST_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(target.cases);
    let config = Config {
        cases: cases_n,
        failure_persistence: None,
        ..Config::default()
    };
    let known = std::sync::Mutex::new(known);
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::new());
    // `./x fuzz TARGET SECONDS`: rounds of `cases` until the time is up.
    let seconds = std::env::var("PIPEHOST_FUZZ_SECONDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let started = Instant::now();
    let mut rounds = 0;
    while rounds == 0 || started.elapsed() < Duration::from_secs(seconds) {
        rounds += 1;
        let mut runner = TestRunner::new(config.clone());
        let result = runner.run(&cases(target.max_len), |case| {
            let data = mutate(&seeds, target.tokens, &case);
            let class = std::panic::catch_unwind(|| run_bounded(target, &data))
                .map_err(|p| TestCaseError::fail(panic_text(&p)))?;
            *seen.lock().unwrap().entry(class.clone()).or_insert(0u32) += 1;
            let mut known = known.lock().unwrap();
            if save && known.len() < 60 && known.insert(class.clone()) {
                let hash = crc32fast::hash(&data);
                let file = corpus_dir(target).join(format!("{class:.40}-{hash:08x}"));
                std::fs::write(file, &data).unwrap();
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, case)) => {
                // The shrunk input, as a file to add to the corpus.
                let data = mutate(&seeds, target.tokens, &case);
                let dir = crate::util::root().join("target").join("fuzz-crashers");
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join(format!("{name}-{:08x}", crc32fast::hash(&data)));
                std::fs::write(&file, &data).unwrap();
                panic!(
                    "{name}: {why}\ninput ({} bytes) saved as {}: {:?}\n(move it to tests/corpus/{name}/ once fixed)",
                    data.len(),
                    file.display(),
                    String::from_utf8_lossy(&data)
                );
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
    let seen = seen.into_inner().unwrap();
    eprintln!(
        "fuzz {name}: {} cases in {:.1?}, {} outcomes, {} ok",
        u64::from(cases_n) * rounds,
        started.elapsed(),
        seen.len(),
        seen.get("ok").copied().unwrap_or(0)
    );
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

#[test]
fn corpus_replays_without_panics_within_budgets() {
    for target in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "{}: no corpus", target.name);
        for (path, data) in &files {
            if let Err(p) = std::panic::catch_unwind(|| run_bounded(target, data)) {
                panic!("{}: {}", path.display(), panic_text(&p));
            }
        }
    }
}

#[test]
fn fuzz_aggregate() {
    fuzz("aggregate");
}

#[test]
fn fuzz_message() {
    fuzz("message");
}

#[test]
fn fuzz_event_columns() {
    fuzz("event-columns");
}

#[test]
fn fuzz_parsed() {
    fuzz("parsed");
}

#[test]
fn fuzz_transformed() {
    fuzz("transformed");
}

#[test]
fn fuzz_generated() {
    fuzz("generated");
}

#[test]
fn fuzz_fixture() {
    fuzz("fixture");
}

#[test]
fn fuzz_pipeline() {
    fuzz("pipeline");
}
