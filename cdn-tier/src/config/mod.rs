//! The one configuration file every tier reads (`config.yaml`): loading, validation, and the
//! domain types the tiers use. Only this module knows YAML; the types it hands out carry no serde.
//!
//! Reading happens in two stages: `raw` is the file as serde sees it (unknown fields rejected,
//! values such as sizes and durations parsed where they stand, so serde_yaml can say where a bad
//! one is); `validate` then checks what spans fields and builds the types below.

mod raw;
mod units;

pub use raw::LogFormat;
pub use units::ByteSize;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every tier's settings, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was read from.
    pub source: PathBuf,
    pub origin: OriginConfig,
    pub shield: ProxyConfig,
    pub edge: ProxyConfig,
    pub routes: Routes,
    pub log_format: LogFormat,
}

#[derive(Clone, Debug)]
pub struct OriginConfig {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub backend: Backend,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub enum Backend {
    /// A directory, already made absolute against the config file's folder.
    Local {
        root: PathBuf,
    },
    S3(S3Backend),
}

/// An S3-compatible bucket. Credentials are not here: they come from the environment.
#[derive(Clone, Debug)]
pub struct S3Backend {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub path_style: bool,
    pub allow_http: bool,
    pub prefix: String,
}

/// Settings of one caching proxy tier (the shield or the edge).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// Keep a request id the client sent (edge only; a shield always keeps its edge's).
    pub trust_request_id: bool,
    /// Where misses go, in order of preference.
    pub upstreams: Vec<SocketAddr>,
    pub cache: CacheConfig,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub threads: usize,
    pub grace_period: Duration,
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub memory_bytes: u64,
    pub max_object_bytes: u64,
    pub disk: Option<DiskConfig>,
}

#[derive(Clone, Debug)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// What a route says about the objects under its prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    pub ttl: Duration,
    pub cacheable: bool,
    pub auth_required: bool,
    /// Served past freshness for this long when the upstream fails.
    pub stale_if_error: Duration,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub prefix: String,
    pub policy: RoutePolicy,
}

/// Routes, longest prefix first, so the first match is the most specific.
#[derive(Clone, Debug)]
pub struct Routes(Vec<Route>);

