//! A scripted HTTP/1.1 origin on loopback: each request is answered by a function the test
//! gives, and every request is recorded, so tests can set the exact headers a standard cares
//! about (`Vary`, `Age`, `CDN-Cache-Control`, a 304's fields) and count what reached it.
//! Point a shield at it with `StackOptions::shield_origin`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as it reached the origin.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body sent in pieces of this many bytes, with this pause before each.
    pub pace: Option<(usize, std::time::Duration)>,
    /// The connection closed after this many body bytes (the origin dies mid-body).
    pub cut_at: Option<usize>,
}

impl Canned {
    pub fn new(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Canned {
        Canned {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
            pace: None,
            cut_at: None,
        }
    }

    /// The body sent `chunk` bytes at a time, `pause` before each piece.
    pub fn paced(mut self, chunk: usize, pause: std::time::Duration) -> Canned {
        self.pace = Some((chunk, pause));
        self
    }

    /// The connection closed after `len` bytes of the body.
    pub fn cut_at(mut self, len: usize) -> Canned {
        self.cut_at = Some(len);
        self
    }
}

type Script = dyn Fn(&Seen) -> Canned + Send + Sync;

pub struct ScriptedOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl ScriptedOrigin {
    pub fn start(script: impl Fn(&Seen) -> Canned + Send + Sync + 'static) -> ScriptedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (seen_, stop_) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (seen, script) = (seen_.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &seen, script.as_ref()));
            }
        });
        ScriptedOrigin { addr, seen, stop }
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Requests so far for this path (query aside).
    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path() == path).count()
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers requests on one connection until the peer closes it.
fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, script: &Script) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut request = Seen {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
        };
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                request
                    .headers
                    .push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if request.target == cdn_http::trust::HEALTH_PATH {
            // The shield's probes: answered here, neither scripted nor recorded.
            if writer
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
            continue;
        }
        let answer = script(&request);
        let head_only = request.method == "HEAD";
        seen.lock().expect("lock").push(request);
        let mut out = format!("HTTP/1.1 {} Scripted\r\n", answer.status);
        for (name, value) in &answer.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if answer.status != 304 && answer.status != 204 {
            out.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
        }
        out.push_str("\r\n");
        let body = if !head_only && answer.status != 304 {
            &answer.body[..answer.cut_at.unwrap_or(usize::MAX).min(answer.body.len())]
        } else {
            &[][..]
        };
        let mut first = out.into_bytes();
        let (chunk, pause) = match answer.pace {
            Some(pace) => pace,
            None => {
                // Header and body in one write, as they arrive from a quick origin.
                first.extend_from_slice(body);
                (usize::MAX, Duration::ZERO)
            }
        };
        if writer.write_all(&first).is_err() {
            return;
        }
        let rest = if answer.pace.is_some() { body } else { &[][..] };
        for piece in rest.chunks(chunk.max(1)) {
            std::thread::sleep(pause);
            if writer.write_all(piece).is_err() {
                return;
            }
        }
        let closing = answer
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.contains("close"));
        if closing || answer.cut_at.is_some() {
            return;
        }
    }
}
