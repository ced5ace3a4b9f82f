//! The agent's integration tests: one binary, organised by area.

// Test helpers outside `#[test]` functions are test code too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Golden reports of fixture trees captured from real machines (a micro-VM, a QEMU VM).
mod fixtures;
// Hand-made trees: junk firmware values are absent, missing sources are not errors.
mod junk;
// Server discovery and the boot NIC from the kernel command line.
mod cmdline;
// Retry delays: bounds, growth, reset.
mod backoff;
// The protocol loop against a scripted HTTP server, with a host that records commands.
mod protocol;
// The load-test simulator.
mod sim;
// The binary: `inventory`, the no-server message, `--dry-run`.
mod cli;
// The real agent binary against the real server on loopback.
mod server;
// The native install's write path: formats, checksum, resume, seed.
mod install;
// Shared helpers: a scripted HTTP server, a recording host, temp trees, an SMBIOS builder.
mod util;
