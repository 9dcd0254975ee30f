//! The `baton` binary's library: configuration, start-up, background jobs, the demo
//! county and the bench harness. `main.rs` is only the command line.

pub mod app;
pub mod bench;
pub mod bench_codes;
pub mod bench_imports;
pub mod bench_testing;
pub mod config;
pub mod demo;
pub mod jobs;
pub mod scratch;
pub mod sim;
