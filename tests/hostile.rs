//! Hostile plugins: each is stopped or capped and reported, the instance is
//! replaced transparently, and the host carries on serving other plugins.

use std::time::{Duration, Instant};

use pipehost::plugin::{
    Generator, Outcome, Parser, PluginError, PluginKind, PluginSettings, Tick, Transform,
    TransformInstance,
};

use crate::util::{event, load, load_any, plugin_dir, raw, root, wait_for};

fn settings() -> PluginSettings {
    PluginSettings {
        timeout: Duration::from_millis(300),
        memory_cap: 16 << 20,
        max_output_records: 10_000,
        ..PluginSettings::default()
    }
}

/// After a failure the same handle serves a good batch on a fresh instance.
fn assert_recovers(inst: &mut TransformInstance) {
    let out = inst
        .transform(&[event("fine"), event("also-fine")])
        .expect("a good batch after the failure");
    assert_eq!(out.len(), 2);
    assert!(matches!(&out[0], Outcome::Keep(e) if e.partition_key == "fine"));
}

#[test]
fn a_looping_plugin_is_stopped_at_its_deadline() {
    let plugin = load::<Transform>("hostile", settings());
    let mut inst = plugin.instantiate("{}").unwrap();
    let err = inst.transform(&[event("loop")]).unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    assert!(
        err.to_string().contains("hostile"),
        "names the plugin: {err}"
    );
    assert!(!inst.is_live(), "the interrupted instance was discarded");
    assert_recovers(&mut inst);
    let stats = inst.stats();
    assert_eq!(stats.failures, 1);
    assert_eq!(
        stats.instantiations, 2,
        "one fresh instance replaced the looping one"
    );
}

#[test]
fn a_plugin_allocating_past_its_cap_is_stopped() {
    let plugin = load::<Transform>("hostile", settings());
    let mut inst = plugin.instantiate("{}").unwrap();
    let err = inst.transform(&[event("alloc")]).unwrap_err();
    match &err {
        PluginError::MemoryCap { cap, wanted, .. } => {
            assert_eq!(*cap, 16 << 20);
            assert!(wanted > cap);
        }
        other => panic!("expected a memory-cap error, got {other}"),
    }
    assert!(err.to_string().contains("memory cap"), "{err}");
    assert_recovers(&mut inst);
}

#[test]
fn a_trapping_plugin_is_reported_with_its_panic_message_and_replaced() {
    let plugin = load::<Transform>("hostile", settings());
    let mut inst = plugin.instantiate("{}").unwrap();
    let err = inst.transform(&[event("trap")]).unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(
        err.to_string().contains("panicking on purpose"),
        "the guest's panic message (stderr) is in the report: {err}"
    );
    assert_recovers(&mut inst);
    assert_eq!(inst.stats().replacements, 1);
}

