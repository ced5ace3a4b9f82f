//! Dragonfly's DHCP, everything short of the network: a machine's network-boot settings over
//! the API, the lease allocator of full mode on a real SQLite file (no address twice,
//! reservations, expiry, restarts), and the settings' checks. The packets and sockets are
//! tested on a real virtual network by tests/dhcp (network namespaces, dnsmasq, QEMU).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use dragonfly::config::{Dhcp, DhcpArgs, DhcpMode, Pool, ServeArgs, UefiBinary};
use dragonfly::machines::Machines;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestServer, expect_error, expect_json, report};

fn pool(first: u8, last: u8) -> Pool {
    Pool {
        first: Ipv4Addr::new(10, 9, 0, first),
        last: Ipv4Addr::new(10, 9, 0, last),
        network: Ipv4Addr::new(10, 9, 0, 0),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        excluded: vec![Ipv4Addr::new(10, 9, 0, 1)],
    }
}

#[tokio::test]
async fn a_machines_netboot_settings_are_kept_checked_and_on_its_timeline() {
    let s = TestServer::start().await;
    let a = s.register(report(1)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.register(report(2)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = |id: &str| format!("/api/v1/machines/{id}/netboot");
    let got = expect_json(s.get(&path(&a)).await, StatusCode::OK).await;
    assert_eq!(got, json!({"pxe": "auto", "reserved_ip": null}));

    let set = json!({"pxe": "off", "reserved_ip": "10.9.0.50"});
    assert_eq!(
        expect_json(s.put(&path(&a), set.clone()).await, StatusCode::OK).await,
        set
    );
    assert_eq!(
        expect_json(s.get(&path(&a)).await, StatusCode::OK).await,
        set
    );
    let events = s.machine(&a).await["events"].to_string();
    assert!(
        events.contains("network boot: PXE off, reserved address 10.9.0.50"),
        "{events}"
    );

    // One address, one machine.
    expect_error(
        s.put(
            &path(&b),
            json!({"pxe": "auto", "reserved_ip": "10.9.0.50"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    // Not an address, or not one a machine can have: named.
    for bad in ["10.9.0", "255.255.255.255", "224.0.0.1", "0.0.0.0"] {
        let resp = s.put(&path(&b), json!({"reserved_ip": bad})).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["field"], "reserved_ip", "{bad}: {body}");
    }
    let resp = s.put(&path(&b), json!({"pxe": "sometimes"})).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    expect_error(
        s.put("/api/v1/machines/nope/netboot", json!({"pxe": "off"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    // Back to the defaults: the address is free again.
    expect_json(s.put(&path(&a), json!({})).await, StatusCode::OK).await;
    expect_json(
        s.put(
            &path(&b),
            json!({"pxe": "ipxe_efi", "reserved_ip": "10.9.0.50"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let client = s
        .state
        .machines
        .dhcp_client("52:54:00:00:00:02")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(client.machine_id, b);
    assert_eq!(client.reserved_ip, Some(Ipv4Addr::new(10, 9, 0, 50)));
    assert_eq!(client.pxe, dragonfly::machines::netboot::PxeMode::IpxeEfi);
    assert!(
        s.state
            .machines
            .dhcp_client("52:54:00:99:99:99")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn leases_never_give_one_address_twice_and_honour_reservations() {
    let s = TestServer::start_with_manual_clock().await;
    let m = &s.state.machines;
    let p = pool(1, 4); // .1 is this server: .2, .3, .4 remain
    let x = m
        .lease("02:00:00:00:00:01", &p, None, 60, None, false)
        .await
        .unwrap()
        .unwrap();
    let y = m
        .lease("02:00:00:00:00:02", &p, None, 60, None, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x, Ipv4Addr::new(10, 9, 0, 2));
    assert_ne!(x, y);
    // Asking for someone else's address gets another one.
    let z = m
        .lease("02:00:00:00:00:03", &p, Some(x), 60, None, false)
        .await
        .unwrap()
        .unwrap();
    assert!(z != x && z != y, "{z}");
    // Full: nothing for a fourth client.
    assert_eq!(
        m.lease("02:00:00:00:00:04", &p, None, 60, None, false)
            .await
            .unwrap(),
        None
    );
    // The same client gets its address again.
    assert_eq!(
        m.lease("02:00:00:00:00:01", &p, None, 60, None, false)
            .await
            .unwrap(),
        Some(x)
    );
    // A release frees it for others.
    m.release_lease("02:00:00:00:00:01").await.unwrap();
    assert_eq!(
        m.lease("02:00:00:00:00:04", &p, None, 60, None, false)
            .await
            .unwrap(),
        Some(x)
    );
    // Expiry frees addresses too.
    s.clock.as_ref().unwrap().advance(Duration::from_secs(61));
    assert_eq!(m.active_leases().await.unwrap(), 0);
    assert_eq!(
        m.lease("02:00:00:00:00:05", &p, None, 60, None, false)
            .await
            .unwrap(),
        Some(x)
    );

    // A known machine's reservation wins, even outside the range (inside the subnet), and
    // nobody else gets that address.
    let id = s.register(report(7)).await["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    expect_json(
        s.put(
            &format!("/api/v1/machines/{id}/netboot"),
            json!({"reserved_ip": "10.9.0.3"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mac = "52:54:00:00:00:07";
    assert_eq!(
        m.lease(mac, &p, None, 60, None, false).await.unwrap(),
        Some(Ipv4Addr::new(10, 9, 0, 3))
    );
    let other = m
        .lease(
            "02:00:00:00:00:06",
            &p,
            Some(Ipv4Addr::new(10, 9, 0, 3)),
            60,
            None,
            false,
        )
        .await
        .unwrap();
    assert_ne!(other, Some(Ipv4Addr::new(10, 9, 0, 3)));
    expect_json(
        s.put(
            &format!("/api/v1/machines/{id}/netboot"),
            json!({"reserved_ip": "10.9.0.200"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        m.lease(mac, &p, None, 60, None, false).await.unwrap(),
        Some(Ipv4Addr::new(10, 9, 0, 200))
    );
}

#[tokio::test]
async fn a_refused_request_takes_nothing_and_a_declined_address_rests() {
    let s = TestServer::start_with_manual_clock().await;
    let m = &s.state.machines;
    let p = pool(2, 3); // two addresses: .2 and .3
    let a = "02:00:00:00:00:0a";
    // A REQUEST for an address outside the pool is refused (the caller NAKs) and holds nothing.
    let got = m
        .lease(a, &p, Some(Ipv4Addr::new(10, 9, 0, 99)), 3600, None, true)
        .await
        .unwrap();
    assert_ne!(got, Some(Ipv4Addr::new(10, 9, 0, 99)));
    assert_eq!(
        m.active_leases().await.unwrap(),
        0,
        "a NAK holds no address"
    );
    // A REQUEST for the offered address is granted.
    let offered = m
        .lease(a, &p, None, 60, None, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.lease(a, &p, Some(offered), 3600, None, true)
            .await
            .unwrap(),
        Some(offered)
    );
    // DECLINE: the address is in use by someone unknown. It rests for the given time; the
    // client gets the other one.
    m.decline_lease(a, Some(offered), 600).await.unwrap();
    let next = m
        .lease(a, &p, None, 60, None, false)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(next, offered);
    assert_eq!(
        m.lease("02:00:00:00:00:0b", &p, None, 60, None, false)
            .await
            .unwrap(),
        None,
        "the declined address is nobody's, the other is taken"
    );
    s.clock.as_ref().unwrap().advance(Duration::from_secs(601));
    assert_eq!(
        m.lease("02:00:00:00:00:0b", &p, None, 60, None, false)
            .await
            .unwrap(),
        Some(offered),
        "back in the pool after its rest"
    );
    // A DECLINE naming an address the client does not hold changes nothing.
    m.decline_lease("02:00:00:00:00:0b", Some(Ipv4Addr::new(10, 9, 0, 9)), 600)
        .await
        .unwrap();
    assert_eq!(
        m.lease("02:00:00:00:00:0b", &p, None, 60, None, false)
            .await
            .unwrap(),
        Some(offered)
    );
}

#[tokio::test]
async fn leases_survive_a_restart_on_the_same_file() {
    let s = TestServer::start().await;
    let p = pool(10, 20);
    let ip = s
        .state
        .machines
        .lease(
            "02:00:00:00:00:01",
            &p,
            None,
            3600,
            Some("web-1".into()),
            false,
        )
        .await
        .unwrap()
        .unwrap();
    // A second process on the same database file (as after a restart).
    let db = dragonfly::store::Db::open(&s.db_path()).unwrap();
    let again = Machines::new(
        db,
        Arc::new(dragonfly::clock::SystemClock),
        s.state.settings.clone(),
    );
    assert_eq!(again.active_leases().await.unwrap(), 1);
    assert_eq!(
        again
            .lease("02:00:00:00:00:01", &p, None, 3600, None, false)
            .await
            .unwrap(),
        Some(ip)
    );
    let other = again
        .lease("02:00:00:00:00:02", &p, None, 3600, None, false)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(other, ip);
}

#[tokio::test]
async fn many_clients_at_once_get_distinct_addresses() {
    let s = TestServer::start().await;
    let p = pool(2, 201);
    let tasks: Vec<_> = (0..150u32)
        .map(|i| {
            let m = s.state.machines.clone();
            let p = p.clone();
            tokio::spawn(async move {
                m.lease(
                    &format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff),
                    &p,
                    None,
                    60,
                    None,
                    false,
                )
                .await
                .unwrap()
                .unwrap()
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    let n = got.len();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), n, "an address was handed out twice");
}

fn dhcp_args(mode: DhcpMode) -> DhcpArgs {
    let mut a = ServeArgs::default();
    a.dhcp.dhcp = mode;
    a.dhcp
}

#[test]
fn dhcp_settings_are_checked_against_the_interface() {
    let err = |a: &DhcpArgs| format!("{:#}", Dhcp::resolve(a).unwrap_err());
    assert!(Dhcp::resolve(&dhcp_args(DhcpMode::Off)).unwrap().is_none());
    let mut a = dhcp_args(DhcpMode::Proxy);
    assert!(err(&a).contains("--dhcp-interface"), "{}", err(&a));
    a.dhcp_interface = Some("no-such-if0".into());
    assert!(err(&a).contains("no-such-if0"), "{}", err(&a));
    // Loopback exists everywhere, with 127.0.0.1/8.
    a.dhcp_interface = Some("lo".into());
    let d = Dhcp::resolve(&a).unwrap().unwrap();
    assert_eq!(
        (d.mode, d.server_ip, d.uefi),
        (DhcpMode::Proxy, Ipv4Addr::LOCALHOST, UefiBinary::Snponly)
    );
    assert!(d.pool.is_none());
    a.dhcp_range = Some("127.0.0.10-127.0.0.20".into());
    assert!(
        err(&a).contains("--dhcp-range is for --dhcp full"),
        "{}",
        err(&a)
    );

    let mut f = dhcp_args(DhcpMode::Full);
    f.dhcp_interface = Some("lo".into());
    assert!(err(&f).contains("needs --dhcp-range"), "{}", err(&f));
    for (range, says) in [
        ("10.0.0.1-10.0.0.9", "not inside lo's subnet"),
        ("127.0.0.20-127.0.0.10", "comes after"),
        ("127.0.0.1", "FIRST-LAST"),
        ("127.0.0.1-127.2.0.0", "at most"),
    ] {
        f.dhcp_range = Some(range.into());
        assert!(err(&f).contains(says), "{range}: {}", err(&f));
    }
    f.dhcp_range = Some("127.0.0.10-127.0.0.20".into());
    f.dhcp_dns = Some("127.0.0.53, nope".into());
    assert!(err(&f).contains("--dhcp-dns"), "{}", err(&f));
    f.dhcp_dns = Some("127.0.0.53,127.0.0.54".into());
    f.dhcp_gateway = Some(Ipv4Addr::new(127, 0, 0, 1));
    let d = Dhcp::resolve(&f).unwrap().unwrap();
    let pool = d.pool.unwrap();
    assert_eq!(pool.first, Ipv4Addr::new(127, 0, 0, 10));
    assert_eq!(pool.netmask, Ipv4Addr::new(255, 0, 0, 0));
    assert_eq!(d.dns.len(), 2);
    f.dhcp_lease_secs = 5;
    assert!(err(&f).contains("--dhcp-lease-secs"), "{}", err(&f));
}

#[tokio::test]
async fn healthz_says_the_dhcp_service_is_off_by_default() {
    let s = TestServer::start().await;
    let h = expect_json(s.get("/healthz").await, StatusCode::OK).await;
    assert_eq!(h["dhcp"]["mode"], "off", "{h}");
    assert_eq!(h["dhcp"]["recent"], json!([]), "{h}");
}

#[tokio::test]
async fn the_dashboard_and_healthz_show_the_dhcp_service_and_its_last_requests() {
    let mut args = dhcp_args(DhcpMode::Proxy);
    args.dhcp_interface = Some("lo".into());
    let s = TestServer::start_custom(None, |c| c.dhcp = Dhcp::resolve(&args).unwrap()).await;
    let html = s.get("/").await.text().await.unwrap();
    assert!(
        html.contains("proxyDHCP: boot information for PXE clients"),
        "{html}"
    );
    assert!(html.contains("lo 127.0.0.1"), "{html}");
    assert!(html.contains("None yet"), "{html}");
    s.state.dhcp.saw(
        dragonfly::dhcp_status::PxeSeen {
            at: "2026-12-03T00:00:00.000Z".into(),
            mac: "52:54:00:aa:bb:cc".into(),
            firmware: "UEFI x64".into(),
            message: "DISCOVER".into(),
            answer: "offered snponly.efi over TFTP".into(),
        },
        true,
    );
    let html = s.get("/").await.text().await.unwrap();
    let table = &html[html
        .find("id=\"pxe-requests\"")
        .expect("the requests table")..];
    assert!(table.contains("52:54:00:aa:bb:cc"), "{table}");
    assert!(table.contains("offered snponly.efi over TFTP"), "{table}");
    let h = expect_json(s.get("/healthz").await, StatusCode::OK).await;
    assert_eq!(h["dhcp"]["mode"], "proxy");
    assert_eq!(h["dhcp"]["interface"], "lo");
    assert_eq!(h["dhcp"]["answered"], 1);
    assert_eq!(h["dhcp"]["recent"][0]["firmware"], "UEFI x64", "{h}");
}
