//! A finished object held in RAM: its meta, and its body as shared pieces (`Bytes`, never
//! copied per hit), joined into ~1 MiB pieces when a fill finishes so a hit is a few large
//! writes rather than many small ones.

use crate::meta::Meta;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// Pieces a body is joined into when it is stored.
const PIECE: usize = 1 << 20;

#[derive(Debug)]
pub struct Object {
    pub meta: Meta,
    body: Arc<[Bytes]>,
    len: usize,
}

impl Object {
    /// An object of `meta` and the body pieces as they are.
    pub fn new(meta: Meta, body: Arc<[Bytes]>) -> Object {
        let len = body.iter().map(Bytes::len).sum();
        Object { meta, body, len }
    }

    /// An object of `meta` and a body in one piece (as a small disk entry is read).
    pub fn whole(meta: Meta, body: Bytes) -> Object {
        Object::new(meta, Arc::from(vec![body]))
    }

    /// An object of `meta` and a body that arrived in `chunks`, joined into large pieces.
    pub fn joined(meta: Meta, chunks: &[Bytes]) -> Object {
        Object::new(meta, coalesce(chunks).into())
    }

    /// The same body under a new meta (after a 304).
    pub fn with_meta(&self, meta: Meta) -> Object {
        Object {
            meta,
            body: self.body.clone(),
            len: self.len,
        }
    }

    /// The copy's header and age, when it may be served as it is at `now` (see
    /// `Meta::fresh_for_all`).
    pub fn fresh_for_all(&self, now: std::time::SystemTime) -> Option<crate::Fresh<'_>> {
        self.meta.fresh_for_all(now)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn body(&self) -> &[Bytes] {
        &self.body
    }

    /// What the object costs the memory tier: body and serialized meta.
    pub fn weight(&self) -> usize {
        self.len + self.meta.serialized().size()
    }

    /// Where body offset `at` lies: the piece holding it.
    pub fn cursor_at(&self, at: usize) -> Cursor {
        let mut cursor = Cursor::default();
        while let Some(piece) = self.body.get(cursor.piece) {
            if cursor.piece_start + piece.len() > at {
                break;
            }
            cursor.piece_start += piece.len();
            cursor.piece += 1;
        }
        cursor
    }

    /// The bytes from `pos` up to `end` in the cursor's piece (shared, not copied), the cursor
    /// being at the piece that holds `pos`; moves the cursor to the next piece. `None` once
    /// past `end`, or (a caller's error) past the body. Pieces are never empty.
    pub fn read(&self, cursor: &mut Cursor, pos: usize, end: usize) -> Option<Bytes> {
        if pos >= end {
            return None;
        }
        let piece = self.body.get(cursor.piece)?;
        let start = cursor.piece_start;
        debug_assert!(
            start <= pos && pos < start + piece.len(),
            "cursor off its piece"
        );
        cursor.piece += 1;
        cursor.piece_start += piece.len();
        let (from, to) = (pos - start, piece.len().min(end - start));
        (to > from).then(|| piece.slice(from..to))
    }
}

/// A reading position in an object's pieces.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    piece: usize,
    piece_start: usize,
}

/// Joins the chunks a body arrived in into pieces of about `PIECE` bytes; a chunk already
/// that big is kept as it is.
fn coalesce(chunks: &[Bytes]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut piece = BytesMut::new();
    for chunk in chunks {
        if piece.is_empty() && chunk.len() >= PIECE {
            out.push(chunk.clone());
            continue;
        }
        piece.extend_from_slice(chunk);
        if piece.len() >= PIECE {
            out.push(std::mem::take(&mut piece).freeze());
        }
    }
    if !piece.is_empty() {
        out.push(piece.freeze());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `start..end` of an object the way a hit does: a cursor at the start, then piece by
    /// piece.
    fn read_range(object: &Object, start: usize, end: usize) -> Vec<u8> {
        let (mut cursor, mut pos, mut out) = (object.cursor_at(start), start, Vec::new());
        while let Some(piece) = object.read(&mut cursor, pos, end) {
            pos += piece.len();
            out.extend_from_slice(&piece);
        }
        out
    }

    #[test]
    fn ranges_across_piece_boundaries_are_exact() {
        let body: Vec<u8> = (0..10u8).collect();
        let pieces: Vec<Bytes> = [0..3, 3..8, 8..10]
            .into_iter()
            .map(|r| Bytes::copy_from_slice(&body[r]))
            .collect();
        let header = pingora_http::ResponseHeader::build(200, None).unwrap();
        let now = std::time::SystemTime::now();
        let meta = pingora_cache::CacheMeta::new(now, now, 0, 0, header);
        let object = Object::new(Meta::of(&meta).unwrap(), pieces.into());
        for (start, end) in [
            (0, 10),
            (0, 3),
            (2, 4),
            (3, 8),
            (4, 9),
            (7, 10),
            (9, 10),
            (5, 5),
        ] {
            assert_eq!(
                read_range(&object, start, end),
                &body[start..end],
                "{start}..{end}"
            );
        }
    }

    #[test]
    fn coalescing_keeps_every_byte_in_order() {
        let chunks: Vec<Bytes> = (0..700u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 3000 + (i as usize % 7)]))
            .collect();
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let pieces = coalesce(&chunks);
        assert!(pieces.len() <= 3, "{} pieces", pieces.len());
        assert_eq!(
            pieces
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect::<Vec<u8>>(),
            joined
        );
        assert!(coalesce(&[]).is_empty());
        let big = Bytes::from(vec![1u8; 2 << 20]);
        assert_eq!(
            coalesce(std::slice::from_ref(&big))[0].as_ptr(),
            big.as_ptr(),
            "a big chunk is not copied"
        );
    }
}
