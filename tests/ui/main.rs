//! The web UI in real headless Chromium: log in, a machine registered through the API
//! appears live on an open list page, assigning an OS changes its state, bulk-tagging two
//! machines tags exactly those two. A failing test leaves a screenshot in tests/artifacts/.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dragonfly_e2e::{Browser, PASSWORD, Server, register, wait_for as eventually};
use fantoccini::Locator;

const WAIT: Duration = Duration::from_secs(15);

async fn login(b: &Browser, s: &Server) -> anyhow::Result<()> {
    let c = &b.client;
    c.goto(&format!("{}/machines", s.url)).await?;
    // Not logged in: sent to the login page, which remembers where we were going.
    let url = c.current_url().await?;
    anyhow::ensure!(url.path() == "/login", "expected the login page, got {url}");
    c.find(Locator::Css("#username"))
        .await?
        .send_keys("admin")
        .await?;
    c.find(Locator::Css("#password"))
        .await?
        .send_keys(PASSWORD)
        .await?;
    c.find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    eventually(WAIT, "the machine list after login", || async {
        let h1 = c.find(Locator::Css("h1")).await.ok()?.text().await.ok()?;
        (h1 == "Machines").then_some(())
    })
    .await
}

/// Runs `body`; on failure saves a screenshot named after the test, then fails.
async fn with_browser<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Browser, Server) -> Fut,
    Fut: std::future::Future<Output = (Browser, anyhow::Result<()>)>,
{
    let server = Server::start().await;
    server.set_admin_password().await;
    let browser = Browser::start().await.expect("a headless Chromium");
    let (browser, result) = body(browser, server).await;
    if let Err(e) = result {
        let shot = browser.screenshot(name).await;
        browser.close().await;
        panic!("{e:#}\nscreenshot: {shot:?}");
    }
    browser.close().await;
}

