#!/usr/bin/env python3
"""DISCOVER -> OFFER latency of Dragonfly's DHCP under a burst of PXE clients.

Run inside the client namespace of scripts/netns.sh (bench-dhcp.sh does): sends COUNT
DHCPDISCOVERs as BIOS PXE firmware does (option 60 PXEClient, option 93 = 0), each from its
own MAC, as fast as one socket can, and times each OFFER from SERVER back to its transaction
id. Prints p50, p99, max and how many were answered, as JSON.

    bench-dhcp.py IFACE SERVER COUNT [WAIT_SECS] [FIRST_MAC_NUMBER]
"""
import json
import os
import socket
import struct
import sys
import time

iface, server, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
wait = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
first = int(sys.argv[5]) if len(sys.argv) > 5 else 0


def discover(xid, mac):
    header = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000) + b"\0" * 16
    header += mac + b"\0" * 10 + b"\0" * 192
    opts = bytes([53, 1, 1])
    opts += bytes([60, 32]) + b"PXEClient:Arch:00000:UNDI:002001"
    opts += bytes([93, 2, 0, 0])
    return header + bytes([99, 130, 83, 99]) + opts + b"\xff" + b"\0" * 20


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", 68))
s.setblocking(False)

base = int.from_bytes(os.urandom(4), "big") & 0x7FFF0000
sent = {}
latencies = []
start = time.monotonic()


def drain():
    while True:
        try:
            data = s.recv(2048)
        except BlockingIOError:
            return
        if len(data) < 240 or data[0] != 2:
            continue
        xid = struct.unpack("!I", data[4:8])[0]
        # option 54 (server identifier): only this server's offers count
        i, sid = 240, None
        while i + 1 < len(data) and data[i] != 255:
            if data[i] == 0:
                i += 1
                continue
            code, n = data[i], data[i + 1]
            if code == 54 and n == 4:
                sid = socket.inet_ntoa(data[i + 2 : i + 6])
            i += 2 + n
        if sid == server and xid in sent:
            latencies.append(time.monotonic() - sent.pop(xid))


for n in range(count):
    xid = base + n
    mac = bytes([0x02, 0xBE]) + (first + n).to_bytes(4, "big")
    sent[xid] = time.monotonic()
    s.sendto(discover(xid, mac), ("255.255.255.255", 67))
    drain()
burst = time.monotonic() - start
deadline = time.monotonic() + wait
while sent and time.monotonic() < deadline:
    drain()
    time.sleep(0.001)

latencies.sort()


def pct(p):
    if not latencies:
        return None
    return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2)


print(json.dumps({
    "sent": count,
    "answered": len(latencies),
    "burst_ms": round(burst * 1000, 1),
    "p50_ms": pct(0.50),
    "p99_ms": pct(0.99),
    "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
}))
