//! Loading: every shipped plugin loads as its world; anything else is
//! refused with an error naming the file, the world expected and what was
//! found.

use pipehost::plugin::{Generator, Parser, PluginError, PluginKind, PluginSettings, Transform};

use crate::util::{engine, load, load_any, plugin_path, raw};

const SHIPPED: [(&str, PluginKind); 9] = [
    ("forex_generator", PluginKind::Generator),
    ("forex_parser", PluginKind::Parser),
    ("forex_transform", PluginKind::Transform),
    ("stock_generator", PluginKind::Generator),
    ("stock_parser", PluginKind::Parser),
    ("stock_transform", PluginKind::Transform),
    ("news_generator", PluginKind::Generator),
    ("news_parser", PluginKind::Parser),
    ("news_transform", PluginKind::Transform),
];

#[test]
fn every_shipped_plugin_loads_as_its_world_and_starts() {
    for (name, kind) in SHIPPED {
        let plugin = load_any(name, kind, PluginSettings::default());
        assert_eq!(plugin.kind(), kind);
        assert_eq!(plugin.info().sha256().len(), 64);
        assert!(plugin.info().version().starts_with(&format!("{name}@")));
        plugin
            .check_init("{}")
            .unwrap_or_else(|e| panic!("{name} refused the empty config: {e}"));
    }
}

#[test]
fn a_plugin_of_another_world_is_refused_naming_both() {
    let path = plugin_path("forex_generator");
    let err = engine()
        .load::<Parser>(&path, PluginSettings::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{msg}");
    assert!(
        msg.contains("forex_generator.wasm"),
        "names the file: {msg}"
    );
    assert!(
        msg.contains("parser-plugin"),
        "names the expected world: {msg}"
    );
    assert!(
        msg.contains("generator-plugin") && msg.contains("pipehost:plugin/generator@0.2.0"),
        "names what was found: {msg}"
    );
}

/// Every shipped plugin asked for as either other role is refused at load
/// time, naming the world wanted and what it is; a loaded plugin is only
/// ever handed out as its own role.
#[test]
fn every_plugin_is_refused_as_another_role() {
    for (name, kind) in SHIPPED {
        for other in PluginKind::ALL.into_iter().filter(|k| *k != kind) {
            let err = engine()
                .load_any(&plugin_path(name), other, PluginSettings::default())
                .unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, PluginError::WrongWorld { .. }), "{msg}");
            assert!(
                msg.contains(&format!("{name}.wasm"))
                    && msg.contains(other.world())
                    && msg.contains(&format!("a {} plugin", kind.world())),
                "{name} as a {other}: {msg}"
            );
        }
        let plugin = load_any(name, kind, PluginSettings::default());
        assert_eq!(
            (
                plugin.clone().into_role::<Generator>().is_some(),
                plugin.clone().into_role::<Parser>().is_some(),
                plugin.into_role::<Transform>().is_some(),
            ),
            (
                kind == PluginKind::Generator,
                kind == PluginKind::Parser,
                kind == PluginKind::Transform,
            ),
            "{name} is handed out as a {kind} only"
        );
    }
}

#[test]
fn a_plugin_built_for_a_future_contract_version_is_refused() {
    let path = plugin_path("future_version");
    let err = engine()
        .load::<Transform>(&path, PluginSettings::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{msg}");
    assert!(
        msg.contains("pipehost:plugin/transformer@0.3.0")
            && msg.contains("built against contract version 0.3.0"),
        "names the plugin's version: {msg}"
    );
    assert!(
        msg.contains("0.2.0") && msg.contains("0.1.0"),
        "names the versions this host speaks: {msg}"
    );
}

#[test]
fn a_plugin_built_for_the_frozen_0_1_0_contract_loads_and_parses() {
    let plugin = load::<Parser>("legacy_parser", PluginSettings::default());
    assert_eq!(plugin.contract_version(), "0.1.0");
    assert_eq!(
        load::<Parser>("forex_parser", PluginSettings::default()).contract_version(),
        "0.2.0"
    );
    let mut inst = plugin.instantiate("{}").unwrap();
    let line = r#"{"pair":"EUR/USD","bid":1.0841,"ask":1.0843,"ts":"2026-11-23T08:00:00.123Z","venue":"EBS"}"#;
    let out = inst
        .parse(&[raw("forex", line), raw("forex", "{"), raw("forex", "")])
        .unwrap();
    assert_eq!(out.len(), 3);
    let events = out[0].as_ref().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].partition_key, "EUR/USD");
    assert_eq!(events[0].dataset, "forex");
    assert!(out[1].as_ref().unwrap_err().starts_with("invalid JSON"));
    assert_eq!(out[2].as_ref().unwrap_err(), "empty record");
    // A refused config is refused through the 0.1.0 `init` too.
    let err = plugin.instantiate(r#"{"dataset":""}"#).unwrap_err();
    assert!(matches!(err, PluginError::InitRejected { .. }), "{err}");
    // Asked for as a transform, it is refused naming what it is.
    let err = engine()
        .load::<Transform>(&plugin_path("legacy_parser"), PluginSettings::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a parser-plugin plugin (`pipehost:plugin/parser@0.1.0`)"),
        "{err}"
    );
}

