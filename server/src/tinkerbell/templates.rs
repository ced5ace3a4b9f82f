//! The tink workflow templates Dragonfly writes, one per catalogue OS: stream the image to
//! the install disk, write a cloud-init configuration, then reboot or kexec.
//!
//! A Template is shared by every machine installing that OS, so the machine-specific values
//! are Go-template expressions Tinkerbell fills in per workflow: the worker (`device_1`, the
//! boot MAC), the install disk (`.Hardware.Disks 0`, which Dragonfly puts first and always
//! as a `/dev/disk/by-id/...` path) and the host name.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::config::{Finish, WorkflowArgs};

/// The worker of the install task: the boot MAC from the Workflow's hardwareMap.
pub const WORKER: &str = "{{.device_1}}";
/// The install disk: the first of the Hardware's disks.
pub const DISK: &str = "{{ index .Hardware.Disks 0 }}";
/// A cloud-init line with the Hardware's host name, empty when it has none.
pub const HOSTNAME_LINE: &str =
    "{{ with (index .Hardware.Interfaces 0).DHCP.Hostname }}hostname: {{ . }}{{ end }}";

/// Where templates get their images and how they end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSettings {
    /// Registry path of the Tinkerbell actions, without a trailing slash.
    pub actions: String,
    pub actions_tag: String,
    /// Reports the last action done before running it; `None` runs it directly.
    pub waitdaemon_image: Option<String>,
    pub reboot_image: String,
    pub finish: Finish,
    pub metadata_url: Option<String>,
    /// Serial console for the kexec'd kernel, as HookOS uses it (`ttyS0,115200`).
    pub console: String,
}

impl Default for TemplateSettings {
    /// The flags' defaults (a test checks they equal `from_args` of the default flags).
    fn default() -> Self {
        let a = WorkflowArgs::default();
        TemplateSettings {
            actions: a.tink_actions,
            actions_tag: a.tink_actions_tag,
            waitdaemon_image: Some(a.tink_waitdaemon_image),
            reboot_image: a.tink_reboot_image,
            finish: a.tink_finish,
            metadata_url: a.tink_metadata_url,
            console: "ttyS0,115200".into(),
        }
    }
}

fn check_image(flag: &str, v: &str) -> anyhow::Result<()> {
    if v.is_empty() || v.len() > 512 || !v.chars().all(|c| c.is_ascii_graphic()) {
        bail!("{flag} must be 1-512 printable characters without spaces");
    }
    if v.contains('{') || v.contains('}') || v.contains('"') || v.contains('\'') {
        bail!("{flag} must not contain braces or quotes");
    }
    Ok(())
}

impl TemplateSettings {
    pub fn from_args(a: &WorkflowArgs) -> anyhow::Result<TemplateSettings> {
        check_image("--tink-actions", &a.tink_actions)?;
        check_image("--tink-actions-tag", &a.tink_actions_tag)?;
        check_image("--tink-reboot-image", &a.tink_reboot_image)?;
        let waitdaemon = match a.tink_waitdaemon_image.as_str() {
            "none" | "" => None,
            image => {
                check_image("--tink-waitdaemon-image", image)?;
                Some(image.to_string())
            }
        };
        let metadata_url = match &a.tink_metadata_url {
            Some(u) => {
                check_image("--tink-metadata-url", u)?;
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    bail!("--tink-metadata-url must be an http:// or https:// URL");
                }
                Some(u.trim_end_matches('/').to_string())
            }
            None => None,
        };
        Ok(TemplateSettings {
            actions: a.tink_actions.trim_end_matches('/').to_string(),
            actions_tag: a.tink_actions_tag.clone(),
            waitdaemon_image: waitdaemon,
            reboot_image: a.tink_reboot_image.clone(),
            finish: a.tink_finish,
            metadata_url,
            console: "ttyS0,115200".into(),
        })
    }

    /// Uses the serial console HookOS is configured with.
    pub fn with_console(mut self, console: &str) -> TemplateSettings {
        if !console.is_empty() && console.chars().all(|c| c.is_ascii_graphic()) {
            self.console = console.to_string();
        }
        self
    }

    fn action_image(&self, name: &str) -> String {
        format!("{}/{name}:{}", self.actions, self.actions_tag)
    }
}