impl Routes {
    /// The policy for a request path, or `None` when no route covers it.
    pub fn policy(&self, path: &str) -> Option<&RoutePolicy> {
        self.0
            .iter()
            .find(|r| path.starts_with(r.prefix.as_str()))
            .map(|r| &r.policy)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A config that could not be used: which file, where in it, which field, and why.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted path of the field at fault (`edge.cache.memory`, `routes[1].ttl`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as if read from `path` (relative paths in it resolve against its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: raw::File =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
                .map_err(|e| from_yaml(path, text, e))?;
        validate(path, text, file)
    }

    /// One line saying what this config starts, for `--check`.
    pub fn summary(&self) -> String {
        let backend = match &self.origin.backend {
            Backend::Local { root } => format!("local {}", root.display()),
            Backend::S3(s3) => format!(
                "s3 bucket {} at {}",
                s3.bucket,
                s3.endpoint.as_deref().unwrap_or("AWS")
            ),
        };
        format!(
            "{}: ok: origin-adapter {} ({backend}); shield {} -> {}, memory {}; edge {} -> {} shield(s), memory {}; {} route(s); admin: origin {}, shield {}, edge {}",
            self.source.display(),
            self.origin.listen,
            self.shield.listen,
            self.origin.listen,
            ByteSize(self.shield.cache.memory_bytes),
            self.edge.listen,
            self.edge.upstreams.len(),
            ByteSize(self.edge.cache.memory_bytes),
            self.routes.len(),
            admin(self.origin.admin),
            admin(self.shield.admin),
            admin(self.edge.admin),
        )
    }
}

fn admin(listen: Option<SocketAddr>) -> String {
    listen.map_or_else(|| "none".to_owned(), |a| a.to_string())
}

fn from_yaml(
    path: &Path,
    text: &str,
    e: serde_path_to_error::Error<serde_yaml::Error>,
) -> ConfigError {
    let field = e.path().to_string();
    let e = e.into_inner();
    // serde_yaml places an error raised while converting a value at the start of the enclosing
    // mapping; the field's own line is more useful, so look for it first.
    let position = locate(text, &field).or_else(|| e.location().map(|l| (l.line(), l.column())));
    // serde_yaml renders "<its path>: <message> at line L column C"; keep only the message.
    let mut message = e.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    if let Some((prefix, rest)) = message.split_once(": ") {
        if is_field_path(prefix) {
            message = rest.to_owned();
        }
    }
    let field = (!field.is_empty() && field != ".").then_some(field);
    ConfigError {
        file: path.to_owned(),
        position,
        field,
        message,
    }
}

fn is_field_path(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
}

/// Largest cached object when the config does not say.
const DEFAULT_MAX_OBJECT: u64 = 128 << 20;
/// Smallest disk tier: eight segments of the smallest size.
const MIN_DISK: u64 = 8 << 20;

fn validate(path: &Path, text: &str, file: raw::File) -> Result<Config, ConfigError> {
    let fail = |field: &str, message: String| ConfigError {
        file: path.to_owned(),
        position: locate(text, field),
        field: Some(field.to_owned()),
        message,
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };

    let backend = match file.origin.backend {
        raw::Backend::Local { root } => Backend::Local {
            root: absolute(&root),
        },
        raw::Backend::S3(s3) => {
            if s3.bucket.is_empty() {
                return Err(fail("origin.backend.s3.bucket", "must not be empty".into()));
            }
            if let Some(endpoint) = &s3.endpoint {
                let http = endpoint.starts_with("http://");
                if !http && !endpoint.starts_with("https://") {
                    return Err(fail(
                        "origin.backend.s3.endpoint",
                        format!("{endpoint:?} must start with http:// or https://"),
                    ));
                }
                if http && !s3.allow_http {
                    return Err(fail(
                        "origin.backend.s3.endpoint",
                        "a plain http:// endpoint needs `allow_http: true`".into(),
                    ));
                }
            }
            Backend::S3(S3Backend {
                endpoint: s3.endpoint,
                bucket: s3.bucket,
                region: s3.region,
                path_style: s3.path_style,
                allow_http: s3.allow_http,
                prefix: s3.prefix.trim_matches('/').to_owned(),
            })
        }
    };
    if file.origin.timeout.0.is_zero() {
        return Err(fail("origin.timeout", "must be more than zero".into()));
    }
    let origin = OriginConfig {
        listen: file.origin.listen,
        admin: file.origin.admin,
        backend,
        timeout: file.origin.timeout.0,
    };

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cache = |tier: &str, c: raw::Cache| -> Result<CacheConfig, ConfigError> {
        let disk = c.disk.map(|d| DiskConfig {
            path: absolute(&d.path),
            size_bytes: d.size.0,
        });
        if c.memory.0 == 0 && disk.is_none() {
            return Err(fail(
                &format!("{tier}.cache.memory"),
                "is 0 and no disk tier is configured: nothing would be cached".into(),
            ));
        }
        if let Some(d) = &disk {
            if d.size_bytes < MIN_DISK {
                return Err(fail(
                    &format!("{tier}.cache.disk.size"),
                    format!("must be at least {}", ByteSize(MIN_DISK)),
                ));
            }
        }
        // The largest object must fit the tier that will hold it: half the disk, or the memory.
        let room = disk.as_ref().map_or(c.memory.0, |d| d.size_bytes / 2);
        let max_object = c
            .max_object
            .unwrap_or(ByteSize(DEFAULT_MAX_OBJECT.min(room)));
        if max_object.0 > room {
            let holder = if disk.is_some() {
                "half the disk tier"
            } else {
                "the memory tier"
            };
            return Err(fail(
                &format!("{tier}.cache.max_object"),
                format!("{max_object} is larger than {holder} ({})", ByteSize(room)),
            ));
        }
        Ok(CacheConfig {
            memory_bytes: c.memory.0,
            max_object_bytes: max_object.0,
            disk,
        })
    };
    let threads = |tier: &str, t: Option<usize>| match t {
        Some(0) => Err(fail(
            &format!("{tier}.threads"),
            "must be at least 1".into(),
        )),
        Some(n) => Ok(n),
        None => Ok(cores),
    };

    let s = file.shield;
    let shield = ProxyConfig {
        listen: s.listen,
        admin: s.admin,
        trust_request_id: true,
        upstreams: vec![s.origin],
        cache: cache("shield", s.cache)?,
        connect_timeout: s.connect_timeout.0,
        upstream_timeout: s.upstream_timeout.0,
        threads: threads("shield", s.threads)?,
        grace_period: s.grace_period.0,
    };
    let e = file.edge;
    if e.shields.is_empty() {
        return Err(fail("edge.shields", "list at least one shield".into()));
    }
    let edge = ProxyConfig {
        listen: e.listen,
        admin: e.admin,
        trust_request_id: e.trust_request_id,
        upstreams: e.shields,
        cache: cache("edge", e.cache)?,
        connect_timeout: e.connect_timeout.0,
        upstream_timeout: e.upstream_timeout.0,
        threads: threads("edge", e.threads)?,
        grace_period: e.grace_period.0,
    };

    let mut listeners = vec![
        ("origin.listen", origin.listen),
        ("shield.listen", shield.listen),
        ("edge.listen", edge.listen),
    ];
    for (field, admin) in [
        ("origin.admin", origin.admin),
        ("shield.admin", shield.admin),
        ("edge.admin", edge.admin),
    ] {
        listeners.extend(admin.map(|a| (field, a)));
    }
    for (i, (field, addr)) in listeners.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        if let Some((other, _)) = listeners[..i].iter().find(|(_, a)| a == addr) {
            return Err(fail(field, format!("{addr} is already used by `{other}`")));
        }
    }

    if file.routes.is_empty() {
        return Err(fail(
            "routes",
            "list at least one route (`prefix: /` covers everything)".into(),
        ));
    }
    let mut routes: Vec<Route> = Vec::with_capacity(file.routes.len());
    for (i, r) in file.routes.into_iter().enumerate() {
        if routes.iter().any(|seen| seen.prefix == r.prefix.0) {
            return Err(fail(
                &format!("routes[{i}].prefix"),
                format!("{:?} is listed twice", r.prefix.0),
            ));
        }
        routes.push(Route {
            prefix: r.prefix.0,
            policy: RoutePolicy {
                ttl: r.ttl.0,
                cacheable: r.cache,
                auth_required: r.auth,
                stale_if_error: r.stale_if_error.0,
            },
        });
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));

