//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pipehost::plugin::{
    AnyPlugin, EngineSettings, Event, Field, Plugin, PluginEngine, PluginKind, PluginSettings,
    RawRecord, Role, Source, Value,
};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned()
}

/// Where the built plugins are: `$PIPEHOST_PLUGIN_DIR`, else
/// `<target>/wasm32-wasip2/release`.
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PIPEHOST_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("wasm32-wasip2").join("release")
}

/// The path of a built plugin, e.g. `plugin_path("forex_parser")`.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins first with `./x build-plugins` \
         (cargo build --release --target wasm32-wasip2 …)",
        path.display()
    );
    path
}

/// A compiled-code cache shared by this test run and the CLI it spawns.
pub fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("pipehost-test-cache")
}

/// One engine for the whole test binary.
pub fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        PluginEngine::new(EngineSettings {
            cache_dir: Some(cache_dir()),
            ..EngineSettings::default()
        })
        .expect("engine")
    })
}

/// Loads a built plugin as the role `R` once per (name, role, settings)
/// for the whole run: `load::<Transform>("hostile", settings)`.
pub fn load<R: Role>(name: &str, settings: PluginSettings) -> Plugin<R> {
    load_any(name, R::KIND, settings)
        .into_role()
        .expect("loaded as its role")
}

/// Loads a built plugin as a `kind` plugin, once per (name, kind,
/// settings) for the whole run.
pub fn load_any(name: &str, kind: PluginKind, settings: PluginSettings) -> AnyPlugin {
    static LOADED: OnceLock<Mutex<HashMap<String, AnyPlugin>>> = OnceLock::new();
    let key = format!("{name}/{kind}/{settings:?}");
    let map = LOADED.get_or_init(Default::default);
    if let Some(p) = map.lock().unwrap().get(&key) {
        return p.clone();
    }
    let plugin = engine()
        .load_any(&plugin_path(name), kind, settings)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    map.lock().unwrap().insert(key, plugin.clone());
    plugin
}

pub fn raw(feed: &str, line: &str) -> RawRecord {
    RawRecord {
        data: line.as_bytes().to_vec(),
        source: Source {
            feed: feed.into(),
            shard: "shard-0".into(),
            sequence: "1".into(),
            partition_key: String::new(),
            arrival_time_ms: 0,
        },
    }
}

pub fn event(key: &str) -> Event {
    Event {
        dataset: "test".into(),
        partition_key: key.into(),
        event_time_ms: 1_795_420_800_000,
        fields: vec![Field {
            name: "n".into(),
            value: Value::Integer(1),
        }],
    }
}

/// Runs the pipehost binary with the test cache.
pub fn pipehost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .args(args)
        .current_dir(root())
        .env("PIPEHOST_CACHE_DIR", cache_dir())
        .env("PIPEHOST_PLUGIN_DIR", plugin_dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("run pipehost")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A spawned pipehost whose stderr lines are collected as they arrive.
pub struct Spawned {
    pub child: std::process::Child,
    pub stderr: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// Spawns `cmd` with piped stdout and stderr.
    pub fn spawn(mut cmd: Command) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self { child, stderr }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGTERM, then what the process left: its output and its stderr log.
    pub fn terminate(mut self) -> (Output, String) {
        signal(&self.child, "TERM");
        let mut stdout = Vec::new();
        if let Some(mut pipe) = self.child.stdout.take() {
            std::io::Read::read_to_end(&mut pipe, &mut stdout).unwrap();
        }
        let status = self.child.wait().unwrap();
        let log = self.stderr.lock().unwrap().join("\n");
        let out = Output {
            status,
            stdout,
            stderr: Vec::new(), // collected into the log
        };
        (out, log)
    }
}

/// Sends the signal `name` (`TERM`, `HUP`, …) to `child`, asserting that
/// it was delivered.
pub fn signal(child: &std::process::Child, name: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args([format!("-{name}").as_str(), &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid}: {sent}");
}

/// A test that fails (panics) before stopping its process must not leave
/// it running: it would hold its port and CPU for the rest of the run.
impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
