//! The processing step (the Lambda role), for one batch message: unpack
//! aggregated records into one record per line (sub-sequence `<seq>:<i>`),
//! route each record to its feed, parse, run the transform chain, and lay
//! the result out as objects — events as JSON Lines under keys derived from
//! their input, rejected records under the error prefix with the reason, the
//! plugin, its version and the original bytes.
//!
//! Unpacking happens here, not in the bridge, so the queue message carries
//! the stream's records as they are (compact: one base64 payload per
//! aggregate instead of a JSON record per line), the batch stays
//! `[first_seq, last_seq]` of whole stream records, and a corrupt aggregate
//! is reported like any other bad record: under the error prefix, raw.
//!
//! A feed's records go through its chain in columns (`plugin::Chain`): the
//! parser's event batch into the first transform, each transform's into the
//! next, and the last one is written out as JSON Lines directly
//! (`event::LineWriter`), with no per-event structs or JSON values.
//!
//! Plain synchronous code: a worker owns its plugin instances and calls
//! this on a blocking thread. A plugin call failure (trap, deadline, memory
//! cap) fails that feed's records: the other feeds' objects are laid out
//! and stored, and the batch is not deleted, so the queue redelivers it
//! (rewriting the same objects, notified once) and, past `max_receives`,
//! moves it to the dead-letter queue. An event whose dataset cannot name
//! an object (`..`, a `/`) goes to the error prefix, not the batch.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value as Json, json};

use crate::backend::PutObject;
use crate::event::{LineWriter, event_to_json, format_ms, write_json_str};
use crate::plan::{KeyParts, KeyTemplate};
use crate::plugin::{
    Chain, Event, ParserInstance, PluginError, PluginInfo, RawBatch, Stage, TransformInstance,
};
use crate::wire::message::{BatchMessage, MessageRecord};

/// A feed's parser and transform chain, owned by one worker.
pub struct FeedPlugins {
    pub parser: ParserInstance,
    pub transforms: Vec<TransformInstance>,
}

impl FeedPlugins {
    /// `name@hash` of every plugin in the chain, comma-separated.
    pub fn versions(&self) -> String {
        std::iter::once(self.parser.plugin().version())
            .chain(self.transforms.iter().map(|t| t.plugin().version()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Data,
    Errors,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Errors => "errors",
        }
    }
}

/// An object to store, with what its notification says.
#[derive(Debug, Clone)]
pub struct OutputObject {
    pub put: PutObject,
    pub kind: ObjectKind,
    pub dataset: String,
    pub records: usize,
    pub plugin_versions: String,
}

/// The result of processing one message.
#[derive(Debug, Default)]
pub struct ProcessedBatch {
    pub objects: Vec<OutputObject>,
    pub records_in: usize,
    pub events_out: usize,
    pub dropped: usize,
    pub error_records: usize,
    /// Feeds whose plugins failed (a trap, the deadline, the memory cap):
    /// their records are in no object, and the batch must come back.
    pub failed: Vec<ProcessError>,
}

/// Why a batch could not be processed (it will be retried).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("feed {feed}: {source}")]
    Plugin {
        feed: String,
        #[source]
        source: PluginError,
    },
}

impl ProcessError {
    /// The plugin error's kind ([`PluginError::kind`]), for logs and stats.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Plugin { source, .. } => source.kind(),
        }
    }
}

/// Output layout settings.
#[derive(Debug, Clone)]
pub struct Layout {
    pub key_template: KeyTemplate,
    pub error_prefix: String,
    pub gzip: bool,
}

impl Layout {
    pub fn of(store: &crate::plan::StorePlan) -> Self {
        Self {
            key_template: store.key_template.clone(),
            error_prefix: store.error_prefix.clone(),
            gzip: store.gzip,
        }
    }
}

/// An object being laid out: its lines, already JSON, not yet encoded.
struct PendingObject {
    dataset: String,
    versions: String,
    body: Vec<u8>,
    lines: usize,
}

/// A rejected record, as written under the error prefix.
struct ErrorLine {
    feed: String,
    arrival_ms: i64,
    json: Json,
}

