//! Plugin-path benchmark: the cost of crossing into a plugin, and each
//! feed's parser + transform chain in the real sandbox (batched, instance
//! reused) against the same Rust logic compiled natively.
//!
//! Native: the plugins' logic on the guest SDK's plain types — `parse` on
//! borrowed raw records, `transform` on the events it returned. Wasm: the
//! same records as a `RawBatch` through the processor's path — the parser's
//! columns straight into the transform (`plugin::Chain`), ending at the
//! checked output batch the host reads, as the native side ends at its
//! events. Writing the JSON Lines the processor stores (`LineWriter`) is
//! timed on its own: a host linking the logic natively would pay it too.
//!
//! Run with `./x bench` (or `cargo bench -p pipehost --bench plugin_path`
//! after `./x build-plugins`). `--quick` runs a short pass (used to keep the
//! benchmark working in CI); `--feed NAME` runs one feed's chain only. Prints
//! one table; target: wasm >= 0.6x native. To profile the wasm side, run it
//! under `perf record` with `PIPEHOST_WASM_PERFMAP=1` (names the plugins'
//! functions) and `perf report --no-children --sort dso,sym`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipehost::event::LineWriter;
use pipehost::plugin::{
    Chain, EngineSettings, Parser, ParserInstance, Plugin, PluginEngine, PluginSettings, RawBatch,
    Role, Transform, TransformInstance,
};
use pipehost_guest::types::{RawRecord as GuestRaw, Source as GuestSource};
use pipehost_guest::{GeneratorPlugin, ParserPlugin, Plugin as _, TransformPlugin};

const BATCH: usize = 1000;

struct Feed {
    name: &'static str,
    lines: Vec<Vec<u8>>,
}

