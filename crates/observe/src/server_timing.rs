//! The W3C `Server-Timing` list: each tier appends its own `name;dur=ms` entry (time to its
//! response header) to what its upstream reported for this fetch, so it reads from the origin
//! to the client like `Cache-Status`.

use crate::Tier;
use std::time::Duration;

/// The header carrying per-tier timings.
pub const HEADER: &str = "server-timing";

/// This tier's entry after whatever the upstream reported for this fetch.
pub fn value(tier: Tier, took: Duration, upstream: Option<&str>) -> String {
    let own = format!("{};dur={:.3}", tier.label(), took.as_secs_f64() * 1000.0);
    match upstream.map(str::trim).filter(|u| !u.is_empty()) {
        Some(up) => format!("{up}, {own}"),
        None => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_read_from_origin_to_client() {
        let t = value(
            Tier::Edge,
            Duration::from_micros(1500),
            Some("origin;dur=0.400, shield;dur=1.000"),
        );
        assert_eq!(t, "origin;dur=0.400, shield;dur=1.000, edge;dur=1.500");
        assert_eq!(
            value(Tier::Shield, Duration::from_millis(2), None),
            "shield;dur=2.000"
        );
        assert_eq!(
            value(Tier::Origin, Duration::from_micros(250), None),
            "origin;dur=0.250"
        );
    }
}
