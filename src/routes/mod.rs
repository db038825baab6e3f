//! Thin HTTP handlers: parse the request, call the pipeline, shape the answer.

pub mod download;
pub mod health;
pub mod media;
pub mod tokens;
pub mod tus;
pub mod upload;
