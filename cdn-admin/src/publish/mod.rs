//! Publishing packages straight into the storage the origin-adapter serves, in the layouts
//! the registries themselves write (registry:2 for images, Verdaccio for npm), so a bucket
//! filled here is also readable by those registries and the other way round.
//!
//! - [`oci::publish`]: an OCI image layout or a `docker save` output → registry:2 layout.
//! - [`npm::publish`]: an `npm pack` tarball → Verdaccio layout.
//! - [`store::Dest`]: a directory or an `s3://bucket/prefix`.
//!
//! The publishing functions are async (object_store is); [`block_on`] runs one from
//! synchronous code, inside a tokio runtime or not.

pub mod npm;
pub mod oci;
mod source;
pub mod store;

pub use store::{Dest, S3Credentials, S3Options};

/// Runs `work` to completion on a runtime of its own, on a thread of its own: callable from
/// plain code and from inside another runtime (a `#[tokio::test]`) alike.
pub fn block_on<T: Send>(work: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime can be built")
                    .block_on(work)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests;
