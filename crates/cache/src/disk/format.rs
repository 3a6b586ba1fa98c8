//! The on-disk entry: a 64-byte header, the serialized cache meta, the body, and one CRC-32C
//! per body block. Pure encoding and checking; no I/O here.
//!
//! A small entry (version 1) has one header and its meta right after it:
//!
//! ```text
//! offset 0   header (64 B, see `Header`)
//!        64  meta: internal part, then header part
//!            body (body_len bytes)
//!            block checksums: u32 LE per BLOCK of body (last block may be short)
//! ```
//!
//! A large entry (version 2, a file of its own) has two header slots, each with a meta region
//! of the same fixed room, so a revalidation (a 304) rewrites the meta without touching the
//! body: the new meta goes to the region of the slot not in use, then that slot's header, whose
//! generation is one past the other's. The newer slot whose header and meta both check out is
//! the entry; a rewrite cut off at any point leaves the other one.
//!
//! ```text
//! offset 0             header slot 0 (64 B)  ─ written last when the entry is committed
//!        64            header slot 1 (64 B)  ─ zeros until the first rewrite
//!        128           meta region 0 (meta_room bytes, the meta at its start)
//!        128+room      meta region 1 (meta_room bytes)
//!        128+2*room    body (body_len bytes)
//!                      block checksums
//! ```
//!
//! Large entries written before version 2 have the small layout (one header, the meta right
//! after it); they are still read, and a 304 drops them as it did.
//!
//! Every part is checked before a byte of it is served: the header by its own CRC, the meta and
//! the checksum table by CRCs in the header, each body block by its entry in the table.

use crate::meta::SerializedMeta;

/// Bytes of body covered by one checksum.
pub const BLOCK: usize = 256 * 1024;
pub const HEADER_LEN: usize = 64;
/// A large entry's two header slots, at the start of its file.
pub const SLOTS_LEN: usize = 2 * HEADER_LEN;
const MAGIC: u32 = u32::from_le_bytes(*b"CDNe");
/// Upper bounds a header's lengths must respect.
const MAX_META_PART: u32 = 16 << 20;
const MAX_META_ROOM: u32 = 4 * MAX_META_PART;
const MAX_BODY: u64 = 1 << 44;
/// Least room a large entry keeps for each of its metas.
const MIN_META_ROOM: usize = 4096;
/// One header, the meta right after it.
const VERSION_SINGLE: u16 = 1;
/// Two header slots, each with a meta region (large entries).
const VERSION_SLOTTED: u16 = 2;

/// What a header says about its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key: [u8; 16],
    pub meta_internal_len: u32,
    pub meta_header_len: u32,
    pub body_len: u64,
    pub meta_crc: u32,
    pub table_crc: u32,
    /// Seconds since the Unix epoch when the entry (a large one: this slot) was written.
    pub written_at: u64,
    /// The format version: where the meta lies.
    pub layout: Layout,
}

/// Where an entry's meta lies, and which header a large entry goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Version 1: one header, the meta right after it.
    Single,
    /// Version 2: two header slots and two meta regions of `meta_room` bytes each; of two
    /// slots that check out, the one whose generation is one past the other's is the newer.
    Slotted { meta_room: u32, generation: u16 },
}

/// A header slot of a large entry that checks out, its meta still to be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub index: usize,
    pub header: Header,
}

impl Slot {
    fn new(index: usize, header: Header) -> Slot {
        Slot { index, header }
    }
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

    /// Offset of the meta of header slot `slot` (an entry of the single layout has slot 0 only).
    pub fn meta_offset(&self, slot: usize) -> usize {
        match self.layout {
            Layout::Single => HEADER_LEN,
            Layout::Slotted { meta_room, .. } => SLOTS_LEN + slot * meta_room as usize,
        }
    }

    /// Offset of the body from the entry's start.
    pub fn body_offset(&self) -> usize {
        match self.layout {
            Layout::Single => HEADER_LEN + self.meta_len(),
            Layout::Slotted { meta_room, .. } => SLOTS_LEN + 2 * meta_room as usize,
        }
    }

