//! The Tinkerbell flags (flattened into the server's flags) and the `tinkerbell` subcommand.
//! The subcommand runs in `provision::run_command`, which may read the store.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Whether Dragonfly drives Tinkerbell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Mode {
    /// Connect when --kubeconfig is given or when running in a pod.
    #[default]
    Auto,
    /// Always connect; fail at start when no cluster can be reached.
    On,
    /// Never connect: Dragonfly runs standalone.
    Off,
}

/// How the install ends once the image and the cloud-init configuration are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Finish {
    /// Reboot; the machine PXE-boots, and Dragonfly tells it to boot its local disk.
    #[default]
    Reboot,
    /// kexec into the installed kernel (faster; needs the OS's partition layout, known for
    /// Ubuntu and Debian on x86_64; other systems reboot).
    Kexec,
}

/// Tinkerbell backend flags. HookOS, tink-server and syslog endpoints are the `--hookos-*` and
/// `--tink-*` flags the boot scripts already use.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tinkerbell backend")]
pub struct TinkerbellArgs {
    /// Drive Tinkerbell in a Kubernetes cluster: auto, on or off.
    #[arg(
        long,
        env = "DRAGONFLY_TINKERBELL",
        value_enum,
        default_value_t = Mode::Auto,
        global = true
    )]
    pub tinkerbell: Mode,
    /// kubeconfig file of the cluster [default: the pod's ServiceAccount when in a pod].
    #[arg(long, env = "DRAGONFLY_KUBECONFIG", value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context [default: the file's current context].
    #[arg(
        long,
        env = "DRAGONFLY_KUBE_CONTEXT",
        value_name = "NAME",
        global = true
    )]
    pub kube_context: Option<String>,
    /// Namespace of the Tinkerbell objects.
    #[arg(
        long,
        env = "DRAGONFLY_TINKERBELL_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = "tink-system",
        global = true
    )]
    pub tinkerbell_namespace: String,
    /// Registry path of the Tinkerbell actions (image2disk, qemuimg2disk, writefile, kexec),
    /// for a mirror.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_ACTIONS",
        value_name = "REGISTRY/PATH",
        default_value = "quay.io/tinkerbell/actions",
        global = true
    )]
    pub tink_actions: String,
    /// Tag of the Tinkerbell action images.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_ACTIONS_TAG",
        value_name = "TAG",
        default_value = "latest",
        global = true
    )]
    pub tink_actions_tag: String,
    /// Image that reports the last action done and then runs it (reboot or kexec), so the
    /// workflow ends SUCCESS; `none` runs the last action directly (its success is then
    /// inferred from the machine booting again, see --tink-final-action-timeout).
    #[arg(
        long,
        env = "DRAGONFLY_TINK_WAITDAEMON_IMAGE",
        value_name = "IMAGE",
        default_value = "ghcr.io/jacobweinstock/waitdaemon:latest",
        global = true
    )]
    pub tink_waitdaemon_image: String,
    /// Small image with a shell, used to reboot through sysrq.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_REBOOT_IMAGE",
        value_name = "IMAGE",
        default_value = "alpine:3",
        global = true
    )]
    pub tink_reboot_image: String,
    /// How the install ends: reboot or kexec.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_FINISH",
        value_enum,
        default_value_t = Finish::Reboot,
        global = true
    )]
    pub tink_finish: Finish,
    /// EC2-style metadata service the installed OS's cloud-init reads (Tinkerbell's metadata
    /// service) [default: none; cloud-init only sets the host name].
    #[arg(
        long,
        env = "DRAGONFLY_TINK_METADATA_URL",
        value_name = "URL",
        global = true
    )]
    pub tink_metadata_url: Option<String>,
    /// When the last action (reboot or kexec) is running and no success is reported, how long
    /// to wait for the machine to boot again before marking the install failed.
    #[arg(
        long,
        env = "DRAGONFLY_TINK_FINAL_ACTION_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m",
        global = true
    )]
    pub tink_final_action_timeout: humantime::Duration,
}

impl Default for TinkerbellArgs {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        TinkerbellArgs {
            tinkerbell: Mode::Auto,
            kubeconfig: None,
            kube_context: None,
            tinkerbell_namespace: "tink-system".into(),
            tink_actions: "quay.io/tinkerbell/actions".into(),
            tink_actions_tag: "latest".into(),
            tink_waitdaemon_image: "ghcr.io/jacobweinstock/waitdaemon:latest".into(),
            tink_reboot_image: "alpine:3".into(),
            tink_finish: Finish::Reboot,
            tink_metadata_url: None,
            tink_final_action_timeout: std::time::Duration::from_secs(600).into(),
        }
    }
}

/// `dragonfly tinkerbell ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TinkerbellCommand {
    /// Test the connection and the RBAC permissions Dragonfly needs; print what is missing
    /// and exit non-zero when anything is.
    Check,
    /// Print the ServiceAccount, Role and RoleBinding Dragonfly needs (deploy/tinkerbell-rbac.yaml).
    Manifests,
    /// Print, without a cluster, the Hardware, Template and Workflow Dragonfly would apply
    /// for a machine of the store (--db).
    Render {
        /// Boot MAC of the machine.
        #[arg(long, value_name = "MAC")]
        mac: String,
        /// Catalogue slug of the OS [default: the machine's assigned OS].
        #[arg(long, value_name = "SLUG")]
        os: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TinkerbellArgs,
    }

    #[test]
    fn default_matches_the_flag_defaults() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().args;
        let d = TinkerbellArgs::default();
        assert_eq!(format!("{parsed:?}"), format!("{d:?}"));
    }

    #[test]
    fn flags_parse() {
        let a = Cli::try_parse_from([
            "x",
            "--tinkerbell",
            "on",
            "--kubeconfig",
            "k.yaml",
            "--tinkerbell-namespace",
            "tink",
            "--tink-finish",
            "kexec",
            "--tink-final-action-timeout",
            "90s",
        ])
        .unwrap()
        .args;
        assert_eq!(a.tinkerbell, Mode::On);
        assert_eq!(a.kubeconfig, Some(PathBuf::from("k.yaml")));
        assert_eq!(a.tinkerbell_namespace, "tink");
        assert_eq!(a.tink_finish, Finish::Kexec);
        assert_eq!(
            std::time::Duration::from(a.tink_final_action_timeout),
            std::time::Duration::from_secs(90)
        );
    }
}
