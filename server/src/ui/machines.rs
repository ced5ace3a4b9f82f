//! The machine list: search, filters, sort, pages, live refresh, and bulk actions with a
//! confirmation that names exactly the selected machines.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Ctx, UiResult, UiResultExt, layout, machine_name, paths, state_badge, toast_ok, when};
use crate::auth::Principal;
use crate::error::Error;
use crate::machines::catalogue::Catalogue;
use crate::machines::{
    ListQuery, MachinePage, MachineUpdate, Machines, SortKey, State as MState, validate_tag,
};

const PER_PAGE: u32 = 50;

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Filter {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    order: String,
    page: Option<u32>,
}

impl Filter {
    fn query(&self) -> crate::error::Result<ListQuery> {
        let mut q = ListQuery {
            per_page: PER_PAGE,
            page: self.page.unwrap_or(1).max(1),
            ..Default::default()
        };
        match self.state.as_str() {
            "" => {}
            "offline" => q.offline = Some(true),
            s => q.states.push(
                MState::parse(s)
                    .map_err(|_| Error::invalid("state", format!("unknown state {s}")))?,
            ),
        }
        if !self.tag.is_empty() {
            validate_tag(0, &self.tag).map_err(|_| Error::invalid("tag", "not a valid tag"))?;
            q.tag = Some(self.tag.clone());
        }
        let search = self.q.trim();
        if !search.is_empty() {
            q.search = Some(search.chars().take(128).collect());
        }
        q.sort = match self.sort.as_str() {
            "hostname" => SortKey::Hostname,
            "state" => SortKey::State,
            "last_seen" => SortKey::LastSeen,
            "mac" => SortKey::Mac,
            _ => SortKey::Created,
        };
        q.descending = self.order == "desc";
        Ok(q)
    }

    /// The query string for this filter with `page` (and optionally another sort).
    fn href(&self, page: u32, sort: Option<&str>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("q", &self.q), ("state", &self.state), ("tag", &self.tag)] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        match sort {
            Some(col) => {
                let desc = self.sort == col && self.order != "desc";
                s.append_pair("sort", col);
                if desc {
                    s.append_pair("order", "desc");
                }
            }
            None => {
                if !self.sort.is_empty() {
                    s.append_pair("sort", &self.sort);
                }
                if !self.order.is_empty() {
                    s.append_pair("order", &self.order);
                }
                if page > 1 {
                    s.append_pair("page", &page.to_string());
                }
            }
        }
        s.finish()
    }
}

pub async fn page(
    State(machines): State<Machines>,
    State(catalogue): State<Catalogue>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> UiResult {
    let ctx = Ctx::new(&p, "machines");
    let result = machines.list(f.query().ui(&headers)?).await.ui(&headers)?;
    let os = catalogue.list().await.ui(&headers)?;
    // Any, each lifecycle state, and offline (derived, not a state).
    let states: Vec<&str> = std::iter::once("")
        .chain(MState::ALL.iter().map(|s| s.as_str()))
        .chain(["offline"])
        .collect();
    let body = html! {
        h1 { "Machines" }
        form.toolbar role="search" method="get" action=(paths::MACHINES) {
            label.hide-narrow for="q" { "Search" }
            input #q type="search" name="q" value=(f.q) placeholder="hostname, MAC, serial, vendor";
            label for="state" { "State" }
            select #state name="state" {
                @for s in states {
                    option value=(s) selected[f.state == s] { @if s.is_empty() { "any" } @else { (s) } }
                }
            }
            label for="tag" { "Tag" }
            input #tag name="tag" value=(f.tag) size="10";
            button type="submit" { "Filter" }
        }
        form #bulk {
            div.toolbar aria-label="Bulk actions" {
                span #bulk-count.muted { "none selected" }
                select name="os" aria-label="OS to assign" {
                    @for o in &os { option value=(o.slug) { (o.name) } }
                }
                button type="button" data-needs-selection disabled name="action" value="assign"
                    hx-post=(paths::BULK_CONFIRM) hx-include="#bulk" hx-target="#bulk-confirm" hx-vals=r#"{"action":"assign"}"# { "Assign OS…" }
                input name="tag" placeholder="tag" size="10" aria-label="Tag to add";
                button type="button" data-needs-selection disabled
                    hx-post=(paths::BULK_CONFIRM) hx-include="#bulk" hx-target="#bulk-confirm" hx-vals=r#"{"action":"tag"}"# { "Add tag…" }
                button.danger type="button" data-needs-selection disabled
                    hx-post=(paths::BULK_CONFIRM) hx-include="#bulk" hx-target="#bulk-confirm" hx-vals=r#"{"action":"delete"}"# { "Delete…" }
            }
            div #bulk-confirm {}
            div #machine-list
                hx-get={ (paths::MACHINE_ROWS) "?" (f.href(result.page, None)) }
                hx-trigger="machine-changed from:body throttle:500ms" {
                (list_markup(&result, &f))
            }
        }
    };
    Ok(layout(&ctx, "Machines", body).into_response())
}

