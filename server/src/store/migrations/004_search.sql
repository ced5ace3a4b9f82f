-- Free-text search over a machine's hostname, MACs (boot and every NIC), serial, vendor and
-- product reads this one column: one LIKE per row instead of five and a scan of the NICs.
-- The store refreshes it whenever those facts change (store::machines::refresh_search).
ALTER TABLE machines ADD COLUMN search TEXT NOT NULL DEFAULT '';

UPDATE machines SET search =
    coalesce(hostname, '') || char(31) || boot_mac || char(31) || coalesce(serial, '')
    || char(31) || coalesce(vendor, '') || char(31) || coalesce(product, '') || char(31)
    || coalesce((SELECT group_concat(mac, char(31)) FROM nics WHERE nics.machine_id = machines.id), '');
