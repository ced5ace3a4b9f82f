//! The typed vocabulary every layer shares, from the store's columns to the API's JSON:
//! lifecycle states, event kinds, actors and install disks. Each name has exactly one
//! spelling, written here; the store reads and writes these types directly (`ToSql` /
//! `FromSql`), and an unknown value in the database is an error, never a silent default.
//!
//! No rules live here (the lifecycle's arrows are in `machines::lifecycle`): only the words.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stored text that is not one of its type's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

/// Declares a closed set of names: the enum, its one spelling per variant, parsing,
/// `Display`, and SQLite text conversion. Serde uses the same spellings (snake_case).
macro_rules! names {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Result<$name, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, value: s.chars().take(64).collect() }),
                }
            }
        }

        // Written by hand: utoipa's derive does not see `rename`s written by a macro.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text,)+]))
                    .into()
            }
        }

        impl ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<$name, UnknownName> {
                $name::parse(s)
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<$name> {
                $name::parse(v.as_str()?).map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

names! {
    /// Where a machine is in its life.
    State, "state" {
        /// Inventory known, no OS chosen.
        Discovered = "discovered",
        /// OS chosen, waiting for the machine to enter the installer.
        Assigned = "assigned",
        /// The installer is running.
        Installing = "installing",
        /// The OS is on disk; the machine boots it.
        Installed = "installed",
        /// The install failed; the status message says why.
        Failed = "failed",
    }
}

names! {
    /// What happened to a machine: the kind of every entry of the event log and of every
    /// change published to live subscribers.
    MachineEvent, "event kind" {
        /// First registration of a machine.
        Registered = "registered",
        /// A known machine's agent registered again.
        Reregistered = "reregistered",
        /// The agent's hardware report differs from the last one.
        HardwareChanged = "hardware_changed",
        /// A registration matched a known machine but disagreed with its identity.
        IdentityMismatch = "identity_mismatch",
        /// An operator assigned (or changed) the OS.
        OsAssigned = "os_assigned",
        /// The machine entered its installer.
        InstallStarted = "install_started",
        /// The installer reported progress.
        InstallProgress = "install_progress",
        /// A native install wrote and verified its image; the machine boots the installed
        /// system, which reports back.
        InstallWritten = "install_written",
        /// The install finished: the OS is on disk.
        InstallSucceeded = "install_succeeded",
        /// The install failed.
        InstallFailed = "install_failed",
        /// An operator asked for the OS to be installed again.
        Reimaged = "reimaged",
        /// An operator withdrew the assignment.
        Cancelled = "cancelled",
        /// An operator changed the hostname, tags or notes.
        Updated = "updated",
        /// An operator deleted the machine.
        Deleted = "deleted",
        /// An operator queued a one-shot instruction (reboot, power off, re-inventory).
        InstructionQueued = "instruction_queued",
        /// The agent is about to chainload iPXE.
        Chainloading = "chainloading",
        /// The state changed in a way no other kind names.
        StateChanged = "state_changed",
        /// The machine PXE-booted and fetched its boot script.
        PxeBoot = "netboot",
        /// A registration claimed this machine without proving it; held for an operator.
        RegistrationHeld = "registration_held",
        /// An operator let a held registration through.
        RegistrationApproved = "registration_approved",
        /// An operator refused a held registration.
        RegistrationRejected = "registration_rejected",
        /// Dragonfly put back what it owns in the Tinkerbell cluster: an object missing,
        /// changed behind its back, or left over.
        ClusterRepaired = "cluster_repaired",
        /// Phase, progress or message changed without an entry in the log (live only).
        Status = "status",
    }
}

names! {
    /// Who caused an event.
    Actor, "actor" {
        Agent = "agent",
        Operator = "operator",
        Boot = "boot",
        Tinkerbell = "tinkerbell",
        System = "system",
        /// The installed system itself (cloud-init's phone-home).
        InstalledOs = "installed_os",
    }
}

names! {
    /// An operator's answer to a held registration.
    Decision, "decision" {
        Approved = "approved",
        Rejected = "rejected",
    }
}

/// The disk an OS is installed on, chosen by a stable identifier — never by a kernel name
/// such as `sda`, which can change between boots. Stored as its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetDisk {
    Serial(String),
    Wwn(String),
}

impl ToSql for TargetDisk {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        serde_json::to_string(self)
            .map(ToSqlOutput::from)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }
}

impl FromSql for TargetDisk {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<TargetDisk> {
        serde_json::from_str(v.as_str()?).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in MachineEvent::ALL {
            assert_eq!(MachineEvent::parse(k.as_str()), Ok(*k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for a in Actor::ALL {
            assert_eq!(Actor::parse(a.as_str()), Ok(*a));
        }
        assert!(State::parse("offline").is_err());
        let e = MachineEvent::parse("bogus").unwrap_err();
        assert_eq!(e.to_string(), "unknown event kind \"bogus\"");
    }
}