/// The table and pager alone, for live refreshes.
pub async fn rows(
    State(machines): State<Machines>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> UiResult {
    let result = machines.list(f.query().ui(&headers)?).await.ui(&headers)?;
    Ok(super::html_response(list_markup(&result, &f)))
}

fn list_markup(page: &MachinePage, f: &Filter) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr {
                    th { input #select-all type="checkbox" aria-label="Select all on this page"; }
                    th { a href={ "?" (f.href(1, Some("hostname"))) } { "Name" } }
                    th { a href={ "?" (f.href(1, Some("state"))) } { "State" } }
                    th.hide-narrow { a href={ "?" (f.href(1, Some("mac"))) } { "Boot MAC" } }
                    th.hide-narrow { "Hardware" }
                    th { "OS" }
                    th.hide-narrow { a href={ "?" (f.href(1, Some("last_seen"))) } { "Last seen" } }
                } }
                tbody #machine-rows { (rows_markup(page, f)) }
            }
        }
        (pager(page, f))
    }
}

fn rows_markup(page: &MachinePage, f: &Filter) -> Markup {
    let filtered = !(f.q.is_empty() && f.state.is_empty() && f.tag.is_empty());
    html! {
        @if page.items.is_empty() {
            tr { td colspan="7" { div.empty {
                @if filtered {
                    strong { "No machine matches" } "Clear the search or filters to see every machine."
                } @else {
                    strong { "No machines yet" }
                    "PXE-boot a machine against this server: it registers itself and appears here. "
                    a href=(paths::DASHBOARD) { "How?" }
                }
            } } }
        }
        @for m in &page.items {
            tr data-machine=(m.id) {
                td { input type="checkbox" name="ids" value=(m.id) aria-label={ "Select " (machine_name(m)) }; }
                td {
                    a href=(paths::machine(&m.id)) { (machine_name(m)) }
                    @for t in &m.tags { " " span.tag { (t) } }
                }
                td {
                    (state_badge(m.state, m.offline))
                    @if m.state == MState::Installing { " " progress max="100" value=(m.progress.unwrap_or(0)) { (m.progress.unwrap_or(0)) "%" }
                        @if let (Some(w), None) = (&m.write_progress, &m.written_at) { " " span.muted.hide-narrow { (super::machine::write_line(w)) } } }
                }
                td.mono.hide-narrow { (m.boot_mac) }
                td.hide-narrow {
                    (m.vendor.as_deref().unwrap_or("")) " " (m.product.as_deref().unwrap_or(""))
                    @if let Some(serial) = &m.serial { br; span.muted.mono { (serial) } }
                }
                td { (m.os.as_deref().unwrap_or("—")) }
                td.mono.hide-narrow { (m.last_seen_at.as_deref().map(when).unwrap_or_default()) }
            }
        }
    }
}

