//! Integration tests: the real server on 127.0.0.1:0 with a temporary SQLite file, over
//! real HTTP. One test binary, organised by area.

// A panic in the harness is a test failure, which is what these unwraps mean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
// The binary as a process (shared with tests/kube.rs).
mod binary;

// The import rules between the server's modules (ARCHITECTURE's layers).
mod architecture;
// The boot flow: iPXE scripts by state, artefacts with Range/ETag, TFTP.
mod boot;
// Agent registration, re-registration, identity and heartbeats.
mod agent;
// Re-registration: proof of identity, held claims, operator decisions.
mod identity;
// The binary itself: flags, environment, config file, errors, restart on the same file.
mod cli;
// Every error case: malformed JSON, content types, sizes, bad values, unknown ids, 409s.
mod errors;
// The event log and the server-sent-events stream.
mod events;
// Authentication, authorisation, CSRF, rate limits, enrollment, headers.
mod security;
// The listener's bounds: idle, slow and huge requests, connection caps.
mod limits;
// Operator endpoints for machines: list/filter/search/sort/page, edit, lifecycle actions.
mod machines;
// The native install: plan, seed, written, phone-home, timeout.
mod native;
// Assignment rules: the server assigns an OS at registration.
mod rules;
// The checked-in OpenAPI document matches the code.
mod openapi;
// The OS catalogue.
mod os;
// Generated valid and hostile input for every JSON body; MAC and TFTP parsing properties.
mod props;
// Network-boot settings, the full-DHCP lease allocator, the DHCP settings.
mod dhcp;
// /healthz and /metrics.
mod system;
// The Tinkerbell backend: CRD-valid objects, the client against a fake API server, the glue.
mod tinkerbell;
