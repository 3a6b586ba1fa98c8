//! One hit handler for whatever holds the object: a finished object in RAM, a large entry on
//! disk, or a fill still in progress. It keeps the part of the body to send (`pos..end`, all of
//! it or one range) and asks the holder for the next piece; each holder's reading sits with
//! its data (`object`, `disk::read`, `fills`).

use crate::disk::{format, DiskTier, LargeBody};
use crate::fills::{Fill, FillCursor};
use crate::object::{Cursor, Object};
use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::storage::HandleHit;
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, Storage};
use pingora_error::{Error, ErrorType, OrErr, Result};
use std::any::Any;
use std::sync::Arc;

/// Largest read of a large object from disk per trip to the blocking pool.
const DISK_READ: usize = 1 << 20;

pub struct Hit {
    source: Source,
    /// Next body offset to send, and where to stop.
    pos: u64,
    end: u64,
}

enum Source {
    Memory {
        object: Arc<Object>,
        cursor: Cursor,
    },
    Disk {
        disk: Arc<DiskTier>,
        body: LargeBody,
        /// The next read, already under way while the previous piece is being sent.
        ahead: Option<(u64, BlockRead)>,
    },
    Fill {
        fill: Arc<Fill>,
        cursor: FillCursor,
    },
}

/// A read of blocks on the blocking pool: the bytes and the body offset they start at.
type BlockRead = tokio::task::JoinHandle<std::io::Result<(Bytes, u64)>>;

impl Hit {
    pub fn memory(object: Arc<Object>) -> Hit {
        let end = object.len() as u64;
        Hit {
            source: Source::Memory {
                object,
                cursor: Cursor::default(),
            },
            pos: 0,
            end,
        }
    }

    pub fn disk(disk: Arc<DiskTier>, body: LargeBody) -> Hit {
        let end = body.len;
        Hit {
            source: Source::Disk {
                disk,
                body,
                ahead: None,
            },
            pos: 0,
            end,
        }
    }

    /// A reader of a fill in progress: its length is not known yet, so it reads to the end.
    pub fn fill(fill: Arc<Fill>) -> Hit {
        let cursor = fill.reader();
        Hit {
            source: Source::Fill { fill, cursor },
            pos: 0,
            end: u64::MAX,
        }
    }

    /// The body's length, where it is known.
    fn len(&self) -> Option<u64> {
        match &self.source {
            Source::Memory { object, .. } => Some(object.len() as u64),
            Source::Disk { body, .. } => Some(body.len),
            Source::Fill { .. } => None,
        }
    }
}

/// Starts reading the blocks from body offset `at` on the blocking pool: up to 1 MiB per
/// trip, no more than the range still needs.
fn read_blocks(disk: &Arc<DiskTier>, body: &LargeBody, at: u64, end: u64) -> BlockRead {
    let (disk, body) = (disk.clone(), body.clone());
    let want = ((end - at) as usize)
        .saturating_add(format::BLOCK)
        .min(DISK_READ);
    tokio::task::spawn_blocking(move || disk.read_blocks(&body, at, want))
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let (pos, end) = (self.pos, self.end);
        let piece = match &mut self.source {
            Source::Memory { object, cursor } => object.read(cursor, pos as usize, end as usize),
            Source::Fill { fill, cursor } => fill.read(cursor).await?,
            Source::Disk { disk, body, ahead } => {
                let read = match ahead.take() {
                    Some((at, read)) if at == pos => read,
                    _ => read_blocks(disk, body, pos, end),
                };
                let (block, start) = read
                    .await
                    .or_err(ErrorType::InternalError, "disk cache task")?
                    .or_err(ErrorType::InternalError, "reading from the disk cache")?;
                let from = (pos - start) as usize;
                let to = ((end - start) as usize).min(block.len());
                let next = start + to as u64;
                // Read ahead: the next piece comes off the disk while this one goes out.
                if next < end {
                    *ahead = Some((next, read_blocks(disk, body, next, end)));
                }
                Some(block.slice(from..to))
            }
        };
        match piece {
            Some(piece) => {
                self.pos += piece.len() as u64;
                Ok(Some(piece))
            }
            // A fill ends when its writer says so.
            None if matches!(self.source, Source::Fill { .. }) => {
                self.pos = self.end;
                Ok(None)
            }
            // A stored object knows its length: running out before it is never a clean end.
            None => Error::e_explain(
                ErrorType::InternalError,
                "stored body ended before its length",
            ),
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    /// A fill's length is not known while it fills: a range on it is served whole.
    fn can_seek(&self) -> bool {
        self.len().is_some()
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let Some(len) = self.len() else {
            return Error::e_explain(ErrorType::InternalError, "cannot seek in a fill");
        };
        let start = start as u64;
        if start >= len && len > 0 {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} past body of {len}"),
            );
        }
        self.pos = start;
        self.end = end.map_or(len, |e| (e as u64).min(len));
        match &mut self.source {
            Source::Memory { object, cursor } => *cursor = object.cursor_at(start as usize),
            Source::Disk { ahead, .. } => *ahead = None,
            Source::Fill { .. } => {}
        }
        Ok(())
    }

    /// A reader of a fill is not an access to a stored object.
    fn should_count_access(&self) -> bool {
        !matches!(self.source, Source::Fill { .. })
    }

    fn get_eviction_weight(&self) -> usize {
        self.len().unwrap_or(0) as usize
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}
