-- SSH public keys for one machine's native installs, on top of the server-wide ones
-- (authorized_keys lines, newline-separated). Gone with the machine.
CREATE TABLE machine_ssh_keys (
    machine_id TEXT PRIMARY KEY REFERENCES machines(id) ON DELETE CASCADE,
    keys TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
