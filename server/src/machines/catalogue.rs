//! The OS catalogue: validation and changes. Built-in entries can be edited, not deleted;
//! an entry assigned to machines cannot be deleted either.

use dragonfly_proto::ImageFormat;
use serde::Deserialize;
use utoipa::ToSchema;

use super::OsImage;
use crate::error::{Error, Result};
use std::sync::Arc;

use crate::clock::Clock;
use crate::store::{Db, StoreError, os as store};

/// A catalogue entry as an operator writes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OsInput {
    /// Lower-case identifier: letters, digits, `.`, `-`; 2–64 characters, starting with a
    /// letter or digit. Required to create; ignored on update (the path names the entry).
    #[serde(default)]
    pub slug: Option<String>,
    pub name: String,
    /// `ubuntu`, `debian`, `rocky`, ...
    pub family: String,
    pub version: String,
    #[serde(default = "default_arch")]
    pub arch: String,
    /// http(s) URL of the disk image the installer writes, or a path on this server
    /// (`/images/NAME`) for a file in its image directory.
    pub image_url: String,
    /// How the file is encoded.
    #[serde(default = "default_format")]
    #[schema(value_type = String, pattern = "^(raw|raw\\.gz|raw\\.xz|raw\\.zst|qcow2)$")]
    pub format: String,
    /// Hex SHA-256 of the published file. A native install needs this or `sha512`.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub sha256: Option<String>,
    /// Hex SHA-512 of the published file (what Debian publishes).
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{128}$")]
    pub sha512: Option<String>,
    /// http(s) URL of the published checksum list (`SHA256SUMS`, `SHA512SUMS`) the
    /// checksum is refreshed from (`dragonfly os refresh`, `POST /api/v1/os/{slug}/refresh`).
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub checksum_url: Option<String>,
    /// Bytes the image takes once written (the target disk must be larger).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub size_bytes: Option<u64>,
    /// A `#cloud-config` document (at most 64 KiB) added to every install of this OS.
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub user_data: Option<String>,
}

fn default_format() -> String {
    "raw".into()
}

fn default_arch() -> String {
    "x86_64".into()
}

fn validate_slug(slug: &str) -> Result<()> {
    let ok = (2..=64).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && slug.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "slug",
            "2–64 characters of a-z, 0-9, '.' and '-', starting with a letter or digit",
        ))
    }
}

fn validate(input: &OsInput) -> Result<()> {
    for (field, value, max) in [
        ("name", &input.name, 128),
        ("family", &input.family, 32),
        ("version", &input.version, 32),
        ("arch", &input.arch, 16),
        ("image_url", &input.image_url, 2048),
    ] {
        if value.trim().is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if value.chars().count() > max {
            return Err(Error::invalid(
                field,
                format!("longer than {max} characters"),
            ));
        }
    }
    if !["x86_64", "aarch64"].contains(&input.arch.as_str()) {
        return Err(Error::invalid("arch", "must be x86_64 or aarch64"));
    }
    let url = input.image_url.trim();
    let ok = is_http_url(url);
    let served_here = url
        .strip_prefix("/images/")
        .is_some_and(crate::artefact::valid_image_name);
    if !ok && !served_here {
        return Err(Error::invalid(
            "image_url",
            "must be an http:// or https:// URL, or /images/NAME for a file this server serves",
        ));
    }
    Ok(())
}

fn is_http_url(url: &str) -> bool {
    let parsed: std::result::Result<axum::http::Uri, _> = url.parse();
    parsed.is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    })
}

