//! The agent protocol: register once, then heartbeat and follow instructions.

use serde::{Deserialize, Serialize};

use crate::install::{InstallPlan, WriteProgress};
use crate::report::HardwareReport;

/// `POST /api/v1/agent/register`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// `dragonfly-agent` version string.
    pub agent_version: String,
    /// [`crate::PROTOCOL_VERSION`] of the agent.
    #[serde(default)]
    pub protocol: u32,
    pub report: HardwareReport,
    /// Proof that this is the machine it claims to be: the per-machine secret its boot
    /// script put on the kernel command line (`dragonfly.machine=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_secret: Option<String>,
    /// Proof too: the token this agent was given at its last registration, if it still has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_token: Option<String>,
}

/// The answer to a registration. The token is shown only here; the server keeps its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterResponse {
    pub machine_id: String,
    /// Per-machine bearer token for heartbeats; replaced at every registration.
    pub token: String,
    /// How often to heartbeat when told to wait, in seconds.
    pub heartbeat_secs: u32,
    pub instruction: Instruction,
}

/// What the agent is doing, reported with every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Registered, waiting for an operator.
    Waiting,
    /// About to kexec (or reboot) into iPXE.
    Chainloading,
    /// An installer is running on the machine (progress applies).
    Installing,
    /// The native install wrote and verified the image and its seed; the machine reboots
    /// into the installed system, which reports back itself.
    Written,
    /// The installer finished successfully.
    Installed,
    /// The installer or a chainload failed (message says why).
    Failed,
}

/// `POST /api/v1/agent/heartbeat`, authenticated with the per-machine token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    pub phase: Phase,
    /// 0–100, for `installing`.
    #[serde(default)]
    pub progress: Option<u8>,
    #[serde(default)]
    pub message: Option<String>,
    /// Bytes written so far by a native install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteProgress>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    pub instruction: Instruction,
}

/// What the server tells the agent to do next. Unknown actions from a newer server parse as
/// [`Instruction::Unknown`], which the agent logs and refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Instruction {
    /// Heartbeat again after this many seconds.
    Wait {
        seconds: u32,
    },
    /// Boot into iPXE and chain the given script: kexec `ipxe_lkrn_url` with
    /// `dhcp && chain {script_url}` on BIOS, reboot on UEFI or when kexec fails.
    Chainload {
        script_url: String,
        ipxe_lkrn_url: String,
    },
    /// Write an OS image to a disk (the native install), then report `written` and reboot.
    Install(Box<InstallPlan>),
    Reboot,
    Poweroff,
    /// Collect the hardware report again and re-register.
    Reinventory,
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_tagged_by_action() {
        let json = serde_json::to_string(&Instruction::Wait { seconds: 5 }).unwrap();
        assert_eq!(json, r#"{"action":"wait","seconds":5}"#);
        let reboot: Instruction = serde_json::from_str(r#"{"action":"reboot"}"#).unwrap();
        assert_eq!(reboot, Instruction::Reboot);
    }

    #[test]
    fn an_unknown_action_from_a_newer_server_is_not_an_error() {
        let i: Instruction = serde_json::from_str(r#"{"action":"self_destruct"}"#).unwrap();
        assert_eq!(i, Instruction::Unknown);
    }

    #[test]
    fn a_minimal_report_parses() {
        let r: HardwareReport =
            serde_json::from_str(r#"{"boot_mac":"52:54:00:00:00:01"}"#).unwrap();
        assert!(r.nics.is_empty());
        assert_eq!(r.smbios.system.serial, None);
    }
}
