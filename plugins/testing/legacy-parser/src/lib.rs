//! A forex parser built against the frozen contract `pipehost:plugin@0.1.0`
//! (`wit/deps/plugin-0.1.0/plugin.wit`), for the host's tests only: it
//! proves that a plugin of the previous contract still loads and runs, also
//! inside a chain of `0.2.0` plugins.
//!
//! It runs the shipped forex parser's logic (the very same `logic.rs`,
//! compiled into this crate), so its events must match `forex_parser`'s
//! exactly; only the boundary differs — one record of strings per event, as
//! `0.1.0` has it. (Depending on the `forex-parser` crate instead would link
//! its `0.2.0` exports into this component too.)

wit_bindgen::generate!({
    path: "../../../wit/deps/plugin-0.1.0/plugin.wit",
    world: "parser-plugin",
});

#[allow(dead_code)]
#[path = "../../../forex/parser/src/logic.rs"]
mod logic;

use exports::pipehost::plugin::parser::Guest;
use pipehost::plugin::host;
use pipehost::plugin::types as v1;
use pipehost_guest::types::{Event, RawRecord, Source, Value};
use pipehost_guest::{Instance, ParserPlugin, Plugin};

static INSTANCE: Instance<logic::Parser> = Instance::new();

fn to_v1(e: Event) -> v1::Event {
    v1::Event {
        dataset: e.dataset.to_string(),
        partition_key: e.partition_key,
        event_time_ms: e.event_time_ms,
        fields: e
            .fields
            .into_iter()
            .map(|f| v1::Field {
                name: f.name.to_string(),
                value: match f.value {
                    Value::Boolean(b) => v1::Value::Boolean(b),
                    Value::Integer(i) => v1::Value::Integer(i),
                    Value::Float(x) => v1::Value::Float(x),
                    Value::Text(s) => v1::Value::Text(s),
                    Value::TimestampMs(ms) => v1::Value::TimestampMs(ms),
                },
            })
            .collect(),
    }
}

struct Legacy;

impl Guest for Legacy {
    fn init() -> Result<(), String> {
        // The 0.1.0 `host.config`, not the SDK's (which imports 0.2.0).
        INSTANCE.set(logic::Parser::from_config_json(&host::config())?);
        Ok(())
    }

    fn parse(batch: Vec<v1::RawRecord>) -> Vec<Result<Vec<v1::Event>, String>> {
        let parser =
            match INSTANCE.get_or_try_init(|| logic::Parser::from_config_json(&host::config())) {
                Ok(p) => p,
                Err(reason) => return batch.iter().map(|_| Err(reason.clone())).collect(),
            };
        let records: Vec<RawRecord<'_>> = batch
            .iter()
            .map(|r| RawRecord {
                data: &r.data,
                source: Source {
                    feed: &r.source.feed,
                    shard: &r.source.shard,
                    sequence: &r.source.sequence,
                    partition_key: &r.source.partition_key,
                    arrival_time_ms: r.source.arrival_time_ms,
                },
            })
            .collect();
        parser
            .parse(&records)
            .into_iter()
            .map(|r| r.map(|events| events.into_iter().map(to_v1).collect()))
            .collect()
    }
}

export!(Legacy);
