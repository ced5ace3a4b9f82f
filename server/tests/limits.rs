//! The listener's bounds, with short limits so the tests are quick: idle and slow
//! connections are closed, slow bodies get 408, huge announced bodies 413 at once, and the
//! connection caps hold per address while other addresses are still served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use dragonfly::listener::{Limits, serve};

use crate::support::TestServer;

/// The real router behind a listener with `limits`.
async fn start(limits: Limits) -> (SocketAddr, TestServer) {
    let s = TestServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = dragonfly::router(s.state.clone());
    tokio::spawn(serve(listener, app, None, limits, std::future::pending()));
    (addr, s)
}

fn short() -> Limits {
    Limits {
        max_connections: 6,
        max_per_address: 3,
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// Reads until the peer closes or answers; returns what came and when, from `since`.
fn read_all(mut c: TcpStream, since: Instant) -> (String, Duration) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    (String::from_utf8_lossy(&buf).into_owned(), since.elapsed())
}

/// A blocking connection from loopback address `from` (each one stands for a host).
async fn connect(addr: SocketAddr, from: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let stream = socket.connect(addr).await.unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// [`read_all`] on a runtime worker that may block.
fn wait(c: TcpStream, since: Instant) -> (String, Duration) {
    tokio::task::block_in_place(|| read_all(c, since))
}

fn send(c: &mut TcpStream, bytes: &[u8]) {
    tokio::task::block_in_place(|| c.write_all(bytes).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_connections_are_closed() {
    let (addr, _s) = start(short()).await;
    {
        // Nothing sent at all.
        let c = connect(addr, [127, 0, 0, 1]).await;
        let (got, after) = wait(c, Instant::now());
        assert_eq!(got, "");
        assert!(after < Duration::from_secs(3), "{after:?}");
        // Headers trickled.
        let mut c = connect(addr, [127, 0, 0, 1]).await;
        send(&mut c, b"GET /healthz HTTP/1.1\r\n");
        let (got, _) = wait(c, Instant::now());
        assert!(!got.contains("200 OK"), "{got}");
        // A body announced and not sent.
        let mut c = connect(addr, [127, 0, 0, 1]).await;
        send(
            &mut c,
            b"POST /api/v1/agent/register HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        );
        let (got, _) = wait(c, Instant::now());
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("request_timeout"), "{got}");
        // A body far larger than any route takes: refused before it is read.
        let mut c = connect(addr, [127, 0, 0, 1]).await;
        let start = Instant::now();
        send(
            &mut c,
            b"POST /api/v1/agent/register HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{}",
        );
        let (got, after) = wait(c, start);
        assert!(got.starts_with("HTTP/1.1 413"), "{got}");
        assert!(after < Duration::from_millis(250), "{after:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_capped_per_address_and_overall() {
    let (addr, _s) = start(Limits {
        header_timeout: Duration::from_secs(30),
        ..short()
    })
    .await;
    {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect(addr, [127, 0, 0, 2]).await);
        }
        // A fourth from the same address is closed at once.
        let c = connect(addr, [127, 0, 0, 2]).await;
        let (got, after) = wait(c, Instant::now());
        assert_eq!(got, "");
        assert!(after < Duration::from_secs(2));
        // Another address is still served.
        let mut c = connect(addr, [127, 0, 0, 3]).await;
        send(
            &mut c,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let (got, _) = wait(c, Instant::now());
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        // Overall: three more addresses fill the listener (6); the next is closed.
        let mut more = Vec::new();
        for i in 4..7 {
            more.push(connect(addr, [127, 0, 0, i]).await);
        }
        let c = connect(addr, [127, 0, 0, 9]).await;
        let (got, _) = wait(c, Instant::now());
        assert_eq!(got, "");
        // Closing connections frees their places.
        drop(held);
        drop(more);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut c = connect(addr, [127, 0, 0, 2]).await;
        send(
            &mut c,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let (got, _) = wait(c, Instant::now());
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_a_download_is_dropped() {
    let (addr, s) = start(Limits {
        write_stall: Duration::from_millis(300),
        ..short()
    })
    .await;
    let dir = s.dir.path().join("netboot");
    std::fs::create_dir_all(&dir).unwrap();
    let size = 32 << 20;
    std::fs::write(dir.join("vmlinuz"), vec![7u8; size]).unwrap();
    std::fs::write(dir.join("initramfs.zst"), b"x").unwrap();
    let mut c = connect(addr, [127, 0, 0, 1]).await;
    send(
        &mut c,
        b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    // Read nothing while the server's writes stall, then take what is left.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (got, _) = wait(c, Instant::now());
    assert!(got.starts_with("HTTP/1.1 200"));
    assert!(
        got.len() < size,
        "the whole file came: the stalled writer was not dropped"
    );
}
