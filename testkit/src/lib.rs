//! Test harness: runs `origin-adapter`, `shield` and `edge-pop` wired together by a config
//! written for the test, in-process or as the real binaries (`stack`), and a real
//! S3-compatible server (s3s-fs, signature-checking) in-process, and certificates made on the
//! spot for the edge's TLS listener (`tls`). Everything listens on `127.0.0.1` port 0 and
//! reports the port it got: nothing is bound to find a free port. Package fixtures (OCI image
//! layouts, `npm pack` tarballs), published into storage with cdn-admin's own code, are in
//! `packages`.
//!
//! Nothing here sleeps to synchronise: waits poll a condition with a deadline
//! (`TESTKIT_PATIENCE_SECS` scales it for slow machines).

pub mod h2;
pub mod packages;
mod s3;
pub mod scripted;
pub mod stack;
pub mod tls;

pub use s3::S3Server;
pub use scripted::{Canned, ScriptedOrigin, Seen};
pub use stack::{Backend, EdgeTls, Mode, Stack, StackOptions, Tier};
pub use tls::{TestCa, TlsFiles};

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// How long waits may take before a test fails.
pub fn patience() -> Duration {
    let secs = std::env::var("TESTKIT_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Polls `check` until it returns `Some`, or fails the test after `patience()`.
pub fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    eventually_or_none(check).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Polls `check` until it returns `Some`, or gives up with `None` after `patience()`.
pub fn eventually_or_none<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + patience();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An address on 127.0.0.1 where connections are refused, for as long as this value lives:
/// its port is bound and never listened on, so nothing else can take it meanwhile.
pub struct Refusing {
    _socket: socket2::Socket,
    pub addr: std::net::SocketAddr,
}

impl Refusing {
    pub fn new() -> Refusing {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("a bound address");
        Refusing {
            _socket: socket,
            addr,
        }
    }
}

impl Default for Refusing {
    fn default() -> Self {
        Refusing::new()
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), so fixtures need no RNG crate.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sends one raw HTTP/1.1 request line (the target exactly as given, no client
/// normalisation) and returns the status code.
pub fn raw_status(addr: std::net::SocketAddr, method: &str, target: &str) -> u16 {
    raw_request(addr, method, target, &[]).status
}

/// A reply read off the wire: status, header block, and whatever followed it until the
/// server closed the connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// The header block, one `name: value` per line, names as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends one raw HTTP/1.1 request (target exactly as given) and reads the reply's head.
pub fn raw_request(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawReply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(patience())).expect("timeout");
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let mut body = Vec::new();
    let _ = stream.read_to_end(&mut body);
    let text = String::from_utf8_lossy(&head).into_owned();
    let (line, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {line:?} for {target}"));
    RawReply {
        status,
        head: rest.replace("\r\n", "\n"),
        body,
    }
}

/// One HTTP exchange's result, body read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Cache-Status` list (RFC 9211), or "" if absent.
    pub fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }
}

/// Runs `f` with an HTTP client (no proxy; a whole-exchange timeout if given) on a runtime
/// of its own, so tests stay plain synchronous code.
fn with_client<F, T>(
    timeout: Option<std::time::Duration>,
    f: impl FnOnce(reqwest::Client) -> F,
) -> T
where
    F: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    let client = builder.build().expect("client");
    runtime.block_on(f(client))
}

/// Sends `method url` with extra headers and reads the whole reply.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    with_client(Some(patience()), |client| async move {
        let mut req = client.request(method.parse().expect("method"), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {url} body: {e}"));
        Reply {
            status,
            headers,
            body,
        }
    })
}

pub fn get(url: &str) -> Reply {
    request("GET", url, &[])
}

