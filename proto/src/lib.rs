//! Wire types shared by the Dragonfly agent and server.
//!
//! This crate is serde and nothing else, so the static agent stays small and an old agent can
//! still talk to a newer server. The rule for changing it: add optional fields, never repurpose
//! or remove one; new instructions get new names (older agents refuse names they do not know).

pub mod agent;
pub mod clean;
pub mod install;
pub mod names;
pub mod report;

pub use agent::{
    Heartbeat, HeartbeatResponse, Instruction, Phase, RegisterRequest, RegisterResponse,
};
pub use clean::{MacError, clean_smbios, clean_uuid, normalize_mac};
pub use install::{DiskSelector, ImageFormat, ImageSource, InstallPlan, Seed, WriteProgress};
pub use names::UnknownName;
pub use report::*;

/// The version of this protocol, sent by the agent with every registration.
pub const PROTOCOL_VERSION: u32 = 1;
