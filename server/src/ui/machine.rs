//! One machine: identity, the full inventory, hardware changes between boots, the OS
//! assignment and lifecycle actions, hostname/tags/notes, and the event timeline — with the
//! status part refreshed live while it installs.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ctx, UiError, UiResult, UiResultExt, bytes, hx_redirect, layout, machine_name, paths,
    state_badge, toast_ok, when,
};
use crate::auth::Principal;
use crate::error::Error;
use crate::machines::HeldRegistration;
use crate::machines::catalogue::Catalogue;
use crate::machines::{
    MachineDetail, MachineEvent, MachineUpdate, Machines, OsImage, State as MState, TargetDisk,
};
use crate::vocab::Decision;

pub async fn page(
    State(machines): State<Machines>,
    State(catalogue): State<Catalogue>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult {
    let ctx = Ctx::new(&p, "machines");
    let d = machines.get(&id).await.ui(&headers)?;
    let os = catalogue.list().await.ui(&headers)?;
    let held = machines.held(Some(id.clone())).await.ui(&headers)?;
    let keys = machines.machine_ssh_keys(&id).await.ui(&headers)?;
    let m = &d.machine;
    let hw = d.hardware.as_ref();
    let changes: Vec<_> = d
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                MachineEvent::HardwareChanged | MachineEvent::IdentityMismatch
            )
        })
        .collect();
    let body = html! {
        p { a href=(paths::MACHINES) { "← Machines" } }
        h1 { (machine_name(m)) }
        div #machine-status hx-get=(paths::machine_action(&m.id, "status"))
            hx-trigger={ "machine-changed-" (m.id) " from:body" } {
            (status_markup(&d, &os))
        }
        div #held { (held_markup(&m.id, &held)) }
        div.grid {
            div.panel {
                strong { "Identity" }
                dl.kv {
                    dt { "Boot MAC" } dd.mono { (m.boot_mac) }
                    dt { "Serial" } dd.mono { (m.serial.as_deref().unwrap_or("—")) }
                    dt { "SMBIOS UUID" } dd.mono { (m.smbios_uuid.as_deref().unwrap_or("—")) }
                    dt { "Vendor" } dd { (m.vendor.as_deref().unwrap_or("—")) }
                    dt { "Product" } dd { (m.product.as_deref().unwrap_or("—")) }
                    dt { "Firmware" } dd { (m.firmware.map_or("—", |f| f.as_str())) @if let Some(a) = &m.arch { " · " (a) } }
                    dt { "Registered" } dd.mono { (when(&m.created_at)) }
                    dt { "Agent" } dd.mono { (m.agent_version.as_deref().unwrap_or("—")) }
                }
            }
            div.panel {
                strong { "Details" }
                form hx-post=(paths::machine_action(&m.id, "details")) hx-target="#toast" {
                    p { label for="hostname" { "Hostname" } br;
                        input #hostname name="hostname" value=(m.hostname.as_deref().unwrap_or("")) placeholder="web-01.lab"; }
                    p { label for="tags" { "Tags (comma-separated)" } br;
                        input #tags name="tags" value=(m.tags.join(", ")); }
                    p { label for="notes" { "Notes" } br;
                        textarea #notes name="notes" { (m.notes) } }
                    p { label for="ssh_keys" { "SSH keys for its native installs (besides the server's, on the OS page)" } br;
                        textarea #ssh_keys name="ssh_keys" rows="2" placeholder="ssh-ed25519 AAAA… owner@example" { (keys.keys.join("\n")) } }
                    button type="submit" { "Save" }
                }
            }
        }
        h2 { "Hardware" }
        div.grid {
            div.panel {
                strong { "CPU and memory" }
                dl.kv {
                    dt { "CPU" } dd { (m.cpu_model.as_deref().unwrap_or("—")) }
                    @if let Some(cpu) = hw.and_then(|h| h.cpu.as_ref()) {
                        dt { "Topology" } dd { (cpu.sockets) " socket(s), " (cpu.cores) " cores, " (cpu.threads) " threads" }
                        dt { "Virtualisation" } dd { (cpu.virtualization.as_deref().unwrap_or("none")) }
                    }
                    dt { "Memory" } dd { (bytes(m.memory_bytes)) }
                    @if let Some(bios) = hw.map(|h| &h.smbios.bios) {
                        dt { "BIOS" } dd { (bios.vendor.as_deref().unwrap_or("")) " " (bios.version.as_deref().unwrap_or("")) " " (bios.date.as_deref().unwrap_or("")) }
                    }
                }
                @if let Some(h) = hw { @if !h.smbios.memory.is_empty() {
                    table { thead { tr { th { "Slot" } th { "Size" } th { "Type" } th { "Speed" } } }
                        tbody { @for d in &h.smbios.memory { tr {
                            td { (d.locator.as_deref().unwrap_or("")) }
                            td { (bytes(d.size_bytes)) }
                            td { (d.kind.as_deref().unwrap_or("")) }
                            td { @if let Some(s) = d.speed_mts { (s) " MT/s" } }
                        } } } }
                } }
            }
            div.panel {
                strong { "Disks" }
                @if d.disks.is_empty() { p.muted { "No disks reported." } } @else {
                    table { thead { tr { th { "Name" } th { "Size" } th { "Model / serial" } th { "Bus" } } }
                        tbody { @for disk in &d.disks { tr {
                            td.mono { (disk.name) }
                            td { (bytes(Some(disk.size_bytes))) }
                            td { (disk.model.as_deref().unwrap_or("")) br; span.mono.muted { (disk.serial.as_deref().or(disk.wwn.as_deref()).unwrap_or("no serial")) } }
                            td { (disk.transport.map_or("", |t| t.as_str())) @if disk.rotational == Some(true) { " HDD" } }
                        } } } }
                }
            }
        }
        div.grid {
            div.panel {
                strong { "Network interfaces" }
                table { thead { tr { th { "Name" } th { "MAC" } th { "Link" } th.hide-narrow { "Driver" } } }
                    tbody { @for n in &d.nics { tr {
                        td { (n.name) @if n.boot { " " span.tag { "boot" } } }
                        td.mono { (n.mac) }
                        td { @match n.link_up { Some(true) => { "up" @if let Some(s) = n.speed_mbps { " " (s) " Mb/s" } }, Some(false) => "down", None => "?" }
                             @for a in &n.addresses { br; span.mono.muted { (a) } } }
                        td.hide-narrow { (n.driver.as_deref().unwrap_or("")) }
                    } } } }
            }
            div.panel {
                strong { "PCI devices" }
                @match hw { Some(h) if !h.pci.is_empty() => {
                    table { thead { tr { th { "Address" } th { "ID" } th { "Class" } th { "Driver" } } }
                        tbody { @for p in &h.pci { tr {
                            td.mono { (p.address) }
                            td.mono { (p.vendor_id) ":" (p.device_id) }
                            td.mono { (p.class) }
                            td { (p.driver.as_deref().unwrap_or("")) }
                        } } } }
                }, _ => { p.muted { "No PCI devices reported." } } }
            }
        }
        h2 { "Hardware changes between boots" }
        @if changes.is_empty() { p.muted { "None: every boot reported the same hardware." } } @else {
            ul.timeline { @for e in &changes { li { span.mono { (when(&e.at)) } " — " (e.message) } } }
        }
        h2 { "Timeline" }
        ul.timeline #timeline { @for e in &d.events { li {
            span.mono { (when(&e.at)) } " " strong { (e.kind.as_str().replace('_', " ")) }
            @if let (Some(f), Some(t)) = (&e.from_state, &e.to_state) { @if f != t { " " (f) " → " (t) } }
            " · " span.muted { (e.actor) }
            @if !e.message.is_empty() { " — " (e.message) }
        } } }
        h2 { "Danger zone" }
        button.danger hx-delete=(paths::machine(&m.id))
            hx-confirm={ "Delete " (machine_name(m)) " (" (m.boot_mac) ")? Its history stays in the event log; if it boots again it registers as new." } {
            "Delete machine"
        }
    };
    Ok(layout(&ctx, &machine_name(m), body).into_response())
}

