//! A bare HTTP/2 client over TLS (the `h2` crate), for what ordinary clients never send: a
//! GET that announces a body, or one whose body never ends. Each call opens a connection of its
//! own, trusting the test CA's certificate, and drops it when done.

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One request on an HTTP/2 stream.
#[derive(Debug, Clone)]
pub struct H2Request {
    pub method: &'static str,
    pub path: String,
    /// A `content-length` field, whatever the body really holds.
    pub content_length: Option<u64>,
    /// The body's bytes, sent in one DATA frame (none when empty).
    pub body: Vec<u8>,
    /// Whether the stream is ended after the body; `false` leaves it open, as a client that
    /// never finishes sending does.
    pub end: bool,
    /// Further header fields.
    pub headers: Vec<(String, String)>,
}

impl H2Request {
    /// A GET with no body, its stream ended with the header.
    pub fn get(path: &str) -> H2Request {
        H2Request {
            method: "GET",
            path: path.to_owned(),
            content_length: None,
            body: Vec::new(),
            end: true,
            headers: Vec::new(),
        }
    }

    /// The same with one more header field.
    pub fn header(mut self, name: &str, value: &str) -> H2Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Sends `requests` at once on one TLS connection to `addr` (SNI `name`, trusting the CA
/// certificate at `ca`), waits up to `wait` for each response's status, then drops the
/// connection, streams still open included. Returns each status, 0 where none came.
pub fn exchange(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
    requests: Vec<H2Request>,
    wait: Duration,
) -> Vec<u16> {
    block_on(async move {
        let (mut client, driver) = open(addr, name, ca).await;
        let mut answers = Vec::new();
        let mut open = Vec::new();
        for r in requests {
            client = client.ready().await.expect("a stream to send on");
            let mut req = http::Request::builder()
                .method(r.method)
                .uri(format!("https://{name}{}", r.path));
            if let Some(length) = r.content_length {
                req = req.header(http::header::CONTENT_LENGTH, length);
            }
            for (name, value) in &r.headers {
                req = req.header(name.as_str(), value.as_str());
            }
            let req = req.body(()).expect("a request");
            let header_ends = r.body.is_empty() && r.end;
            let (response, mut send) = client
                .send_request(req, header_ends)
                .expect("send a request");
            if !r.body.is_empty() {
                let _ = send.send_data(Bytes::from(r.body), r.end);
            }
            open.push(send);
            answers.push(response);
        }
        let mut statuses = Vec::new();
        for response in answers {
            let status = tokio::time::timeout(wait, response)
                .await
                .ok()
                .and_then(|r| r.ok())
                .map_or(0, |r| r.status().as_u16());
            statuses.push(status);
        }
        drop(open);
        drop(client);
        driver.abort();
        statuses
    })
}

/// Runs `work` on a runtime of its own, so tests stay plain synchronous code.
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(work)
}

/// An HTTP/2 connection over TLS to `addr`, and the task driving it (it ends when the
/// connection does).
async fn open(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tls = connect(addr, name, ca).await;
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, driver)
}

async fn connect(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let pem = std::fs::read(ca).expect("the CA certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let server = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("a name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server, tcp)
        .await
        .expect("TLS handshake")
}

/// Opens a TLS connection to `addr`, sends one GET of `path` and reads its answer, then keeps
/// the connection open with no stream until the server closes it or `wait` passes; whether
/// the server closed it.
pub fn closed_when_idle(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
    path: &str,
    wait: Duration,
) -> bool {
    block_on(async move {
        let (mut client, mut driver) = open(addr, name, ca).await;
        let req = http::Request::get(format!("https://{name}{path}"))
            .body(())
            .expect("a request");
        let (response, _) = client.send_request(req, true).expect("send a request");
        let mut body = response.await.expect("an answer").into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("a body");
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        tokio::time::timeout(wait, &mut driver).await.is_ok()
    })
}