fn plugin_dir() -> PathBuf {
    std::env::var_os("PIPEHOST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        })
}

fn guest_source<'a>(feed: &'a str, sequence: &'a str) -> GuestSource<'a> {
    GuestSource {
        feed,
        shard: "shard-0",
        sequence,
        partition_key: "",
        arrival_time_ms: 0,
    }
}

/// Records from the feed's own generator (run natively), so both paths see
/// identical, realistic input.
fn make_feed(name: &'static str, records: usize) -> Feed {
    let ticks = records.div_ceil(BATCH);
    let mut lines = Vec::with_capacity(records);
    for n in 0..ticks {
        let count = BATCH.min(records - lines.len()) as u32;
        let time_ms = 1_795_420_800_000 + n as i64 * 1000;
        let out: Vec<(String, Vec<u8>)> = match name {
            "forex" => forex_generator::Generator::from_config_json("{}")
                .unwrap()
                .generate(&forex_generator::Tick {
                    seed: 7,
                    number: n as u64,
                    time_ms,
                    count,
                })
                .unwrap()
                .into_iter()
                .map(|g| (g.partition_key, g.data))
                .collect(),
            "stock" => stock_generator::Generator::from_config_json("{}")
                .unwrap()
                .generate(&stock_generator::Tick {
                    seed: 7,
                    number: n as u64,
                    time_ms,
                    count,
                })
                .unwrap()
                .into_iter()
                .map(|g| (g.partition_key, g.data))
                .collect(),
            _ => news_generator::Generator::from_config_json("{}")
                .unwrap()
                .generate(&news_generator::Tick {
                    seed: 7,
                    number: n as u64,
                    time_ms,
                    count,
                })
                .unwrap()
                .into_iter()
                .map(|g| (g.partition_key, g.data))
                .collect(),
        };
        lines.extend(out.into_iter().map(|(_, d)| d));
    }
    Feed { name, lines }
}

/// Native chain: returns events kept/split.
fn native_chain(feed: &str, batches: &[Vec<GuestRaw>]) -> usize {
    let mut kept = 0;
    macro_rules! chain {
        ($parser:ident, $transform:ident) => {{
            let p = $parser::Parser::from_config_json("{}").unwrap();
            let t = $transform::Transform::from_config_json("{}").unwrap();
            for batch in batches {
                let events: Vec<_> = p
                    .parse(batch)
                    .into_iter()
                    .filter_map(Result::ok)
                    .flatten()
                    .collect();
                for o in t.transform(events) {
                    kept += match o {
                        $transform::Outcome::Keep(e) => {
                            black_box(e);
                            1
                        }
                        $transform::Outcome::Split(v) => v.len(),
                        _ => 0,
                    };
                }
            }
        }};
    }
    match feed {
        "forex" => chain!(forex_parser, forex_transform),
        "stock" => chain!(stock_parser, stock_transform),
        _ => chain!(news_parser, news_transform),
    }
    kept
}

/// Native parse alone (the events are dropped), for the stage breakdown.
fn native_parse(feed: &str, batches: &[Vec<GuestRaw>]) -> usize {
    let mut n = 0;
    macro_rules! parse {
        ($parser:ident) => {{
            let p = $parser::Parser::from_config_json("{}").unwrap();
            for batch in batches {
                n += black_box(p.parse(batch)).len();
            }
        }};
    }
    match feed {
        "forex" => parse!(forex_parser),
        "stock" => parse!(stock_parser),
        _ => parse!(news_parser),
    }
    n
}

fn wasm_chain(
    parser: &mut ParserInstance,
    transform: &mut TransformInstance,
    batches: &[RawBatch],
) -> usize {
    let mut kept = 0;
    for batch in batches {
        let mut chain = Chain::parse(parser, batch).unwrap();
        chain.transform(transform, 0).unwrap();
        black_box(&chain.events);
        kept += chain.events.len();
    }
    kept
}

/// Best of `reps` runs of `f`.
fn best<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        let out = f();
        best = best.min(t.elapsed());
        last = Some(out);
    }
    (best, last.unwrap())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--feed forex` runs one feed's chain only (for profiling).
    let only: Option<String> = std::env::args().skip_while(|a| a != "--feed").nth(1);
    let records = if quick { 5_000 } else { 200_000 };
    let reps = if quick { 1 } else { 5 };
    let dir = plugin_dir();
    let engine = PluginEngine::new(EngineSettings {
        cache_dir: None,
        ..Default::default()
    })
    .expect("engine");
    fn load_as<R: Role>(engine: &PluginEngine, dir: &Path, name: &str) -> Plugin<R> {
        let path = dir.join(format!("{name}.wasm"));
        engine
            .load(&path, PluginSettings::default())
            .unwrap_or_else(|e| panic!("{e} (run ./x build-plugins first)"))
    }
    let parser = |name: &str| load_as::<Parser>(&engine, &dir, name);
    let transform = |name: &str| load_as::<Transform>(&engine, &dir, name);

    println!("pipehost plugin-path benchmark");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!(
        "build:   {}",
        if cfg!(debug_assertions) {
            "DEBUG (numbers meaningless)"
        } else {
            "release"
        }
    );
    println!();

    // Boundary cost: an empty batch and a one-record batch, instance reused.
    let forex = parser("forex_parser");
    let mut inst = forex.instantiate("{}").unwrap();
    let calls = if quick { 2_000 } else { 100_000 };
    let empty_batch = RawBatch::new("forex", "shard-0");
    let (empty, _) = best(reps, || {
        for _ in 0..calls {
            black_box(inst.parse_batch(&empty_batch).unwrap());
        }
    });
    let line = make_feed("forex", 1).lines.remove(0);
    let mut one = RawBatch::new("forex", "shard-0");
    one.push(&line, "0", "", 0);
    let (single, _) = best(reps, || {
        for _ in 0..calls {
            black_box(inst.parse_batch(&one).unwrap());
        }
    });
    let (fresh, _) = best(reps, || {
        for _ in 0..(calls / 50).max(10) {
            black_box(forex.instantiate("{}").unwrap());
        }
    });
    // A parsed batch of 1000 forex events (3 fields each) into a transform
    // that returns it unchanged (the test-only `hostile` plugin, which has
    // no SDK and no logic): the cost of moving an event batch both ways.
    let lines = make_feed("forex", BATCH).lines;
    let mut raw = RawBatch::new("forex", "shard-0");
    for (i, l) in lines.iter().enumerate() {
        raw.push(l, &i.to_string(), "", 0);
    }
    let events = inst.parse_batch(&raw).unwrap().events;
    let keep_all = transform("hostile");
    let mut keep_all = keep_all.instantiate("{}").unwrap();
    let round_trips = (calls / 200).max(10);
    let (echo, _) = best(reps, || {
        for _ in 0..round_trips {
            black_box(keep_all.transform_batch(&events).unwrap());
        }
    });
    println!("boundary cost (forex parser, instance reused)");
    println!(
        "  empty batch call          {:>8.2} µs",
        empty.as_secs_f64() * 1e6 / calls as f64
    );
    println!(
        "  1-record batch call       {:>8.2} µs",
        single.as_secs_f64() * 1e6 / calls as f64
    );
    println!(
        "  new instance + init       {:>8.2} µs",
        fresh.as_secs_f64() * 1e6 / (calls / 50).max(10) as f64
    );
    println!(
        "  1000 events there and back {:>7.2} µs  ({} fields; a transform keeping all, no logic)",
        echo.as_secs_f64() * 1e6 / round_trips as f64,
        events.field_count()
    );
    println!();

    println!("parser + transform chain, batches of {BATCH}, {records} records, best of {reps}");
    println!(
        "{:<6} {:>14} {:>14} {:>10} {:>10} {:>8} {:>7}",
        "feed", "native rec/s", "wasm rec/s", "native MB/s", "wasm MB/s", "ratio", "target"
    );
    let mut all_ok = true;
    let mut stages = Vec::new();
    for feed in ["forex", "stock", "news"] {
        if only.as_deref().is_some_and(|o| o != feed) {
            continue;
        }
        let f = make_feed(feed, records);
        let bytes: usize = f.lines.iter().map(Vec::len).sum();
        let sequences: Vec<String> = (0..BATCH).map(|i| i.to_string()).collect();
        let guest_batches: Vec<Vec<GuestRaw>> = f
            .lines
            .chunks(BATCH)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .map(|(i, d)| GuestRaw {
                        data: d,
                        source: guest_source(f.name, &sequences[i]),
                    })
                    .collect()
            })
            .collect();
        let host_batches: Vec<RawBatch> = f
            .lines
            .chunks(BATCH)
            .map(|c| {
                let mut b = RawBatch::new(f.name, "shard-0");
                for (i, d) in c.iter().enumerate() {
                    b.push(d, &sequences[i], "", 0);
                }
                b
            })
            .collect();
        let p = parser(&format!("{feed}_parser"));
        let t = transform(&format!("{feed}_transform"));
        let mut pi = p.instantiate("{}").unwrap();
        let mut ti = t.instantiate("{}").unwrap();
        let mut lines = Vec::with_capacity(1 << 20);
        let (native, n_out) = best(reps, || native_chain(feed, &guest_batches));
        let (native_parse_time, _) = best(reps, || native_parse(feed, &guest_batches));
        let (wasm, w_out) = best(reps, || wasm_chain(&mut pi, &mut ti, &host_batches));
        let (wasm_parse, parsed) = best(reps, || {
            host_batches
                .iter()
                .map(|b| pi.parse_batch(b).unwrap().events)
                .collect::<Vec<_>>()
        });
        let (wasm_transform, transformed) = best(reps, || {
            parsed
                .iter()
                .map(|b| ti.transform_batch(b).unwrap().events)
                .collect::<Vec<_>>()
        });
        let (write, _) = best(reps, || {
            for b in &transformed {
                lines.clear();
                let mut writer = LineWriter::new(b);
                for e in b.iter() {
                    writer.write_event(&mut lines, &e);
                    lines.extend_from_slice(b"}\n");
                }
                black_box(&lines);
            }
        });
        stages.push((
            feed,
            native_parse_time,
            native,
            wasm_parse,
            wasm_transform,
            write,
        ));
        assert_eq!(
            n_out, w_out,
            "{feed}: native and wasm disagree on the output"
        );
        let n = f.lines.len() as f64;
        let ratio = native.as_secs_f64() / wasm.as_secs_f64();
        all_ok &= ratio >= 0.6;
        println!(
            "{:<6} {:>14.0} {:>14.0} {:>10.1} {:>10.1} {:>7.2}x {:>7}",
            feed,
            n / native.as_secs_f64(),
            n / wasm.as_secs_f64(),
            bytes as f64 / native.as_secs_f64() / 1e6,
            bytes as f64 / wasm.as_secs_f64() / 1e6,
            ratio,
            if ratio >= 0.6 { ">=0.6 ok" } else { "MISSED" }
        );
        // For the benchmark report (tests/support/bench_report.py).
        println!(
            "BENCH-JSON {{\"section\":\"plugin\",\"feed\":\"{feed}\",\"native_rps\":{:.0},\"wasm_rps\":{:.0},\"native_mbps\":{:.2},\"wasm_mbps\":{:.2},\"ratio\":{:.3}}}",
            n / native.as_secs_f64(),
            n / wasm.as_secs_f64(),
            bytes as f64 / native.as_secs_f64() / 1e6,
            bytes as f64 / wasm.as_secs_f64() / 1e6,
            ratio
        );
    }
    println!();
    println!("time by stage (whole run, best of {reps}; native transform = chain - parse)");
    for (feed, np, nc, p, t, w) in &stages {
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        println!(
            "  {feed:<6} native: parse {:>7.1} ms  transform {:>7.1} ms   wasm: parse {:>7.1} ms  transform {:>7.1} ms   (host JSON Lines writing, outside the ratio: {:>6.1} ms)",
            ms(np),
            (ms(nc) - ms(np)).max(0.0),
            ms(p),
            ms(t),
            ms(w)
        );
    }
    println!();
    println!(
        "wasm/native ratio target (>= 0.6x): {}",
        if all_ok {
            "met for every feed"
        } else {
            "MISSED for at least one feed"
        }
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
