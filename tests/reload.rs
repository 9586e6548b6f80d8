//! Hot reload while the pipeline runs: a transform replaced 50 times under
//! load loses and doubles nothing; broken files are refused and the old
//! version keeps serving; live config edits apply, others are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::faults::{finish_within, start};
use crate::pipeline::{audit, run_cmd, run_to_end, stream_lines, write_pipeline_with};
use crate::util::{Spawned, plugin_path, wait_for};

/// A running `pipehost run` whose stderr lines are collected.
struct Running(Spawned);

impl std::ops::Deref for Running {
    type Target = Spawned;
    fn deref(&self) -> &Spawned {
        &self.0
    }
}

impl Running {
    fn start(pipeline: &Path) -> Self {
        Self::start_with(pipeline, &[], &[])
    }

    fn start_with(pipeline: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = run_cmd(pipeline, args);
        cmd.envs(env.iter().copied());
        Self(Spawned::spawn(cmd))
    }

    fn lines_with(&self, text: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// SIGTERM, and the run's summary.
    fn stop(self) -> String {
        let (out, _) = self.0.terminate();
        assert!(out.status.success(), "graceful exit: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `bytes` with a custom section appended: a different file (and version)
/// that behaves the same.
fn variant(bytes: &[u8], n: usize) -> Vec<u8> {
    let name = b"pipehost-test-variant";
    let payload = n.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128 size (< 128)
    out.extend_from_slice(&section);
    out
}

fn version(name: &str, bytes: &[u8]) -> String {
    let sha: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{name}@{}", &sha[..12])
}

/// Writes a file the way build tools do: a temporary file renamed into place.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The plugin versions named by the data objects stored so far.
fn versions_stored(state: &Path) -> Vec<String> {
    if !state.join("pipehost.db").exists() {
        return Vec::new();
    }
    let Ok(db) = rusqlite::Connection::open(state.join("pipehost.db")) else {
        return Vec::new();
    };
    let Ok(mut st) = db.prepare(
        "SELECT json_extract(metadata, '$.\"plugin-versions\"') FROM objects
         WHERE key LIKE 'dataset=forex/%' ORDER BY modified_ms",
    ) else {
        return Vec::new();
    };
    st.query_map([], |r| r.get::<_, String>(0))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// True once an object stored at or after `since_ms` names `version`.
fn served_since(state: &Path, version: &str, since_ms: i64) -> bool {
    let Ok(db) = rusqlite::Connection::open(state.join("pipehost.db")) else {
        return false;
    };
    db.query_row(
        "SELECT COUNT(*) FROM objects WHERE key LIKE 'dataset=forex/%' AND modified_ms >= ?1
         AND instr(json_extract(metadata, '$.\"plugin-versions\"'), ?2) > 0",
        rusqlite::params![since_ms, version],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .unwrap_or(false)
}

/// A forex-only pipeline whose transform is `transform` (a path).
fn forex_pipeline(dir: &Path, transforms: &str) -> PathBuf {
    forex_pipeline_with(dir, transforms, "")
}

/// [`forex_pipeline`] with `extra` TOML appended.
fn forex_pipeline_with(dir: &Path, transforms: &str, extra: &str) -> PathBuf {
    let feeds = format!(
        r#"
[feeds.forex]
parser = {{ plugin = "forex_parser" }}
transforms = [{transforms}]
[feeds.forex.generator]
plugin = "forex_generator"
interval = "10ms"
records = 20
seed = 5
"#
    );
    write_pipeline_with(dir, &feeds, extra)
}

/// The forex transform copied to `<dir>/plugins/` (so a test can replace
/// it) and a forex pipeline using the copy. Returns the copy's path, its
/// bytes and the pipeline file.
fn pipeline_with_copied_transform(dir: &Path, extra: &str) -> (PathBuf, Vec<u8>, PathBuf) {
    let (path, original) = copy_transform(dir);
    let pipeline = forex_pipeline_with(
        dir,
        &format!(r#"{{ plugin = "{}" }}"#, path.display()),
        extra,
    );
    (path, original, pipeline)
}

fn copy_transform(dir: &Path) -> (PathBuf, Vec<u8>) {
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    let path = dir.join("plugins").join("forex_transform.wasm");
    let bytes = std::fs::read(plugin_path("forex_transform")).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
fn a_transform_replaced_50_times_under_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (path, original, pipeline) = pipeline_with_copied_transform(dir.path(), "");
    let run = Running::start(&pipeline);
    let v0 = version("forex_transform", &original);
    assert!(
        wait_for(Duration::from_secs(60), || versions_stored(&state)
            .iter()
            .any(|v| v.contains(&v0))),
        "the first version served:\n{}",
        run.log()
    );
    // Alternate between two new versions: each swap replaces the live
    // version with a different file, and only two files need compiling.
    let a = variant(&original, 1);
    let b = variant(&original, 2);
    let written = [
        v0.clone(),
        version("forex_transform", &a),
        version("forex_transform", &b),
    ];
    for n in 1..=50 {
        let (bytes, v) = if n % 2 == 1 {
            (&a, &written[1])
        } else {
            (&b, &written[2])
        };
        let landed = now_ms();
        replace(&path, bytes);
        // Each swap must apply on its own (not merged with the next one by
        // the debounce), and then serve.
        assert!(
            wait_for(Duration::from_secs(60), || run.lines_with("reloaded (")
                >= n),
            "swap {n} ({v}) never applied:\n{}",
            run.log()
        );
        // A reload that applied is news, not a warning (issue #16), and
        // the default log filter shows it.
        assert!(
            run.log()
                .lines()
                .filter(|l| l.contains("reloaded ("))
                .all(|l| l.contains(" INFO ") && !l.contains(" WARN ")),
            "{}",
            run.log()
        );
        assert!(
            wait_for(Duration::from_secs(60), || served_since(&state, v, landed)),
            "swap {n} ({v}) never served:\n{}",
            run.log()
        );
    }
    let summary = run.stop();
    assert!(
        summary.contains("reloads     50 applied, 0 refused"),
        "{summary}"
    );
    // Finish what was generated, then audit: no record lost or doubled.
    let generated = stream_lines(&state);
    run_to_end(&pipeline, generated);
    let a = audit(&state);
    assert_eq!(a.records as u64, generated);
    // Every object names exactly one transform version, one that was written.
    let stored = versions_stored(&state);
    for s in &stored {
        let t: Vec<&str> = s
            .split(',')
            .filter(|p| p.starts_with("forex_transform@"))
            .collect();
        assert_eq!(t.len(), 1, "{s}");
        assert!(
            written.iter().any(|w| w == t[0]),
            "{s} is not a version that was written"
        );
    }
}

#[test]
fn broken_files_are_refused_and_the_old_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (path, original, pipeline) = pipeline_with_copied_transform(dir.path(), "");
    let run = Running::start(&pipeline);
    let v0 = version("forex_transform", &original);
    assert!(wait_for(Duration::from_secs(60), || !versions_stored(
        &state
    )
    .is_empty()));
    let generator = std::fs::read(plugin_path("forex_generator")).unwrap();
    let broken: [(&str, Vec<u8>, &str); 3] = [
        ("garbage", b"this is not wasm".to_vec(), "not WebAssembly"),
        (
            "partial write",
            original[..original.len() / 3].to_vec(),
            "invalid component",
        ),
        ("wrong world", generator, "expected a transform-plugin"),
    ];
    for (i, (what, bytes, reason)) in broken.iter().enumerate() {
        replace(&path, bytes);
        assert!(
            wait_for(Duration::from_secs(60), || run.lines_with("reload refused")
                > i),
            "{what}: refused\n{}",
            run.log()
        );
        assert!(
            run.log().contains(reason),
            "{what}: the reason is given:\n{}",
            run.log()
        );
        let seen = versions_stored(&state).len();
        assert!(
            wait_for(Duration::from_secs(60), || versions_stored(&state).len()
                > seen),
            "{what}: the pipeline keeps storing"
        );
        assert!(
            versions_stored(&state).last().unwrap().contains(&v0),
            "{what}: the old version serves"
        );
    }
    // A plugin that traps while reading its config (through a config edit).
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        &format!(r#"{{ plugin = "{}" }}"#, path.display()),
        &format!(
            r#"{{ plugin = "{}", config = {{ init = "trap" }} }}"#,
            plugin_path("hostile").display()
        ),
    );
    replace(&pipeline, text.as_bytes());
    assert!(
        wait_for(Duration::from_secs(60), || run.lines_with("reload refused")
            > 3),
        "a trapping init is refused\n{}",
        run.log()
    );
    assert!(run.log().contains("panicking in init"), "{}", run.log());
    let seen = versions_stored(&state).len();
    assert!(wait_for(Duration::from_secs(60), || versions_stored(
        &state
    )
    .len()
        > seen));
    assert!(versions_stored(&state).last().unwrap().contains(&v0));
    let summary = run.stop();
    assert!(
        summary.contains("reloads     0 applied, 4 refused"),
        "{summary}"
    );
}

#[test]
fn live_config_edits_apply_and_the_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pipeline = forex_pipeline(dir.path(), "");
    let run = Running::start(&pipeline);
    assert!(wait_for(Duration::from_secs(60), || !versions_stored(
        &state
    )
    .is_empty()));
    assert!(!versions_stored(&state)[0].contains("forex_transform"));
    // Add a transform to the chain: later objects carry its fields.
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let with_transform = text.replace(
        "transforms = []",
        r#"transforms = [{ plugin = "forex_transform" }]"#,
    );
    replace(&pipeline, with_transform.as_bytes());
    assert!(
        wait_for(Duration::from_secs(60), || versions_stored(&state)
            .last()
            .is_some_and(|v| v.contains("forex_transform@"))),
        "the added transform serves:\n{}",
        run.log()
    );
    // Switching the shard count cannot apply live: refused, nothing changes.
    replace(
        &pipeline,
        with_transform
            .replace("shards = 3", "shards = 4")
            .as_bytes(),
    );
    assert!(
        wait_for(Duration::from_secs(60), || run.lines_with("reload refused")
            > 0),
        "{}",
        run.log()
    );
    assert!(
        run.log().contains("stream.shards"),
        "names what cannot change: {}",
        run.log()
    );
    let seen = versions_stored(&state).len();
    assert!(
        wait_for(Duration::from_secs(60), || versions_stored(&state).len()
            > seen),
        "still running"
    );
    let summary = run.stop();
    assert!(
        summary.contains("reloads     1 applied, 1 refused"),
        "{summary}"
    );
}

#[test]
fn a_plugin_that_traps_at_startup_stops_the_run_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = forex_pipeline(
        dir.path(),
        &format!(
            r#"{{ plugin = "{}", config = {{ init = "trap" }} }}"#,
            plugin_path("hostile").display()
        ),
    );
    let out = run_cmd(&pipeline, &["--duration", "30s"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("feeds.forex.transforms[0]"),
        "names the plugin's key: {stderr}"
    );
    assert!(
        stderr.contains("panicking in init"),
        "the guest's own message: {stderr}"
    );
}

/// One HTTP/1.1 request over a plain socket; returns (status, body).
fn http(addr: &str, method: &str, path: &str, key: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_admin_api_and_sighup_trigger_reloads_and_metrics_count_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (path, original, pipeline) = pipeline_with_copied_transform(
        dir.path(),
        "\n[admin]\nlisten = \"127.0.0.1:0\"\nkeys_env = \"E2E_ADMIN_KEYS\"\n",
    );
    // No file watching: only the API and SIGHUP reload here.
    let run = Running::start_with(
        &pipeline,
        &["--no-watch"],
        &[("E2E_ADMIN_KEYS", "k1,secret-key")],
    );
    assert!(
        wait_for(Duration::from_secs(60), || run
            .lines_with("admin API on http://")
            > 0),
        "{}",
        run.log()
    );
    let addr = run
        .log()
        .lines()
        .find_map(|l| {
            l.split("admin API on http://")
                .nth(1)
                .map(|a| a.trim().to_string())
        })
        .unwrap();
    assert!(wait_for(Duration::from_secs(60), || !versions_stored(
        &state
    )
    .is_empty()));

    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    assert_eq!(http(&addr, "POST", "/admin/reload", None).0, 401, "no key");
    assert_eq!(
        http(&addr, "POST", "/admin/reload", Some("guess")).0,
        403,
        "wrong key"
    );
    let (status, body) = http(&addr, "POST", "/admin/reload", Some("secret-key"));
    assert_eq!(
        (status, body.contains("nothing changed")),
        (200, true),
        "{body}"
    );

    // A new version through the API: applied, and reported.
    let v1 = variant(&original, 7);
    let landed = now_ms();
    replace(&path, &v1);
    let (status, body) = http(&addr, "POST", "/admin/reload", Some("secret-key"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"applied\":true") && body.contains(&version("forex_transform", &v1)),
        "{body}"
    );
    assert!(wait_for(Duration::from_secs(60), || served_since(
        &state,
        &version("forex_transform", &v1),
        landed
    )));

    // A broken file through the API: refused with the reason, 409.
    replace(&path, b"garbage");
    let (status, body) = http(&addr, "POST", "/admin/reload", Some("secret-key"));
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("\"applied\":false") && body.contains("not WebAssembly"),
        "{body}"
    );

    // SIGHUP reloads too.
    let v2 = variant(&original, 8);
    let landed = now_ms();
    replace(&path, &v2);
    crate::util::signal(&run.child, "HUP");
    assert!(
        wait_for(Duration::from_secs(60), || served_since(
            &state,
            &version("forex_transform", &v2),
            landed
        )),
        "SIGHUP reloaded:\n{}",
        run.log()
    );

    let (status, metrics) = http(&addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.contains("pipehost_reloads_total 2"), "{metrics}");
    assert!(
        metrics.contains("pipehost_reload_failures_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pipehost_records_processed_total"),
        "{metrics}"
    );
    let summary = run.stop();
    assert!(
        summary.contains("reloads     2 applied, 1 refused"),
        "{summary}"
    );
}

/// Issue #16: `run --dev` that can watch nothing says so at once and stops
/// before the pipeline starts — no cargo workspace around the pipeline
/// file, or one that builds none of its plugins — instead of running
/// without watching and saying so only at shutdown.
#[test]
fn dev_with_nothing_to_watch_is_refused_before_the_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = crate::pipeline::write_pipeline(dir.path(), "{}", "");
    let refused = |dir: &Path| {
        let started = std::time::Instant::now();
        let out = finish_within(
            start(run_cmd(&pipeline, &["--dev"]), dir),
            dir,
            Duration::from_secs(60),
        );
        assert!(!out.status.success(), "refused");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "refused at once, not after a run: {:?}",
            started.elapsed()
        );
        assert!(
            !dir.join("state").join("pipehost.db").exists(),
            "nothing started"
        );
        crate::util::text(&out.stderr)
    };
    let said = refused(dir.path());
    assert!(
        said.contains("--dev watches the plugin crates of the cargo workspace")
            && said.contains("there is none at"),
        "{said}"
    );
    // A cargo workspace that builds none of the pipeline's plugins.
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"not-a-plugin\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
    let said = refused(dir.path());
    assert!(
        said.contains("--dev has nothing to watch") && said.contains("builds none of"),
        "{said}"
    );
}
