//! An image server that drops connections: a small HTTP/1.1 file server on loopback (QEMU's
//! user network reaches it at 10.0.2.2) that answers `Range: bytes=N-` with 206 and cuts
//! its first connections after a number of body bytes, the way a flaky mirror or a
//! restarted proxy does. It stands in for nothing: the agent downloads from it for real.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct FlakyServer {
    pub port: u16,
    /// Range requests answered with 206.
    pub resumes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyServer {
    /// Serves `file` at `/image`; the first `drops` connections break after `after` bytes.
    pub async fn start(file: PathBuf, drops: usize, after: u64) -> FlakyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let resumes = Arc::new(AtomicUsize::new(0));
        let seen = resumes.clone();
        let served = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            // Bounded: a download needs a handful of connections.
            for _ in 0..64 {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                let cut = (n <= drops).then_some(after);
                let (file, seen) = (file.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &file, cut, &seen).await;
                });
            }
        });
        FlakyServer {
            port,
            resumes,
            task,
        }
    }
}

impl Drop for FlakyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut conn: TcpStream,
    path: &PathBuf,
    cut: Option<u64>,
    resumes: &AtomicUsize,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if conn.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let from: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("range: bytes="))
        .and_then(|r| r.trim().trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    let mut file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let etag = format!("\"{len:x}\"");
    let status = if from > 0 {
        resumes.fetch_add(1, Ordering::Relaxed);
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{len}\r\n",
            len - 1
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_string()
    };
    conn.write_all(
        format!(
            "{status}Content-Length: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            len - from
        )
        .as_bytes(),
    )
    .await?;
    file.seek(std::io::SeekFrom::Start(from)).await?;
    let mut body = file.take(cut.unwrap_or(u64::MAX));
    tokio::io::copy(&mut body, &mut conn).await?;
    // A cut connection is reset, not closed cleanly: the client sees it mid-body.
    drop(conn);
    Ok(())
}
