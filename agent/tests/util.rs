//! Test helpers: a scripted HTTP server on 127.0.0.1:0, a host that records commands, temp
//! trees, and a builder for SMBIOS tables.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dragonfly_agent::host::{Cmd, Host};

/// Routes the agent's log lines through the test harness's per-test capture.
pub fn capture_logs() {
    dragonfly_agent::log::set_sink(|line| eprintln!("{line}"));
}

/// The agent's crate directory (fixtures live under it).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        capture_logs();
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "dragonfly-agent-test-{}-{label}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `rel` (creating parent directories).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    /// Creates the symlink `rel` → `target`.
    pub fn symlink(&self, rel: &str, target: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.0.join(rel)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with a JSON (or any text) body.
    Json(u16, String),
    /// A 200 with bytes.
    Bytes(Vec<u8>),
    /// Close the connection without answering.
    Hangup,
}

pub fn ok(json: serde_json::Value) -> Reply {
    Reply::Json(200, json.to_string())
}

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The path without its query string (replies are scripted per path).
    pub path: String,
    /// The query string, if any (`wait=10` on a long-polled heartbeat).
    pub query: Option<String>,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Script {
    queues: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
    seen: Vec<Seen>,
}

/// A scripted HTTP/1.1 server: per path, queued replies in order, then the default reply
/// for that path, else 404. One request per connection (`Connection: close`).
pub struct FakeServer {
    pub url: String,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    pub fn start() -> Self {
        capture_logs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(Script::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (script.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Self { url, script, stop }
    }

    /// Queues a reply for `path`.
    pub fn on(&self, path: &str, reply: Reply) -> &Self {
        self.script
            .lock()
            .unwrap()
            .queues
            .entry(path.to_string())
            .or_default()
            .push_back(reply);
        self
    }

    /// The reply for `path` once its queue is empty.
    pub fn default(&self, path: &str, reply: Reply) -> &Self {
        self.script
            .lock()
            .unwrap()
            .defaults
            .insert(path.to_string(), reply);
        self
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    pub fn seen_on(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn serve(conn: TcpStream, script: &Mutex<Script>) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target, None),
    };
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok();
    let reply = {
        let mut s = script.lock().unwrap();
        s.seen.push(Seen {
            method,
            path: path.clone(),
            query,
            headers,
            body,
        });
        match s.queues.get_mut(&path).and_then(VecDeque::pop_front) {
            Some(r) => r,
            None => s
                .defaults
                .get(&path)
                .cloned()
                .unwrap_or(Reply::Json(404, r#"{"error":"not_found"}"#.into())),
        }
    };
    let mut conn = conn;
    let (status, ctype, bytes) = match reply {
        Reply::Hangup => return,
        Reply::Json(status, body) => (status, "application/json", body.into_bytes()),
        Reply::Bytes(b) => (200, "application/octet-stream", b),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&bytes);
    let _ = conn.flush();
}

/// What the recording host was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Did {
    Run(String),
    Sysrq(char),
    Sleep(Duration),
}

/// Records every command and sleep (sleeps return at once). Commands whose program is in
/// `failing` fail with that message. After `max_sleeps` sleeps it sets the stop flag, so a
/// test that goes wrong ends instead of looping forever.
#[derive(Clone)]
pub struct RecordingHost {
    pub log: Arc<Mutex<Vec<Did>>>,
    pub failing: HashMap<String, String>,
    pub sysrq_fails: bool,
    pub stop: Arc<AtomicBool>,
    pub max_sleeps: usize,
}

impl RecordingHost {
    pub fn new() -> Self {
        Self {
            log: Arc::default(),
            failing: HashMap::new(),
            sysrq_fails: false,
            stop: Arc::default(),
            max_sleeps: 200,
        }
    }

    pub fn did(&self) -> Vec<Did> {
        self.log.lock().unwrap().clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.did()
            .into_iter()
            .filter_map(|d| match d {
                Did::Run(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.did()
            .into_iter()
            .filter_map(|d| match d {
                Did::Sleep(s) => Some(s),
                _ => None,
            })
            .collect()
    }
}

impl Host for RecordingHost {
    fn run(&mut self, cmd: &Cmd) -> Result<(), String> {
        self.log.lock().unwrap().push(Did::Run(cmd.to_string()));
        match self.failing.get(&cmd.program) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn sysrq(&mut self, key: char) -> Result<(), String> {
        self.log.lock().unwrap().push(Did::Sysrq(key));
        if self.sysrq_fails {
            Err("sysrq-trigger: permission denied".into())
        } else {
            Ok(())
        }
    }

    fn sleep(&mut self, d: Duration) {
        let mut log = self.log.lock().unwrap();
        log.push(Did::Sleep(d));
        let sleeps = log.iter().filter(|d| matches!(d, Did::Sleep(_))).count();
        if sleeps >= self.max_sleeps {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Builds raw SMBIOS structures (header, formatted area, string set) into a table.
#[derive(Default)]
pub struct SmbiosTable {
    bytes: Vec<u8>,
    handle: u16,
}

impl SmbiosTable {
    /// Adds a structure of `kind` whose formatted area after the 4-byte header is `fields`;
    /// string fields hold 1-based indexes into `strings`.
    pub fn add(&mut self, kind: u8, fields: &[u8], strings: &[&str]) -> &mut Self {
        self.bytes.push(kind);
        self.bytes.push(4 + fields.len() as u8);
        self.bytes.extend_from_slice(&self.handle.to_le_bytes());
        self.handle += 1;
        self.bytes.extend_from_slice(fields);
        if strings.is_empty() {
            self.bytes.extend_from_slice(&[0, 0]);
        } else {
            for s in strings {
                self.bytes.extend_from_slice(s.as_bytes());
                self.bytes.push(0);
            }
            self.bytes.push(0);
        }
        self
    }

    /// The table, closed by an end-of-table structure.
    pub fn finish(&mut self) -> Vec<u8> {
        self.add(127, &[], &[]);
        std::mem::take(&mut self.bytes)
    }
}

/// A valid 64-bit (`_SM3_`) SMBIOS 3.2 entry point for a table of `len` bytes.
pub fn entry_point_64(len: u32) -> Vec<u8> {
    let mut ep = vec![0u8; 0x18];
    ep[..5].copy_from_slice(b"_SM3_");
    ep[6] = 0x18;
    ep[7] = 3;
    ep[8] = 2;
    ep[10] = 1;
    ep[12..16].copy_from_slice(&len.to_le_bytes());
    let sum = ep.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    ep[5] = 0u8.wrapping_sub(sum);
    ep
}
