//! Rendering the iPXE scripts in `ipxe/`. Templates use `{{name}}` placeholders; every value
//! comes from the server's configuration or a normalised MAC, never from request text.

use crate::config::Settings;

/// The scripts Dragonfly serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Boot,
    Netboot,
    Missing,
    ChainHookos,
    Hookos,
    Local,
}

impl Script {
    pub fn name(self) -> &'static str {
        match self {
            Script::Boot => "boot.ipxe",
            Script::Netboot => "netboot.ipxe",
            Script::Missing => "missing.ipxe",
            Script::ChainHookos => "chain-hookos.ipxe",
            Script::Hookos => "hookos.ipxe",
            Script::Local => "local.ipxe",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Script::Boot => include_str!("../../../ipxe/boot.ipxe"),
            Script::Netboot => include_str!("../../../ipxe/netboot.ipxe"),
            Script::Missing => include_str!("../../../ipxe/missing.ipxe"),
            Script::ChainHookos => include_str!("../../../ipxe/chain-hookos.ipxe"),
            Script::Hookos => include_str!("../../../ipxe/hookos.ipxe"),
            Script::Local => include_str!("../../../ipxe/local.ipxe"),
        }
    }
}

/// Values a template may use.
#[derive(Debug, Clone, Default)]
pub struct ScriptVars {
    pub base_url: String,
    pub mac: String,
    pub mac_hyphen: String,
    pub artifact_version: String,
    pub kernel_params: String,
    pub hookos_url: String,
    pub arch: String,
    pub grpc_authority: String,
    pub syslog_host: String,
    pub tinkerbell_tls: String,
    pub tink_worker_image: String,
    pub console: String,
}

impl ScriptVars {
    /// The server-wide values.
    pub fn server(s: &Settings) -> ScriptVars {
        ScriptVars {
            base_url: s.base_url.clone(),
            // kexec_load_disabled=0: Alpine's kernels refuse kexec (the BIOS chainload into
            // iPXE) unless told so at boot; other kernels ignore it.
            kernel_params: match &s.enrollment_secret {
                Some(secret) => format!(
                    "console=tty0 console=ttyS0,115200 panic=30 kexec_load_disabled=0 dragonfly.secret={secret}"
                ),
                None => "console=tty0 console=ttyS0,115200 panic=30 kexec_load_disabled=0".into(),
            },
            hookos_url: s.hookos.url.clone(),
            arch: "x86_64".into(),
            grpc_authority: s.hookos.grpc_authority.clone(),
            syslog_host: s.hookos.syslog_host.clone(),
            tinkerbell_tls: s.hookos.tls.to_string(),
            tink_worker_image: s.hookos.worker_image.clone(),
            console: s.hookos.console.clone(),
            ..Default::default()
        }
    }

    /// Adds a known machine's secret to the kernel command line (`dragonfly.machine=`).
    pub fn machine_secret(mut self, secret: &str) -> ScriptVars {
        self.kernel_params.push_str(" dragonfly.machine=");
        self.kernel_params.push_str(secret);
        self
    }

    /// Adds a machine's (already normalised) MAC.
    pub fn machine(mut self, mac: &str) -> ScriptVars {
        self.mac = mac.to_string();
        self.mac_hyphen = mac.replace(':', "-");
        self
    }

    fn get(&self, key: &str) -> Option<&str> {
        Some(match key {
            "base_url" => &self.base_url,
            "mac" => &self.mac,
            "mac_hyphen" => &self.mac_hyphen,
            "artifact_version" => &self.artifact_version,
            "kernel_params" => &self.kernel_params,
            "hookos_url" => &self.hookos_url,
            "arch" => &self.arch,
            "grpc_authority" => &self.grpc_authority,
            "syslog_host" => &self.syslog_host,
            "tinkerbell_tls" => &self.tinkerbell_tls,
            "tink_worker_image" => &self.tink_worker_image,
            "console" => &self.console,
            _ => return None,
        })
    }
}

/// Fills a template. An unknown placeholder is left as is (and caught by the tests).
pub fn render(script: Script, vars: &ScriptVars) -> String {
    let template = script.template();
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = &after[..end];
                match vars.get(key) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Hookos, HookosSettings};

    fn settings() -> Settings {
        let base = "http://10.0.0.5:3000".to_string();
        Settings {
            hookos: HookosSettings::resolve(
                &Hookos {
                    worker_image: "tinkerbell/tink-worker:v0.12.2".into(),
                    console: "ttyS0,115200".into(),
                    ..Default::default()
                },
                &base,
            ),
            base_url: base,
            heartbeat_secs: 10,
            offline_after_ms: 60_000,
            boot_dir: "out/netboot".into(),
            tftp: false,
            enrollment_secret: None,
            tls: false,
            installer: crate::config::Installer::Tinkerbell,
            first_boot_timeout_ms: 1_800_000,
            long_poll_secs: 60,
            ssh_keys: Vec::new(),
        }
    }

    fn all() -> [Script; 6] {
        [
            Script::Boot,
            Script::Netboot,
            Script::Missing,
            Script::ChainHookos,
            Script::Hookos,
            Script::Local,
        ]
    }

    #[test]
    fn every_script_renders_completely_and_starts_with_the_ipxe_magic() {
        let mut vars = ScriptVars::server(&settings()).machine("52:54:00:12:34:56");
        vars.artifact_version = "test".into();
        for s in all() {
            let text = render(s, &vars);
            assert!(text.starts_with("#!ipxe\n"), "{}", s.name());
            assert!(
                !text.contains("{{"),
                "{} left a placeholder:\n{text}",
                s.name()
            );
        }
    }

    #[test]
    fn script_snapshots() {
        let mut vars = ScriptVars::server(&settings()).machine("52:54:00:12:34:56");
        vars.artifact_version = "2026.11.25-abcdef".into();
        for s in all() {
            insta::assert_snapshot!(s.name(), render(s, &vars));
        }
    }

    #[test]
    fn hookos_carries_what_tink_worker_needs() {
        let vars = ScriptVars::server(&settings()).machine("52:54:00:12:34:56");
        let text = render(Script::Hookos, &vars);
        for needle in [
            "worker_id=52:54:00:12:34:56",
            "hw_addr=52:54:00:12:34:56",
            "grpc_authority=10.0.0.5:42113",
            "syslog_host=10.0.0.5",
            "tinkerbell_tls=false",
            "tink_worker_image=tinkerbell/tink-worker:v0.12.2",
            "set hook http://10.0.0.5:3000/hookos",
            "console=ttyS0,115200",
        ] {
            assert!(text.contains(needle), "missing {needle}:\n{text}");
        }
    }
}
