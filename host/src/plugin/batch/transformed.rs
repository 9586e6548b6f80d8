//! A transform's answer, checked: [`Transformed`] and its
//! [`BatchOutcome`]s.

use std::ops::Range;

use pipehost_abi::{self as abi, outcome_kind};

use super::events::EventBatch;
use super::owned::Outcome;

/// What became of one input event, in a [`Transformed`] batch: `Keep` and
/// `Split(n)` consume the next 1 and `n` events of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    Keep,
    Drop,
    Split(u32),
    Fail(String),
}

/// A transform's answer to an [`EventBatch`], checked: one outcome per
/// input event, `keep`s and `split`s consuming exactly `events`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transformed {
    pub events: EventBatch,
    pub outcomes: Vec<BatchOutcome>,
}

impl Transformed {
    /// Checks the columns of `transformed` (a code and a count per input
    /// event, a reason per failure) and turns them into outcomes.
    pub(crate) fn from_columns(
        events: EventBatch,
        kinds: Vec<u8>,
        counts: Vec<u32>,
        reasons: Vec<String>,
        inputs: usize,
    ) -> Result<Self, String> {
        if kinds.len() != inputs || counts.len() != inputs {
            return Err(format!(
                "transform returned {} outcome kinds and {} counts for {inputs} events (must be one each per event)",
                kinds.len(),
                counts.len()
            ));
        }
        let mut reasons = reasons.into_iter();
        let mut outcomes = Vec::with_capacity(inputs);
        for (i, (k, n)) in kinds.into_iter().zip(counts).enumerate() {
            abi::outcome_events(k, n).map_err(|p| format!("outcome {i}: {p}"))?;
            outcomes.push(match k {
                outcome_kind::KEEP => BatchOutcome::Keep,
                outcome_kind::DROP => BatchOutcome::Drop,
                outcome_kind::SPLIT => BatchOutcome::Split(n),
                _ => BatchOutcome::Fail(reasons.next().ok_or_else(|| {
                    format!("outcome {i}: a fail without a reason (too few reasons)")
                })?),
            });
        }
        abi::all_used(0, reasons.len(), "reasons", "fail outcome")?;
        Self::check(events, outcomes, inputs)
    }

    pub(crate) fn check(
        events: EventBatch,
        outcomes: Vec<BatchOutcome>,
        inputs: usize,
    ) -> Result<Self, String> {
        if outcomes.len() != inputs {
            return Err(format!(
                "transform returned {} outcomes for {inputs} events (must be one per event)",
                outcomes.len()
            ));
        }
        let claimed: u64 = outcomes.iter().map(|o| outcome_events(o) as u64).sum();
        if claimed != events.len() as u64 {
            return Err(format!(
                "transform outcomes account for {claimed} events but {} were returned",
                events.len()
            ));
        }
        Ok(Self { events, outcomes })
    }

    /// Per input event, the range of its output events (empty for `drop`
    /// and `fail`) and its outcome.
    pub fn ranges(&self) -> impl ExactSizeIterator<Item = (Range<usize>, &BatchOutcome)> + '_ {
        let mut next = 0usize;
        self.outcomes.iter().map(move |o| {
            let range = next..next + outcome_events(o) as usize;
            next = range.end;
            (range, o)
        })
    }

    /// The outcomes, owned.
    pub fn to_outcomes(&self) -> Vec<Outcome> {
        self.ranges()
            .map(|(range, o)| match o {
                BatchOutcome::Keep => Outcome::Keep(self.events.get(range.start).to_event()),
                BatchOutcome::Split(_) => {
                    Outcome::Split(range.map(|i| self.events.get(i).to_event()).collect())
                }
                BatchOutcome::Drop => Outcome::Drop,
                BatchOutcome::Fail(reason) => Outcome::Fail(reason.clone()),
            })
            .collect()
    }
}

/// How many output events an outcome consumes.
pub(crate) fn outcome_events(o: &BatchOutcome) -> u32 {
    match o {
        BatchOutcome::Keep => 1,
        BatchOutcome::Split(n) => *n,
        BatchOutcome::Drop | BatchOutcome::Fail(_) => 0,
    }
}
