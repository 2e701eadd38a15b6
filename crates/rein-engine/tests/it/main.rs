//! Integration tests of the engine, as one binary (faster to build and link
//! than one binary per file).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod actra_api;
mod actra_diff;
mod actra_props;
mod api;
mod cache;
mod contracts;
mod corpus;
mod derived;
mod diagnostics;
mod flat;
mod identity;
mod owned;
mod props;
mod shadow_rules;
mod state;
mod state_attacks;
mod tool_facts;
