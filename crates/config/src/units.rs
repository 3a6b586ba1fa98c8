//! Value types that parse themselves while the YAML is read, so that a bad value is reported
//! with the line and column serde_yaml knows: byte sizes, durations, route prefixes.

use serde::de::{Deserialize, Deserializer, Error as _};
use std::fmt;
use std::time::Duration;

/// A size in bytes, written as `512MiB`, `10 GiB`, `64KB` or a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size {text:?}: expected a number with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"))?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {text:?}: expected B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
                ))
            }
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(de)? {
            NumberOrText::Number(n) => Ok(ByteSize(n)),
            NumberOrText::Text(t) => ByteSize::parse(&t).map_err(D::Error::custom),
        }
    }
}

/// A duration written as `30s`, `5m`, `1h 30m`, `250ms` (humantime syntax) or whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(de)? {
            NumberOrText::Number(n) => Ok(Dur(Duration::from_secs(n))),
            NumberOrText::Text(t) => humantime::parse_duration(&t).map(Dur).map_err(|e| {
                D::Error::custom(format!(
                    "invalid duration {t:?}: {e} (write e.g. 30s, 5m, 1h)"
                ))
            }),
        }
    }
}

/// A route's path prefix: starts with `/`, no `..` segment, no `?` or `#`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(pub String);

impl Prefix {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("route prefix {text:?} must start with '/'"));
        }
        if text.contains(['?', '#', '\\', '\0', '%']) || text.split('/').any(|s| s == "..") {
            return Err(format!(
                "route prefix {text:?} must be a plain decoded path (no '..', '?', '#', '\\', '%')"
            ));
        }
        Ok(Prefix(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        Prefix::parse(&text).map_err(D::Error::custom)
    }
}

/// A rate, written `100/s`, `6000/m` or `50000/h`: that many requests per period, in a burst
/// at most that size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid rate {text:?}: expected a count per period, such as 100/s, 6000/m or 50000/h")
        };
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match period.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("rate {text:?} must allow at least one request"));
        }
        Ok(Rate { count, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        Rate::parse(&text).map_err(D::Error::custom)
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_size(input: &str, expected: Result<u64, &str>) {
        let got = ByteSize::parse(input).map(|s| s.0);
        match (got, expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{input}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "{input}: {g}"),
            (g, e) => panic!("{input}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn sizes() {
        check_size("512MiB", Ok(512 << 20));
        check_size("10 GiB", Ok(10 << 30));
        check_size("64KB", Ok(64_000));
        check_size("4096", Ok(4096));
        check_size("12XB", Err("invalid size unit"));
        check_size("MiB", Err("invalid size"));
        check_size("99999999999TiB", Err("too large"));
    }

    #[test]
    fn size_display_round_trips() {
        for s in ["512MiB", "3GiB", "1000B", "7KiB"] {
            assert_eq!(ByteSize::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn prefixes() {
        assert!(Prefix::parse("/npm/").is_ok());
        assert!(Prefix::parse("npm/").is_err());
        assert!(Prefix::parse("/a/../b").is_err());
        assert!(Prefix::parse("/a?b").is_err());
    }

    #[test]
    fn rates() {
        let per = |s: u64| Duration::from_secs(s);
        assert_eq!(
            Rate::parse("100/s"),
            Ok(Rate {
                count: 100,
                per: per(1)
            })
        );
        assert_eq!(
            Rate::parse(" 6000 / m"),
            Ok(Rate {
                count: 6000,
                per: per(60)
            })
        );
        assert_eq!(Rate::parse("5/h").map(|r| r.per), Ok(per(3600)));
        for bad in ["100", "x/s", "100/d", "-1/s", "0/s", "/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }
}
