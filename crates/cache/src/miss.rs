//! Writing one miss. A fill starts in RAM and, past the disk tier's small-entry limit (or when
//! `Content-Length` says it will be), moves to a disk segment of its own, so RAM per fill stays
//! bounded whatever the object's size. On finish a small object is handed to the hybrid to
//! store (memory and disk); a large one is committed on disk.
//!
//! Dropped without `finish`, the writer fails its fill (readers get an error) and any partial
//! disk file is removed.

use crate::disk::LargeWriter;
use crate::fills::{Fill, Fills};
use crate::hybrid::Hybrid;
use crate::object::Object;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::key::HashBinary;
use pingora_cache::storage::{HandleMiss, MissFinishType};
use pingora_error::{Error, ErrorType, Result};
use std::sync::Arc;

pub struct MissWriter {
    /// Where the finished object goes.
    hybrid: &'static Hybrid,
    /// Where its fill is registered, to be forgotten when done.
    fills: &'static Fills,
    key: HashBinary,
    fill: Arc<Fill>,
    large: Option<LargeWriter>,
    /// The body length `Content-Length` announced, if it did.
    announced: Option<u64>,
    tag: [u8; 8],
    finished: bool,
    /// A write failed: the fill must not be stored, even if `finish` is called.
    failed: bool,
    /// The fill moved to disk at some point: its readers read the segment from then on.
    spilled: bool,
}

impl MissWriter {
    /// A writer for `fill`, already registered. Spills to disk at once when the announced
    /// length says the object will be large.
    pub async fn start(
        hybrid: &'static Hybrid,
        fills: &'static Fills,
        key: HashBinary,
        fill: Arc<Fill>,
        announced: Option<u64>,
    ) -> Result<MissWriter> {
        let mut writer = MissWriter {
            hybrid,
            fills,
            key,
            tag: fill.write_id.to_be_bytes(),
            fill,
            large: None,
            announced,
            finished: false,
            failed: false,
            spilled: false,
        };
        if let Some(len) = announced.filter(|len| hybrid.is_large(*len)) {
            writer.spill_or_pass(len).await;
        }
        Ok(writer)
    }

    /// Moves the fill to a disk segment of its own, writing what RAM holds so far.
    async fn spill(&mut self, expected: u64) -> Result<()> {
        let Some(disk) = self.hybrid.disk().cloned() else {
            return Ok(());
        };
        let (key, meta) = (self.key, self.fill.meta.serialized().clone());
        let held = self.fill.chunks();
        let writer = crate::pool::blocking("starting a large disk entry", move || {
            let mut writer = disk.begin_large(key, meta, expected)?;
            for chunk in &held {
                writer.write(chunk)?;
            }
            Ok(writer)
        })
        .await?;
        self.fill.spilled(writer.reader());
        self.large = Some(writer);
        self.spilled = true;
        Ok(())
    }

    /// Spills to disk; if the disk fails, the fill stays in RAM for the clients reading it and
    /// is not stored (the disk fault is counted and new fills pass through for a while).
    async fn spill_or_pass(&mut self, expected: u64) {
        if self.failed {
            return;
        }
        if let Err(e) = self.spill(expected).await {
            self.hybrid.fault("starting a large disk entry", &e);
            self.failed = true;
        }
    }

    async fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if let Some(mut writer) = self.large.take() {
            let len = data.len() as u64;
            let writer = crate::pool::blocking("writing a large disk entry", move || {
                writer.write(&data)?;
                Ok(writer)
            })
            .await?;
            self.large = Some(writer);
            self.fill.wrote_to_disk(len);
            return Ok(());
        }
        let in_ram = self.fill.push(data);
        if self.hybrid.is_large(in_ram) && !self.failed {
            self.spill_or_pass(self.announced.unwrap_or(in_ram * 2).max(in_ram))
                .await;
        }
        Ok(())
    }
}

#[async_trait]
impl HandleMiss for MissWriter {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        let written = self.write(data).await;
        if let Err(e) = &written {
            // Mid-way through a large entry: its readers read the segment, which now lacks
            // this piece, so the fill fails.
            self.hybrid.fault("writing a large disk entry", e);
            self.failed = true;
        }
        written
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        if self.failed && self.spilled {
            // Its readers read the segment, which lacks what failed to be written.
            return Error::e_explain(ErrorType::InternalError, "cache write failed earlier");
        }
        let written = self.fill.written() as usize;
        let purged = self.fill.purged() || self.failed;
        let stored = if let Some(writer) = self.large.take() {
            let committed = if purged {
                Ok(())
            } else {
                crate::pool::blocking("committing a large disk entry", move || writer.commit())
                    .await
            };
            self.hybrid.replaced_by_large(&self.key);
            committed
        } else if !purged {
            let object = Object::joined(self.fill.meta.clone(), &self.fill.chunks());
            self.hybrid.store(self.key, Arc::new(object)).await
        } else {
            Ok(())
        };
        // Readers have every byte whether or not it could be stored: the fill ends cleanly
        // for them either way.
        self.fill.finish();
        self.fills.remove(&self.key, self.fill.write_id);
        self.finished = true;
        // Not stored, yet no error for pingora either: an error here would cut off the
        // readers it is still feeding from this fill.
        if let Err(e) = stored {
            self.hybrid.fault("storing a finished entry", &e);
        }
        Ok(MissFinishType::Created(written))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.tag)
    }
}

impl Drop for MissWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.fill.fail();
            self.fills.remove(&self.key, self.fill.write_id);
        }
    }
}
