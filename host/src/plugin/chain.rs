//! A feed's parser and transforms over one raw batch, in columns.
//!
//! The parser's [`EventBatch`] goes into the first transform as it is, and
//! each transform's output into the next: no per-event structs in between.
//! Alongside the events the chain keeps, per event, the raw record it came
//! from (one `u32` each), and collects what was rejected on the way. The
//! caller drives it one stage at a time (so it can time each call):
//!
//! ```ignore
//! let mut chain = Chain::parse(&mut parser, &raw)?;
//! for (i, t) in transforms.iter_mut().enumerate() {
//!     chain.transform(t, i)?;
//! }
//! // chain.events, chain.origins, chain.rejected, chain.dropped
//! ```

use super::batch::{BatchOutcome, Event, EventBatch, RawBatch};
use super::error::PluginError;
use super::parser::ParserInstance;
use super::transform::TransformInstance;

/// Where in the chain a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Parse,
    /// The transform at this position of the chain.
    Transform(usize),
}

/// A record rejected by a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The record's index in the raw batch.
    pub record: u32,
    pub stage: Stage,
    pub reason: String,
    /// For a transform's `fail`, the event it refused.
    pub event: Option<Event>,
}

/// The state of a batch going through a chain.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// The events still in the chain.
    pub events: EventBatch,
    /// For each of `events`, the index of the raw record it came from.
    pub origins: Vec<u32>,
    /// Records rejected so far, in the order the stages reported them.
    pub rejected: Vec<Rejected>,
    /// Events filtered out on purpose by transforms.
    pub dropped: usize,
}

impl Chain {
    /// Parses `raw` with `parser`: the chain's first stage.
    pub fn parse(parser: &mut ParserInstance, raw: &RawBatch) -> Result<Self, PluginError> {
        let parsed = parser.parse_batch(raw)?;
        let mut chain = Chain {
            origins: Vec::with_capacity(parsed.events.len()),
            ..Chain::default()
        };
        for (i, r) in parsed.ranges().enumerate() {
            match r {
                Ok(range) => chain
                    .origins
                    .extend(std::iter::repeat_n(i as u32, range.len())),
                Err(reason) => chain.rejected.push(Rejected {
                    record: i as u32,
                    stage: Stage::Parse,
                    reason: reason.to_string(),
                    event: None,
                }),
            }
        }
        chain.events = parsed.events;
        Ok(chain)
    }

    /// Runs the chain's events through `transform`, the chain's
    /// `position`-th transform. Without events left it is not called.
    pub fn transform(
        &mut self,
        transform: &mut TransformInstance,
        position: usize,
    ) -> Result<(), PluginError> {
        if self.events.is_empty() {
            return Ok(());
        }
        let out = transform.transform_batch(&self.events)?;
        let mut origins = Vec::with_capacity(out.events.len());
        for (i, (range, outcome)) in out.ranges().enumerate() {
            let origin = self.origins[i];
            match outcome {
                BatchOutcome::Keep | BatchOutcome::Split(_) => {
                    origins.extend(std::iter::repeat_n(origin, range.len()))
                }
                BatchOutcome::Drop => self.dropped += 1,
                BatchOutcome::Fail(reason) => self.rejected.push(Rejected {
                    record: origin,
                    stage: Stage::Transform(position),
                    reason: reason.clone(),
                    event: Some(self.events.get(i).to_event()),
                }),
            }
        }
        self.events = out.events;
        self.origins = origins;
        Ok(())
    }
}
