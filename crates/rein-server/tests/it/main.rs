//! Integration tests of the HTTP server: in-process through the router and
//! over a real loopback port, with a real SQLite file in a temp dir and the
//! refund example policy.

// Helpers outside `#[test]` functions fail the test by panicking, which is
// what a test helper is for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod approvals;
mod audit;
mod audit_export;
mod body_limits;
mod common;
mod concurrency;
mod console;
mod console_audit;
mod decide;
mod delegation;
mod explain;
mod failures;
mod health;
mod hooks;
mod identity;
mod jwt;
mod notify;
mod otel;
mod outcome;
mod postgres;
mod reload;
mod routes;
mod shadow;
mod startup;
mod state;
mod versions;
mod what_can;