/// The live status block: state, progress, and the lifecycle actions that fit the state.
/// Registrations that claimed this machine without proof, with the operator's two answers.
fn held_markup(id: &str, held: &[HeldRegistration]) -> Markup {
    html! {
        @if !held.is_empty() {
            div.panel.attention {
                strong { "Held registrations" }
                p.muted {
                    "These registrations claimed this machine without proving it (its boot \
                     script's secret or its last token). Nothing changed. Approve one only if \
                     you know the hardware really changed."
                }
                @for h in held {
                    div.held {
                        p { (h.reason) }
                        p.mono { (h.summary) }
                        p.muted { (h.attempts) " attempt(s), last " (when(&h.last_at)) " · agent " (h.agent_version) }
                        button hx-post=(paths::held_action(id, h.id, "approve")) hx-target="#held" { "Approve" }
                        " "
                        button.secondary hx-post=(paths::held_action(id, h.id, "reject")) hx-target="#held" { "Reject" }
                    }
                }
            }
        }
    }
}

/// An operator's answer to a held registration; answers the refreshed list.
pub async fn decide_held(
    State(machines): State<Machines>,
    headers: HeaderMap,
    Path((id, held, answer)): Path<(String, i64, String)>,
) -> UiResult {
    let decision = match answer.as_str() {
        "approve" => Decision::Approved,
        "reject" => Decision::Rejected,
        _ => return Err(UiError::new(Error::not_found("action"), &headers)),
    };
    machines.decide(held, decision).await.ui(&headers)?;
    let list = machines.held(Some(id.clone())).await.ui(&headers)?;
    Ok(super::html_response(held_markup(&id, &list)))
}

