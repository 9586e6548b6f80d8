//! pipehost's integration tests: one binary (see ripgrep's layout), with
//! modules per area and shared helpers in `util`.
//!
//! The plugins must be built for wasm32-wasip2 first (the README's test
//! command does that); `util::plugin_path` says how if they are missing.

#![deny(unsafe_code)]

mod util;

mod abuse;
mod architecture;
mod aws;
mod aws_faults;
mod cli;
mod conformance;
mod contract;
mod faults;
mod fixtures;
mod fuzz;
mod hostile;
mod lambda;
mod loading;
mod pipeline;
mod reload;
mod requestlog;
mod web;

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
