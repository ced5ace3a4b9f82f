use std::net::SocketAddr;
use std::time::Duration;

use dragonfly::boot::tftp::{self, Packet, Request};
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::UdpSocket;

use crate::support::{TestServer, eventually, expect_error, expect_json, report};

fn netboot_dir(s: &TestServer) -> std::path::PathBuf {
    s.dir.path().join("netboot")
}

/// Writes a fake artefact (random bytes) into the server's boot directory.
fn install_artefact(s: &TestServer) -> Vec<u8> {
    let dir = netboot_dir(s);
    std::fs::create_dir_all(&dir).unwrap();
    let kernel: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("vmlinuz"), &kernel).unwrap();
    std::fs::write(dir.join("initramfs.zst"), b"initramfs").unwrap();
    std::fs::write(dir.join("ipxe.lkrn"), b"lkrn").unwrap();
    std::fs::write(dir.join("manifest.json"), r#"{"version":"test-1"}"#).unwrap();
    kernel
}

async fn text(s: &TestServer, path: &str) -> String {
    let resp = s.get(path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.text().await.unwrap()
}

#[tokio::test]
async fn the_first_script_hands_over_to_the_per_machine_script() {
    let s = TestServer::start().await;
    let t = text(&s, "/boot/boot.ipxe").await;
    assert!(t.starts_with("#!ipxe"));
    assert!(
        t.contains(&format!(
            "chain --autofree {}/boot/${{mac:hexhyp}}.ipxe",
            s.url
        )),
        "{t}"
    );
}

#[tokio::test]
async fn an_unknown_machine_gets_the_inventory_image_or_a_clear_message() {
    let s = TestServer::start().await;
    let t = text(&s, "/boot/52-54-00-aa-bb-cc.ipxe").await;
    assert!(t.contains("has no netboot image yet"), "{t}");
    assert!(t.contains("exit 1"));
    install_artefact(&s);
    // The boot directory is looked at again after a second or two, not on every request.
    let t = eventually("the artefact to be noticed", || async {
        let t = text(&s, "/boot/52-54-00-AA-BB-CC.ipxe").await;
        t.contains("kernel ").then_some(t)
    })
    .await;
    assert!(t.contains(&format!("kernel ${{base}}/vmlinuz initrd=initramfs.zst dragonfly.url={} BOOTIF=01-52-54-00-aa-bb-cc", s.url)), "{t}");
    assert!(t.contains("initrd ${base}/initramfs.zst"));
    assert!(t.contains("(test-1)"));
}

#[tokio::test]
async fn the_script_follows_the_machine_state_to_hookos_and_the_local_disk() {
    let s = TestServer::start().await;
    install_artefact(&s);
    let r = s.register(report(1)).await;
    let id = r["machine_id"].as_str().unwrap();
    let token = r["token"].as_str().unwrap();
    let script = "/boot/52-54-00-00-00-01.ipxe";
    assert!(text(&s, script).await.contains("dragonfly.url="));
    // HookOS is refused to a machine with no OS assigned.
    expect_error(
        s.get("/boot/52-54-00-00-00-01/hookos.ipxe").await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;

    s.post(
        &format!("/api/v1/machines/{id}/assign"),
        json!({"os": "ubuntu-24.04"}),
    )
    .await;
    let t = text(&s, script).await;
    assert!(
        t.contains(&format!(
            "chain --autofree {}/boot/52-54-00-00-00-01/hookos.ipxe",
            s.url
        )),
        "{t}"
    );

    let hook = text(&s, "/boot/52:54:00:00:00:01/hookos.ipxe").await;
    assert!(
        hook.contains("worker_id=52:54:00:00:00:01 hw_addr=52:54:00:00:00:01"),
        "{hook}"
    );
    assert!(
        hook.contains(&format!("set hook {}/hookos", s.url)),
        "{hook}"
    );
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    // Anyone may fetch this script: it is logged, and changes no state.
    assert_eq!(m["state"], "assigned");
    assert_eq!(m["events"][0]["kind"], "netboot");
    assert_eq!(m["events"][0]["message"], "PXE boot: served hookos.ipxe");
    // The installer says it started.
    s.heartbeat(token, json!({"phase": "installing"})).await;
    // While installing, a PXE boot re-enters the installer.
    assert!(text(&s, script).await.contains("hookos.ipxe"));

    s.heartbeat(token, json!({"phase": "installed"})).await;
    let t = text(&s, script).await;
    assert!(t.contains("exit 1") && !t.contains("kernel"), "{t}");
    // Each PXE boot of a known machine is on its timeline, with where it was sent.
    let m = expect_json(
        s.get(&format!("/api/v1/machines/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["events"][0]["kind"], "netboot");
    assert_eq!(m["events"][0]["message"], "PXE boot: served local.ipxe");
}

#[tokio::test]
async fn bad_macs_and_unknown_files_are_refused() {
    let s = TestServer::start().await;
    install_artefact(&s);
    expect_error(
        s.get("/boot/not-a-mac.ipxe").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("mac"),
    )
    .await;
    expect_error(
        s.get("/boot/sqlite.db").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    expect_error(
        s.get("/boot/..%2Fsqlite.db").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    expect_error(
        s.get("/hookos/vmlinuz").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    expect_error(
        s.get("/hookos/vmlinuz-x86_64").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
}

#[tokio::test]
async fn artefacts_are_served_with_ranges_and_etags() {
    let s = TestServer::start().await;
    let kernel = install_artefact(&s);
    let resp = s.get("/boot/vmlinuz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-length"],
        kernel.len().to_string().as_str()
    );
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    let etag = resp
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), kernel.as_slice());

    let part = s
        .client
        .get(format!("{}/boot/vmlinuz", s.url))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1000-1999/{}", kernel.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &kernel[1000..2000]);

    let cached = s
        .client
        .get(format!("{}/boot/vmlinuz", s.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    let head = s
        .client
        .head(format!("{}/boot/initramfs.zst", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "9");
}

#[tokio::test]
async fn healthz_reports_the_artefact() {
    let s = TestServer::start().await;
    let h = expect_json(s.get("/healthz").await, StatusCode::OK).await;
    assert_eq!(h["netboot"]["present"], false);
    assert_eq!(h["tftp"], false);
    install_artefact(&s);
    // The boot directory is looked at again after a second or two, not on every request.
    let h = eventually("the artefact to be noticed", || async {
        let h = expect_json(s.get("/healthz").await, StatusCode::OK).await;
        (h["netboot"]["present"] == true).then_some(h)
    })
    .await;
    assert_eq!(h["netboot"]["version"], "test-1");
    assert_eq!(h["netboot"]["ipxe_lkrn"], true);
}

/// A minimal TFTP client: reads `name`, acknowledging every block.
async fn tftp_get(
    server: SocketAddr,
    name: &str,
    options: &[(&str, &str)],
) -> Result<(Vec<u8>, Vec<(String, String)>), (u16, String)> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = Packet::Read(Request {
        filename: name.into(),
        mode: "octet".into(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    sock.send_to(&tftp::encode(&req), server).await.unwrap();
    let mut out = Vec::new();
    let mut oack = Vec::new();
    let mut buf = vec![0u8; 70000];
    let mut expected: u16 = 1;
    loop {
        let (n, peer) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        match tftp::parse(&buf[..n]).unwrap() {
            Packet::OptionAck(o) => {
                oack = o;
                sock.send_to(&tftp::encode(&Packet::Ack { block: 0 }), peer)
                    .await
                    .unwrap();
            }
            Packet::Data { block, data } => {
                assert_eq!(block, expected);
                out.extend_from_slice(&data);
                sock.send_to(&tftp::encode(&Packet::Ack { block }), peer)
                    .await
                    .unwrap();
                let blksize = oack
                    .iter()
                    .find(|(k, _)| k == "blksize")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(512);
                if data.len() < blksize {
                    return Ok((out, oack));
                }
                expected = expected.wrapping_add(1);
            }
            Packet::Error { code, message } => return Err((code, message)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn tftp_serves_the_first_stage_with_blksize_and_tsize() {
    let dir = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("undionly.kpxe"), &payload).unwrap();
    std::fs::write(dir.path().join("ipxe.efi"), vec![7u8; 1024]).unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"no").unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tftp::serve(socket, dir.path().to_path_buf(), async {
        let _ = rx.await;
    }));

    let (data, oack) = tftp_get(
        addr,
        "undionly.kpxe",
        &[("blksize", "1428"), ("tsize", "0")],
    )
    .await
    .unwrap();
    assert_eq!(data, payload);
    assert_eq!(
        oack,
        vec![
            ("blksize".into(), "1428".into()),
            ("tsize".into(), "70000".into())
        ]
    );
    // Plain RFC 1350: 512-byte blocks, and a file that is an exact multiple ends with an
    // empty block.
    let (data, oack) = tftp_get(addr, "ipxe.efi", &[]).await.unwrap();
    assert_eq!(data, vec![7u8; 1024]);
    assert!(oack.is_empty());

    assert_eq!(tftp_get(addr, "snponly.efi", &[]).await.unwrap_err().0, 1);
    assert_eq!(tftp_get(addr, "secret.txt", &[]).await.unwrap_err().0, 2);
    assert_eq!(
        tftp_get(addr, "../undionly.kpxe", &[]).await.unwrap_err().0,
        2
    );

    // Writes are refused.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wrq = Packet::Write(Request {
        filename: "ipxe.efi".into(),
        mode: "octet".into(),
        options: vec![],
    });
    sock.send_to(&tftp::encode(&wrq), addr).await.unwrap();
    let mut buf = [0u8; 600];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        tftp::parse(&buf[..n]).unwrap(),
        Packet::Error { code: 2, .. }
    ));

    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_flood_of_boot_script_requests_is_logged_once() {
    let s = TestServer::start().await;
    install_artefact(&s);
    let r = s.register(report(21)).await;
    let id = r["machine_id"].as_str().unwrap();
    for _ in 0..50 {
        assert!(
            text(&s, "/boot/52-54-00-00-00-15.ipxe")
                .await
                .contains("kernel")
        );
    }
    let events = expect_json(
        s.get(&format!("/api/v1/events/log?machine={id}")).await,
        StatusCode::OK,
    )
    .await;
    let boots = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "netboot")
        .count();
    assert_eq!(boots, 1, "{events}");
}

#[tokio::test]
async fn ranges_follow_if_range_and_unsatisfiable_ones_say_the_length() {
    let s = TestServer::start().await;
    let kernel = install_artefact(&s);
    let url = format!("{}/boot/vmlinuz", s.url);
    let full = s.anon.get(&url).send().await.unwrap();
    let etag = full.headers()["etag"].to_str().unwrap().to_string();
    let range = |validator: &str| {
        s.anon
            .get(&url)
            .header("range", "bytes=0-99")
            .header("if-range", validator.to_string())
            .send()
    };
    // The same file: the range applies.
    assert_eq!(
        range(&etag).await.unwrap().status(),
        StatusCode::PARTIAL_CONTENT
    );
    // Another version: the whole file comes back.
    let stale = range("\"not-this-one\"").await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.bytes().await.unwrap().len(), kernel.len());
    // A range past the end: 416 with the length.
    let past = s
        .anon
        .get(&url)
        .header("range", format!("bytes={}-", kernel.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{}", kernel.len()).as_str()
    );
}

#[tokio::test]
async fn unanswered_tftp_requests_hold_at_most_a_few_transfers_per_peer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("undionly.kpxe"), vec![1u8; 4096]).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(tftp::serve(
        socket,
        dir.path().to_path_buf(),
        std::future::pending(),
    ));
    // A flood of read requests from one address that never acknowledges anything.
    let flood = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let rrq = tftp::encode(&Packet::Read(Request {
        filename: "undionly.kpxe".into(),
        mode: "octet".into(),
        options: vec![],
    }));
    for _ in 0..300 {
        flood.send_to(&rrq, addr).await.unwrap();
    }
    // Transfers answer from their own sockets: count the distinct ones that answered.
    let mut peers = std::collections::HashSet::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok((_, from))) =
        tokio::time::timeout(Duration::from_millis(300), flood.recv_from(&mut buf)).await
    {
        peers.insert(from);
    }
    assert!(
        !peers.is_empty() && peers.len() <= tftp::MAX_TRANSFERS_PER_PEER,
        "{} transfers for one peer",
        peers.len()
    );
    // Another address is still served at once.
    let (data, _) = tftp_get(addr, "undionly.kpxe", &[]).await.unwrap();
    assert_eq!(data.len(), 4096);
}