/// The catalogue entry of the OS to install (plain values; the catalogue lives elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsFacts {
    pub slug: String,
    pub name: String,
    pub family: String,
    pub version: String,
    pub arch: String,
    pub image_url: String,
}

/// The tink workflow template (what `spec.data` holds, before Go-template rendering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TinkTemplate {
    pub version: String,
    pub name: String,
    pub global_timeout: u64,
    pub tasks: Vec<TinkTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TinkTask {
    pub name: String,
    pub worker: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    pub actions: Vec<TinkAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TinkAction {
    pub name: String,
    pub image: String,
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// Strings, as tink reads them; other YAML scalars (`COMPRESSED: true`) are read as text.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::de::Error;
    let raw = BTreeMap::<String, serde_yaml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Null => String::new(),
                _ => return Err(D::Error::custom(format!("environment {k} is not a scalar"))),
            };
            Ok((k, text))
        })
        .collect()
}

/// How the image file is stored, from its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A raw disk image, maybe compressed (image2disk decompresses gz, xz, bz2, zstd).
    Raw { compressed: bool },
    /// A QCOW2 image (Ubuntu's `.img` cloud images): qemuimg2disk converts it.
    Qcow2,
}

pub fn image_format(url: &str) -> ImageFormat {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    if [".gz", ".xz", ".bz2", ".zst", ".zstd"]
        .iter()
        .any(|e| path.ends_with(e))
    {
        ImageFormat::Raw { compressed: true }
    } else if path.ends_with(".qcow2") || path.ends_with(".img") {
        ImageFormat::Qcow2
    } else {
        ImageFormat::Raw { compressed: false }
    }
}

/// Where the OS keeps its root file system and kernel, for writefile and kexec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub root_partition: u8,
    /// The partition holding the kernel, and the kernel and initrd paths within it.
    pub boot_partition: u8,
    pub kernel: &'static str,
    pub initrd: &'static str,
}

/// The layouts of the official cloud images Dragonfly knows. Other systems get no
/// cloud-init file and always reboot.
pub fn layout(os: &OsFacts) -> Option<Layout> {
    let mut parts = os.version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    match os.family.as_str() {
        // Since 23.10 the Ubuntu cloud images boot from a separate ext4 /boot, partition 16.
        "ubuntu" if (major, minor) >= (23, 10) => Some(Layout {
            root_partition: 1,
            boot_partition: 16,
            kernel: "/vmlinuz",
            initrd: "/initrd.img",
        }),
        "ubuntu" => Some(Layout {
            root_partition: 1,
            boot_partition: 1,
            kernel: "/boot/vmlinuz",
            initrd: "/boot/initrd.img",
        }),
        "debian" => Some(Layout {
            root_partition: 1,
            boot_partition: 1,
            kernel: "/vmlinuz",
            initrd: "/initrd.img",
        }),
        _ => None,
    }
}

fn partition(n: u8) -> String {
    format!("{DISK}-part{n}")
}

fn env<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The cloud-init configuration written into the installed system.
pub fn cloud_init(settings: &TemplateSettings) -> String {
    let mut out = String::from("# Written by Dragonfly when it installed this system.\n");
    match &settings.metadata_url {
        Some(url) => {
            out.push_str("datasource_list: [ Ec2, None ]\n");
            out.push_str("datasource:\n  Ec2:\n");
            out.push_str(&format!("    metadata_urls: [ \"{url}\" ]\n"));
            out.push_str("    strict_id: false\n");
        }
        None => out.push_str("datasource_list: [ None ]\n"),
    }
    out.push_str("preserve_hostname: false\n");
    out.push_str(HOSTNAME_LINE);
    out.push('\n');
    out.push_str("warnings:\n  dsid_missing_source: off\n");
    out
}

const SYSRQ_REBOOT: &str = "echo 1 > /proc/sys/kernel/sysrq; echo b > /proc/sysrq-trigger";
const DOCKER_SOCK: &str = "/var/run/docker.sock:/var/run/docker.sock";

