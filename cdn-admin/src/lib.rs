//! cdn-admin's library side: publishing (`cdn-admin publish`), shared with the test kit so
//! tests fill storage with the very code operators run.

pub mod publish;
