//! Benchmarks live in `benches/` (criterion, `cargo bench -p cdn-benches`); this library is
//! empty and exists so the folder is a workspace member.