/// GETs `url` and hashes the body as it streams (for objects too big to hold); returns the
/// status, the `Cache-Status` header and the body's length and sha256.
pub fn get_hashed(url: &str) -> (u16, String, u64, String) {
    with_client(None, |client| async move {
        let mut resp = client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let cache_status = resp
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let (mut hasher, mut len) = (Sha256::new(), 0u64);
        while let Some(chunk) = resp
            .chunk()
            .await
            .unwrap_or_else(|e| panic!("GET {url} body: {e}"))
        {
            len += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let hex = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (status, cache_status, len, hex)
    })
}

/// The sum of every series of one metric family (`name` as it starts a line) on a tier's live
/// `/metrics`.
pub fn metric_total(admin: std::net::SocketAddr, name: &str) -> u64 {
    let text = get(&format!("http://{admin}/metrics")).body;
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Every `cdn_request_duration_seconds_count` series of a tier's live `/metrics`, as
/// (tier, cache) → count.
pub fn request_counts(
    admin: std::net::SocketAddr,
) -> std::collections::BTreeMap<(String, String), u64> {
    let text = String::from_utf8(get(&format!("http://{admin}/metrics")).body.to_vec())
        .expect("utf-8 metrics");
    let mut counts = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("cdn_request_duration_seconds_count{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).expect("label") + name.len() + 2;
            line[start..]
                .split('"')
                .next()
                .expect("label value")
                .to_owned()
        };
        let value: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("count");
        if value > 0 {
            counts.insert((label("tier"), label("cache")), value);
        }
    }
    counts
}

/// Requests a tier has answered so far (every `cache` result), by its live `/metrics`.
pub fn answered(admin: std::net::SocketAddr) -> u64 {
    request_counts(admin).values().sum()
}

/// The sum of every series of one metric family in a tier's live `/metrics`.
pub fn metric_sum(admin: std::net::SocketAddr, name: &str) -> f64 {
    let text = String::from_utf8(get(&format!("http://{admin}/metrics")).body.to_vec())
        .expect("utf-8 metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A folder to serve as a local-directory origin, holding `files` (path → content; folders
/// made as needed). Removed when dropped.
pub fn origin_dir(files: &[(impl AsRef<str>, impl AsRef<[u8]>)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    for (name, body) in files {
        let path = root.path().join(name.as_ref());
        std::fs::create_dir_all(path.parent().expect("a file in the folder")).expect("mkdir");
        std::fs::write(path, body).expect("write an origin file");
    }
    root
}

/// One download as a client saw it, for tests that load a tier with many clients at once:
/// never panics, so a failed download is a value to count.
#[derive(Debug)]
pub struct Download {
    /// 0 when no status line came.
    pub status: u16,
    /// The body's bytes as framed (chunked bodies decoded).
    pub body_len: u64,
    pub sha256: String,
    /// The framing said where the body ends and it ended there: `Content-Length` bytes, or a
    /// chunked body's last chunk. A body cut short, or one ended only by the connection
    /// closing, is not complete.
    pub complete: bool,
    /// When the first and last body bytes came.
    pub first_byte: Option<std::time::Instant>,
    pub last_byte: Option<std::time::Instant>,
    /// What went wrong on the wire, if anything.
    pub error: Option<String>,
    /// The header fields, one `name: value` per line, names lower-cased.
    pub head: String,
}

impl Download {
    /// A header field's value (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
    }

    /// A 200 whose framing says it is whole.
    pub fn whole_200(&self) -> bool {
        self.status == 200 && self.complete
    }
}

/// GETs `target` from `addr` on a connection of its own (`Connection: close`), hashing the
/// body as it comes. Reads time out after `patience()`.
pub fn download(addr: std::net::SocketAddr, target: &str, headers: &[(&str, &str)]) -> Download {
    use sha2::Digest as _;
    use std::io::{BufRead, BufReader, Read, Write};
    let mut out = Download {
        status: 0,
        body_len: 0,
        sha256: String::new(),
        complete: false,
        first_byte: None,
        last_byte: None,
        error: None,
        head: String::new(),
    };
    let stream = match std::net::TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(format!("connect: {e}"));
            return out;
        }
    };
    let _ = stream.set_read_timeout(Some(patience()));
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    if let Err(e) = (&stream).write_all(request.as_bytes()) {
        out.error = Some(format!("send: {e}"));
        return out;
    }
    let mut reader = BufReader::with_capacity(256 << 10, stream);
    let mut line = String::new();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut first = true;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                out.error = Some("no complete header".into());
                return out;
            }
            Ok(_) => {}
        }
        let l = line.trim_end();
        if first {
            out.status = l
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            first = false;
            continue;
        }
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            let (name, value) = (name.trim(), value.trim());
            out.head += &format!("{}: {value}\n", name.to_ascii_lowercase());
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut take = |data: &[u8], out: &mut Download| {
        if data.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        out.first_byte.get_or_insert(now);
        out.last_byte = Some(now);
        out.body_len += data.len() as u64;
        hasher.update(data);
    };
    let mut read_exact_len =
        |reader: &mut BufReader<std::net::TcpStream>, mut left: u64, out: &mut Download| -> bool {
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                match reader.read(&mut buf[..want]) {
                    Ok(0) => return false,
                    Ok(n) => {
                        take(&buf[..n], out);
                        left -= n as u64;
                    }
                    Err(e) => {
                        out.error = Some(format!("read: {e}"));
                        return false;
                    }
                }
            }
            true
        };
    if chunked {
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16);
            let Ok(size) = size else { break };
            if size == 0 {
                out.complete = true;
                break;
            }
            if !read_exact_len(&mut reader, size, &mut out) {
                break;
            }
            line.clear();
            let _ = reader.read_line(&mut line);
        }
    } else if let Some(len) = length {
        out.complete = read_exact_len(&mut reader, len, &mut out);
    } else {
        read_exact_len(&mut reader, u64::MAX, &mut out);
    }
    out.sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    out
}