fn final_action(os: &OsFacts, settings: &TemplateSettings, layout: Option<Layout>) -> TinkAction {
    let kexec = match (settings.finish, layout) {
        (Finish::Kexec, Some(l)) if os.arch == "x86_64" => Some(l),
        _ => None,
    };
    let (name, image, command, mut environment) = match kexec {
        Some(l) => (
            "kexec",
            settings.action_image("kexec"),
            None,
            env([
                ("BLOCK_DEVICE", partition(l.boot_partition)),
                ("FS_TYPE", "ext4".into()),
                ("KERNEL_PATH", l.kernel.into()),
                ("INITRD_PATH", l.initrd.into()),
                (
                    "CMD_LINE",
                    format!(
                        "root={} ro console=tty0 console={}",
                        partition(l.root_partition),
                        settings.console
                    ),
                ),
            ]),
        ),
        None => (
            "reboot",
            settings.reboot_image.clone(),
            Some(vec!["sh".into(), "-c".into(), SYSRQ_REBOOT.into()]),
            BTreeMap::new(),
        ),
    };
    match &settings.waitdaemon_image {
        Some(waitdaemon) => {
            environment.insert("IMAGE".into(), image);
            environment.insert("WAIT_SECONDS".into(), "5".into());
            TinkAction {
                name: name.into(),
                image: waitdaemon.clone(),
                timeout: 90,
                command,
                pid: Some("host".into()),
                environment,
                volumes: vec![DOCKER_SOCK.into()],
            }
        }
        None => TinkAction {
            name: name.into(),
            image,
            timeout: 90,
            command,
            pid: Some("host".into()),
            environment,
            volumes: Vec::new(),
        },
    }
}

