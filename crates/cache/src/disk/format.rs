//! The on-disk entry: a fixed 64-byte header, the serialized cache meta, the body, and one
//! CRC-32C per body block. Pure encoding and checking; no I/O here.
//!
//! ```text
//! offset 0   header (64 B, see `Header`)          ─ written last for large entries: the commit
//!        64  meta: internal part, then header part
//!            body (body_len bytes)
//!            block checksums: u32 LE per BLOCK of body (last block may be short)
//! ```
//!
//! Every part is checked before a byte of it is served: the header by its own CRC, the meta and
//! the checksum table by CRCs in the header, each body block by its entry in the table.

use crate::meta::SerializedMeta;

/// Bytes of body covered by one checksum.
pub const BLOCK: usize = 256 * 1024;
pub const HEADER_LEN: usize = 64;
const MAGIC: u32 = u32::from_le_bytes(*b"CDNe");
/// Upper bounds a header's lengths must respect.
const MAX_META_PART: u32 = 16 << 20;
const MAX_BODY: u64 = 1 << 44;
const VERSION: u16 = 1;

/// What a header says about its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key: [u8; 16],
    pub meta_internal_len: u32,
    pub meta_header_len: u32,
    pub body_len: u64,
    pub meta_crc: u32,
    pub table_crc: u32,
    /// Seconds since the Unix epoch when the entry was written.
    pub written_at: u64,
}

/// Why bytes are not a valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// No entry starts here (unwritten space, or an entry never committed).
    Empty,
    /// Something was written here, but it does not check out.
    Corrupt(&'static str),
}

impl Header {
    pub fn meta_len(&self) -> usize {
        self.meta_internal_len as usize + self.meta_header_len as usize
    }

    pub fn blocks(&self) -> usize {
        (self.body_len as usize).div_ceil(BLOCK)
    }

    /// Offset of the body from the entry's start.
    pub fn body_offset(&self) -> usize {
        HEADER_LEN + self.meta_len()
    }

    /// Offset of the checksum table from the entry's start.
    pub fn table_offset(&self) -> usize {
        self.body_offset() + self.body_len as usize
    }

    /// The whole entry's length.
    pub fn entry_len(&self) -> usize {
        self.table_offset() + 4 * self.blocks()
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        // 6..8 flags, none yet
        b[8..24].copy_from_slice(&self.key);
        b[24..28].copy_from_slice(&self.meta_internal_len.to_le_bytes());
        b[28..32].copy_from_slice(&self.meta_header_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.body_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.meta_crc.to_le_bytes());
        b[44..48].copy_from_slice(&self.table_crc.to_le_bytes());
        b[48..56].copy_from_slice(&self.written_at.to_le_bytes());
        // 56..60 reserved
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Header, Invalid> {
        if b.len() < HEADER_LEN {
            return Err(Invalid::Corrupt("short header"));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if u32_at(0) != MAGIC {
            return Err(if b[..HEADER_LEN].iter().all(|&x| x == 0) {
                Invalid::Empty
            } else {
                Invalid::Corrupt("bad magic")
            });
        }
        if crc32c::crc32c(&b[..60]) != u32_at(60) {
            return Err(Invalid::Corrupt("header checksum"));
        }
        if u16::from_le_bytes([b[4], b[5]]) != VERSION {
            return Err(Invalid::Corrupt("unknown version"));
        }
        // Checked so that every offset computed from a header fits in memory arithmetic.
        if u32_at(24) > MAX_META_PART || u32_at(28) > MAX_META_PART || u64_at(32) > MAX_BODY {
            return Err(Invalid::Corrupt("implausible lengths"));
        }
        Ok(Header {
            key: b[8..24].try_into().expect("16 bytes"),
            meta_internal_len: u32_at(24),
            meta_header_len: u32_at(28),
            body_len: u64_at(32),
            meta_crc: u32_at(40),
            table_crc: u32_at(44),
            written_at: u64_at(48),
        })
    }

    /// Checks the meta bytes against the header and splits them into (internal, header).
    pub fn check_meta<'a>(&self, meta: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), Invalid> {
        if meta.len() != self.meta_len() || crc32c::crc32c(meta) != self.meta_crc {
            return Err(Invalid::Corrupt("meta checksum"));
        }
        Ok(meta.split_at(self.meta_internal_len as usize))
    }

    /// Checks the checksum table and returns one CRC per block.
    pub fn check_table(&self, table: &[u8]) -> Result<Vec<u32>, Invalid> {
        if table.len() != 4 * self.blocks() || crc32c::crc32c(table) != self.table_crc {
            return Err(Invalid::Corrupt("block table checksum"));
        }
        Ok(table
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}

/// Checks one body block against its table entry.
pub fn check_block(block: &[u8], crc: u32) -> Result<(), Invalid> {
    if crc32c::crc32c(block) == crc {
        Ok(())
    } else {
        Err(Invalid::Corrupt("body block checksum"))
    }
}

/// Accumulates block checksums over a body that arrives in chunks of any size.
#[derive(Debug, Default)]
pub struct BlockSums {
    table: Vec<u8>,
    current: u32,
    filled: usize,
}

impl BlockSums {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (BLOCK - self.filled).min(data.len());
            self.current = crc32c::crc32c_append(self.current, &data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == BLOCK {
                self.table.extend_from_slice(&self.current.to_le_bytes());
                self.current = 0;
                self.filled = 0;
            }
        }
    }

    /// The finished table and its own checksum.
    pub fn finish(mut self) -> (Vec<u8>, u32) {
        if self.filled > 0 {
            self.table.extend_from_slice(&self.current.to_le_bytes());
        }
        let crc = crc32c::crc32c(&self.table);
        (self.table, crc)
    }
}

/// The checksum over a meta's two parts, as the header carries it.
pub fn meta_crc(meta: &SerializedMeta) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&meta.internal), &meta.header)
}