#[tokio::test]
async fn a_registered_machine_appears_live_and_can_be_assigned() {
    with_browser("assign", |b, s| async move {
        let r = async {
            login(&b, &s).await?;
            let c = &b.client;
            // The empty list tells a new user what to do.
            let empty = c.find(Locator::Css(".empty")).await?.text().await?;
            anyhow::ensure!(empty.contains("No machines yet"), "empty state: {empty}");
            // Wait until the live stream is connected, then register.
            eventually(WAIT, "the live stream", || async {
                let t = c
                    .find(Locator::Css("#live-status"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                (t == "live").then_some(())
            })
            .await?;
            let registered = Instant::now();
            let id = register(&s, 1).await;
            let row = format!("tr[data-machine=\"{id}\"]");
            eventually(WAIT, "the new row", || async {
                c.find(Locator::Css(&row)).await.ok()
            })
            .await?;
            println!("UI_LIVE_DELAY_MS={}", registered.elapsed().as_millis());

            for n in 2..6 {
                register(&s, n).await;
            }
            b.snap("list").await;
            c.find(Locator::Css(&format!("{row} a")))
                .await?
                .click()
                .await?;
            eventually(WAIT, "the machine page", || async {
                c.find(Locator::Css("#assign-os")).await.ok()
            })
            .await?;
            c.find(Locator::Css("#assign-os"))
                .await?
                .select_by_value("ubuntu-24.04")
                .await?;
            c.find(Locator::Css("#assign-disk"))
                .await?
                .select_by_value("serial:E2E-DISK-1")
                .await?;
            c.find(Locator::Css("#assign-button"))
                .await?
                .click()
                .await?;
            eventually(WAIT, "the assigned state", || async {
                let t = c
                    .find(Locator::Css("#machine-state"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                t.contains("assigned").then_some(())
            })
            .await?;
            let m = s.machine(&id).await;
            anyhow::ensure!(m["state"] == "assigned" && m["os"] == "ubuntu-24.04", "{m}");
            anyhow::ensure!(m["target_disk"]["serial"] == "E2E-DISK-1", "{m}");

            // A change made elsewhere (the install starting) shows up without a reload.
            s.state
                .machines
                .start_install(&id, dragonfly::machines::Actor::Boot, "test".into())
                .await?;
            eventually(WAIT, "the installing state", || async {
                let t = c
                    .find(Locator::Css("#machine-state"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                t.contains("installing").then_some(())
            })
            .await?;
            b.snap("detail").await;
            c.goto(&s.url).await?;
            b.snap("dashboard").await;
            Ok(())
        }
        .await;
        (b, r)
    })
    .await;
}

#[tokio::test]
async fn bulk_tagging_names_and_tags_exactly_the_selected_machines() {
    with_browser("bulk-tag", |b, s| async move {
        let r = async {
            let a = register(&s, 11).await;
            let bm = register(&s, 12).await;
            let other = register(&s, 13).await;
            login(&b, &s).await?;
            let c = &b.client;
            for id in [&a, &bm] {
                c.find(Locator::Css(&format!("input[name=ids][value=\"{id}\"]")))
                    .await?
                    .click()
                    .await?;
            }
            c.find(Locator::Css("#bulk input[name=tag]"))
                .await?
                .send_keys("rack-b")
                .await?;
            c.find(Locator::XPath("//button[contains(., 'Add tag')]"))
                .await?
                .click()
                .await?;
            let list = eventually(WAIT, "the confirmation", || async {
                c.find(Locator::Css("#confirm-list"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()
            })
            .await?;
            anyhow::ensure!(
                list.contains("52:54:00:e2:00:0b") && list.contains("52:54:00:e2:00:0c"),
                "{list}"
            );
            anyhow::ensure!(
                !list.contains("52:54:00:e2:00:0d"),
                "an unselected machine is listed: {list}"
            );
            b.snap("bulk-confirm").await;
            c.find(Locator::XPath(
                "//div[@id='bulk-confirm']//button[@type='submit']",
            ))
            .await?
            .click()
            .await?;
            eventually(WAIT, "both machines tagged", || async {
                let ta = s.machine(&a).await["tags"].clone();
                let tb = s.machine(&bm).await["tags"].clone();
                (ta == serde_json::json!(["rack-b"]) && tb == serde_json::json!(["rack-b"]))
                    .then_some(())
            })
            .await?;
            let to = s.machine(&other).await["tags"].clone();
            anyhow::ensure!(
                to == serde_json::json!([]),
                "the unselected machine was tagged: {to}"
            );
            // The list shows the new tags without a reload.
            eventually(WAIT, "tags in the list", || async {
                let row = c
                    .find(Locator::Css(&format!("tr[data-machine=\"{a}\"]")))
                    .await
                    .ok()?;
                row.text().await.ok()?.contains("rack-b").then_some(())
            })
            .await?;
            Ok(())
        }
        .await;
        (b, r)
    })
    .await;
}

/// The OS page's "Refresh checksums" reads each entry's published list (here: a mirror on
/// loopback the built-in entries were pointed at) and says, per entry, what it found; a
/// machine's own SSH keys are kept from its page.
#[tokio::test]
async fn checksums_refresh_from_the_os_page_and_a_machine_keeps_its_own_keys() {
    with_browser("os-refresh", |b, s| async move {
        let r = async {
            let dir = tempfile::tempdir()?;
            let sums = dir.path().join("SUMS");
            let sha512 = "5".repeat(128);
            let sha256 = "2".repeat(64);
            // Three of the four built-in files are listed; jammy's is not.
            std::fs::write(
                &sums,
                format!(
                    "{sha512}  debian-12-generic-amd64.qcow2\n{sha512}  debian-13-generic-amd64.qcow2\n\
                     {sha256} *noble-server-cloudimg-amd64.img\n"
                ),
            )?;
            let mirror = dragonfly_e2e::flaky::FlakyServer::start(sums, 0, 0).await;
            let list = format!("http://127.0.0.1:{}/image", mirror.port);
            for slug in ["debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04"] {
                let os: serde_json::Value = s.get(&format!("/api/v1/os/{slug}")).await.json().await?;
                let mut input = serde_json::json!({});
                for f in ["name", "family", "version", "arch", "image_url", "format"] {
                    input[f] = os[f].clone();
                }
                input["checksum_url"] = list.clone().into();
                let r = s.put(&format!("/api/v1/os/{slug}"), input).await;
                anyhow::ensure!(r.status() == 200, "{}", r.text().await?);
            }
            let id = register(&s, 21).await;
            login(&b, &s).await?;
            let c = &b.client;
            c.goto(&format!("{}/os", s.url)).await?;
            c.find(Locator::XPath("//button[contains(., 'Refresh checksums')]"))
                .await?
                .click()
                .await?;
            let lines = eventually(WAIT, "the refresh results", || async {
                let t = c
                    .find(Locator::Css("#refresh-lines"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                (t.lines().count() == 4).then_some(t)
            })
            .await?;
            anyhow::ensure!(
                lines.contains("debian-12: new SHA-512 5555")
                    && lines.contains("ubuntu-24.04: new SHA-256 2222")
                    && lines.contains("ubuntu-22.04: ")
                    && lines.contains("lists no checksum for jammy-server-cloudimg-amd64.img"),
                "{lines}"
            );
            b.snap("os-refresh").await;
            let os: serde_json::Value = s.get("/api/v1/os/debian-13").await.json().await?;
            anyhow::ensure!(os["sha512"] == sha512.as_str(), "{os}");

            // The machine's own key, from its page.
            c.goto(&format!("{}/machines/{id}", s.url)).await?;
            let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUiMachineKey01 owner@team";
            c.find(Locator::Css("#ssh_keys")).await?.send_keys(key).await?;
            c.find(Locator::XPath("//form[.//textarea[@id='ssh_keys']]//button[@type='submit']"))
                .await?
                .click()
                .await?;
            let kept = eventually(WAIT, "the machine's keys", || async {
                let v: serde_json::Value = s
                    .get(&format!("/api/v1/machines/{id}/ssh-keys"))
                    .await
                    .json()
                    .await
                    .ok()?;
                (v["keys"].as_array()?.len() == 1).then_some(v)
            })
            .await?;
            anyhow::ensure!(kept["keys"][0] == key, "{kept}");
            Ok(())
        }
        .await;
        (b, r)
    })
    .await;
}
