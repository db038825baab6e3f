//! Shared test harness: an embedded S3-compatible server ([`s3`]) and the real service binary
//! ([`server`]). Include with `mod common;` from a file in `tests/`.
//!
//! Each integration test crate uses a different subset, hence the blanket `dead_code` allow.
#![allow(dead_code, unused_imports)]

pub mod s3;
pub mod server;

pub use s3::S3Server;
pub use server::{Backend, Service, ServiceBuilder, backends, block_on, http};
