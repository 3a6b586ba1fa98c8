//! What a caching tier is made of, shared by `edge-pop` and `shield`: the configuration every
//! tier reads, the cache storage behind pingora-cache, and the proxy phases both proxies run.
//!
//! This crate must not know object_store or any origin protocol: the proxies speak HTTP to
//! their upstream and nothing else. Only `config` knows YAML.

pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod proxy;
pub mod request_id;
pub mod request_path;
pub mod server;

pub use proxy::admission::Tier;