    Ok(Config {
        source: path.to_owned(),
        origin,
        shield,
        edge,
        routes: Routes(routes),
        log_format: file.logging.format,
    })
}

/// Where a key starts on a line, past any "- " item markers: (indent, rest of line).
fn key_at(line: &str) -> (usize, &str) {
    let mut body = line.trim_start();
    while let Some(rest) = body.strip_prefix("- ") {
        body = rest.trim_start();
    }
    (line.len() - body.len(), body)
}

/// Finds the line and column of a dotted field path (`edge.cache.memory`, `routes[2].prefix`)
/// in block-style YAML, for errors found after parsing. `None` if it cannot be found.
fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    // Where a key starts on a line, past any "- " item markers.
    let (mut start, mut min_indent, mut found) = (0, 0, None);
    for part in field.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let mut i = start;
        loop {
            let (indent, body) = key_at(lines.get(i)?);
            if indent >= min_indent && body.starts_with(key) && body[key.len()..].starts_with(':') {
                found = Some((i + 1, indent + 1));
                min_indent = indent + 1;
                start = i + 1;
                break;
            }
            if indent < min_indent && !body.is_empty() && !body.starts_with('#') {
                return None; // left the enclosing block
            }
            i += 1;
        }
        if let Some(index) = index {
            let (mut seen, mut item_indent) = (0, None);
            let mut i = start;
            loop {
                let line = lines.get(i)?;
                let trimmed = line.trim_start();
                let indent = line.len() - trimmed.len();
                if trimmed.starts_with('-') && item_indent.is_none_or(|d| d == indent) {
                    item_indent = Some(indent);
                    if seen == index {
                        found = Some((i + 1, indent + 1));
                        start = i;
                        min_indent = indent + 1;
                        break;
                    }
                    seen += 1;
                }
                i += 1;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;
