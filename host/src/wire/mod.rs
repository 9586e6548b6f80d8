//! The wire formats the stages share: the aggregated stream record
//! ([`aggregate`]: written by ingest and the feeds, unpacked by the
//! processor) and the queue message ([`message`]: written by the bridge,
//! read by the processor and `pipehost lambda`). Below both `runtime` and
//! `web`; imports only `plan` (limits) and `backend` (record types).

pub mod aggregate;
pub mod message;