fn original(r: &MessageRecord) -> (&'static str, Json) {
    match (&r.data, &r.b64) {
        (Some(s), _) => ("data", Json::String(s.clone())),
        (None, Some(b)) => ("data_base64", Json::String(b.clone())),
        _ => ("data", Json::Null),
    }
}

fn error_line(
    msg: &BatchMessage,
    r: &MessageRecord,
    stage: &str,
    reason: &dyn std::fmt::Display,
    plugin: Option<&PluginInfo>,
    event: Option<&Event>,
) -> ErrorLine {
    let (feed, key) = r.feed_and_key();
    let (data_key, data) = original(r);
    let mut obj = json!({
        "stage": stage,
        "reason": reason.to_string(),
        "plugin": plugin.map(|p| p.name().to_string()),
        "plugin_version": plugin.map(|p| p.version()),
        // Where the record came from, under `source` as in events (which
        // carry `feed`, `shard`, `sequence` and their `part` there).
        "source": {
            "feed": feed,
            "shard": msg.shard,
            "sequence": r.seq,
            "partition_key": key,
            "arrival_time": format_ms(r.t),
        },
    });
    obj[data_key] = data;
    if let Some(e) = event {
        obj["event"] = event_to_json(e);
    }
    ErrorLine {
        feed: feed.to_string(),
        arrival_ms: r.t,
        json: obj,
    }
}

fn json_lines(lines: &[Json]) -> Vec<u8> {
    let mut text = Vec::with_capacity(lines.len() * 200);
    for l in lines {
        serde_json::to_writer(&mut text, l).expect("JSON values serialize");
        text.push(b'\n');
    }
    text
}

fn encode(text: Vec<u8>, gzip: bool) -> (Vec<u8>, Option<String>) {
    if !gzip {
        return (text, None);
    }
    let mut enc = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::fast());
    enc.write_all(&text).expect("writing to memory");
    (
        enc.finish().expect("writing to memory"),
        Some("gzip".into()),
    )
}

fn object(
    key: String,
    kind: ObjectKind,
    o: PendingObject,
    layout: &Layout,
    msg: &BatchMessage,
) -> OutputObject {
    let (body, encoding) = encode(o.body, layout.gzip);
    let (lines, dataset, versions) = (o.lines, o.dataset, o.versions);
    let suffix = if layout.gzip { ".jsonl.gz" } else { ".jsonl" };
    let mut metadata = BTreeMap::new();
    metadata.insert("record-count".into(), lines.to_string());
    metadata.insert("dataset".into(), dataset.clone());
    metadata.insert("plugin-versions".into(), versions.clone());
    metadata.insert("kind".into(), kind.as_str().into());
    metadata.insert("source".into(), format!("{}/{}", msg.stream, msg.shard));
    metadata.insert("first-seq".into(), msg.first_seq.clone());
    metadata.insert("last-seq".into(), msg.last_seq.clone());
    OutputObject {
        put: PutObject {
            key: format!("{key}{suffix}"),
            body,
            content_type: "application/x-ndjson".into(),
            content_encoding: encoding,
            metadata,
        },
        kind,
        dataset,
        records: lines,
        plugin_versions: versions,
    }
}

/// Parses `raw` with the feed's parser and runs the transforms.
fn run_chain(plugins: &mut FeedPlugins, feed: &str, raw: &RawBatch) -> Result<Chain, ProcessError> {
    let plugin_error = |source| ProcessError::Plugin {
        feed: feed.to_string(),
        source,
    };
    let started = std::time::Instant::now();
    let chain = Chain::parse(&mut plugins.parser, raw);
    crate::telemetry::metrics::plugin_call("parser", feed, started);
    let mut chain = chain.map_err(plugin_error)?;
    for (position, t) in plugins.transforms.iter_mut().enumerate() {
        if chain.events.is_empty() {
            break;
        }
        let started = std::time::Instant::now();
        let result = chain.transform(t, position);
        crate::telemetry::metrics::plugin_call("transform", feed, started);
        result.map_err(plugin_error)?;
    }
    Ok(chain)
}

