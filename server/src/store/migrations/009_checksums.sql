-- Checksums as distributions publish them: Debian's cloud images come with SHA512SUMS only,
-- Ubuntu's with SHA256SUMS. An entry may carry either (or both); `checksum_url` names the
-- published list `dragonfly os refresh` reads them from, `checked_at` when it last did.
ALTER TABLE os_images ADD COLUMN sha512 TEXT;
ALTER TABLE os_images ADD COLUMN checksum_url TEXT;
ALTER TABLE os_images ADD COLUMN checked_at INTEGER;
-- The built-in entries, where an operator has not repointed them: Debian's generic images
-- (all of the kernel's hardware drivers) as qcow2, which the agent converts, and each
-- release's published checksum list.
UPDATE os_images SET
    image_url = 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2',
    format = 'qcow2',
    checksum_url = 'https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS'
  WHERE slug = 'debian-12' AND builtin = 1
    AND image_url = 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.raw';
UPDATE os_images SET
    image_url = 'https://cloud.debian.org/images/cloud/trixie/latest/debian-13-generic-amd64.qcow2',
    format = 'qcow2',
    checksum_url = 'https://cloud.debian.org/images/cloud/trixie/latest/SHA512SUMS'
  WHERE slug = 'debian-13' AND builtin = 1
    AND image_url = 'https://cloud.debian.org/images/cloud/trixie/latest/debian-13-generic-amd64.raw';
UPDATE os_images SET checksum_url = 'https://cloud-images.ubuntu.com/jammy/current/SHA256SUMS'
  WHERE slug = 'ubuntu-22.04' AND builtin = 1
    AND image_url = 'https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img';
UPDATE os_images SET checksum_url = 'https://cloud-images.ubuntu.com/noble/current/SHA256SUMS'
  WHERE slug = 'ubuntu-24.04' AND builtin = 1
    AND image_url = 'https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img';
