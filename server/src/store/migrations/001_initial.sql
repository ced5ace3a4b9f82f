-- The OS catalogue: what an operator can assign.
CREATE TABLE os_images (
    slug        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    family      TEXT NOT NULL,
    version     TEXT NOT NULL,
    arch        TEXT NOT NULL DEFAULT 'x86_64',
    image_url   TEXT NOT NULL,
    builtin     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One row per machine, keyed for humans by its boot NIC MAC. Times are unix milliseconds.
CREATE TABLE machines (
    id                  TEXT PRIMARY KEY,
    boot_mac            TEXT NOT NULL UNIQUE,
    smbios_uuid         TEXT,
    serial              TEXT,
    vendor              TEXT,
    product             TEXT,
    hostname            TEXT,
    notes               TEXT NOT NULL DEFAULT '',
    state               TEXT NOT NULL,
    os_slug             TEXT REFERENCES os_images(slug),
    target_disk         TEXT,
    phase               TEXT,
    progress            INTEGER,
    status_message      TEXT,
    pending_instruction TEXT,
    agent_token_hash    TEXT UNIQUE,
    agent_version       TEXT,
    arch                TEXT,
    firmware            TEXT,
    cpu_model           TEXT,
    cpu_threads         INTEGER,
    memory_bytes        INTEGER,
    disk_bytes          INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    last_seen_at        INTEGER
);
CREATE INDEX machines_state ON machines(state, created_at);
CREATE INDEX machines_created ON machines(created_at);
CREATE INDEX machines_uuid ON machines(smbios_uuid) WHERE smbios_uuid IS NOT NULL;
CREATE INDEX machines_serial ON machines(serial) WHERE serial IS NOT NULL;
CREATE INDEX machines_hostname ON machines(hostname);

CREATE TABLE machine_tags (
    machine_id  TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    tag         TEXT NOT NULL,
    PRIMARY KEY (machine_id, tag)
) WITHOUT ROWID;
CREATE INDEX machine_tags_tag ON machine_tags(tag, machine_id);

CREATE TABLE nics (
    machine_id  TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    mac         TEXT NOT NULL,
    name        TEXT NOT NULL,
    driver      TEXT,
    pci_address TEXT,
    link_up     INTEGER,
    speed_mbps  INTEGER,
    mtu         INTEGER,
    addresses   TEXT NOT NULL DEFAULT '[]',
    is_boot     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (machine_id, mac)
) WITHOUT ROWID;
CREATE INDEX nics_mac ON nics(mac);

CREATE TABLE disks (
    machine_id  TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    model       TEXT,
    serial      TEXT,
    wwn         TEXT,
    rotational  INTEGER,
    transport   TEXT,
    PRIMARY KEY (machine_id, name)
) WITHOUT ROWID;

-- Every distinct hardware report a machine sent, newest last.
CREATE TABLE hardware_reports (
    id          INTEGER PRIMARY KEY,
    machine_id  TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    received_at INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    report      TEXT NOT NULL
);
CREATE INDEX hardware_reports_machine ON hardware_reports(machine_id, id);

-- The append-only log: who did what to which machine, from which state to which.
-- machine_id has no foreign key on purpose: deleting a machine keeps its history.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    machine_id  TEXT,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    message     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_machine ON events(machine_id, id);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