/// "412 MiB of 1024 MiB · 118 MB/s · about 5 s left"
pub fn write_line(w: &dragonfly_proto::WriteProgress) -> String {
    let mut s = format!("{} MiB", w.written >> 20);
    if let Some(t) = w.total {
        s.push_str(&format!(" of {} MiB", t >> 20));
    }
    if w.bytes_per_sec > 0 {
        s.push_str(&format!(" · {:.0} MB/s", w.bytes_per_sec as f64 / 1e6));
        if let Some(t) = w.total.filter(|t| *t > w.written) {
            s.push_str(&format!(
                " · about {} s left",
                (t - w.written) / w.bytes_per_sec.max(1)
            ));
        }
    }
    s
}

/// Where an install is, as a row of steps: assigned → writing → written → first boot →
/// installed (the last reached step is current; a failure marks it failed).
fn install_steps(d: &MachineDetail) -> Option<Markup> {
    let m = &d.machine;
    m.os.as_ref()?;
    let written = m.written_at.is_some();
    // Events are newest first: a boot sent to the disk after the write means the firmware
    // took it, and the installed system is starting.
    let booted_disk = written
        && d.events
            .iter()
            .take_while(|e| e.kind != MachineEvent::InstallWritten)
            .any(|e| e.kind == MachineEvent::PxeBoot && e.message.contains("local.ipxe"));
    let reached = match m.state {
        MState::Discovered => return None,
        MState::Assigned => 0,
        MState::Installing if !written => 1,
        MState::Installing if !booted_disk => 2,
        MState::Installing => 3,
        MState::Installed => 4,
        MState::Failed if written => 3,
        MState::Failed => 1,
    };
    let failed = m.state == MState::Failed;
    let done_all = m.state == MState::Installed;
    let labels = [
        "assigned",
        "writing",
        "written, rebooting",
        "first boot",
        "installed",
    ];
    Some(html! {
        ol.install-steps #install-steps aria-label="Install progress" {
            @for (i, label) in labels.iter().enumerate() {
                @let class = if i < reached || done_all { "done" } else if i == reached && failed { "failed" } else if i == reached { "current" } else { "todo" };
                li class=(class) { span.dot {} span.label { (label) } }
            }
        }
    })
}

