-- Proof of identity for re-registration. Every machine has a random secret that only its own
-- per-machine boot script carries (on the kernel command line, as dragonfly.machine=); an
-- agent that sends it back is the machine that booted that script. SQLite's randomblob is
-- drawn from its CSPRNG, seeded by the operating system.
ALTER TABLE machines ADD COLUMN boot_secret TEXT;
UPDATE machines SET boot_secret = lower(hex(randomblob(32)));

-- Registrations that claimed a known machine without proving it: held for an operator.
-- One row per (machine, boot MAC, report digest), however often the agent retries.
CREATE TABLE held_registrations (
    id            INTEGER PRIMARY KEY,
    machine_id    TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    boot_mac      TEXT NOT NULL,
    digest        TEXT NOT NULL,
    -- A bounded summary for the operator (identity, NICs), not the report itself.
    summary       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    first_at      INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 1,
    -- NULL while held; 'approved' lets the next identical registration through once;
    -- 'rejected' refuses identical ones.
    decision      TEXT CHECK (decision IN ('approved', 'rejected')),
    decided_at    INTEGER,
    UNIQUE (machine_id, boot_mac, digest)
);
CREATE INDEX held_registrations_open ON held_registrations(decision, last_at);
