//! pipehost: a plugin-driven market-data pipeline host.
//!
//! See ARCHITECTURE.md at the repository root for the map. In short:
//! [`plugin`] is the sandboxed WebAssembly plugin host (the only module that
//! knows wasmtime), [`event`] renders and compares plugin events, [`fixture`]
//! is `pipehost test`, and [`cli`] is the command line.

pub mod backend;
pub mod cli;
pub mod config;
pub mod event;
pub mod fixture;
pub mod plan;
pub mod plugin;
pub mod runtime;
pub mod web;
