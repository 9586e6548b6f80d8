//! What the process tells about itself: the pipeline's counters and status
//! line ([`stats`]) and the one Prometheus recorder ([`metrics`]). Below
//! both `runtime` and `web`; imports nothing from the rest of the crate.

pub mod metrics;
pub mod stats;