#[test]
fn not_a_component_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    // The smallest valid core module: magic + version 1.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = engine()
        .load::<Parser>(&core, PluginSettings::default())
        .unwrap_err();
    assert!(matches!(err, PluginError::NotAComponent { .. }), "{err}");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");
    assert!(err.to_string().contains("core.wasm"), "{err}");

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"#!/bin/sh\necho not wasm\n").unwrap();
    let err = engine()
        .load::<Parser>(&garbage, PluginSettings::default())
        .unwrap_err();
    assert!(err.to_string().contains("not WebAssembly at all"), "{err}");

    // A real component cut in half (a partial write).
    let bytes = std::fs::read(plugin_path("forex_parser")).unwrap();
    let partial = dir.path().join("partial.wasm");
    std::fs::write(&partial, &bytes[..bytes.len() / 2]).unwrap();
    let err = engine()
        .load::<Parser>(&partial, PluginSettings::default())
        .unwrap_err();
    assert!(matches!(err, PluginError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("partial.wasm"), "{err}");

    let missing = dir.path().join("missing.wasm");
    let err = engine()
        .load::<Parser>(&missing, PluginSettings::default())
        .unwrap_err();
    assert!(matches!(err, PluginError::Read { .. }), "{err}");
}

#[test]
fn a_refused_or_crashing_init_is_a_load_time_error() {
    let plugin = load::<Transform>("hostile", PluginSettings::default());
    let err = plugin.instantiate(r#"{"init":"error"}"#).unwrap_err();
    assert!(matches!(err, PluginError::InitRejected { .. }), "{err}");
    assert!(err.to_string().contains("refused on purpose"), "{err}");

    let err = plugin.instantiate(r#"{"init":"trap"}"#).unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(
        err.to_string().contains("panicking in init"),
        "guest stderr is reported: {err}"
    );
}

#[test]
fn the_compiled_code_cache_is_hit_on_a_second_engine() {
    let dir = tempfile::tempdir().unwrap();
    let settings = pipehost::plugin::EngineSettings {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 4,
        ..Default::default()
    };
    let path = plugin_path("news_parser");
    let first = pipehost::plugin::PluginEngine::new(settings.clone()).unwrap();
    first
        .load::<Parser>(&path, PluginSettings::default())
        .unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "one cache entry written");
    // A second engine with the same settings loads from the cache; a corrupt
    // entry is discarded and recompiled rather than trusted.
    let entry = entries[0].as_ref().unwrap().path();
    let second = pipehost::plugin::PluginEngine::new(settings.clone()).unwrap();
    let p = second
        .load::<Parser>(&path, PluginSettings::default())
        .unwrap();
    p.instantiate("{}").unwrap();
    std::fs::write(&entry, b"corrupt").unwrap();
    let third = pipehost::plugin::PluginEngine::new(settings).unwrap();
    let p = third
        .load::<Parser>(&path, PluginSettings::default())
        .unwrap();
    p.instantiate("{}").unwrap();
    assert!(
        std::fs::metadata(&entry).unwrap().len() > 1000,
        "entry rewritten"
    );
}

/// The cache entry of the plugin whose SHA-256 is `sha256`.
fn cache_entry(dir: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(sha256))
        .unwrap_or_else(|| panic!("no cache entry for {sha256} in {}", dir.display()))
}

#[test]
fn a_cache_directory_others_can_write_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let settings = pipehost::plugin::EngineSettings {
        cache_dir: Some(dir.clone()),
        max_instances: 4,
        ..Default::default()
    };
    let first = pipehost::plugin::PluginEngine::new(settings.clone()).unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "created 0700");
    let settings_default = PluginSettings::default();
    let news = first
        .load::<Parser>(&plugin_path("news_parser"), settings_default.clone())
        .unwrap();
    let forex = first
        .load::<Parser>(&plugin_path("forex_parser"), settings_default.clone())
        .unwrap();
    // Someone who can write the directory puts other machine code (here the
    // forex parser's) under the news parser's name.
    let news_entry = cache_entry(&dir, news.sha256());
    std::fs::copy(cache_entry(&dir, forex.sha256()), &news_entry).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();

    let second = pipehost::plugin::PluginEngine::new(settings).unwrap();
    assert_eq!(second.cache_dir(), None, "the open directory is refused");
    let news = second
        .load::<Parser>(&plugin_path("news_parser"), settings_default)
        .unwrap();
    let line = r#"ts=2026-11-23T08:00:00Z id=n-1 source=AP symbols=AAPL headline="Up""#;
    let out = news
        .instantiate("{}")
        .unwrap()
        .parse(&[raw("news", line)])
        .unwrap();
    assert!(
        out[0].as_ref().is_ok_and(|evs| evs.len() == 1),
        "the news parser's own code ran, not the planted entry: {out:?}"
    );
}
