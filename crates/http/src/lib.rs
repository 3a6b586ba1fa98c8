//! What every tier — edge-pop, shield and origin-adapter — decides the same way about a request
//! over HTTP: the canonical form of a request's target (`target`: the one path and query the route,
//! the cache key and the object key are taken from), and how a request the tier will
//! not or cannot serve is answered (`error`: one type, its status code, a fixed short body and
//! the headers that go with it), which request bodies it takes (`framing`: none on a GET or
//! HEAD), and how a tier knows a request comes from the tier in front of it (`trust`).
//!
//! This crate knows no server, no cache and no storage: it is pure functions over request
//! parts, so every tier, whatever HTTP library it is built on, gives the same answer.

pub mod conditional;
pub mod error;
pub mod framing;
pub mod range;
pub mod slice;
pub mod target;
pub mod trust;

pub use error::{Cause, HttpError};
pub use target::{BadPath, Target};
pub use trust::Secret;
