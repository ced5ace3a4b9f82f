//! The real agent binary against the real server on loopback: the machine appears with the
//! fixture's identity, and an agent started before the server registers once it is up.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{TempDir, crate_dir};

/// The real server (library `serve`, the same code as the binary) on `addr`, in a thread.
struct Server {
    url: String,
    /// An admin API token (the machine list is an operator route).
    token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl Server {
    fn start(addr: SocketAddr) -> Server {
        let dir = TempDir::new("server");
        // As the binary runs standalone (native installs).
        let config = dragonfly::config::Config::offline(&dir.path().join("sqlite.db"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let token = rt.block_on(async {
            let db = dragonfly::store::Db::open(&config.db).unwrap();
            let auth =
                dragonfly::auth::Auth::new(db, std::sync::Arc::new(dragonfly::clock::SystemClock));
            auth.create_token("agent-tests", dragonfly::auth::Scope::Read, "tests")
                .await
                .unwrap()
                .1
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(dragonfly::serve(config, listener, async {
                let _ = rx.await;
            }))
            .unwrap();
        });
        Server {
            url,
            token,
            stop: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn machines(&self) -> serde_json::Value {
        let mut resp = ureq::get(format!("{}/api/v1/machines", self.url))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap();
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap()
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let mut resp = ureq::get(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap();
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The agent binary in dry-run mode (it never reboots or kexecs this machine), reading the
/// QEMU fixture tree instead of this machine's.
fn start_agent(url: &str) -> (Running, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dragonfly-agent"))
        .env_remove("DRAGONFLY_URL")
        .args(["--server", url, "--dry-run", "--root"])
        .arg(crate_dir().join("fixtures/qemu-q35"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Running(child), rx)
}

/// The agent process, killed when dropped: a failing assertion leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stop(agent: Running) {
    drop(agent);
}

/// Polls the server until one machine is listed; returns when (or panics at `deadline`).
fn wait_for_machine(server: &Server, deadline: Duration) -> (serde_json::Value, Instant) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        let page = server.machines();
        if page["total"] == 1 {
            return (page["items"][0].clone(), Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no machine registered within {deadline:?}");
}

#[test]
fn the_machine_appears_with_its_real_identity() {
    let server = Server::start("127.0.0.1:0".parse().unwrap());
    let (agent, _log) = start_agent(&server.url);
    let (m, _) = wait_for_machine(&server, Duration::from_secs(30));
    stop(agent);
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate_dir().join("fixtures/qemu-q35.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["boot_mac"], golden["boot_mac"]);
    assert_eq!(m["serial"], golden["smbios"]["system"]["serial"]);
    assert_eq!(m["smbios_uuid"], golden["smbios"]["system"]["uuid"]);
    assert_eq!(m["vendor"], golden["smbios"]["system"]["vendor"]);
    let detail = server.get(&format!("/api/v1/machines/{}", m["id"].as_str().unwrap()));
    let macs = |v: &serde_json::Value| {
        let mut m: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["mac"].as_str().unwrap().to_string())
            .collect();
        m.sort();
        m
    };
    assert_eq!(macs(&detail["nics"]), macs(&golden["nics"]));
    let serials = |v: &serde_json::Value| {
        let mut s: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["serial"].as_str().map(str::to_string))
            .collect();
        s.sort();
        s
    };
    assert_eq!(serials(&detail["disks"]), serials(&golden["disks"]));
    assert_eq!(detail["hardware"]["cpu"], golden["cpu"]);
}

#[test]
fn an_agent_started_before_the_server_registers_within_five_seconds_of_it() {
    // Reserve a free port, then leave it closed: the agent finds nobody there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (agent, log) = start_agent(&format!("http://{addr}"));
    // Let it fail a few times (its backoff grows toward the 5 s cap meanwhile).
    let mut failures = 0;
    let began = Instant::now();
    while failures < 4 && began.elapsed() < Duration::from_secs(30) {
        if let Ok(line) = log.recv_timeout(Duration::from_secs(1)) {
            if line.contains("retrying") {
                failures += 1;
            }
        }
    }
    assert!(failures >= 4, "the agent did not log its retries");
    let server = Server::start(addr);
    let up = Instant::now();
    let (_, registered) = wait_for_machine(&server, Duration::from_secs(30));
    stop(agent);
    let delay = registered.duration_since(up);
    // The backoff caps at 5 s; the margin covers the poll interval and a loaded CI machine.
    assert!(
        delay <= Duration::from_millis(5_750),
        "registered {delay:?} after the server came up"
    );
}
