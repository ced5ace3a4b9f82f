//! The native install, on the server's side: the plan the agent gets (image, disk, a seed
//! with a one-time phone-home URL), the installed system's report, and the timeout for a
//! system that never reports.

use dragonfly_proto::{DiskSelector, ImageSource, InstallPlan, Instruction, Seed};
use rusqlite::Connection;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Actor, Committed, Log, MachineEvent, Machines, State, lifecycle, load, status_of};
use crate::error::{Error, Result};
use crate::secrets::{random_secret, token_hash};
use crate::store::machines::{self as store, MachineRow};
use crate::store::os as os_store;
use crate::vocab::TargetDisk;

/// What cloud-init's `phone_home` module posts (form fields; all optional, all bounded by
/// the request size limit). Only the hostname is kept, for the timeline.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PhoneHome {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub fqdn: Option<String>,
}

/// An OS entry a native install can use: it has a checksum and a format the agent streams.
pub fn check_native(conn: &Connection, slug: &str) -> Result<()> {
    let Some(os) = os_store::get(conn, slug)? else {
        return Ok(());
    };
    if os.sha256.is_none() && os.sha512.is_none() {
        return Err(Error::unresolved(
            "os",
            format!(
                "'{slug}' has no sha256 or sha512: native installs write only verified images; \
                 set the checksum of its image file first (or refresh it from its checksum_url)"
            ),
        ));
    }
    Ok(())
}

/// The `#cloud-config` the installed system finds on its seed: the OS entry's own document,
/// with the hostname, the server's SSH keys and the one-time phone-home added.
pub fn user_data(
    template: Option<&str>,
    hostname: &str,
    ssh_keys: &[String],
    phone_home_url: &str,
) -> Result<String> {
    use serde_yaml::{Mapping, Value};
    let mut doc = match template {
        Some(t) => match serde_yaml::from_str::<Value>(t) {
            Ok(Value::Mapping(m)) => m,
            Ok(Value::Null) => Mapping::new(),
            _ => {
                return Err(Error::Internal(
                    "the OS's user_data is not a mapping".into(),
                ));
            }
        },
        None => Mapping::new(),
    };
    doc.insert("hostname".into(), hostname.into());
    doc.insert("preserve_hostname".into(), false.into());
    if !ssh_keys.is_empty() {
        let mut keys = match doc.remove("ssh_authorized_keys") {
            Some(Value::Sequence(s)) => s,
            _ => Vec::new(),
        };
        keys.extend(ssh_keys.iter().map(|k| Value::from(k.as_str())));
        doc.insert("ssh_authorized_keys".into(), Value::Sequence(keys));
    }
    let mut phone = Mapping::new();
    phone.insert("url".into(), phone_home_url.into());
    phone.insert(
        "post".into(),
        Value::Sequence(vec!["instance_id".into(), "hostname".into(), "fqdn".into()]),
    );
    phone.insert("tries".into(), 20.into());
    doc.insert("phone_home".into(), Value::Mapping(phone));
    let yaml =
        serde_yaml::to_string(&Value::Mapping(doc)).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(format!("#cloud-config\n{yaml}"))
}

/// The disk to write: the assigned one, else the smallest reported disk with a serial or WWN
/// (the usual boot disk of a server with data disks beside it).
fn target(conn: &Connection, m: &MachineRow) -> Result<Option<DiskSelector>> {
    if let Some(t) = &m.target_disk {
        return Ok(Some(match t {
            TargetDisk::Serial(s) => DiskSelector::Serial(s.clone()),
            TargetDisk::Wwn(w) => DiskSelector::Wwn(w.clone()),
        }));
    }
    let mut disks = store::disks(conn, &m.id)?;
    disks.sort_by_key(|d| d.size_bytes);
    Ok(disks.into_iter().find_map(|d| {
        d.serial
            .map(DiskSelector::Serial)
            .or(d.wwn.map(DiskSelector::Wwn))
    }))
}

fn absolute(base_url: &str, url: &str) -> String {
    if url.starts_with('/') {
        format!("{base_url}{url}")
    } else {
        url.to_string()
    }
}

/// The settings key of the SSH keys operators keep in the database.
const SSH_KEYS: &str = "ssh_authorized_keys";
/// The server setting holding [`Machines::instance_id`].
const INSTANCE_ID: &str = "instance_id";

/// The SSH keys every native install gets: those of `--ssh-authorized-keys` and those an
/// operator stored.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct SshKeys {
    /// Keys from the server's `--ssh-authorized-keys` file (read-only here).
    pub from_file: Vec<String>,
    /// Keys operators keep through the API or the UI, one per entry.
    pub stored: Vec<String>,
}

/// New stored keys: an authorized_keys text (at most 100 keys, comments allowed; the
/// request body is at most 64 KiB).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshKeysInput {
    #[schema(max_length = 60000)]
    pub authorized_keys: String,
}

