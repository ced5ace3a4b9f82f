#!/usr/bin/env python3
"""Registers N machines against a running Dragonfly (standard library only).

    seed.py URL COUNT TOKENS_FILE [--decorate]

Writes one agent token per line to TOKENS_FILE. Operator calls (--decorate) send the API token
in the TOKEN environment variable. With --decorate, every machine gets a
hostname, every 10th the tag `rack-a`, and every 5th is assigned ubuntu-24.04, so list
filters have realistic selectivity.
"""
import http.client
import json
import os
import sys
import threading
import urllib.parse

url, count, tokens_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
decorate = "--decorate" in sys.argv
u = urllib.parse.urlparse(url)
tokens = [None] * count
lock = threading.Lock()


def report(n):
    mac = "0a:%02x:%02x:%02x:%02x:%02x" % (n >> 32 & 255, n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255)
    return {
        "agent_version": "seed",
        "protocol": 1,
        "report": {
            "boot_mac": mac,
            "smbios": {"system": {"vendor": ["Dell Inc.", "HPE", "Supermicro"][n % 3],
                                  "product": "Server", "serial": "SEED%07d" % n}},
            "cpu": {"model": "Xeon", "sockets": 2, "cores": 32, "threads": 64},
            "memory_bytes": 68719476736,
            "nics": [{"name": "eno1", "mac": mac, "driver": "ice", "link_up": True}],
            "disks": [{"name": "sda", "size_bytes": 480103981056, "serial": "D%07d" % n}],
        },
    }


HEADERS = {"Content-Type": "application/json"}
if os.environ.get("TOKEN"):
    HEADERS["Authorization"] = "Bearer " + os.environ["TOKEN"]


def call(conn, method, path, body):
    conn.request(method, path, json.dumps(body), HEADERS)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise SystemExit("%s %s -> %d %s" % (method, path, resp.status, data[:200]))
    return json.loads(data) if data else None


def worker(start, step):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    for n in range(start, count, step):
        r = call(conn, "POST", "/api/v1/agent/register", report(n))
        tokens[n] = r["token"]
        if decorate:
            mid = r["machine_id"]
            patch = {"hostname": "node-%05d" % n}
            if n % 10 == 0:
                patch["tags"] = ["rack-a"]
            call(conn, "PATCH", "/api/v1/machines/" + mid, patch)
            if n % 5 == 0:
                call(conn, "POST", "/api/v1/machines/%s/assign" % mid, {"os": "ubuntu-24.04"})


threads = [threading.Thread(target=worker, args=(i, 8)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(tokens_file, "w") as f:
    f.write("\n".join(tokens) + "\n")
