//! The dashboard: machines by state, what needs attention, recent events, and what this
//! server offers a machine that PXE-boots (with how to do it).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maud::{Markup, html};

use super::{Ctx, UiResult, UiResultExt, layout, machine_name, paths, state_badge, when};
use crate::auth::Principal;
use std::sync::Arc;

use crate::artefact::ArtefactCache;
use crate::config::Settings;
use crate::dhcp_status::{DhcpStatus, DhcpView};
use crate::machines::{ListQuery, Machines, SortKey, State as MState};

pub async fn page(
    State(machines): State<Machines>,
    State(artefact): State<Arc<ArtefactCache>>,
    State(settings): State<Arc<Settings>>,
    State(dhcp): State<Arc<DhcpStatus>>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
) -> UiResult {
    let ctx = Ctx::new(&p, "dashboard");
    let dhcp = dhcp.view();
    let live = live_markup(&machines).await.ui(&headers)?;
    let artefact = artefact.get().await;
    let s = &settings;
    let body = html! {
        h1 { "Dashboard" }
        div #dashboard-live hx-get="/dashboard/live" hx-trigger="machine-changed from:body throttle:750ms" {
            (live)
        }
        h2 { "This server" }
        div.grid {
            div.panel {
                dl.kv {
                    dt { "Base URL" } dd.mono { (s.base_url) }
                    dt { "Netboot image" } dd {
                        @if artefact.present {
                            "present" @if let Some(v) = &artefact.version { " · " span.mono { (v) } }
                            @if let Some(f) = &artefact.flavour { " · " (f) }
                            @if let Some(h) = artefact.hardware.as_deref().filter(|h| *h != "any") {
                                br; strong.warn #netboot-hardware { (h) }
                            }
                        } @else {
                            strong { "missing" } " — build it with " code { "image/build.sh" }
                        }
                    }
                    dt { "kexec chainload" } dd { @if artefact.ipxe_lkrn { "ready (ipxe.lkrn)" } @else { "unavailable: machines reboot instead" } }
                    dt { "TFTP" } dd { @if s.tftp { "on (iPXE first stage)" } @else { "off (enable with --tftp)" } }
                    dt { "DHCP" } dd #dhcp-mode {
                        @match dhcp.mode.as_str() {
                            "proxy" => "proxyDHCP: boot information for PXE clients, beside the site's DHCP server",
                            "full" => "full DHCP: addresses and boot information",
                            _ => "off (--dhcp proxy beside your DHCP server, --dhcp full on an isolated network)",
                        }
                        @if let (Some(i), Some(ip)) = (&dhcp.interface, dhcp.server_ip) {
                            " · " span.mono { (i) " " (ip) }
                        }
                    }
                    dt { "Installer" } dd #installer {
                        @match s.installer {
                            crate::config::Installer::Native => "native: the Dragonfly agent writes the image, cloud-init reports back",
                            crate::config::Installer::Tinkerbell => "Tinkerbell workflows in HookOS",
                        }
                    }
                    dt { "HookOS" } dd.mono { (s.hookos.url) }
                }
            }
            div.panel {
                strong { "PXE-boot a machine here" }
                ol.steps {
                    li { "Run Dragonfly with " code { "--dhcp proxy --dhcp-interface IFACE" } " to answer PXE beside your DHCP server; "
                         "or point your DHCP server's boot file at " code { (s.base_url) "/boot/boot.ipxe" }
                         " (iPXE clients), or run Dragonfly with " code { "--tftp" } " and hand out "
                         code { "undionly.kpxe" } " / " code { "ipxe.efi" } " from this host." }
                    li { "Power the machine on with network boot first. It boots the inventory image and appears under "
                         a href=(paths::MACHINES) { "Machines" } " as " span.badge.discovered { "discovered" } "." }
                    li { "Open it, choose an OS and press " em { "Assign" } ". The machine chainloads into the installer "
                         "and its progress shows here live." }
                }
                p.muted { "No hardware at hand? " code { "scripts/lab.sh" } " PXE-boots QEMU virtual machines against this server." }
            }
        }
        @if dhcp.mode != "off" {
            (pxe_requests(&dhcp))
        }
    };
    Ok(layout(&ctx, "Dashboard", body).into_response())
}

/// The live part of the dashboard, re-rendered on every change.
pub async fn live(State(machines): State<Machines>, headers: HeaderMap) -> UiResult {
    Ok(live_markup(&machines).await.ui(&headers)?.into_response())
}

