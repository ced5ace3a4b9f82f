//! Assignment rules: the list in the order they are tried, a form to add one.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use maud::html;
use serde::Deserialize;

use super::{Ctx, UiResult, UiResultExt, hx_redirect, layout, paths};
use crate::auth::Principal;
use crate::machines::Machines;
use crate::machines::catalogue::Catalogue;
use crate::machines::rules::{DiskRule, Rule, RuleInput};

pub async fn page(
    State(machines): State<Machines>,
    State(catalogue): State<Catalogue>,
    axum::Extension(p): axum::Extension<Principal>,
    headers: HeaderMap,
) -> UiResult {
    let ctx = Ctx::new(&p, "rules");
    let rules = machines.rules().await.ui(&headers)?;
    let os = catalogue.list().await.ui(&headers)?;
    let body = html! {
        h1 { "Assignment rules" }
        p.muted { "When a new machine registers, the first rule it matches (lowest priority first) assigns its OS on the disk the rule picks; the machine's timeline names the rule. With no rules, an operator assigns every machine." }
        @if rules.is_empty() {
            div.empty #rules-empty { strong { "No rules" } "New machines wait for an operator." }
        } @else {
            div.table-wrap { table #rules {
                thead { tr { th { "Priority" } th { "Name" } th { "Matches" } th { "Assigns" } th { "Applied" } th { "" } } }
                tbody { @for r in &rules { tr {
                    td { (r.priority) }
                    td { (r.name) }
                    td.muted { (conditions(r)) }
                    td { span.mono { (r.os) } " on the " (disk_label(r.disk_rule)) @if let Some(m) = &r.disk_model { " " span.mono { (m) } } }
                    td { (r.applied) @if let Some(max) = r.max_count { " of " (max) } }
                    td { button.secondary hx-delete=(format!("/rules/{}", r.id)) hx-confirm={ "Delete rule " (r.name) "?" } { "Delete" } }
                } } }
            } }
        }
        h2 { "Add a rule" }
        form.panel #rule-form hx-post=(paths::RULES) {
            div.grid {
                p { label for="rule-name" { "Name" } br; input #rule-name name="name" required maxlength="64" placeholder="lab VMs"; }
                p { label for="rule-priority" { "Priority" } br; input #rule-priority name="priority" type="number" value="100"; }
                p { label for="rule-vendor" { "Vendor contains" } br; input #rule-vendor name="vendor" placeholder="Dell"; }
                p { label for="rule-product" { "Product contains" } br; input #rule-product name="product"; }
                p { label for="rule-mac" { "Boot MAC starts with" } br; input #rule-mac name="mac_prefix" placeholder="52:54:00"; }
                p { label for="rule-os" { "OS" } br; select #rule-os name="os" { @for o in &os { option value=(o.slug) { (o.name) } } } }
                p { label for="rule-disk" { "Disk" } br; select #rule-disk name="disk_rule" {
                    option value="smallest_non_rotational" { "smallest SSD/NVMe" }
                    option value="largest_non_rotational" { "largest SSD/NVMe" }
                    option value="smallest" { "smallest disk" }
                    option value="largest" { "largest disk" }
                } }
                p { label for="rule-max" { "At most (machines)" } br; input #rule-max name="max_count" type="number" min="1"; }
            }
            button type="submit" { "Add rule" }
        }
    };
    Ok(axum::response::IntoResponse::into_response(layout(
        &ctx,
        "Assignment rules",
        body,
    )))
}

/// What a rule matches, in words.
fn conditions(r: &Rule) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &r.vendor {
        parts.push(format!("vendor ~ {v}"));
    }
    if let Some(v) = &r.product {
        parts.push(format!("product ~ {v}"));
    }
    if let Some(v) = &r.mac_prefix {
        parts.push(format!("MAC {v}…"));
    }
    if let Some(v) = r.min_cpu_threads {
        parts.push(format!("≥ {v} threads"));
    }
    if let Some(v) = r.min_memory_bytes {
        parts.push(format!("≥ {} memory", super::bytes(Some(v))));
    }
    if let Some(v) = r.min_disk_bytes {
        parts.push(format!("a disk ≥ {}", super::bytes(Some(v))));
    }
    if parts.is_empty() {
        "every new machine".into()
    } else {
        parts.join(", ")
    }
}

fn disk_label(r: DiskRule) -> &'static str {
    match r {
        DiskRule::SmallestNonRotational => "smallest SSD/NVMe",
        DiskRule::LargestNonRotational => "largest SSD/NVMe",
        DiskRule::Smallest => "smallest disk",
        DiskRule::Largest => "largest disk",
        DiskRule::Model => "disk whose model contains",
    }
}

#[derive(Debug, Deserialize)]
pub struct RuleForm {
    name: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    vendor: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    mac_prefix: Option<String>,
    os: String,
    disk_rule: DiskRule,
    #[serde(default)]
    max_count: Option<String>,
}

fn number<T: std::str::FromStr>(
    field: &'static str,
    v: Option<String>,
) -> crate::error::Result<Option<T>> {
    match v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| crate::error::Error::invalid(field, "must be a whole number")),
    }
}

pub async fn create(
    State(machines): State<Machines>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<RuleForm>,
) -> UiResult {
    let input = RuleInput {
        name: f.name,
        priority: number("priority", f.priority).ui(&headers)?.unwrap_or(0),
        vendor: f.vendor,
        product: f.product,
        mac_prefix: f.mac_prefix,
        min_cpu_threads: None,
        min_memory_bytes: None,
        min_disk_bytes: None,
        os: f.os,
        disk_rule: f.disk_rule,
        disk_model: None,
        max_count: number("max_count", f.max_count).ui(&headers)?,
    };
    machines.create_rule(input).await.ui(&headers)?;
    Ok(hx_redirect(paths::RULES))
}

pub async fn delete(
    State(machines): State<Machines>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> UiResult {
    machines.delete_rule(id).await.ui(&headers)?;
    Ok(hx_redirect(paths::RULES))
}
