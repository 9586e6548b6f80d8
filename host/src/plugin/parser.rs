//! The parser role: a batch of raw records in, one result per record out,
//! the events in columns. A `0.1.0` parser's records and results are
//! converted by `legacy.rs`; the version is dispatched here, once per call.

use super::batch::{Event, EventBatch, Parsed, RawBatch, RawRecord};
use super::error::PluginError;
use super::instance::{PluginInstance, check_columns, check_output};
use super::legacy;
use super::role::{Parser, Plugin, Versioned};

/// A loaded parser.
pub type ParserPlugin = Plugin<Parser>;
/// A parser bound to its configuration: it can only parse.
pub type ParserInstance = PluginInstance<Parser>;

impl PluginInstance<Parser> {
    /// One result per record of `batch`, in order, with the events in
    /// columns. The answer is checked (see [`Parsed`]); a plugin that
    /// breaks the contract fails the call with [`PluginError::Contract`].
    pub fn parse_batch(&mut self, batch: &RawBatch) -> Result<Parsed, PluginError> {
        let n = batch.len();
        let answer = self.call(
            |store, guest| match guest {
                Versioned::Current(g) => g.call_parse(store, &batch.cols).map(Versioned::Current),
                Versioned::V0_1(g) => g
                    .call_parse(store, &legacy::raw_records(batch))
                    .map(Versioned::V0_1),
            },
            |answer, s| match answer {
                Versioned::Current(out) => check_columns(&out.events, &out.reasons, s),
                Versioned::V0_1(out) => {
                    let (events, bytes) = legacy::parsed_size(out);
                    check_output(events, "events", bytes, s)
                }
            },
        )?;
        let parsed = match answer {
            Versioned::Current(out) => EventBatch::check(out.events).and_then(|events| {
                Parsed::from_columns(events, out.record_events, out.rejected, out.reasons, n)
            }),
            Versioned::V0_1(out) => legacy::parsed(out, n),
        };
        parsed.map_err(|d| self.contract(d))
    }

    /// On owned records: one result per record, in order. Records of
    /// different feeds or shards go in separate calls (a raw batch has one
    /// of each). For fixtures and tests; the processor uses
    /// [`Self::parse_batch`].
    pub fn parse(
        &mut self,
        records: &[RawRecord],
    ) -> Result<Vec<Result<Vec<Event>, String>>, PluginError> {
        let batches = RawBatch::from_records(records);
        if batches.is_empty() {
            // Still one call: an empty batch is a valid request.
            return Ok(self.parse_batch(&RawBatch::new("", ""))?.to_results());
        }
        let mut out = Vec::with_capacity(records.len());
        for b in &batches {
            out.extend(self.parse_batch(b)?.to_results());
        }
        Ok(out)
    }
}
