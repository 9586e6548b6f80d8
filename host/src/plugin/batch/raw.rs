//! The raw records a parser is given: a [`RawBatch`] of one feed and
//! shard, built by the host, read through [`RawView`]s.

use pipehost_abi::to_u32;

use super::owned::RawRecord;
use super::push_end;
use super::wit;

/// A batch of raw records for a parser, all of one feed and shard.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBatch {
    pub(crate) cols: wit::RawBatch,
}

/// One record of a [`RawBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawView<'a> {
    pub data: &'a [u8],
    pub sequence: &'a str,
    pub partition_key: &'a str,
    pub arrival_time_ms: i64,
}

impl RawBatch {
    /// An empty batch of `feed`'s records from `shard`.
    pub fn new(feed: &str, shard: &str) -> Self {
        Self::with_capacity(feed, shard, 0, 0)
    }

    /// Like [`Self::new`], with room for `records` records of `bytes` bytes
    /// in all.
    pub fn with_capacity(feed: &str, shard: &str, records: usize, bytes: usize) -> Self {
        Self {
            cols: wit::RawBatch {
                feed: feed.to_string(),
                shard: shard.to_string(),
                data: Vec::with_capacity(bytes),
                text: String::with_capacity(records * 16),
                record_data_end: Vec::with_capacity(records),
                record_sequence_end: Vec::with_capacity(records),
                record_key_end: Vec::with_capacity(records),
                record_arrival_time: Vec::with_capacity(records),
            },
        }
    }

    /// Appends a record.
    pub fn push(&mut self, data: &[u8], sequence: &str, partition_key: &str, arrival_time_ms: i64) {
        let c = &mut self.cols;
        c.data.extend_from_slice(data);
        c.record_data_end.push(to_u32(c.data.len(), "data"));
        c.record_sequence_end.push(push_end(&mut c.text, sequence));
        c.record_key_end.push(push_end(&mut c.text, partition_key));
        c.record_arrival_time.push(arrival_time_ms);
    }

    /// Batches of owned records: one per run of records sharing feed and
    /// shard (a raw batch has one of each), in order.
    pub fn from_records(records: &[RawRecord]) -> Vec<RawBatch> {
        let mut out: Vec<RawBatch> = Vec::new();
        for r in records {
            let same = out
                .last()
                .is_some_and(|b| b.feed() == r.source.feed && b.shard() == r.source.shard);
            if !same {
                out.push(RawBatch::new(&r.source.feed, &r.source.shard));
            }
            out.last_mut().expect("just pushed").push(
                &r.data,
                &r.source.sequence,
                &r.source.partition_key,
                r.source.arrival_time_ms,
            );
        }
        out
    }

    pub fn feed(&self) -> &str {
        &self.cols.feed
    }

    pub fn shard(&self) -> &str {
        &self.cols.shard
    }

    pub fn len(&self) -> usize {
        self.cols.record_data_end.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.record_data_end.is_empty()
    }

    /// The records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RawView<'_>> + '_ {
        let c = &self.cols;
        let (mut data_start, mut text_start) = (0usize, 0usize);
        (0..self.len()).map(move |i| {
            let data_end = c.record_data_end[i] as usize;
            let seq_end = c.record_sequence_end[i] as usize;
            let key_end = c.record_key_end[i] as usize;
            let view = RawView {
                data: &c.data[data_start..data_end],
                sequence: &c.text[text_start..seq_end],
                partition_key: &c.text[seq_end..key_end],
                arrival_time_ms: c.record_arrival_time[i],
            };
            data_start = data_end;
            text_start = key_end;
            view
        })
    }
}