/// Why a dataset name from a plugin cannot name objects, if it cannot: it
/// becomes part of every key, so it must be one path segment of plain
/// characters.
fn dataset_problem(dataset: &str) -> Option<String> {
    let why = if dataset.is_empty() {
        "is empty"
    } else if dataset == "." || dataset == ".." {
        "is a relative path segment"
    } else if dataset.contains('/') {
        "contains '/'"
    } else if dataset.chars().any(char::is_control) {
        "contains a control character"
    } else if dataset.len() > 256 {
        "is longer than 256 bytes"
    } else {
        return None;
    };
    Some(format!(
        "dataset {dataset:?} {why}: a dataset name is one segment of the object key"
    ))
}

/// Processes one batch with `feeds` (by feed name). A feed whose plugin
/// fails is listed in [`ProcessedBatch::failed`]; the other feeds' objects
/// are laid out all the same.
pub fn process(
    msg: &BatchMessage,
    feeds: &mut HashMap<String, FeedPlugins>,
    layout: &Layout,
) -> Result<ProcessedBatch, ProcessError> {
    let mut batch = Batch::new(msg, layout);
    let records = batch.unpack();
    let mut failed_feeds: Vec<&str> = Vec::new();
    for (feed, indices) in by_feed(&records) {
        let share = FeedRecords {
            feed,
            records: &records,
            indices: &indices,
        };
        let Some(plugins) = feeds.get_mut(feed) else {
            batch.unrouted(&share);
            continue;
        };
        if let Err(e) = batch.run_feed(plugins, &share) {
            // This feed's records wait for a redelivery; the other
            // feeds' objects are stored all the same.
            batch.out.failed.push(e);
            failed_feeds.push(feed);
        }
    }
    batch.lay_out_data_objects();
    batch.lay_out_error_objects(feeds, &failed_feeds);
    Ok(batch.out)
}

/// Routes records to feeds, keeping stream order within each feed.
fn by_feed<'r>(records: &'r [Cow<'_, MessageRecord>]) -> BTreeMap<&'r str, Vec<usize>> {
    let mut by_feed: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        by_feed.entry(r.feed_and_key().0).or_default().push(i);
    }
    by_feed
}

/// One feed's share of a batch's records: `indices` into `records`, in
/// stream order.
struct FeedRecords<'a, 'm> {
    feed: &'a str,
    records: &'a [Cow<'m, MessageRecord>],
    indices: &'a [usize],
}

/// What one batch builds up while its feeds run: the counts, the error
/// lines and the data objects, laid out as objects at the end.
struct Batch<'m> {
    msg: &'m BatchMessage,
    layout: &'m Layout,
    out: ProcessedBatch,
    errors: Vec<ErrorLine>,
    /// Data objects in order of creation; `by_key` orders them by key.
    objects: Vec<PendingObject>,
    by_key: BTreeMap<String, usize>,
}

impl<'m> Batch<'m> {
    fn new(msg: &'m BatchMessage, layout: &'m Layout) -> Self {
        Self {
            msg,
            layout,
            out: ProcessedBatch::default(),
            errors: Vec::new(),
            objects: Vec::new(),
            by_key: BTreeMap::new(),
        }
    }

