-- Assignment rules: at registration a new machine gets the OS of the first enabled rule it
-- matches (lowest priority first), on a disk the rule picks. Off until an operator adds one.
CREATE TABLE assignment_rules (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    priority         INTEGER NOT NULL,
    -- What a machine must have; NULL matches anything.
    vendor           TEXT,
    product          TEXT,
    mac_prefix       TEXT,
    min_cpu_threads  INTEGER,
    min_memory_bytes INTEGER,
    min_disk_bytes   INTEGER,
    -- What it gets.
    os_slug          TEXT NOT NULL REFERENCES os_images(slug),
    disk_rule        TEXT NOT NULL CHECK (disk_rule IN
        ('smallest_non_rotational', 'largest_non_rotational', 'smallest', 'largest', 'model')),
    disk_model       TEXT,
    max_count        INTEGER,
    applied          INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX assignment_rules_priority ON assignment_rules(priority, id);