#[test]
fn enormous_output_is_refused() {
    let plugin = load::<Transform>("hostile", settings());
    let mut inst = plugin.instantiate("{}").unwrap();
    // 20 events x 1000 = 20,000 outputs, over the cap of 10,000.
    let batch: Vec<_> = (0..20).map(|_| event("huge")).collect();
    let err = inst.transform(&batch).unwrap_err();
    assert!(matches!(err, PluginError::OutputTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("20000 events"), "{err}");
    assert_recovers(&mut inst);
}

#[test]
fn a_log_flood_is_capped_and_counted() {
    // A generous deadline: 200,000 host calls take a while in a debug build.
    let plugin = load::<Transform>(
        "hostile",
        PluginSettings {
            timeout: Duration::from_secs(60),
            ..settings()
        },
    );
    let mut inst = plugin.instantiate("{}").unwrap();
    let out = inst
        .transform(&[event("flood")])
        .expect("flooding the log is not an error, only capped");
    assert_eq!(out.len(), 1);
    let dropped = inst.stats().log_messages_dropped;
    // 200,000 messages against a burst of 200: nearly all are dropped.
    assert!(dropped > 190_000, "dropped {dropped}");
}

#[test]
fn crash_loops_are_quarantined_then_retried() {
    let plugin = load::<Transform>("hostile", settings());
    let mut inst = plugin.instantiate("{}").unwrap();
    for _ in 0..5 {
        let err = inst.transform(&[event("trap")]).unwrap_err();
        assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    }
    let err = inst.transform(&[event("fine")]).unwrap_err();
    assert!(
        matches!(err, PluginError::Quarantined { failures: 5, .. }),
        "{err}"
    );
    assert_eq!(
        inst.stats().instantiations,
        5,
        "no instance made while quarantined"
    );
    // The quarantine ends on its own and the next good batch is served.
    assert!(
        wait_for(Duration::from_secs(5), || inst
            .transform(&[event("fine")])
            .is_ok()),
        "the plugin is retried after its quarantine"
    );
}

#[test]
fn other_plugins_keep_serving_while_one_misbehaves() {
    let slow = load::<Transform>(
        "hostile",
        PluginSettings {
            timeout: Duration::from_millis(1500),
            ..settings()
        },
    );
    let looping = std::thread::spawn(move || {
        let mut inst = slow.instantiate("{}").unwrap();
        inst.transform(&[event("loop")])
    });
    let parser = load::<Parser>("forex_parser", PluginSettings::default());
    let mut inst = parser.instantiate("{}").unwrap();
    let line = r#"{"pair":"EUR/USD","bid":1.0841,"ask":1.0843,"ts":"2026-11-23T08:00:00.123Z","venue":"EBS"}"#;
    let batch: Vec<_> = (0..100).map(|_| raw("forex", line)).collect();
    let mut served = 0;
    while !looping.is_finished() || served == 0 {
        let out = inst.parse(&batch).expect("the parser keeps serving");
        assert!(
            out.iter()
                .all(|r| r.as_ref().is_ok_and(|evs| evs.len() == 1))
        );
        served += 1;
    }
    let err = looping.join().unwrap().unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    assert!(served >= 1);
}

#[test]
fn malformed_columns_are_a_contract_error_and_the_host_carries_on() {
    let plugin = load::<Transform>("hostile", settings());
    let mut inst = plugin.instantiate("{}").unwrap();
    for (mode, problem) in [
        ("bad-name", "event 0: dataset index"),
        ("bad-span", "event 0: partition key span 0.."),
        ("bad-utf8-span", "cuts a UTF-8 character"),
        ("bad-text", "event 0, field `n`: text value span 0..100"),
        ("bad-kind", "event 0, field `n`: kind 9 is not a field kind"),
        (
            "bad-columns",
            "event columns differ in length: event-dataset has 2 entries but event-time has 1",
        ),
        ("bad-fields", "fields-end"),
        (
            "bad-count",
            "transform outcomes account for 3 events but 2 were returned",
        ),
        ("bad-outcome", "outcome 0: a keep yields 1 events, not 2"),
    ] {
        let err = inst.transform(&[event(mode), event("x")]).expect_err(mode);
        assert!(matches!(err, PluginError::Contract { .. }), "{mode}: {err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("hostile: broke the contract: "),
            "names the plugin: {msg}"
        );
        assert!(msg.contains(problem), "{mode}: {msg}");
        assert!(!inst.is_live(), "{mode}: the instance was discarded");
        assert_recovers(&mut inst);
    }
    assert_eq!(inst.stats().failures, 9);
}

/// How late past its deadline a stopped call may end: epoch ticks, a timer
/// wheel, a loaded debug build.
const MARGIN: Duration = Duration::from_millis(1500);

/// Runs `f`, asserting it fails with a timeout no later than `timeout` +
/// [`MARGIN`] and no earlier than the deadline.
fn assert_stopped_in_time<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, PluginError>,
) {
    let started = Instant::now();
    let err = f().expect_err(what);
    let took = started.elapsed();
    assert!(matches!(err, PluginError::Timeout { .. }), "{what}: {err}");
    assert!(err.to_string().contains("call deadline"), "{what}: {err}");
    assert!(
        took >= timeout && took <= timeout + MARGIN,
        "{what}: stopped after {took:?}, deadline {timeout:?}"
    );
}

#[test]
fn a_plugin_waiting_in_a_blocking_wasi_call_is_stopped_at_its_deadline() {
    let timeout = Duration::from_millis(300);
    let plugin = load::<Transform>("hostile", settings());
    let mut inst = plugin.instantiate("{}").unwrap();
    // `sleep`: std::thread::sleep, a clock subscription then `block`;
    // `poll`: `poll` on subscribe-instant and subscribe-duration an hour out.
    for mode in ["sleep", "poll"] {
        assert_stopped_in_time(mode, timeout, || inst.transform(&[event(mode)]));
        assert!(
            !inst.is_live(),
            "{mode}: the stopped instance was discarded"
        );
        assert_recovers(&mut inst);
    }
    assert_eq!(inst.stats().failures, 2);
}