    /// One record per line: aggregates unpacked in place, so stream order
    /// (and the sub-sequence order within an aggregate) is kept.
    fn unpack(&mut self) -> Vec<Cow<'m, MessageRecord>> {
        let msg = self.msg;
        let mut records = Vec::with_capacity(msg.records.len());
        for r in &msg.records {
            match r.unpack() {
                Ok(None) => records.push(Cow::Borrowed(r)),
                Ok(Some(lines)) => records.extend(lines.into_iter().map(Cow::Owned)),
                Err(reason) => {
                    // Counted as the lines its header claims, as the bridge did.
                    self.out.records_in += r
                        .bytes()
                        .map_or(1, |b| crate::wire::aggregate::lines_in(&b));
                    self.errors
                        .push(error_line(msg, r, "unpack", &reason, None, None));
                }
            }
        }
        self.out.records_in += records.len();
        records
    }

    /// Records of a feed the pipeline does not have go to the error prefix.
    fn unrouted(&mut self, feed: &FeedRecords<'_, '_>) {
        let reason = format!("no feed named {:?} in the pipeline", feed.feed);
        for &i in feed.indices {
            let r = &feed.records[i];
            self.errors
                .push(error_line(self.msg, r, "route", &reason, None, None));
        }
    }

    /// Decodes a feed's records, runs its chain and lays out the events;
    /// a plugin failure is returned, with nothing of the feed laid out
    /// but the error lines (which are dropped at the end).
    fn run_feed(
        &mut self,
        plugins: &mut FeedPlugins,
        feed: &FeedRecords<'_, '_>,
    ) -> Result<(), ProcessError> {
        let (raw, raw_index) = self.decode(feed);
        let chain = run_chain(plugins, feed.feed, &raw)?;
        drop(raw);
        self.out.dropped += chain.dropped;
        self.rejected(plugins, feed, &raw_index, &chain);
        self.lay_out_events(plugins, feed, &raw_index, &chain);
        Ok(())
    }

    /// The feed's records as the parser's input; `raw_index` maps a raw
    /// record back to its index in `records`.
    fn decode(&mut self, feed: &FeedRecords<'_, '_>) -> (RawBatch, Vec<usize>) {
        let n = feed.indices.len();
        let mut raw = RawBatch::with_capacity(feed.feed, &self.msg.shard, n, 0);
        let mut raw_index = Vec::with_capacity(n);
        for &i in feed.indices {
            let r = &feed.records[i];
            match r.bytes() {
                Ok(data) => {
                    raw.push(&data, &r.seq, r.feed_and_key().1, r.t);
                    raw_index.push(i);
                }
                Err(reason) => {
                    self.errors
                        .push(error_line(self.msg, r, "decode", &reason, None, None));
                }
            }
        }
        (raw, raw_index)
    }

    /// Error lines for the records the chain's plugins rejected.
    fn rejected(
        &mut self,
        plugins: &FeedPlugins,
        feed: &FeedRecords<'_, '_>,
        raw_index: &[usize],
        chain: &Chain,
    ) {
        for rejected in &chain.rejected {
            let (stage, plugin) = match rejected.stage {
                Stage::Parse => ("parse", plugins.parser.plugin().info()),
                Stage::Transform(k) => ("transform", plugins.transforms[k].plugin().info()),
            };
            self.errors.push(error_line(
                self.msg,
                &feed.records[raw_index[rejected.record as usize]],
                stage,
                &rejected.reason,
                Some(plugin),
                rejected.event.as_ref(),
            ));
        }
    }

    /// Lay out: part numbers count the outputs of each source record.
    /// Keys depend on the dataset and the hour of the event time only,
    /// so each (dataset, hour) is rendered once.
    fn lay_out_events(
        &mut self,
        plugins: &FeedPlugins,
        feed: &FeedRecords<'_, '_>,
        raw_index: &[usize],
        chain: &Chain,
    ) {
        let (msg, versions) = (self.msg, plugins.versions());
        let mut parts = vec![0u32; raw_index.len()];
        let mut slots: HashMap<(u32, i64), usize> = HashMap::new();
        let mut writer = LineWriter::new(&chain.events);
        let mut bad_dataset: HashMap<u32, Option<String>> = HashMap::new();
        for (event, &origin) in chain.events.iter().zip(&chain.origins) {
            let r = &feed.records[raw_index[origin as usize]];
            let bad = bad_dataset
                .entry(event.dataset_index())
                .or_insert_with(|| dataset_problem(event.dataset()));
            if let Some(reason) = bad {
                let plugin = match plugins.transforms.last() {
                    Some(t) => t.plugin().info(),
                    None => plugins.parser.plugin().info(),
                };
                let e = event.to_event();
                let line = error_line(msg, r, "layout", reason, Some(plugin), Some(&e));
                self.errors.push(line);
                continue;
            }
            let hour = event
                .event_time_ms()
                .div_euclid(KeyTemplate::GRANULARITY_MS);
            let slot = *slots
                .entry((event.dataset_index(), hour))
                .or_insert_with(|| {
                    self.data_object(event.dataset(), event.event_time_ms(), &versions)
                });
            let object = &mut self.objects[slot];
            let body = &mut object.body;
            writer.write_event(body, &event);
            body.extend_from_slice(b",\"source\":{\"feed\":");
            write_json_str(body, feed.feed);
            body.extend_from_slice(b",\"part\":");
            let part = &mut parts[origin as usize];
            write!(body, "{part}").expect("writing to memory");
            *part += 1;
            body.extend_from_slice(b",\"sequence\":");
            write_json_str(body, &r.seq);
            body.extend_from_slice(b",\"shard\":");
            write_json_str(body, &msg.shard);
            body.extend_from_slice(b"}}\n");
            object.lines += 1;
            self.out.events_out += 1;
        }
    }

    /// The slot of the data object for `dataset` at `event_time_ms`: its
    /// key rendered, and the object made if this batch has none under it.
    fn data_object(&mut self, dataset: &str, event_time_ms: i64, versions: &str) -> usize {
        let key = self.layout.key_template.render(&KeyParts {
            dataset,
            event_time_ms,
            shard: &self.msg.shard,
            first_seq: &self.msg.first_seq,
        });
        *self.by_key.entry(key).or_insert_with(|| {
            self.objects.push(PendingObject {
                dataset: dataset.to_string(),
                versions: versions.to_string(),
                body: Vec::new(),
                lines: 0,
            });
            self.objects.len() - 1
        })
    }

    /// The data objects, in key order.
    fn lay_out_data_objects(&mut self) {
        let mut objects: Vec<Option<PendingObject>> = std::mem::take(&mut self.objects)
            .into_iter()
            .map(Some)
            .collect();
        for (key, slot) in std::mem::take(&mut self.by_key) {
            let o = objects[slot].take().expect("one key per object");
            let o = object(key, ObjectKind::Data, o, self.layout, self.msg);
            self.out.objects.push(o);
        }
    }

    /// The error objects, in key order: one per feed and arrival hour.
    fn lay_out_error_objects(
        &mut self,
        feeds: &HashMap<String, FeedPlugins>,
        failed_feeds: &[&str],
    ) {
        let (msg, layout) = (self.msg, self.layout);
        let mut errors = std::mem::take(&mut self.errors);
        // A failed feed's error lines are written when its records are, or
        // its error object would change (and be notified again) on redelivery.
        errors.retain(|e| !failed_feeds.contains(&e.feed.as_str()));
        self.out.error_records = errors.len();
        let mut by_key: BTreeMap<String, (String, Vec<Json>)> = BTreeMap::new();
        for e in errors {
            let key = format!(
                "{}{}",
                layout.error_prefix,
                layout.key_template.render(&KeyParts {
                    dataset: &e.feed,
                    event_time_ms: e.arrival_ms,
                    shard: &msg.shard,
                    first_seq: &msg.first_seq,
                })
            );
            by_key
                .entry(key)
                .or_insert_with(|| (e.feed.clone(), Vec::new()))
                .1
                .push(e.json);
        }
        for (key, (feed, lines)) in by_key {
            let versions = feeds
                .get(feed.as_str())
                .map(FeedPlugins::versions)
                .unwrap_or_default();
            let o = PendingObject {
                body: json_lines(&lines),
                lines: lines.len(),
                dataset: feed,
                versions,
            };
            let o = object(key, ObjectKind::Errors, o, layout, msg);
            self.out.objects.push(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dataset_problem;

    #[test]
    fn dataset_names_must_be_one_plain_key_segment() {
        for ok in ["forex", "fx.quotes", "a-b_c", "dataset=1"] {
            assert_eq!(dataset_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "is empty"),
            ("..", "relative path segment"),
            (".", "relative path segment"),
            ("a/b", "contains '/'"),
            ("a\nb", "control character"),
        ] {
            let reason = dataset_problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(reason.contains(why), "{reason}");
            assert!(
                reason.contains(&format!("{bad:?}")),
                "names the dataset: {reason}"
            );
        }
        assert!(dataset_problem(&"x".repeat(257)).is_some());
    }
}