    /// Bytes a meta may take in this entry: its own length in the single layout (no rewrite
    /// fits), the room of a meta region in the slotted one.
    pub fn meta_room(&self) -> usize {
        match self.layout {
            Layout::Single => self.meta_len(),
            Layout::Slotted { meta_room, .. } => meta_room as usize,
        }
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
        let (version, generation, meta_room) = match self.layout {
            Layout::Single => (VERSION_SINGLE, 0, 0),
            Layout::Slotted {
                meta_room,
                generation,
            } => (VERSION_SLOTTED, generation, meta_room),
        };
        b[4..6].copy_from_slice(&version.to_le_bytes());
        // 6..8: version 1 flags (none were ever set), version 2 the slot's generation
        b[6..8].copy_from_slice(&generation.to_le_bytes());
        b[8..24].copy_from_slice(&self.key);
        b[24..28].copy_from_slice(&self.meta_internal_len.to_le_bytes());
        b[28..32].copy_from_slice(&self.meta_header_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.body_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.meta_crc.to_le_bytes());
        b[44..48].copy_from_slice(&self.table_crc.to_le_bytes());
        b[48..56].copy_from_slice(&self.written_at.to_le_bytes());
        // 56..60: reserved in version 1, the meta room in version 2
        b[56..60].copy_from_slice(&meta_room.to_le_bytes());
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
        let layout = match u16::from_le_bytes([b[4], b[5]]) {
            VERSION_SINGLE => Layout::Single,
            VERSION_SLOTTED => Layout::Slotted {
                meta_room: u32_at(56),
                generation: u16::from_le_bytes([b[6], b[7]]),
            },
            _ => return Err(Invalid::Corrupt("unknown version")),
        };
        // Checked so that every offset computed from a header fits in memory arithmetic.
        if u32_at(24) > MAX_META_PART || u32_at(28) > MAX_META_PART || u64_at(32) > MAX_BODY {
            return Err(Invalid::Corrupt("implausible lengths"));
        }
        let header = Header {
            key: b[8..24].try_into().expect("16 bytes"),
            meta_internal_len: u32_at(24),
            meta_header_len: u32_at(28),
            body_len: u64_at(32),
            meta_crc: u32_at(40),
            table_crc: u32_at(44),
            written_at: u64_at(48),
            layout,
        };
        if let Layout::Slotted { meta_room, .. } = layout {
            if meta_room > MAX_META_ROOM || header.meta_len() > meta_room as usize {
                return Err(Invalid::Corrupt("implausible meta room"));
            }
        }
        Ok(header)
    }

    /// Whether `other` is a slot of the same entry: the same key, body and room.
    fn same_entry(&self, other: &Header) -> bool {
        let room = |h: &Header| match h.layout {
            Layout::Single => None,
            Layout::Slotted { meta_room, .. } => Some(meta_room),
        };
        (self.key, self.body_len, self.table_crc, room(self))
            == (other.key, other.body_len, other.table_crc, room(other))
    }