/// The template Dragonfly uses for `os`.
pub fn tink_template(name: &str, os: &OsFacts, settings: &TemplateSettings) -> TinkTemplate {
    let layout = layout(os);
    let mut actions = Vec::new();
    actions.push(match image_format(&os.image_url) {
        ImageFormat::Qcow2 => TinkAction {
            name: "stream-image".into(),
            image: settings.action_image("qemuimg2disk"),
            timeout: 1800,
            command: None,
            pid: None,
            environment: env([
                ("DEST_DISK", DISK.into()),
                ("IMG_URL", os.image_url.clone()),
            ]),
            volumes: Vec::new(),
        },
        ImageFormat::Raw { compressed } => TinkAction {
            name: "stream-image".into(),
            image: settings.action_image("image2disk"),
            timeout: 1800,
            command: None,
            pid: None,
            environment: env([
                ("DEST_DISK", DISK.into()),
                ("IMG_URL", os.image_url.clone()),
                ("COMPRESSED", compressed.to_string()),
            ]),
            volumes: Vec::new(),
        },
    });
    if let Some(l) = layout {
        actions.push(TinkAction {
            name: "write-cloud-init".into(),
            image: settings.action_image("writefile"),
            timeout: 90,
            command: None,
            pid: None,
            environment: env([
                ("DEST_DISK", partition(l.root_partition)),
                ("FS_TYPE", "ext4".into()),
                // After the images' own files (90_dpkg.cfg sets datasource_list too).
                (
                    "DEST_PATH",
                    "/etc/cloud/cloud.cfg.d/99_dragonfly.cfg".into(),
                ),
                ("CONTENTS", cloud_init(settings)),
                ("UID", "0".into()),
                ("GID", "0".into()),
                ("MODE", "0600".into()),
                ("DIRMODE", "0700".into()),
            ]),
            volumes: Vec::new(),
        });
    }
    actions.push(final_action(os, settings, layout));
    TinkTemplate {
        version: "0.1".into(),
        name: name.into(),
        global_timeout: 3600,
        tasks: vec![TinkTask {
            name: "os-installation".into(),
            worker: WORKER.into(),
            volumes: vec![
                "/dev:/dev".into(),
                "/dev/console:/dev/console".into(),
                "/lib/firmware:/lib/firmware:ro".into(),
            ],
            actions,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(family: &str, version: &str, url: &str) -> OsFacts {
        OsFacts {
            slug: format!("{family}-{version}"),
            name: family.into(),
            family: family.into(),
            version: version.into(),
            arch: "x86_64".into(),
            image_url: url.into(),
        }
    }

    #[test]
    fn default_settings_are_the_default_flags() {
        assert_eq!(
            TemplateSettings::from_args(&WorkflowArgs::default()).unwrap(),
            TemplateSettings::default()
        );
    }

    #[test]
    fn image_formats_come_from_the_url() {
        assert_eq!(
            image_format("https://example.org/noble-server-cloudimg-amd64.img"),
            ImageFormat::Qcow2
        );
        assert_eq!(
            image_format("https://example.org/debian-12-generic-amd64.raw"),
            ImageFormat::Raw { compressed: false }
        );
        assert_eq!(
            image_format("http://mirror/x.raw.gz?sig=1"),
            ImageFormat::Raw { compressed: true }
        );
        assert_eq!(
            image_format("http://mirror/x.raw.xz"),
            ImageFormat::Raw { compressed: true }
        );
    }

    #[test]
    fn ubuntu_noble_kexecs_from_its_boot_partition() {
        let s = TemplateSettings {
            finish: Finish::Kexec,
            ..TemplateSettings::default()
        };
        let t = tink_template("t", &os("ubuntu", "24.04", "http://m/n.img"), &s);
        let actions = &t.tasks[0].actions;
        let names: Vec<&str> = actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["stream-image", "write-cloud-init", "kexec"]);
        assert!(actions[0].image.ends_with("/qemuimg2disk:latest"));
        let kexec = &actions[2];
        assert_eq!(kexec.environment["BLOCK_DEVICE"], format!("{DISK}-part16"));
        assert_eq!(kexec.environment["KERNEL_PATH"], "/vmlinuz");
        assert!(kexec.environment["IMAGE"].ends_with("/kexec:latest"));
        let jammy = tink_template("t", &os("ubuntu", "22.04", "http://m/j.img"), &s);
        let kexec = &jammy.tasks[0].actions[2];
        assert_eq!(kexec.environment["BLOCK_DEVICE"], format!("{DISK}-part1"));
        assert_eq!(kexec.environment["KERNEL_PATH"], "/boot/vmlinuz");
    }

    #[test]
    fn unknown_systems_only_stream_and_reboot() {
        let t = tink_template(
            "t",
            &os("rocky", "9", "http://m/r.raw.xz"),
            &TemplateSettings {
                finish: Finish::Kexec,
                ..TemplateSettings::default()
            },
        );
        let names: Vec<&str> = t.tasks[0].actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["stream-image", "reboot"]);
        assert_eq!(t.tasks[0].actions[0].environment["COMPRESSED"], "true");
    }

    #[test]
    fn without_waitdaemon_the_reboot_runs_directly() {
        let s = TemplateSettings {
            waitdaemon_image: None,
            ..TemplateSettings::default()
        };
        let t = tink_template("t", &os("debian", "12", "http://m/d.raw"), &s);
        let last = t.tasks[0].actions.last().unwrap();
        assert_eq!(last.image, "alpine:3");
        assert!(last.command.as_ref().unwrap()[2].contains("sysrq-trigger"));
        assert!(!last.environment.contains_key("IMAGE"));
    }

    #[test]
    fn settings_refuse_template_syntax_and_bad_urls() {
        let a = WorkflowArgs {
            tink_actions: "registry/{{ .x }}".into(),
            ..WorkflowArgs::default()
        };
        assert!(TemplateSettings::from_args(&a).is_err());
        let a = WorkflowArgs {
            tink_metadata_url: Some("ftp://x".into()),
            ..WorkflowArgs::default()
        };
        assert!(TemplateSettings::from_args(&a).is_err());
        let a = WorkflowArgs {
            tink_waitdaemon_image: "none".into(),
            ..WorkflowArgs::default()
        };
        assert_eq!(
            TemplateSettings::from_args(&a).unwrap().waitdaemon_image,
            None
        );
    }
}
