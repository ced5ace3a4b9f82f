-- How one machine may network-boot (Dragonfly's DHCP modes), and its fixed address in full
-- DHCP mode. Gone with the machine.
CREATE TABLE machine_netboot (
    machine_id TEXT PRIMARY KEY REFERENCES machines(id) ON DELETE CASCADE,
    pxe TEXT NOT NULL CHECK (pxe IN ('auto', 'ipxe_efi', 'off')),
    reserved_ip TEXT UNIQUE,
    updated_at INTEGER NOT NULL
);

-- Addresses handed out in full DHCP mode: one per hardware address, one hardware address
-- per address. Expired rows are reused, oldest first.
CREATE TABLE dhcp_leases (
    mac TEXT PRIMARY KEY,
    ip TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    hostname TEXT
);