    /// The header of the next rewrite of this slotted entry's meta: `meta` in the other slot,
    /// one generation on. `None` in the single layout, or when `meta` does not fit the room.
    pub fn rewritten(&self, meta: &SerializedMeta, written_at: u64) -> Option<Header> {
        let Layout::Slotted {
            meta_room,
            generation,
        } = self.layout
        else {
            return None;
        };
        if meta.size() > meta_room as usize || !fits_meta_part(meta) {
            return None;
        }
        Some(Header {
            meta_internal_len: meta.internal.len() as u32,
            meta_header_len: meta.header.len() as u32,
            meta_crc: meta_crc(meta),
            written_at,
            layout: Layout::Slotted {
                meta_room,
                generation: generation.wrapping_add(1),
            },
            ..*self
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

/// Room each meta region of a large entry whose first meta is `meta_len` bytes keeps: twice
/// that, at least 4 KiB, so a meta that grows on revalidation (a longer header) still fits.
pub fn meta_room_for(meta_len: usize) -> u32 {
    u32::try_from((2 * meta_len).max(MIN_META_ROOM)).unwrap_or(u32::MAX)
}

/// Whether each part of `meta` is within what a header may announce.
fn fits_meta_part(meta: &SerializedMeta) -> bool {
    meta.internal.len() <= MAX_META_PART as usize && meta.header.len() <= MAX_META_PART as usize
}

/// Decodes the header slots at the start of a large entry (its first `SLOTS_LEN` bytes): those
/// that check out, newest first. An entry in the single layout has one, slot 0 (bytes 64..128
/// are then its meta). A slot 0 of zeros means the entry was never committed (`Empty`): it is
/// written at commit and afterwards only ever overwritten by another header; otherwise no slot
/// that checks out means `Corrupt`.
pub fn decode_slots(bytes: &[u8]) -> Result<Vec<Slot>, Invalid> {
    if bytes.len() < SLOTS_LEN {
        return Err(Invalid::Corrupt("short header slots"));
    }
    let first = match Header::decode(&bytes[..HEADER_LEN]) {
        Err(Invalid::Empty) => return Err(Invalid::Empty),
        Ok(header) if header.layout == Layout::Single => return Ok(vec![Slot::new(0, header)]),
        first => first.ok(),
    };
    let second = Header::decode(&bytes[HEADER_LEN..SLOTS_LEN])
        .ok()
        .filter(|h| h.layout != Layout::Single);
    let slots = match (first, second) {
        (None, None) => return Err(Invalid::Corrupt("no header slot checks out")),
        (Some(header), None) => vec![Slot::new(0, header)],
        (None, Some(header)) => vec![Slot::new(1, header)],
        (Some(zero), Some(one)) => {
            let (zero, one) = (Slot::new(0, zero), Slot::new(1, one));
            let (newer, older) = if newer_generation(&one.header, &zero.header) {
                (one, zero)
            } else {
                (zero, one)
            };
            // Slots that disagree on the entry (key, body, room) cannot both be right.
            if newer.header.same_entry(&older.header) {
                vec![newer, older]
            } else {
                vec![newer]
            }
        }
    };
    Ok(slots)
}

/// Whether `a`'s generation comes after `b`'s. Two slots of an entry are one generation apart,
/// so the 16-bit counter may wrap.
fn newer_generation(a: &Header, b: &Header) -> bool {
    let generation = |h: &Header| match h.layout {
        Layout::Single => 0,
        Layout::Slotted { generation, .. } => generation,
    };
    (generation(a).wrapping_sub(generation(b)) as i16) > 0
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
        layout: Layout::Single,
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

    /// The two header slots of a large entry whose meta was rewritten: slot 0 at `first`,
    /// slot 1 one generation on.
    fn slots(first: u16) -> (Header, Header, [u8; SLOTS_LEN]) {
        let zero = Header {
            key: [9; 16],
            meta_internal_len: 3,
            meta_header_len: 5,
            body_len: 1 << 20,
            meta_crc: 1,
            table_crc: 2,
            written_at: 42,
            layout: Layout::Slotted {
                meta_room: 4096,
                generation: first,
            },
        };
        let meta = SerializedMeta {
            internal: b"new".to_vec(),
            header: b"header!".to_vec(),
        };
        let one = zero.rewritten(&meta, 43).unwrap();
        let mut bytes = [0u8; SLOTS_LEN];
        bytes[..HEADER_LEN].copy_from_slice(&zero.encode());
        bytes[HEADER_LEN..].copy_from_slice(&one.encode());
        (zero, one, bytes)
    }

    #[test]
    fn slots_go_newest_first_across_the_wrap() {
        for first in [0, 1, 700, u16::MAX - 1, u16::MAX] {
            let (zero, one, bytes) = slots(first);
            assert_eq!(one.body_offset(), zero.body_offset(), "the body stays put");
            assert_eq!(
                decode_slots(&bytes).unwrap(),
                vec![Slot::new(1, one), Slot::new(0, zero)],
                "generation {first}"
            );
            // Slot 1 written again, two generations on: slot 0 is the older now.
            let mut again = bytes;
            let newer = one.rewritten(&SerializedMeta::default(), 44).unwrap();
            again[..HEADER_LEN].copy_from_slice(&newer.encode());
            assert_eq!(decode_slots(&again).unwrap()[0], Slot::new(0, newer));
        }
    }

    #[test]
    fn a_torn_slot_leaves_the_other() {
        let (zero, one, bytes) = slots(3);
        let mut torn = bytes;
        torn[HEADER_LEN + 10] ^= 1;
        assert_eq!(decode_slots(&torn).unwrap(), vec![Slot::new(0, zero)]);
        let mut torn = bytes;
        torn[10] ^= 1;
        assert_eq!(decode_slots(&torn).unwrap(), vec![Slot::new(1, one)]);
        torn[HEADER_LEN + 10] ^= 1;
        assert!(matches!(decode_slots(&torn), Err(Invalid::Corrupt(_))));
        let mut uncommitted = [0u8; SLOTS_LEN];
        assert_eq!(decode_slots(&uncommitted), Err(Invalid::Empty));
        uncommitted[HEADER_LEN..].copy_from_slice(&one.encode());
        assert_eq!(
            decode_slots(&uncommitted),
            Err(Invalid::Empty),
            "slot 0 is the commit"
        );
    }

    #[test]
    fn an_entry_of_version_1_has_one_slot() {
        let (bytes, _) = entry(1000);
        let slots = decode_slots(&bytes[..SLOTS_LEN]).unwrap();
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].header.layout, Layout::Single);
        assert_eq!(slots[0].header.meta_offset(0), HEADER_LEN);
        assert_eq!(
            slots[0].header.rewritten(&SerializedMeta::default(), 0),
            None
        );
    }

    #[test]
    fn zeros_read_as_empty() {
        assert_eq!(Header::decode(&[0u8; HEADER_LEN]), Err(Invalid::Empty));
    }
}
