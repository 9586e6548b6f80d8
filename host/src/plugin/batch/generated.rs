//! A generator's records for one tick, checked: [`GeneratedBatch`].

use std::collections::HashMap;

use pipehost_abi::{self as abi, to_u32};

use super::owned::Generated;
use super::wit;

/// A generator's records for one tick, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedBatch {
    pub(crate) cols: wit::GeneratedBatch,
}

impl GeneratedBatch {
    pub(crate) fn check(cols: wit::GeneratedBatch) -> Result<Self, String> {
        let (keys, data) = (cols.keys.len(), cols.data.len());
        abi::check_generated(keys, &cols.record_key, &cols.record_data_end, data)?;
        Ok(Self { cols })
    }

    /// Builds a batch from owned records.
    pub fn from_records(records: &[Generated]) -> Self {
        let mut keys: HashMap<&str, u32> = HashMap::new();
        let mut cols = wit::GeneratedBatch {
            keys: Vec::new(),
            data: Vec::new(),
            record_key: Vec::new(),
            record_data_end: Vec::new(),
        };
        for g in records {
            let key = *keys.entry(&g.partition_key).or_insert_with(|| {
                cols.keys.push(g.partition_key.clone());
                to_u32(cols.keys.len() - 1, "keys")
            });
            cols.data.extend_from_slice(&g.data);
            cols.record_key.push(key);
            cols.record_data_end.push(to_u32(cols.data.len(), "data"));
        }
        Self { cols }
    }

    pub fn len(&self) -> usize {
        self.cols.record_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.record_key.is_empty()
    }

    /// The records in order, as `(partition key, data)`.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        let mut start = 0usize;
        let c = &self.cols;
        (0..self.len()).map(move |i| {
            let end = c.record_data_end[i] as usize;
            let data = &c.data[start..end];
            start = end;
            (c.keys[c.record_key[i] as usize].as_str(), data)
        })
    }

    /// Total bytes of data.
    pub fn data_bytes(&self) -> usize {
        self.cols.data.len()
    }

    /// The records, owned.
    pub fn to_vec(&self) -> Vec<Generated> {
        self.iter()
            .map(|(k, d)| Generated {
                partition_key: k.to_string(),
                data: d.to_vec(),
            })
            .collect()
    }
}