fn pager(page: &MachinePage, f: &Filter) -> Markup {
    let pages = page.total.div_ceil(u64::from(page.per_page)).max(1);
    let current = u64::from(page.page);
    html! {
        nav.pager aria-label="Pages" {
            @if current > 1 { a href={ "?" (f.href(page.page - 1, None)) } rel="prev" { "← Previous" } }
            span.muted { "Page " (current) " of " (pages) " · " (page.total) " machines" }
            @if current < pages { a href={ "?" (f.href(page.page + 1, None)) } rel="next" { "Next →" } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Bulk {
    #[serde(default)]
    ids: Vec<String>,
    action: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    tag: String,
}

fn check_bulk(b: &Bulk) -> crate::error::Result<()> {
    if b.ids.is_empty() {
        return Err(Error::invalid("ids", "select at least one machine"));
    }
    if b.ids.len() > 500 {
        return Err(Error::invalid("ids", "at most 500 machines at once"));
    }
    match b.action.as_str() {
        "assign" if b.os.is_empty() => Err(Error::invalid("os", "choose an OS")),
        "tag" => validate_tag(0, &b.tag)
            .map_err(|_| Error::invalid("tag", "1–63 characters of a-z, 0-9 and -_.:")),
        "assign" | "delete" => Ok(()),
        other => Err(Error::invalid("action", format!("unknown action {other}"))),
    }
}

/// Step one: show exactly which machines the action will touch.
pub async fn bulk_confirm(
    State(machines): State<Machines>,
    headers: HeaderMap,
    axum_extra::extract::Form(b): axum_extra::extract::Form<Bulk>,
) -> UiResult {
    if b.action == "cancel" {
        return Ok(super::html_response(html! {}));
    }
    check_bulk(&b).ui(&headers)?;
    let mut names = Vec::new();
    for id in &b.ids {
        let m = machines.get(id).await.ui(&headers)?;
        names.push((
            m.machine.id.clone(),
            machine_name(&m.machine),
            m.machine.boot_mac.clone(),
        ));
    }
    let what = match b.action.as_str() {
        "assign" => format!("Assign {} to", b.os),
        "tag" => format!("Add tag \"{}\" to", b.tag),
        _ => "Delete".to_string(),
    };
    let body = html! {
        div.panel.confirm role="dialog" aria-labelledby="confirm-title" {
            strong #confirm-title { (what) " these " (names.len()) " machine(s)?" }
            ul #confirm-list { @for (_, name, mac) in &names { li { (name) " " span.mono.muted { (mac) } } } }
            form hx-post=(paths::BULK_APPLY) hx-target="#bulk-confirm" data-clears-selection {
                @for (id, _, _) in &names { input type="hidden" name="ids" value=(id); }
                input type="hidden" name="action" value=(b.action);
                input type="hidden" name="os" value=(b.os);
                input type="hidden" name="tag" value=(b.tag);
                button class=(if b.action == "delete" { "danger" } else { "" }) type="submit" { "Confirm" }
                " "
                button.secondary type="button" hx-post=(paths::BULK_CONFIRM) hx-target="#bulk-confirm"
                    hx-vals=r#"{"action":"cancel"}"# { "Cancel" }
            }
        }
    };
    Ok(super::html_response(body))
}

/// Step two: apply, machine by machine, and report what happened to each.
pub async fn bulk_apply(
    State(machines): State<Machines>,
    headers: HeaderMap,
    axum_extra::extract::Form(b): axum_extra::extract::Form<Bulk>,
) -> UiResult {
    check_bulk(&b).ui(&headers)?;
    let mut done = 0;
    let mut failures = Vec::new();
    for id in &b.ids {
        let r = match b.action.as_str() {
            "assign" => machines.assign(id, b.os.clone(), None).await.map(|_| ()),
            "tag" => match machines.get(id).await {
                Ok(m) => {
                    let mut tags = m.machine.tags.clone();
                    tags.push(b.tag.clone());
                    machines
                        .update(
                            id,
                            MachineUpdate {
                                tags: Some(tags),
                                ..Default::default()
                            },
                        )
                        .await
                        .map(|_| ())
                }
                Err(e) => Err(e),
            },
            _ => machines.delete(id).await,
        };
        match r {
            Ok(()) => done += 1,
            Err(e) => failures.push(format!("{id}: {e}")),
        }
    }
    let body = html! {
        (toast_ok(&format!("{done} of {} machine(s) done.", b.ids.len())))
        @if !failures.is_empty() {
            div.toast role="alert" { "Not done:" ul { @for f in &failures { li { (f) } } } }
        }
    };
    Ok((
        [("HX-Trigger", "machine-changed")],
        super::html_response(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::Machine;

    fn machine(n: u32, state: &str, progress: Option<u8>) -> Machine {
        let at = crate::clock::rfc3339(1_700_000_000_000);
        Machine {
            id: format!("id-{n}"),
            boot_mac: format!("52:54:00:00:00:{n:02x}"),
            hostname: (n % 2 == 0).then(|| format!("node-{n}")),
            state: MState::parse(state).unwrap(),
            offline: false,
            serial: Some(format!("SN{n}")),
            smbios_uuid: None,
            vendor: Some("Dell Inc.".into()),
            product: Some("PowerEdge R650".into()),
            os: (state != "discovered").then(|| "debian-12".into()),
            target_disk: None,
            phase: None,
            progress,
            status_message: None,
            tags: vec!["rack-a".into()],
            notes: String::new(),
            arch: None,
            firmware: None,
            cpu_model: None,
            cpu_threads: None,
            memory_bytes: None,
            disk_bytes: None,
            agent_version: None,
            created_at: at.clone(),
            updated_at: at.clone(),
            last_seen_at: Some(at),
            written_at: None,
            write_progress: None,
        }
    }

    #[test]
    fn machine_rows_snapshot() {
        let page = MachinePage {
            items: vec![
                machine(1, "discovered", None),
                machine(2, "installing", Some(40)),
                machine(3, "failed", None),
            ],
            total: 3,
            page: 1,
            per_page: 50,
        };
        insta::assert_snapshot!(list_markup(&page, &Filter::default()).into_string());
    }

    #[test]
    fn the_empty_list_says_what_to_do_first() {
        let page = MachinePage {
            items: vec![],
            total: 0,
            page: 1,
            per_page: 50,
        };
        let html = rows_markup(&page, &Filter::default()).into_string();
        assert!(
            html.contains("No machines yet") && html.contains("PXE-boot"),
            "{html}"
        );
        let filtered = Filter {
            q: "zzz".into(),
            ..Default::default()
        };
        assert!(
            rows_markup(&page, &filtered)
                .into_string()
                .contains("No machine matches")
        );
    }

    #[test]
    fn filters_survive_paging_and_sorting() {
        let f = Filter {
            q: "web".into(),
            state: "failed".into(),
            sort: "hostname".into(),
            ..Default::default()
        };
        assert_eq!(f.href(2, None), "q=web&state=failed&sort=hostname&page=2");
        // Clicking the sorted column again reverses it.
        assert_eq!(
            f.href(1, Some("hostname")),
            "q=web&state=failed&sort=hostname&order=desc"
        );
    }
}
