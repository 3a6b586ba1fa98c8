//! A cache meta (pingora's `CacheMeta`: freshness times and the response header) kept both
//! ways: serialized, as the disk stores it, and parsed, so a memory hit rebuilds it with one
//! header copy instead of decoding MessagePack, a compressed header block and a header parse.

use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use pingora_error::Result;
use pingora_http::ResponseHeader;
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

/// The parts of a meta a hit needs, parsed once.
#[derive(Clone, Debug)]
struct Parsed {
    fresh_until: SystemTime,
    /// When the copy was first stored (pingora keeps it across revalidations; variants older
    /// than their primary's are judged invalid by it).
    created: SystemTime,
    /// What the copy's age counts from: its last update, or an override.
    epoch: SystemTime,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    /// Which variant of a Vary'd response this is.
    variance: Option<HashBinary>,
    header: ResponseHeader,
}

impl Parsed {
    fn of(meta: &CacheMeta) -> Parsed {
        Parsed {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            epoch: meta.epoch(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            variance: meta.variance(),
            header: meta.response_header_copy(),
        }
    }
}

/// A stored copy that may be served as it is (`Meta::fresh_for_all`).
#[derive(Debug)]
pub struct Fresh<'a> {
    pub header: &'a ResponseHeader,
    /// Seconds since the copy was stored or last revalidated (the `Age` it is sent with).
    pub age: u64,
    pub fresh_until: SystemTime,
}

/// A meta, serialized and parsed.
#[derive(Clone, Debug)]
pub struct Meta {
    serialized: SerializedMeta,
    parsed: Parsed,
}

impl Meta {
    pub fn of(meta: &CacheMeta) -> Result<Meta> {
        let (internal, header) = meta.serialize()?;
        Ok(Meta {
            serialized: SerializedMeta { internal, header },
            parsed: Parsed::of(meta),
        })
    }

    /// A meta read back from disk, and pingora's form of it.
    pub fn parse(serialized: SerializedMeta) -> Result<(Meta, CacheMeta)> {
        let meta = CacheMeta::deserialize(&serialized.internal, &serialized.header)?;
        let parsed = Parsed::of(&meta);
        Ok((Meta { serialized, parsed }, meta))
    }

    pub fn serialized(&self) -> &SerializedMeta {
        &self.serialized
    }

    /// What a hit answered without pingora-cache needs, when the copy may be served as it is
    /// at `now`: fresh (pingora's test: `fresh_until` not passed) and the one copy for every
    /// request (no `Vary`, not a variant). `None` sends the request the whole way.
    pub fn fresh_for_all(&self, now: SystemTime) -> Option<Fresh<'_>> {
        let p = &self.parsed;
        let plain = p.variance.is_none() && !p.header.headers.contains_key(http::header::VARY);
        (plain && p.fresh_until >= now).then(|| Fresh {
            header: &p.header,
            // pingora's `CacheMeta::age`: whole seconds since the epoch of the copy.
            age: now.duration_since(p.epoch).unwrap_or_default().as_secs(),
            fresh_until: p.fresh_until,
        })
    }

    /// Pingora's form again, for a hit: its freshness, creation time (and so provenance: the
    /// two differ only for a copy pingora moved to a new Vary family, where it resets one to
    /// the other), age and variance as stored. `CacheMeta` has no setter for its update time,
    /// so the age's starting point is given as an epoch override instead.
    pub fn cache_meta(&self) -> CacheMeta {
        let p = &self.parsed;
        let mut meta = CacheMeta::new(
            p.fresh_until,
            p.created,
            p.stale_while_revalidate,
            p.stale_if_error,
            p.header.clone(),
        );
        if p.epoch != p.created {
            meta.set_epoch_override(p.epoch);
        }
        if let Some(variance) = p.variance {
            meta.set_variance_key(variance);
        }
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            assert_eq!(kept.cache_meta().variance(), variance, "from a CacheMeta");
            let (internal, header) = original.serialize().unwrap();
            let (parsed, pingoras) = Meta::parse(SerializedMeta { internal, header }).unwrap();
            assert_eq!(pingoras.variance(), variance, "as pingora parses it");
            assert_eq!(
                parsed.cache_meta().variance(),
                variance,
                "read back from disk"
            );
            let rebuilt = kept.cache_meta();
            assert_eq!(rebuilt.created(), original.created());
            assert_eq!(rebuilt.provenance(), original.provenance());
            assert_eq!(rebuilt.fresh_until(), original.fresh_until());
            assert_eq!(rebuilt.stale_if_error_sec(), 7);
            assert_eq!(rebuilt.headers().get("vary").unwrap(), "accept-encoding");
        }
    }

    /// What a hit answered before pingora-cache may use: a fresh copy that stands for every
    /// request, with its age in whole seconds since its epoch; never a stale one or a variant.
    #[test]
    fn only_a_fresh_plain_copy_is_served_as_it_is() {
        let now = SystemTime::now();
        let stored = now - Duration::from_secs(30);
        let plain = |fresh_until| {
            let header = ResponseHeader::build(200, None).unwrap();
            Meta::of(&CacheMeta::new(fresh_until, stored, 0, 0, header)).unwrap()
        };
        let fresh = plain(now + Duration::from_secs(60));
        let got = fresh.fresh_for_all(now).expect("fresh and plain");
        assert_eq!(got.age, 30);
        assert_eq!(got.fresh_until, now + Duration::from_secs(60));
        assert!(plain(now - Duration::from_secs(1))
            .fresh_for_all(now)
            .is_none());
        for variance in [None, Some([7u8; 16])] {
            let varies = Meta::of(&meta(variance)).unwrap();
            assert!(varies.fresh_for_all(now).is_none(), "{variance:?}");
        }
    }

    /// A revalidated copy: first stored long ago, its age counting from the update.
    #[test]
    fn creation_and_age_survive_a_revalidation() {
        let now = SystemTime::now();
        let header = ResponseHeader::build(200, None).unwrap();
        let long_ago = now - Duration::from_secs(100);
        let mut original = CacheMeta::new(long_ago, long_ago, 0, 0, header);
        original.update_freshness(now + Duration::from_secs(60), 5, 7);
        for rebuilt in [
            Meta::of(&original).unwrap().cache_meta(),
            Meta::parse(Meta::of(&original).unwrap().serialized().clone())
                .unwrap()
                .0
                .cache_meta(),
        ] {
            assert_eq!(rebuilt.created(), long_ago);
            assert_eq!(rebuilt.provenance(), original.provenance());
            assert_eq!(rebuilt.epoch(), original.epoch());
            assert!(
                rebuilt.age() < Duration::from_secs(5),
                "{:?}",
                rebuilt.age()
            );
            assert_eq!(rebuilt.fresh_until(), original.fresh_until());
        }
    }
}