#[test]
fn a_plugin_sleeping_in_init_or_generate_is_stopped_at_its_deadline() {
    let timeout = Duration::from_millis(300);
    for name in ["hostile", "hostile_generator"] {
        let kind = if name == "hostile" {
            PluginKind::Transform
        } else {
            PluginKind::Generator
        };
        let plugin = load_any(name, kind, settings());
        assert_stopped_in_time(name, timeout, || plugin.check_init(r#"{"init":"sleep"}"#));
        plugin.check_init("{}").expect("a fresh instance starts");
    }
    let plugin = load::<Generator>("hostile_generator", settings());
    let mut inst = plugin.instantiate("{}").unwrap();
    let tick = |count| Tick {
        seed: 1,
        number: 0,
        time_ms: 0,
        count,
    };
    assert_stopped_in_time("generate", timeout, || inst.generate(tick(8)));
    let out = inst.generate(tick(1)).expect("the next tick is served");
    assert_eq!(out.len(), 1);
}

/// A fixture for the hostile transform with one case keyed `mode`.
fn hostile_fixture(dir: &std::path::Path, mode: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{mode}.toml"));
    let text = format!(
        r#"plugin = "hostile"
world = "transform"

[[case]]
name = "{mode}"
input = [{{ dataset = "d", partition_key = "{mode}", event_time = 1795420800000, fields = {{ n = 1 }} }}]
expect = [{{ keep = {{ dataset = "d", partition_key = "{mode}", event_time = 2026-11-23T08:00:00Z, fields = {{ n = 1 }} }} }}]
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `pipehost test <fixture> --timeout-ms 1000`, killed if it is not
/// done within `limit`.
fn pipehost_test(fixture: &std::path::Path, limit: Duration) -> (Option<i32>, String, Duration) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pipehost"));
    cmd.args(["test", "--timeout-ms", "1000"])
        .arg(fixture)
        .current_dir(root())
        .env("PIPEHOST_CACHE_DIR", crate::util::cache_dir())
        .env("PIPEHOST_PLUGIN_DIR", plugin_dir())
        .env_remove("RUST_LOG");
    let started = Instant::now();
    let mut run = crate::util::Spawned::spawn(cmd);
    let done = wait_for(limit, || run.child.try_wait().unwrap().is_some());
    let took = started.elapsed();
    assert!(
        done,
        "pipehost test still running after {limit:?}: {}",
        run.log()
    );
    let code = run.child.wait().unwrap().code();
    let mut out = String::new();
    std::io::Read::read_to_string(run.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    (code, format!("{out}\n{}", run.log()), took)
}

#[test]
fn pipehost_test_on_a_sleeping_transform_fails_on_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = hostile_fixture(dir.path(), "sleep");
    let (code, out, took) = pipehost_test(&fixture, Duration::from_secs(60));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("call deadline"), "names the timeout: {out}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");
    // Start-up (a cached compile) plus one 1 s deadline.
    assert!(took < Duration::from_secs(20), "took {took:?}: {out}");
}

#[test]
fn plugin_log_lines_cannot_forge_host_log_lines_or_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = hostile_fixture(dir.path(), "forge-log");
    let (code, out, _) = pipehost_test(&fixture, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("FORGED"),
        "the plugin's message is logged: {out}"
    );
    assert!(
        out.contains("ok\\n2026-01-01T00:00:00Z ERROR pipehost: FORGED \\u{1b}[31m"),
        "escaped in place: {out}"
    );
    // (The host's own log formatter colours its output; the plugin's escape
    // sequence must not come through raw.)
    assert!(
        !out.contains("\x1b[31m"),
        "no raw escape from the plugin reaches the log: {out:?}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "no forged line: {out}"
    );
}

#[test]
fn huge_plugin_error_strings_are_capped_and_escaped() {
    let transform = load::<Transform>("hostile", settings());
    let err = transform
        .instantiate(r#"{"init":"huge-error"}"#)
        .unwrap_err();
    let generator = load::<Generator>("hostile_generator", settings());
    let init = generator
        .instantiate(r#"{"init":"huge-error"}"#)
        .unwrap_err();
    let mut inst = generator.instantiate("{}").unwrap();
    let tick = Tick {
        seed: 1,
        number: 0,
        time_ms: 0,
        count: 7,
    };
    let generate = inst.generate(tick).unwrap_err();
    assert!(
        matches!(generate, PluginError::GenerateFailed { .. }),
        "{generate}"
    );
    for err in [err, init, generate] {
        let msg = err.to_string();
        // 10 MiB from the plugin; a few KiB at most in the error.
        assert!(msg.len() < 4096, "{} bytes: {}", msg.len(), &msg[..200]);
        assert!(msg.contains("bytes cut]"), "says it was cut: {msg}");
        assert!(
            msg.contains(
                "hostile: refused\\n2026-01-01T00:00:00Z ERROR pipehost: FORGED \\u{1b}[31m"
            ),
            "escaped: {msg}"
        );
        assert!(
            !msg.chars().any(char::is_control),
            "no control characters: {msg:?}"
        );
    }
}

/// VmRSS of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn aliased_reasons_are_stopped_by_the_hostcall_copy_limit_and_memory_stays_flat() {
    let plugin = load::<Transform>(
        "hostile",
        PluginSettings {
            memory_cap: 64 << 20,
            timeout: Duration::from_secs(30),
            ..settings()
        },
    );
    let mut inst = plugin.instantiate("{}").unwrap();
    let before = rss();
    // 200,000 reasons x 16 MiB: 3.2 TB if each were copied.
    let err = inst.transform(&[event("alias")]).unwrap_err();
    let grew = rss().saturating_sub(before);
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(
        err.to_string().contains("fuel allocated for hostcalls"),
        "{err}"
    );
    assert!(grew < 256 << 20, "the host's memory grew by {grew} bytes");
    assert_recovers(&mut inst);
}
