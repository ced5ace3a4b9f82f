-- The native install: what the agent needs to write an image itself, and the state of an
-- install between the write and the installed system's first report.
ALTER TABLE os_images ADD COLUMN format TEXT NOT NULL DEFAULT 'raw'
    CHECK (format IN ('raw', 'raw.gz', 'raw.xz', 'raw.zst', 'qcow2'));
-- Lower-case hex SHA-256 of the published file; required before a native install.
ALTER TABLE os_images ADD COLUMN sha256 TEXT;
-- Bytes the image takes once written, when known.
ALTER TABLE os_images ADD COLUMN size_bytes INTEGER;
-- A #cloud-config document merged into every install of this OS.
ALTER TABLE os_images ADD COLUMN user_data TEXT;
-- Ubuntu publishes its cloud images as qcow2.
UPDATE os_images SET format = 'qcow2' WHERE builtin = 1 AND family = 'ubuntu';

-- The current native install's one-time phone-home token (NULL when none is running) and
-- when its image was written (NULL until then).
ALTER TABLE machines ADD COLUMN install_token TEXT;
ALTER TABLE machines ADD COLUMN written_at INTEGER;
-- The agent's last write progress (JSON: written, total, bytes_per_sec) while installing.
ALTER TABLE machines ADD COLUMN write_progress TEXT;
CREATE UNIQUE INDEX machines_install_token ON machines(install_token)
    WHERE install_token IS NOT NULL;
CREATE INDEX machines_written ON machines(written_at) WHERE written_at IS NOT NULL;
