-- The built-in catalogue. Operators may edit the image URLs (a local mirror, say) but not
-- delete these rows.
INSERT INTO os_images (slug, name, family, version, arch, image_url, builtin, created_at, updated_at) VALUES
 ('ubuntu-22.04', 'Ubuntu 22.04 LTS (Jammy Jellyfish)', 'ubuntu', '22.04', 'x86_64',
  'https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img', 1, 0, 0),
 ('ubuntu-24.04', 'Ubuntu 24.04 LTS (Noble Numbat)', 'ubuntu', '24.04', 'x86_64',
  'https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img', 1, 0, 0),
 ('debian-12', 'Debian 12 (bookworm)', 'debian', '12', 'x86_64',
  'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.raw', 1, 0, 0),
 ('debian-13', 'Debian 13 (trixie)', 'debian', '13', 'x86_64',
  'https://cloud.debian.org/images/cloud/trixie/latest/debian-13-generic-amd64.raw', 1, 0, 0);
