//! Hot-reload benchmark: the time from a new transform file landing to the
//! first batch stored by the new version, with a cold compiled-code cache
//! (a never-seen file: Cranelift compiles it) and a warm one (a version seen
//! before), and the pipeline's throughput while reloads happen vs without.
//!
//! Run with `cargo bench -p pipehost --bench reload_latency` after
//! `./x build-plugins`. `--quick` does a short pass (CI keeps it working).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn plugin_dir() -> PathBuf {
    std::env::var_os("PIPEHOST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        })
}

/// The same component with a custom section appended: a new file and
/// version that behaves the same.
fn variant(bytes: &[u8], n: usize) -> Vec<u8> {
    let name = b"pipehost-bench-variant";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&n.to_le_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

fn version(bytes: &[u8]) -> String {
    let sha: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("forex_transform@{}", &sha[..12])
}

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// (modified_ms, record count, plugin versions) of every forex object.
fn objects(db: &rusqlite::Connection) -> Vec<(i64, u64, String)> {
    let mut st = db
        .prepare(
            "SELECT modified_ms, json_extract(metadata, '$.\"record-count\"'),
                    json_extract(metadata, '$.\"plugin-versions\"')
             FROM objects WHERE key LIKE 'dataset=forex/%' ORDER BY modified_ms",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?.parse().unwrap_or(0),
            r.get::<_, String>(2)?,
        ))
    })
    .unwrap()
    .filter_map(Result::ok)
    .collect()
}

/// Waits for the store's `objects` table: the database file appears
/// before the store has created its schema in it.
fn wait_for_schema(db: &rusqlite::Connection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let made: bool = db
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'objects')",
                [],
                |r| r.get(0),
            )
            .unwrap_or(false);
        if made {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the store never created its objects table");
}

/// Milliseconds from `landed` to the first object stored by `version`.
fn wait_for_version(db: &rusqlite::Connection, version: &str, landed: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((t, _, _)) = objects(db)
            .into_iter()
            .find(|(_, _, v)| v.contains(version))
        {
            return t - landed;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{version} was never served");
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Records stored per second between two times.
fn rate(objs: &[(i64, u64, String)], from: i64, to: i64) -> f64 {
    let n: u64 = objs
        .iter()
        .filter(|(t, _, _)| *t >= from && *t < to)
        .map(|(_, c, _)| c)
        .sum();
    n as f64 / ((to - from) as f64 / 1000.0)
}

#[allow(unsafe_code, reason = "std::env::set_var (unsafe since edition 2024)")]
fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let swaps = if quick { 3 } else { 20 };
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir();
    let original = std::fs::read(plugins.join("forex_transform.wasm"))
        .expect("build the plugins first: ./x build-plugins");
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    let transform = dir.path().join("plugins").join("forex_transform.wasm");
    std::fs::write(&transform, &original).unwrap();
    // A private compiled-code cache, so "cold" really compiles.
    let cache = dir.path().join("cache");
    // SAFETY: set before any thread starts.
    unsafe { std::env::set_var("PIPEHOST_CACHE_DIR", &cache) };
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
name = "reload-bench"
[plugins]
dir = "{plugins}"
[feeds.forex]
parser = {{ plugin = "forex_parser" }}
transforms = [{{ plugin = "{transform}" }}]
[feeds.forex.generator]
plugin = "forex_generator"
interval = "5ms"
records = {records}
[stream]
shards = 2
[store]
rollover = {{ records = 500, age = "10ms" }}
[local]
data_dir = "state"
"#,
            plugins = plugins.display(),
            transform = transform.display(),
            // A light load for the quick pass, which CI runs in a debug build.
            records = if quick { 10 } else { 100 }
        ),
    )
    .unwrap();
    let plan = pipehost::plan::from_source(&pipehost::config::read(&pipeline).expect("pipeline"))
        .expect("pipeline");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = pipehost::runtime::RunOptions {
        duration: Some(Duration::from_secs(3600)),
        max_records: None,
        status: false,
        watch: true,
        dev: false,
        stages: Default::default(),
    };
    let _run = rt.spawn(pipehost::runtime::run(Arc::new(plan), opts));
    let db_path = dir.path().join("state").join("pipehost.db");
    let start = Instant::now();
    while !db_path.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let db = rusqlite::Connection::open(&db_path).unwrap();
    wait_for_schema(&db);
    wait_for_version(&db, &version(&original), now_ms());

    // Steady state, no reloads.
    let calm_from = now_ms();
    std::thread::sleep(Duration::from_millis(if quick { 500 } else { 3000 }));
    let calm_to = now_ms();

    // Cold: versions never seen, so Cranelift compiles each one.
    let mut cold = Vec::new();
    let busy_from = now_ms();
    for n in 1..=swaps {
        let bytes = variant(&original, n);
        let landed = now_ms();
        replace(&transform, &bytes);
        cold.push(wait_for_version(&db, &version(&bytes), landed));
    }
    let busy_to = now_ms();
    // Warm: alternate between two versions already compiled and cached.
    let a = variant(&original, 1_000);
    let b = variant(&original, 1_001);
    for bytes in [&a, &b] {
        let landed = now_ms();
        replace(&transform, bytes);
        wait_for_version(&db, &version(bytes), landed);
    }
    let mut warm = Vec::new();
    for i in 0..swaps {
        // Each swap must land a version other than the live one; make the
        // version unique per swap by its position in the objects list.
        let bytes = if i % 2 == 0 { &a } else { &b };
        let seen = objects(&db).len();
        let landed = now_ms();
        replace(&transform, bytes);
        let deadline = Instant::now() + Duration::from_secs(60);
        let v = version(bytes);
        let t = loop {
            let objs = objects(&db);
            if let Some((t, _, _)) = objs
                .iter()
                .skip(seen)
                .find(|(t, _, s)| s.contains(&v) && *t >= landed)
            {
                break *t - landed;
            }
            assert!(Instant::now() < deadline, "warm swap {i} never served");
            std::thread::sleep(Duration::from_millis(2));
        };
        warm.push(t);
    }
    cold.sort();
    warm.sort();
    let objs = objects(&db);
    println!(
        "pipehost hot-reload benchmark ({} build)",
        if cfg!(debug_assertions) {
            "DEBUG"
        } else {
            "release"
        }
    );
    println!(
        "component: forex_transform, {} bytes; {swaps} swaps each",
        original.len()
    );
    println!("time from the file landing to the first batch stored by the new version:");
    println!(
        "  cold cache (compile)   p50 {:>4} ms   p90 {:>4} ms   max {:>4} ms",
        percentile(&cold, 0.5),
        percentile(&cold, 0.9),
        cold.last().unwrap()
    );
    println!(
        "  warm cache             p50 {:>4} ms   p90 {:>4} ms   max {:>4} ms   (target < 150 ms)",
        percentile(&warm, 0.5),
        percentile(&warm, 0.9),
        warm.last().unwrap()
    );
    let calm = rate(&objs, calm_from, calm_to);
    let busy = rate(&objs, busy_from, busy_to);
    println!(
        "throughput: {calm:.0} records/s without reloads, {busy:.0} records/s while reloading ({:+.1}%)",
        (busy / calm - 1.0) * 100.0
    );
    std::process::exit(0);
}
