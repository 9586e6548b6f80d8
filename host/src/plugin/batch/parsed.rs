//! A parser's answer, checked: [`Parsed`].

use std::ops::Range;

use super::events::EventBatch;
use super::owned::Event;

/// A parser's answer to a [`RawBatch`](super::RawBatch), checked: one
/// result per record, the `ok` counts adding up to `events.len()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub events: EventBatch,
    /// Per input record: `Ok(n)`, it yielded the next `n` events; or why it
    /// was rejected.
    pub results: Vec<Result<u32, String>>,
}

impl Parsed {
    /// Checks the columns of `parsed` (counts per record, rejections)
    /// against the `records` sent and the events returned.
    pub(crate) fn from_columns(
        events: EventBatch,
        record_events: Vec<u32>,
        rejected: Vec<u32>,
        reasons: Vec<String>,
        records: usize,
    ) -> Result<Self, String> {
        if record_events.len() != records {
            return Err(format!(
                "parse returned {} results for {records} records (must be one per record)",
                record_events.len()
            ));
        }
        if rejected.len() != reasons.len() {
            return Err(format!(
                "parse rejected {} records but gave {} reasons (must be one per rejection)",
                rejected.len(),
                reasons.len()
            ));
        }
        let mut results: Vec<Result<u32, String>> = record_events.into_iter().map(Ok).collect();
        let mut next = 0usize;
        for (index, reason) in rejected.into_iter().zip(reasons) {
            let i = index as usize;
            if i < next || i >= records {
                return Err(format!(
                    "rejected record {index} is out of order or out of range ({records} records)"
                ));
            }
            if results[i] != Ok(0) {
                return Err(format!(
                    "rejected record {index} claims {} events (a rejected record yields none)",
                    results[i].as_ref().unwrap_or(&0)
                ));
            }
            results[i] = Err(reason);
            next = i + 1;
        }
        Self::check(events, results, records)
    }

    /// Checks counts against the `records` sent and the events returned.
    pub(crate) fn check(
        events: EventBatch,
        results: Vec<Result<u32, String>>,
        records: usize,
    ) -> Result<Self, String> {
        if results.len() != records {
            return Err(format!(
                "parse returned {} results for {records} records (must be one per record)",
                results.len()
            ));
        }
        let claimed: u64 = results
            .iter()
            .map(|r| *r.as_ref().unwrap_or(&0) as u64)
            .sum();
        if claimed != events.len() as u64 {
            return Err(format!(
                "parse results account for {claimed} events but {} were returned",
                events.len()
            ));
        }
        Ok(Self { events, results })
    }

    /// Per record, the range of its events in `events` (or its reason).
    pub fn ranges(&self) -> impl ExactSizeIterator<Item = Result<Range<usize>, &str>> + '_ {
        let mut next = 0usize;
        self.results.iter().map(move |r| match r {
            Ok(n) => {
                let range = next..next + *n as usize;
                next = range.end;
                Ok(range)
            }
            Err(reason) => Err(reason.as_str()),
        })
    }

    /// Per record, its events owned, or its reason.
    pub fn to_results(&self) -> Vec<Result<Vec<Event>, String>> {
        self.ranges()
            .map(|r| match r {
                Ok(range) => Ok(range.map(|i| self.events.get(i).to_event()).collect()),
                Err(reason) => Err(reason.to_string()),
            })
            .collect()
    }
}