impl SshKeysInput {
    /// The keys, or the line that is not one.
    pub fn parse(&self) -> Result<Vec<String>> {
        if self.authorized_keys.chars().count() > 60_000 {
            return Err(Error::invalid(
                "authorized_keys",
                "longer than 60000 characters",
            ));
        }
        crate::config::parse_ssh_keys(&self.authorized_keys)
            .map_err(|e| Error::invalid("authorized_keys", e))
    }
}

/// One machine's own SSH keys: its native installs get them on top of the server's.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct MachineSshKeys {
    pub keys: Vec<String>,
}

fn stored_keys(conn: &Connection) -> std::result::Result<Vec<String>, crate::store::StoreError> {
    Ok(crate::store::settings::get(conn, SSH_KEYS)?
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default())
}

impl Machines {
    pub async fn ssh_keys(&self) -> Result<SshKeys> {
        let stored = self.db.read(stored_keys).await?;
        Ok(SshKeys {
            from_file: self.settings.ssh_keys.clone(),
            stored,
        })
    }

    /// Which install of the machine is the current one: the id of its latest assignment or
    /// reimage event (`None` before any).
    pub async fn install_generation(&self, id: &str) -> Result<Option<i64>> {
        let id = id.to_string();
        Ok(self
            .db
            .read(move |c| crate::store::events::last_install(c, &id))
            .await?)
    }

    /// This database's identity in shared places (the `dragonfly/instance` label of the
    /// Tinkerbell objects it owns): made once, kept in the server settings.
    pub async fn instance_id(&self) -> Result<String> {
        let now = self.clock.now_ms();
        let fresh = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let id = self
            .db
            .write(move |tx| -> Result<String> {
                if let Some(id) = crate::store::settings::get(tx, INSTANCE_ID)? {
                    return Ok(id);
                }
                crate::store::settings::set(tx, INSTANCE_ID, &fresh, now)?;
                Ok(fresh)
            })
            .await?;
        Ok(id)
    }

    pub async fn set_ssh_keys(&self, input: SshKeysInput) -> Result<SshKeys> {
        let keys = input.parse()?;
        let now = self.clock.now_ms();
        let text = keys.join("\n");
        self.db
            .write(move |tx| -> Result<()> {
                crate::store::settings::set(tx, SSH_KEYS, &text, now)?;
                Ok(())
            })
            .await?;
        self.ssh_keys().await
    }

    pub async fn machine_ssh_keys(&self, id: &str) -> Result<MachineSshKeys> {
        let id = id.to_string();
        let keys = self
            .db
            .read(move |c| -> Result<_> {
                load(c, &id)?;
                Ok(crate::store::settings::machine_keys(c, &id)?)
            })
            .await?;
        Ok(MachineSshKeys { keys })
    }

