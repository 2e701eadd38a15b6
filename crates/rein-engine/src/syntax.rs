//! Readers of source text: spanned YAML, CEL conditions, and the native
//! policy format on top of them. Each never panics on any input.

pub mod cel;
pub mod native;
pub mod yaml;
