-- wrk script: every request registers a new machine (unique MAC, serial, UUID, disk).
-- The first wrk argument is a run prefix (0-255) so repeated runs never collide.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  prefix = tonumber(args[1] or "0")
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local function octet(n, shift)
  return math.floor(n / shift) % 256
end

request = function()
  counter = counter + 1
  local mac = string.format("02:%02x:%02x:%02x:%02x:%02x", prefix, tid,
    octet(counter, 65536), octet(counter, 256), counter % 256)
  local serial = string.format("BENCH-%d-%d-%d", prefix, tid, counter)
  local uuid = string.format("%08x-0000-4000-8000-%04x%08x", counter, prefix * 256 + tid, counter)
  local body = string.format([[{"agent_version":"bench","protocol":1,"report":{
    "boot_mac":"%s","arch":"x86_64","firmware":"uefi",
    "smbios":{"system":{"vendor":"Dell Inc.","product":"PowerEdge R650","serial":"%s","uuid":"%s"},
      "bios":{"vendor":"Dell Inc.","version":"1.9.2"},
      "memory":[{"locator":"A1","size_bytes":34359738368,"kind":"DDR4","speed_mts":3200},
                {"locator":"B1","size_bytes":34359738368,"kind":"DDR4","speed_mts":3200}]},
    "cpu":{"model":"Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz","sockets":2,"cores":64,"threads":128,"virtualization":"vmx"},
    "memory_bytes":68719476736,
    "nics":[{"name":"eno1","mac":"%s","driver":"ice","link_up":true,"speed_mbps":25000,"mtu":1500,"addresses":["10.1.0.5/16"]},
            {"name":"eno2","mac":"06:%02x:%02x:%02x:%02x:%02x","driver":"ice","link_up":false}],
    "disks":[{"name":"nvme0n1","size_bytes":960197124096,"model":"Dell Ent NVMe","serial":"%s-D0","transport":"nvme","rotational":false},
             {"name":"nvme1n1","size_bytes":960197124096,"model":"Dell Ent NVMe","serial":"%s-D1","transport":"nvme","rotational":false}],
    "pci":[{"address":"0000:31:00.0","vendor_id":"0x8086","device_id":"0x159b","class":"0x020000","driver":"ice"},
           {"address":"0000:31:00.1","vendor_id":"0x8086","device_id":"0x159b","class":"0x020000","driver":"ice"}]}}]],
    mac, serial, uuid, mac, prefix, tid, octet(counter, 65536), octet(counter, 256), counter % 256, serial, serial)
  return wrk.format(nil, "/api/v1/agent/register", nil, body)
end