/// Builds a complete small entry in memory: header, meta, body, table.
pub fn encode_entry(
    key: [u8; 16],
    meta: &SerializedMeta,
    body: &[bytes::Bytes],
    written_at: u64,
) -> Vec<u8> {
    let body_len: usize = body.iter().map(|c| c.len()).sum();
    let mut sums = BlockSums::default();
    for chunk in body {
        sums.update(chunk);
    }
    let (table, table_crc) = sums.finish();
    let header = Header {
        key,
        meta_internal_len: meta.internal.len() as u32,
        meta_header_len: meta.header.len() as u32,
        body_len: body_len as u64,
        meta_crc: meta_crc(meta),
        table_crc,
        written_at,
    };
    let mut out = Vec::with_capacity(header.entry_len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&meta.internal);
    out.extend_from_slice(&meta.header);
    for chunk in body {
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&table);
    debug_assert_eq!(out.len(), header.entry_len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(body_len: usize) -> (Vec<u8>, Vec<u8>) {
        let body: Vec<u8> = (0..body_len).map(|i| (i * 7 % 251) as u8).collect();
        let chunks: Vec<Bytes> = body.chunks(1000).map(Bytes::copy_from_slice).collect();
        (
            encode_entry(
                [9; 16],
                &SerializedMeta {
                    internal: b"internal".to_vec(),
                    header: b"header".to_vec(),
                },
                &chunks,
                42,
            ),
            body,
        )
    }

    #[test]
    fn round_trip_checks_every_part() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17] {
            let (bytes, body) = entry(len);
            let h = Header::decode(&bytes).unwrap();
            assert_eq!(h.entry_len(), bytes.len(), "len {len}");
            let (internal, header) = h.check_meta(&bytes[HEADER_LEN..h.body_offset()]).unwrap();
            assert_eq!((internal, header), (&b"internal"[..], &b"header"[..]));
            let crcs = h.check_table(&bytes[h.table_offset()..]).unwrap();
            assert_eq!(crcs.len(), h.blocks());
            for (i, block) in body.chunks(BLOCK).enumerate() {
                check_block(block, crcs[i]).unwrap();
            }
        }
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let (clean, _) = entry(2 * BLOCK + 5);
        // One position in each part: header, meta, body (two blocks), table.
        for at in [
            3,
            30,
            HEADER_LEN + 2,
            HEADER_LEN + 20,
            HEADER_LEN + 14 + BLOCK + 9,
            clean.len() - 2,
        ] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x40;
            let caught = (|| {
                let h = Header::decode(&bytes)?;
                h.check_meta(&bytes[HEADER_LEN..h.body_offset()])?;
                let crcs = h.check_table(&bytes[h.table_offset()..])?;
                let body = &bytes[h.body_offset()..h.table_offset()];
                for (i, block) in body.chunks(BLOCK).enumerate() {
                    check_block(block, crcs[i])?;
                }
                Ok::<_, Invalid>(())
            })();
            assert!(
                matches!(caught, Err(Invalid::Corrupt(_))),
                "flip at {at} not caught"
            );
        }
    }

    #[test]
    fn zeros_read_as_empty() {
        assert_eq!(Header::decode(&[0u8; HEADER_LEN]), Err(Invalid::Empty));
    }
}
