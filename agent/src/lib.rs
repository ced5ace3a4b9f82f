//! The Dragonfly agent: runs inside the netboot image on a machine that has just PXE-booted,
//! reports the hardware as it really is, then follows the server's instructions (wait,
//! chainload into iPXE, reboot, power off, inventory again).
//!
//! Everything is blocking and single-threaded per machine (the simulator runs one thread per
//! fake machine); there is no async runtime, so the static binary stays small. Every wait is
//! bounded and every failure is logged to stderr, so a machine never hangs silently.

pub mod agent;
pub mod backoff;
pub mod client;
pub mod cmdline;
pub mod config;
pub mod host;
pub mod install;
pub mod inventory;
pub mod log;
pub mod sim;

pub use agent::{Agent, AgentOptions, Outcome};
pub use inventory::{Inventory, InventoryError};

/// The agent's version, sent with every registration.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