/// The install-related fields, checked: the format's name, a SHA-256 in hex, a positive
/// size, a cloud-config document.
fn install_fields(input: &OsInput) -> Result<ImageFormat> {
    let format = ImageFormat::parse(input.format.trim()).map_err(|_| {
        Error::invalid(
            "format",
            "must be one of raw, raw.gz, raw.xz, raw.zst, qcow2",
        )
    })?;
    for (field, sum, len) in [
        ("sha256", &input.sha256, 64),
        ("sha512", &input.sha512, 128),
    ] {
        if let Some(sum) = sum {
            if sum.len() != len || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(Error::invalid(
                    field,
                    format!("must be {len} hexadecimal characters"),
                ));
            }
        }
    }
    if let Some(url) = &input.checksum_url {
        if url.chars().count() > 2048 || !is_http_url(url.trim()) {
            return Err(Error::invalid(
                "checksum_url",
                "must be an http:// or https:// URL of at most 2048 characters",
            ));
        }
    }
    if input.size_bytes == Some(0) {
        return Err(Error::invalid("size_bytes", "must be at least 1"));
    }
    if input.size_bytes.is_some_and(|n| n > i64::MAX as u64) {
        return Err(Error::invalid("size_bytes", "larger than 2^63-1"));
    }
    if let Some(u) = &input.user_data {
        if u.chars().count() > 65536 {
            return Err(Error::invalid("user_data", "longer than 65536 characters"));
        }
        if !u.is_empty() && !u.starts_with("#cloud-config") {
            return Err(Error::invalid(
                "user_data",
                "must be a cloud-config document starting with #cloud-config",
            ));
        }
        if !u.is_empty() && serde_yaml::from_str::<serde_yaml::Value>(u).is_err() {
            return Err(Error::invalid("user_data", "is not valid YAML"));
        }
    }
    Ok(format)
}

fn row(slug: String, input: OsInput, builtin: bool, now: i64, created: i64) -> store::OsRow {
    store::OsRow {
        format: ImageFormat::parse(input.format.trim()).unwrap_or(ImageFormat::Raw),
        sha256: input.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
        sha512: input.sha512.as_ref().map(|s| s.to_ascii_lowercase()),
        checksum_url: input
            .checksum_url
            .as_ref()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty()),
        checked_at: None,
        size_bytes: input.size_bytes,
        user_data: input.user_data.clone().filter(|u| !u.is_empty()),
        slug,
        name: input.name.trim().to_string(),
        family: input.family.trim().to_ascii_lowercase(),
        version: input.version.trim().to_string(),
        arch: input.arch,
        image_url: input.image_url.trim().to_string(),
        builtin,
        created_at: created,
        updated_at: now,
    }
}

/// The OS catalogue service; cheap to clone.
#[derive(Clone)]
pub struct Catalogue {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl Catalogue {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Catalogue {
        Catalogue { db, clock }
    }

    pub async fn list(&self) -> Result<Vec<OsImage>> {
        let rows = self.db.read(store::list).await.map_err(Error::from)?;
        Ok(rows.into_iter().map(OsImage::from).collect())
    }

    pub async fn get(&self, slug: &str) -> Result<OsImage> {
        let s = slug.to_string();
        self.db
            .read(move |c| store::get(c, &s))
            .await
            .map_err(Error::from)?
            .map(OsImage::from)
            .ok_or_else(|| Error::not_found(format!("OS {slug}")))
    }

    pub async fn create(&self, input: OsInput) -> Result<OsImage> {
        let now = self.clock.now_ms();
        let slug = input
            .slug
            .clone()
            .ok_or_else(|| Error::invalid("slug", "required"))?;
        validate_slug(&slug)?;
        validate(&input)?;
        install_fields(&input)?;
        let r = row(slug.clone(), input, false, now, now);
        self.db
            .write(move |tx| -> Result<_> {
                store::insert(tx, &r).map_err(|e: StoreError| {
                    if e.is_constraint() {
                        Error::Conflict(format!("an OS with slug '{}' already exists", r.slug))
                    } else {
                        e.into()
                    }
                })?;
                Ok(OsImage::from(r))
            })
            .await
    }

    pub async fn update(&self, slug: &str, input: OsInput) -> Result<OsImage> {
        let now = self.clock.now_ms();
        // Ignored (the path names the entry), but still a slug when given.
        if let Some(s) = &input.slug {
            validate_slug(s)?;
        }
        validate(&input)?;
        install_fields(&input)?;
        let slug = slug.to_string();
        self.db
            .write(move |tx| -> Result<_> {
                let old =
                    store::get(tx, &slug)?.ok_or_else(|| Error::not_found(format!("OS {slug}")))?;
                let mut r = row(slug, input, old.builtin, now, old.created_at);
                if (&r.sha256, &r.sha512, &r.checksum_url)
                    == (&old.sha256, &old.sha512, &old.checksum_url)
                {
                    r.checked_at = old.checked_at;
                }
                store::update(tx, &r)?;
                Ok(OsImage::from(r))
            })
            .await
    }

