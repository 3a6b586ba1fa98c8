//! A cache meta (pingora's `CacheMeta`: freshness times and the response header) kept both
//! ways: serialized, as the disk stores it, and with its header parsed, so a memory hit
//! rebuilds it from the small internal part (MessagePack) and one header copy instead of also
//! decompressing and parsing the header block.

use pingora_cache::CacheMeta;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Meta as pingora serializes it: its internal part (times, flags) and its header block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerializedMeta {
    pub internal: Vec<u8>,
    pub header: Vec<u8>,
}

impl SerializedMeta {
    /// Bytes of both parts.
    pub fn size(&self) -> usize {
        self.internal.len() + self.header.len()
    }
}

/// A meta, serialized and with its response header parsed.
#[derive(Clone, Debug)]
pub struct Meta {
    serialized: SerializedMeta,
    header: ResponseHeader,
}

/// A header block of one empty response, serialized once: pingora's meta is rebuilt from the
/// (small, cheap to decode) internal part and this, and the parsed header put in after.
fn stub_header() -> &'static [u8] {
    static STUB: OnceLock<Vec<u8>> = OnceLock::new();
    STUB.get_or_init(|| {
        let header = ResponseHeader::build(200, Some(0)).expect("a status line");
        CacheMeta::new(SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH, 0, 0, header)
            .serialize()
            .expect("an empty header serializes")
            .1
    })
}

impl Meta {
    pub fn of(meta: &CacheMeta) -> Result<Meta> {
        let (internal, header) = meta.serialize()?;
        Ok(Meta {
            serialized: SerializedMeta { internal, header },
            header: meta.response_header_copy(),
        })
    }

    /// A meta read back from disk, and pingora's form of it.
    pub fn parse(serialized: SerializedMeta) -> Result<(Meta, CacheMeta)> {
        let meta = CacheMeta::deserialize(&serialized.internal, &serialized.header)?;
        let header = meta.response_header_copy();
        Ok((Meta { serialized, header }, meta))
    }

    pub fn serialized(&self) -> &SerializedMeta {
        &self.serialized
    }

    /// Pingora's form again, every internal field as stored (times, provenance, variance,
    /// epoch), without decoding the compressed header block: the parsed header is copied in.
    pub fn cache_meta(&self) -> Result<CacheMeta> {
        let mut meta = CacheMeta::deserialize(&self.serialized.internal, stub_header())?;
        *meta.response_header_mut() = self.header.clone();
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::HashBinary;
    use std::time::Duration;

    fn meta(variance: Option<HashBinary>) -> CacheMeta {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("vary", "accept-encoding").unwrap();
        let now = SystemTime::now();
        let mut meta = CacheMeta::new(now + Duration::from_secs(60), now, 5, 7, header);
        if let Some(variance) = variance {
            meta.set_variance_key(variance);
        }
        meta
    }

    /// Regression: `cache_meta` rebuilt the meta without its variance, so a variant served from
    /// the memory tier or a fill came back as the primary.
    #[test]
    fn variance_survives_both_ways() {
        for variance in [Some([7u8; 16]), None] {
            let original = meta(variance);
            let kept = Meta::of(&original).unwrap();
            assert_eq!(
                kept.cache_meta().unwrap().variance(),
                variance,
                "from a CacheMeta"
            );
            let (internal, header) = original.serialize().unwrap();
            let (parsed, pingoras) = Meta::parse(SerializedMeta { internal, header }).unwrap();
            assert_eq!(pingoras.variance(), variance, "as pingora parses it");
            assert_eq!(
                parsed.cache_meta().unwrap().variance(),
                variance,
                "read back from disk"
            );
            let rebuilt = kept.cache_meta().unwrap();
            assert_eq!(rebuilt.created(), original.created());
            assert_eq!(rebuilt.provenance(), original.provenance());
            assert_eq!(rebuilt.fresh_until(), original.fresh_until());
            assert_eq!(rebuilt.stale_if_error_sec(), 7);
            assert_eq!(rebuilt.headers().get("vary").unwrap(), "accept-encoding");
        }
    }
}