fn status_markup(d: &MachineDetail, os: &[OsImage]) -> Markup {
    let m = &d.machine;
    let disk_choices: Vec<(String, String)> = d
        .disks
        .iter()
        .filter_map(|disk| {
            let label = format!("{} · {}", disk.name, super::bytes(Some(disk.size_bytes)));
            disk.serial
                .as_ref()
                .map(|s| (format!("serial:{s}"), format!("{label} · serial {s}")))
                .or_else(|| {
                    disk.wwn
                        .as_ref()
                        .map(|w| (format!("wwn:{w}"), format!("{label} · WWN {w}")))
                })
        })
        .collect();
    html! {
        div.panel {
            p {
                "State: " span #machine-state { (state_badge(m.state, m.offline)) }
                @if let Some(os) = &m.os { " · OS " strong #machine-os { (os) } }
                @if let Some(TargetDisk::Serial(s)) = &m.target_disk { " on disk serial " span.mono { (s) } }
                @if let Some(TargetDisk::Wwn(w)) = &m.target_disk { " on disk WWN " span.mono { (w) } }
            }
            @if let Some(steps) = install_steps(d) { (steps) }
            @if m.state == MState::Installing {
                p { progress #machine-progress max="100" value=(m.progress.unwrap_or(0)) {} " " (m.progress.unwrap_or(0)) "%"
                    @if let Some(msg) = &m.status_message { " · " (msg) } }
                @if let (Some(w), None) = (&m.write_progress, &m.written_at) {
                    p.muted #machine-write { (write_line(w)) }
                }
            } @else if let Some(msg) = &m.status_message { p.muted { (msg) } }
            @match m.state {
                MState::Discovered | MState::Failed | MState::Assigned => {
                    form.toolbar hx-post=(paths::machine_action(&m.id, "assign")) hx-target="#machine-status" {
                        label for="assign-os" { @if m.state == MState::Assigned { "Change OS" } @else { "Install" } }
                        select #assign-os name="os" { @for o in os { option value=(o.slug) selected[m.os.as_deref() == Some(o.slug.as_str())] { (o.name) } } }
                        label for="assign-disk" { "on" }
                        select #assign-disk name="disk" {
                            option value="" { "the installer's choice" }
                            @for (v, label) in &disk_choices { option value=(v) { (label) } }
                        }
                        button #assign-button type="submit" { "Assign" }
                    }
                },
                _ => {}
            }
            div.toolbar {
                @if matches!(m.state, MState::Installed | MState::Failed) {
                    button hx-post=(paths::machine_action(&m.id, "reimage")) hx-target="#machine-status"
                        hx-confirm="Install the OS again? The disk will be overwritten." { "Reimage" }
                }
                @if matches!(m.state, MState::Assigned | MState::Installing | MState::Failed) {
                    button.secondary hx-post=(paths::machine_action(&m.id, "cancel")) hx-target="#machine-status" { "Cancel" }
                }
            }
        }
    }
}

pub async fn status(
    State(machines): State<Machines>,
    State(catalogue): State<Catalogue>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult {
    let d = machines.get(&id).await.ui(&headers)?;
    let os = catalogue.list().await.ui(&headers)?;
    Ok(super::html_response(status_markup(&d, &os)))
}

#[derive(Debug, Deserialize)]
pub struct AssignForm {
    os: String,
    #[serde(default)]
    disk: String,
}

fn parse_disk(v: &str) -> Option<TargetDisk> {
    if let Some(s) = v.strip_prefix("serial:") {
        Some(TargetDisk::Serial(s.to_string()))
    } else {
        v.strip_prefix("wwn:")
            .map(|w| TargetDisk::Wwn(w.to_string()))
    }
}

async fn refreshed(
    machines: &Machines,
    catalogue: &Catalogue,
    headers: &HeaderMap,
    id: &str,
) -> UiResult {
    let d = machines.get(id).await.ui(headers)?;
    let os = catalogue.list().await.ui(headers)?;
    Ok(super::html_response(status_markup(&d, &os)))
}

pub async fn assign(
    State(machines): State<Machines>,
    State(catalogue): State<Catalogue>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<AssignForm>,
) -> UiResult {
    machines
        .assign(&id, f.os, parse_disk(&f.disk))
        .await
        .ui(&headers)?;
    refreshed(&machines, &catalogue, &headers, &id).await
}

pub async fn reimage(
    State(machines): State<Machines>,
    State(catalogue): State<Catalogue>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult {
    machines.reimage(&id, None, None).await.ui(&headers)?;
    refreshed(&machines, &catalogue, &headers, &id).await
}

pub async fn cancel(
    State(machines): State<Machines>,
    State(catalogue): State<Catalogue>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult {
    machines.cancel(&id).await.ui(&headers)?;
    refreshed(&machines, &catalogue, &headers, &id).await
}

pub async fn delete(
    State(machines): State<Machines>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult {
    machines.delete(&id).await.ui(&headers)?;
    Ok(hx_redirect(paths::MACHINES))
}

#[derive(Debug, Deserialize)]
pub struct DetailsForm {
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    ssh_keys: String,
}

pub async fn details(
    State(machines): State<Machines>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<DetailsForm>,
) -> UiResult {
    let tags: Vec<String> = f
        .tags
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let update = MachineUpdate {
        hostname: Some(Some(f.hostname.trim().to_string())),
        tags: Some(tags),
        notes: Some(f.notes),
    };
    // Checked before anything is saved, so a bad key loses nothing else.
    let keys = crate::machines::native::SshKeysInput {
        authorized_keys: f.ssh_keys,
    };
    keys.parse().ui(&headers)?;
    machines.update(&id, update).await.ui(&headers)?;
    machines
        .set_machine_ssh_keys(&id, keys)
        .await
        .ui(&headers)?;
    Ok(super::html_response(toast_ok("Saved.")))
}
