//! The transform role: a batch of events in columns in, one outcome per
//! event out, the output events in columns — ready for the next transform
//! as they are. A `0.1.0` transform's events and outcomes are converted by
//! `legacy.rs`; the version is dispatched here, once per call.

use super::batch::{Event, EventBatch, Outcome, Transformed};
use super::error::PluginError;
use super::instance::{PluginInstance, check_columns, check_output};
use super::legacy;
use super::role::{Plugin, Transform, Versioned};

/// A loaded transform.
pub type TransformPlugin = Plugin<Transform>;
/// A transform bound to its configuration: it can only transform.
pub type TransformInstance = PluginInstance<Transform>;

impl PluginInstance<Transform> {
    /// One outcome per event of `batch`, in order, with the output events
    /// in columns. The answer is checked (see [`Transformed`]); a plugin
    /// that breaks the contract fails the call with
    /// [`PluginError::Contract`].
    pub fn transform_batch(&mut self, batch: &EventBatch) -> Result<Transformed, PluginError> {
        let n = batch.len();
        let answer = self.call(
            |store, guest| match guest {
                Versioned::Current(g) => {
                    g.call_transform(store, &batch.cols).map(Versioned::Current)
                }
                Versioned::V0_1(g) => g
                    .call_transform(store, &legacy::events(batch))
                    .map(Versioned::V0_1),
            },
            |answer, s| match answer {
                Versioned::Current(out) => check_columns(&out.events, &out.reasons, s),
                Versioned::V0_1(out) => {
                    let (events, bytes) = legacy::transformed_size(out);
                    check_output(events, "events", bytes, s)
                }
            },
        )?;
        let transformed = match answer {
            Versioned::Current(out) => EventBatch::check(out.events).and_then(|events| {
                Transformed::from_columns(
                    events,
                    out.outcome_kind,
                    out.outcome_events,
                    out.reasons,
                    n,
                )
            }),
            Versioned::V0_1(out) => legacy::transformed(out, n),
        };
        transformed.map_err(|d| self.contract(d))
    }

    /// On owned events: one outcome per event, in order. For fixtures and
    /// tests; the processor uses [`Self::transform_batch`].
    pub fn transform(&mut self, events: &[Event]) -> Result<Vec<Outcome>, PluginError> {
        Ok(self
            .transform_batch(&EventBatch::from_events(events))?
            .to_outcomes())
    }
}
