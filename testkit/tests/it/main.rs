//! End-to-end tests: the real binaries as processes on loopback, against a local-directory
//! origin and a real S3-compatible server.

mod auth;
mod canonical;
mod collapsing;
mod config_errors;
mod disk_faults;
mod failover;
mod http_caching;
mod npm;
mod observability;
mod origin_failures;
mod packages;
mod persistence;
mod registry;
mod request_heads;
mod requests;
mod side_doors;
mod slices;
mod slow_clients;
mod sources;
mod three_tiers;
mod tls;
