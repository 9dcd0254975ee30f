//! Integration tests: the real app on port 0, a fresh database per test, on SQLite and
//! on PostgreSQL (each test body runs on both through `both!`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod alerts;
mod audit;
mod auth;
mod cli;
mod codes;
mod concurrency;
mod escort_pages;
mod files;
mod freight;
mod freight_ops;
mod ids;
mod input;
mod pages;
mod paging;
mod personal;
mod persons;
mod platform;
mod risk;
mod rounds;
mod scope;
mod sim;
mod testing;
mod testing_pages;
mod whitelist;