async fn live_markup(machines: &Machines) -> crate::error::Result<Markup> {
    let (counts, offline) = machines.counts().await?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let failed = machines
        .list(ListQuery {
            states: vec![MState::Failed],
            per_page: 10,
            page: 1,
            sort: SortKey::Created,
            descending: true,
            ..Default::default()
        })
        .await?;
    let offline_list = machines
        .list(ListQuery {
            offline: Some(true),
            per_page: 10,
            page: 1,
            sort: SortKey::LastSeen,
            descending: true,
            ..Default::default()
        })
        .await?;
    let new = machines
        .list(ListQuery {
            states: vec![MState::Discovered],
            per_page: 10,
            page: 1,
            sort: SortKey::Created,
            descending: true,
            ..Default::default()
        })
        .await?;
    let held = machines.held(None).await?;
    let events = machines.events(None, None, 12).await?;
    let names = machines
        .labels(events.iter().filter_map(|e| e.machine_id.clone()).collect())
        .await?;
    Ok(html! {
        div.cards {
            a.card href=(paths::MACHINES) { span.n #count-total { (total) } "machines" }
            @for (s, n) in &counts {
                a.card href={ (paths::MACHINES) "?state=" (s.as_str()) } {
                    span.n id={ "count-" (s.as_str()) } { (n) } (state_badge(*s, false))
                }
            }
            a.card href={ (paths::MACHINES) "?state=offline" } { span.n #count-offline { (offline) } span.badge.offline { "offline" } }
        }
        @if total == 0 {
            div.panel.empty {
                strong { "No machines yet" }
                "Network-boot a machine against this server (see below) and it appears here within seconds."
            }
        } @else {
            h2 { "Needs attention" }
            div.grid {
                (attention("Failed installs", &failed.items, "Nothing failed."))
                (attention("Offline", &offline_list.items, "Every machine checked in recently."))
                (attention("New, waiting for an OS", &new.items, "No new machines."))
                @if !held.is_empty() {
                    div.panel {
                        strong { "Held registrations" }
                        ul { @for h in held.iter().take(10) { li {
                            a href=(paths::machine(&h.machine_id)) { (h.boot_mac) }
                            br; span.muted { (h.reason) }
                        } } }
                    }
                }
            }
        }
        h2 { "Recent events" }
        @if events.is_empty() {
            p.muted { "Nothing has happened yet." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "When" } th { "Machine" } th { "Event" } th.hide-narrow { "By" } th { "Details" } } }
                tbody { @for e in &events { tr {
                    td.mono { (when(&e.at)) }
                    td.mono { @if let Some(id) = &e.machine_id {
                        // Ids are time-ordered: their first digits are the same for machines
                        // registered together, so a machine is named by hostname or boot MAC.
                        @match names.get(id) {
                            Some(name) => a href=(paths::machine(id)) { (name) },
                            None => span.muted title=(id) { "deleted" },
                        }
                    } }
                    td { (e.kind.as_str().replace('_', " ")) @if let (Some(f), Some(t)) = (&e.from_state, &e.to_state) { @if f != t { " · " (f) " → " (t) } } }
                    td.hide-narrow { (e.actor) }
                    td { (e.message) }
                } } }
            } }
        }
    })
}

fn attention(title: &str, items: &[crate::machines::Machine], empty: &str) -> Markup {
    html! {
        div.panel {
            strong { (title) }
            @if items.is_empty() { p.muted { (empty) } } @else {
                ul { @for m in items { li {
                    a href=(paths::machine(&m.id)) { (machine_name(m)) } " " (state_badge(m.state, m.offline))
                    @if let Some(msg) = &m.status_message { br; span.muted { (msg) } }
                } } }
            }
        }
    }
}

/// The last PXE requests Dragonfly's DHCP saw and what it answered.
fn pxe_requests(d: &DhcpView) -> Markup {
    html! {
        h2 { "PXE requests" }
        p.muted {
            (d.answered) " answered · " (d.ignored) " not answered · " (d.dropped) " malformed"
        }
        @if d.recent.is_empty() {
            p.muted #pxe-requests { "None yet: power a machine on with network boot first." }
        } @else {
            table #pxe-requests {
                thead { tr { th { "When" } th { "MAC" } th { "Firmware" } th { "Message" } th { "Answer" } } }
                tbody {
                    @for r in &d.recent {
                        tr {
                            td.mono { (r.at) }
                            td.mono { (r.mac) }
                            td { (r.firmware) }
                            td { (r.message) }
                            td { (r.answer) }
                        }
                    }
                }
            }
        }
    }
}