    pub async fn delete(&self, slug: &str) -> Result<()> {
        let slug = slug.to_string();
        self.db
            .write(move |tx| -> Result<_> {
                let old =
                    store::get(tx, &slug)?.ok_or_else(|| Error::not_found(format!("OS {slug}")))?;
                if old.builtin {
                    return Err(Error::Conflict(format!(
                        "'{slug}' is built in; edit its image_url instead of deleting it"
                    )));
                }
                let rules = crate::store::rules::using_os(tx, &slug)?;
                if rules > 0 {
                    return Err(Error::Conflict(format!(
                        "'{slug}' is assigned by {rules} assignment rule(s)"
                    )));
                }
                let n = store::machines_using(tx, &slug)?;
                if n > 0 {
                    return Err(Error::Conflict(format!(
                        "'{slug}' is assigned to {n} machine(s)"
                    )));
                }
                store::delete(tx, &slug)?;
                Ok(())
            })
            .await
    }
}

/// What a checksum refresh of one entry came to.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct Refreshed {
    pub slug: String,
    /// The checksum now in the entry changed (the image was republished).
    pub changed: bool,
    /// `SHA-256` or `SHA-512`: the algorithm the list uses.
    pub algorithm: String,
    pub os: OsImage,
}

impl Catalogue {
    /// Reads the entry's published checksum list and stores the checksum it gives for the
    /// entry's image file; the list is the truth, so a checksum of the other algorithm is
    /// dropped (it was of an earlier file).
    pub async fn refresh(&self, slug: &str) -> Result<Refreshed> {
        let os = {
            let s = slug.to_string();
            self.db
                .read(move |c| store::get(c, &s))
                .await
                .map_err(Error::from)?
                .ok_or_else(|| Error::not_found(format!("OS {slug}")))?
        };
        let Some(list_url) = os.checksum_url.clone() else {
            return Err(Error::unresolved(
                "checksum_url",
                format!(
                    "'{slug}' has no checksum_url; set the URL of its published SHA256SUMS or \
                     SHA512SUMS first"
                ),
            ));
        };
        let file = super::sums::file_name(&os.image_url)
            .ok_or_else(|| Error::invalid("image_url", "names no file"))?
            .to_string();
        let list = super::sums::fetch(&list_url)
            .await
            .map_err(Error::Upstream)?;
        let sum = super::sums::find(&list, &file)
            .ok_or_else(|| Error::Upstream(format!("{list_url} lists no checksum for {file}")))?;
        let now = self.clock.now_ms();
        let slug = slug.to_string();
        let algorithm = sum.name().to_string();
        self.db
            .write(move |tx| -> Result<_> {
                let mut r =
                    store::get(tx, &slug)?.ok_or_else(|| Error::not_found(format!("OS {slug}")))?;
                let before = (r.sha256.clone(), r.sha512.clone());
                match &sum {
                    super::sums::Sum::Sha256(h) => {
                        r.sha256 = Some(h.clone());
                        r.sha512 = None;
                    }
                    super::sums::Sum::Sha512(h) => {
                        r.sha512 = Some(h.clone());
                        r.sha256 = None;
                    }
                }
                let changed = before != (r.sha256.clone(), r.sha512.clone());
                r.checked_at = Some(now);
                if changed {
                    r.updated_at = now;
                }
                store::update(tx, &r)?;
                tracing::info!(os = %slug, %changed, checksum = %sum.hex(), "checksum refreshed");
                Ok(Refreshed {
                    slug,
                    changed,
                    algorithm,
                    os: OsImage::from(r),
                })
            })
            .await
    }

    /// Refreshes every entry that has a checksum list, all at once (so the whole takes at
    /// most one fetch's time limit); one line per entry, failures too.
    pub async fn refresh_all(
        &self,
    ) -> Result<Vec<(String, std::result::Result<Refreshed, String>)>> {
        let slugs: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter(|os| os.checksum_url.is_some())
            .map(|os| os.slug)
            .collect();
        let results = futures_util::future::join_all(
            slugs
                .iter()
                .map(|slug| async move { self.refresh(slug).await.map_err(|e| e.to_string()) }),
        )
        .await;
        Ok(slugs.into_iter().zip(results).collect())
    }
}
