//! The native install: what the server tells the agent to write, and how the agent reports
//! its progress.

use serde::{Deserialize, Serialize};

/// How an image file is encoded. The agent streams every format but `qcow2` straight to the
/// disk (a qcow2 is spooled on the disk and converted); checksums are always of the file as
/// published (compressed bytes included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ImageFormat {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "raw.gz")]
    RawGz,
    #[serde(rename = "raw.xz")]
    RawXz,
    #[serde(rename = "raw.zst")]
    RawZst,
    #[serde(rename = "qcow2")]
    Qcow2,
}

/// The disk to write, by an identifier that does not change between boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DiskSelector {
    Serial(String),
    Wwn(String),
}

impl std::fmt::Display for DiskSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskSelector::Serial(s) => write!(f, "serial {s}"),
            DiskSelector::Wwn(w) => write!(f, "WWN {w}"),
        }
    }
}

/// The image to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageSource {
    /// Absolute http URL (or a path on the server, for images it serves itself).
    pub url: String,
    pub format: ImageFormat,
    /// Lower-case hex SHA-256 of the file as published. At least one of `sha256` and
    /// `sha512` is given (distributions publish one or the other); every one given is
    /// checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Lower-case hex SHA-512 of the file as published (Debian publishes SHA512SUMS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// Bytes the image takes once written, when known: the disk must be at least this big.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// What the installed system's cloud-init finds on its NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Seed {
    /// New for every install, so cloud-init runs its once-per-instance modules again.
    pub instance_id: String,
    pub hostname: String,
    /// The whole `user-data` file (`#cloud-config`), rendered by the server: SSH keys, the
    /// operator's template and the one-time phone-home URL are already in it.
    pub user_data: String,
    /// The NIC cloud-init should configure (by MAC), for machines with several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_mac: Option<String>,
}

/// `install`: write `image` to `disk`, verify it, add the seed, report `written`, reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallPlan {
    pub image: ImageSource,
    pub disk: DiskSelector,
    pub seed: Seed,
}

/// Progress of an image write, sent with `installing` heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriteProgress {
    /// Bytes written to the disk so far.
    pub written: u64,
    /// Bytes to write in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Recent write rate, bytes per second.
    pub bytes_per_sec: u64,
}
