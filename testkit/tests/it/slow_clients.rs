//! A client that stops reading holds up nobody: the fill it started goes on at the upstream's
//! pace into the cache, other clients read it at theirs, and the stalled one is dropped after
//! the send timeout.

use std::io::{Read, Write};
use std::time::{Duration, Instant};
use testkit::{download, origin_dir, pattern, sha256_hex, Backend, Stack, StackOptions};

const MIB: usize = 1 << 20;
const SEND_TIMEOUT: Duration = Duration::from_secs(8);

#[test]
fn a_stalled_client_neither_stalls_the_fill_nor_the_next_client_and_is_dropped() {
    let body = pattern(256 * MIB, 41);
    let root = origin_dir(&[("files/big.bin", &body)]);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    options.max_object = "512MiB";
    options.disk = Some("1GiB");
    options.send_timeout = "8s";
    let stack = Stack::start(options);

    // The first client starts the fill, reads 1 MiB of the body and stops reading. Its small
    // receive buffer fills at once, so the edge's write to it starts waiting soon after.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    socket.connect(&stack.edge.into()).unwrap();
    let mut stalled: std::net::TcpStream = socket.into();
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stalled,
        "GET /files/big.bin HTTP/1.1\r\nHost: cdn.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = vec![0u8; MIB];
    stalled.read_exact(&mut got).unwrap();

    // A second client gets the whole object, at the upstream's pace, long before the stalled
    // one is given up on.
    let started = Instant::now();
    let second = download(stack.edge, "/files/big.bin", &[]);
    let took = started.elapsed();
    assert!(second.whole_200(), "{second:?}");
    assert_eq!(second.sha256, sha256_hex(&body));
    assert!(
        took < SEND_TIMEOUT,
        "the second download took {took:?}: it waited for the stalled client"
    );

    // The stalled client was dropped once a write to it waited the send timeout: reading on,
    // it gets what the socket buffers held, then the end, never the whole object.
    // Its writes wait from when the edge has something to send it that does not fit, at the
    // latest once the fill is done (the second download has it all by then).
    std::thread::sleep(SEND_TIMEOUT + Duration::from_secs(4));
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    let received = MIB + rest.len();
    assert!(
        received < body.len(),
        "the stalled client got all {received} bytes: it was never dropped"
    );
}

#[test]
fn ten_thousand_stalled_clients_hold_bounded_memory() {
    const CLIENTS: usize = 10_000;
    /// What a stalled client may cost the edge's process, beyond the kernel's socket buffers.
    /// (Measured: about 55 KiB in a debug build.)
    const PER_CLIENT: u64 = 96 << 10;
    let body = pattern(MIB, 3);
    let root = origin_dir(&[("files/idle.bin", &body)]);
    let stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())).processes());
    // In the edge's memory tier: every client below is a hit.
    assert!(download(stack.edge, "/files/idle.bin", &[]).whole_200());
    std::thread::sleep(Duration::from_millis(500));
    let before = stack.rss("edge");

    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        // A small window: the edge can push little before it must wait.
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&stack.edge.into()).expect("connect");
        let mut stream: std::net::TcpStream = socket.into();
        stream
            .write_all(b"GET /files/idle.bin HTTP/1.1\r\nHost: cdn.test\r\n\r\n")
            .unwrap();
        clients.push(stream);
        if i % 1000 == 999 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = stack.rss("edge");
    let per_client = after.saturating_sub(before) / CLIENTS as u64;
    eprintln!(
        "edge RSS {} MiB before, {} MiB with {CLIENTS} stalled clients: {} KiB each",
        before >> 20,
        after >> 20,
        per_client >> 10
    );
    assert!(
        per_client <= PER_CLIENT,
        "{} KiB per stalled client",
        per_client >> 10
    );
    // The edge still answers others at once.
    let started = Instant::now();
    let other = download(stack.edge, "/files/idle.bin", &[]);
    assert!(other.whole_200() && other.sha256 == sha256_hex(&body));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(clients);
}