    /// Replaces a machine's own SSH keys; the change is on its timeline (the count, not
    /// the keys). Installs planned from now on carry them.
    pub async fn set_machine_ssh_keys(
        &self,
        id: &str,
        input: SshKeysInput,
    ) -> Result<MachineSshKeys> {
        let keys = input.parse()?;
        let now = self.clock.now_ms();
        let machine = id.to_string();
        let kept = keys.clone();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let id = machine;
                load(tx, &id)?;
                let before = crate::store::settings::machine_keys(tx, &id)?;
                crate::store::settings::set_machine_keys(tx, &id, &keys, now)?;
                let mut log = Log::new(now);
                if before != keys {
                    log.add(
                        tx,
                        &id,
                        MachineEvent::Updated,
                        Actor::Operator,
                        None,
                        format!("SSH keys for native installs: {}", keys.len()),
                    )?;
                }
                Ok(Committed {
                    events: log.events,
                    machine: Some(load(tx, &id)?),
                })
            })
            .await?;
        self.publish(change);
        Ok(MachineSshKeys { keys: kept })
    }

    /// The `install` instruction for an assigned machine, with this install's one-time token
    /// (made on first use, kept until the install ends).
    pub(super) fn install_plan(&self, conn: &Connection, m: &MachineRow) -> Result<Instruction> {
        let wait = Instruction::Wait {
            seconds: self.settings.heartbeat_secs,
        };
        let Some(os) = m
            .os_slug
            .as_deref()
            .map(|s| os_store::get(conn, s))
            .transpose()?
            .flatten()
        else {
            tracing::warn!(machine = %m.id, "assigned OS is gone from the catalogue");
            return Ok(wait);
        };
        if os.sha256.is_none() && os.sha512.is_none() {
            tracing::warn!(machine = %m.id, os = %os.slug, "OS has no checksum; not installing");
            return Ok(wait);
        }
        let Some(disk) = target(conn, m)? else {
            tracing::warn!(machine = %m.id, "no disk with a serial or WWN to install on");
            return Ok(wait);
        };
        let token = match store::install_token(conn, &m.id)? {
            Some(t) => t,
            None => {
                let t = random_secret(32);
                store::set_install(conn, &m.id, Some(&t), None)?;
                t
            }
        };
        let base = &self.settings.base_url;
        let hostname = m
            .hostname
            .clone()
            .unwrap_or_else(|| format!("node-{}", m.boot_mac.replace(':', "")));
        let phone_home = format!("{base}/api/v1/phone-home/{token}");
        let mut keys = self.settings.ssh_keys.clone();
        keys.extend(stored_keys(conn)?);
        for k in crate::store::settings::machine_keys(conn, &m.id)? {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let seed = Seed {
            instance_id: format!("dragonfly-{}", &token_hash(&token)[..16]),
            user_data: user_data(os.user_data.as_deref(), &hostname, &keys, &phone_home)?,
            hostname,
            boot_mac: Some(m.boot_mac.clone()),
        };
        Ok(Instruction::Install(Box::new(InstallPlan {
            image: ImageSource {
                url: absolute(base, &os.image_url),
                format: os.format,
                sha256: os.sha256.clone(),
                sha512: os.sha512.clone(),
                size: os.size_bytes,
            },
            disk,
            seed,
        })))
    }

    /// The installed system reported back with the one-time token of its install: the
    /// machine is installed, the token is spent.
    pub async fn phone_home(&self, token: &str, report: PhoneHome) -> Result<()> {
        if token.len() != 43 {
            return Err(Error::not_found("install"));
        }
        let now = self.clock.now_ms();
        let token = token.to_string();
        let done = self
            .db
            .write(move |tx| -> Result<_> {
                let m = store::by_install_token(tx, &token)?
                    .ok_or_else(|| Error::not_found("install"))?;
                let Some(written) = m.written_at.filter(|_| m.state == State::Installing) else {
                    return Err(Error::Conflict(
                        "this install has not written its image yet".into(),
                    ));
                };
                let to = lifecycle::next(m.state, lifecycle::Event::Succeed)?;
                let mut status = status_of(&m);
                status.state = to;
                status.phase = Some(dragonfly_proto::Phase::Installed);
                status.progress = Some(100);
                let host: String = report
                    .hostname
                    .or(report.fqdn)
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(253)
                    .collect();
                let message = format!(
                    "the installed system reported back{} {} s after its image was written",
                    if host.is_empty() {
                        String::new()
                    } else {
                        format!(" as {host}")
                    },
                    (now - written).max(0) / 1000
                );
                status.status_message = Some(message.clone());
                store::set_status(tx, &m.id, &status, now)?;
                store::set_install(tx, &m.id, None, None)?;
                let mut log = Log::new(now);
                log.add(
                    tx,
                    &m.id,
                    MachineEvent::InstallSucceeded,
                    Actor::InstalledOs,
                    Some((m.state, to)),
                    message,
                )?;
                Ok(Committed {
                    events: log.events,
                    machine: Some(load(tx, &m.id)?),
                })
            })
            .await?;
        self.publish(done);
        Ok(())
    }

    /// Fails natively installed machines whose system never reported back in time.
    pub async fn expire_first_boots(&self) -> Result<()> {
        let now = self.clock.now_ms();
        let before = now - self.settings.first_boot_timeout_ms;
        let secs = self.settings.first_boot_timeout_ms / 1000;
        let done = self
            .db
            .write(move |tx| -> Result<_> {
                let mut log = Log::new(now);
                let mut last = None;
                for m in store::written_before(tx, before)? {
                    let to = lifecycle::next(m.state, lifecycle::Event::Fail)?;
                    let mut status = status_of(&m);
                    status.state = to;
                    status.phase = Some(dragonfly_proto::Phase::Failed);
                    let message = format!(
                        "written, but the installed system never reported back (waited {secs} s)"
                    );
                    status.status_message = Some(message.clone());
                    store::set_status(tx, &m.id, &status, now)?;
                    store::set_install(tx, &m.id, None, None)?;
                    log.add(
                        tx,
                        &m.id,
                        MachineEvent::InstallFailed,
                        Actor::System,
                        Some((m.state, to)),
                        message,
                    )?;
                    last = Some(load(tx, &m.id)?);
                }
                Ok(Committed {
                    events: log.events,
                    machine: last,
                })
            })
            .await?;
        if !done.events.is_empty() {
            for e in &done.events {
                if let Some(id) = &e.machine_id {
                    // Each failed machine's own view goes out with its event.
                    if let Ok(m) = self.get(id).await {
                        self.send(super::Change {
                            machine_id: id.clone(),
                            event: Some(super::EventView::from(e.clone())),
                            machine: Some(m.machine),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
