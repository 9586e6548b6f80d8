//! The generator role: a tick in, that tick's records out in columns. A
//! `0.1.0` generator's records are converted by `legacy.rs`; the version is
//! dispatched here, once per call.

use super::batch::{GeneratedBatch, Tick};
use super::error::{GUEST_ERROR_BYTES, PluginError};
use super::guest_log::guest_text;
use super::instance::{PluginInstance, check_output};
use super::legacy;
use super::role::{Generator, Plugin, Versioned};

/// A loaded generator.
pub type GeneratorPlugin = Plugin<Generator>;
/// A generator bound to its configuration: it can only generate.
pub type GeneratorInstance = PluginInstance<Generator>;

impl PluginInstance<Generator> {
    /// The records for one tick. A plugin's own refusal is
    /// [`PluginError::GenerateFailed`].
    pub fn generate(&mut self, tick: Tick) -> Result<GeneratedBatch, PluginError> {
        let answer = self.call(
            |store, guest| match guest {
                Versioned::Current(g) => g.call_generate(store, tick).map(Versioned::Current),
                Versioned::V0_1(g) => g
                    .call_generate(store, legacy::tick(tick))
                    .map(Versioned::V0_1),
            },
            |answer, s| match answer {
                Versioned::Current(Ok(b)) => {
                    let records = b.record_key.len().max(b.record_data_end.len());
                    let keys: usize = b.keys.iter().map(String::len).sum();
                    check_output(records, "records", b.data.len() + keys, s)
                }
                Versioned::V0_1(Ok(records)) => {
                    let (records, bytes) = legacy::generated_size(records);
                    check_output(records, "records", bytes, s)
                }
                Versioned::Current(Err(_)) | Versioned::V0_1(Err(_)) => Ok(()),
            },
        )?;
        let records = match answer {
            Versioned::Current(out) => match out {
                Ok(cols) => Ok(GeneratedBatch::check(cols).map_err(|d| self.contract(d))?),
                Err(reason) => Err(reason),
            },
            Versioned::V0_1(out) => out.map(legacy::generated),
        };
        records.map_err(|reason| PluginError::GenerateFailed {
            plugin: self.plugin().name().to_string(),
            reason: guest_text(&reason, GUEST_ERROR_BYTES),
        })
    }
}
