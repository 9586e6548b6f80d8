//! Hostile plugins: each is stopped or capped and reported, the instance is
//! replaced transparently, and the host carries on serving other plugins.

use std::time::Duration;

use pipehost::plugin::{Outcome, PluginError, PluginKind, PluginSettings};

use crate::util::{event, load, raw, wait_for};

fn settings() -> PluginSettings {
    PluginSettings {
        timeout: Duration::from_millis(300),
        memory_cap: 16 << 20,
        max_output_records: 10_000,
        ..PluginSettings::default()
    }
}

/// After a failure the same handle serves a good batch on a fresh instance.
fn assert_recovers(inst: &mut pipehost::plugin::PluginInstance) {
    let out = inst
        .transform(&[event("fine"), event("also-fine")])
        .expect("a good batch after the failure");
    assert_eq!(out.len(), 2);
    assert!(matches!(&out[0], Outcome::Keep(e) if e.partition_key == "fine"));
}

#[test]
fn a_looping_plugin_is_stopped_at_its_deadline() {
    let plugin = load("hostile", PluginKind::Transform, settings());
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
    let plugin = load("hostile", PluginKind::Transform, settings());
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
    let plugin = load("hostile", PluginKind::Transform, settings());
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
    let plugin = load("hostile", PluginKind::Transform, settings());
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
    let plugin = load(
        "hostile",
        PluginKind::Transform,
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
    let plugin = load("hostile", PluginKind::Transform, settings());
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
    let slow = load(
        "hostile",
        PluginKind::Transform,
        PluginSettings {
            timeout: Duration::from_millis(1500),
            ..settings()
        },
    );
    let looping = std::thread::spawn(move || {
        let mut inst = slow.instantiate("{}").unwrap();
        inst.transform(&[event("loop")])
    });
    let parser = load(
        "forex_parser",
        PluginKind::Parser,
        PluginSettings::default(),
    );
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
    let plugin = load("hostile", PluginKind::Transform, settings());
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
