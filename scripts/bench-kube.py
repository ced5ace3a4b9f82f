#!/usr/bin/env python3
"""Dragonfly's Tinkerbell backend against a real kube-apiserver: latencies and memory.

    scripts/bench-kube.py KUBE_DIR DRAGONFLY_BINARY [MACHINES] [SAMPLES]

KUBE_DIR is a running `scripts/kube.sh start` directory. In one run, against the release
binary authenticating as the ServiceAccount of `dragonfly tinkerbell manifests`:

1. registration -> Hardware visible: SAMPLES agent registrations, one after another, each
   timed from sending the POST to the Hardware's ADDED event on a watch (p50, p99), next to
   the registration POST's own latency (the ratio is the cost of the cluster write);
2. Workflow status change -> progress visible: SAMPLES assigned machines, each Workflow's
   status patched as tink-controller would, timed until Dragonfly's API shows 33 % (polled
   every 2 ms: p50, p99);
3. Dragonfly's RSS idle and with MACHINES machines registered and assigned (Hardware,
   Workflow and Template objects in the cluster), the ratio between the two.

Standard library and the `dragonfly` binary only; everything on loopback.
"""

import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def main():
    kube_dir, binary = sys.argv[1], os.path.abspath(sys.argv[2])
    machines = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    samples = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    env = dict(l.split("=", 1) for l in open(os.path.join(kube_dir, "env")).read().split())
    kube = env["KUBE_URL"]
    ctx = ssl.create_default_context(cafile=env["KUBE_CA"])
    admin = {"Authorization": "Bearer " + env["KUBE_ADMIN_TOKEN"]}

    def k(method, path, body=None, ctype="application/json", headers=admin):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(kube + path, data=data, method=method,
                                     headers={**headers, "Content-Type": ctype})
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            return json.loads(r.read() or b"{}")

    ns = f"bench-{os.getpid()}"
    k("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    manifests = subprocess.run([binary, "tinkerbell", "manifests", "--tinkerbell-namespace", ns],
                               check=True, capture_output=True, text=True).stdout
    paths = {"ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
             "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
             "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"}
    for doc in manifests.split("\n---\n")[1:]:
        kind = re.search(r"^kind: (\S+)$", doc, re.M).group(1)
        k("POST", paths[kind], doc.encode(), "application/yaml")
    token = k("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/dragonfly/token",
              {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 7200}})["status"]["token"]
    work = tempfile.mkdtemp()
    kubeconfig = os.path.join(work, "kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write(f"apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {kube}\n"
                f"    certificate-authority: {env['KUBE_CA']}\nusers:\n- name: d\n  user:\n    token: {token}\n"
                f"contexts:\n- name: c\n  context: {{cluster: c, user: d}}\ncurrent-context: c\n")
    api_token = subprocess.run([binary, "admin", "create-token", "--name", "bench"], cwd=work,
                               check=True, capture_output=True, text=True).stdout.strip()
    log = open(os.path.join(work, "dragonfly.log"), "w")
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--tinkerbell", "on",
                             "--kubeconfig", kubeconfig, "--tinkerbell-namespace", ns,
                             # every machine registers from this one address
                             "--registrations-per-minute-per-address", "100000"],
                            cwd=work, stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "RUST_LOG": "warn,dragonfly=info", "NO_COLOR": "1"})
    url = None
    for line in proc.stdout:
        m = re.search(r"listen=(\S+)", line)
        if m:
            url = "http://" + m.group(1)
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    bearer = {"Authorization": "Bearer " + api_token, "Content-Type": "application/json"}

    def d(method, path, body=None):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body else None,
                                     method=method, headers=bearer)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")

    def rss_kib():
        for line in open(f"/proc/{proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    def report(n):
        mac = f"52:54:00:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
        return {"agent_version": "bench", "protocol": 1, "report": {
            "boot_mac": mac, "arch": "x86_64", "firmware": "bios",
            "smbios": {"system": {"vendor": "Bench", "product": "B1", "serial": f"SN-{n:06}",
                                  "uuid": f"6a1f0a4e-1c2b-4d3e-8f90-{n:012x}"}},
            "cpu": {"model": "cpu", "sockets": 1, "cores": 2, "threads": 2},
            "memory_bytes": 8_000_000_000,
            "nics": [{"name": "eth0", "mac": mac, "link_up": True, "addresses": ["10.0.2.15/24"]}],
            "disks": [{"name": "vda", "size_bytes": 21474836480, "serial": f"DISK-{n:06}",
                       "rotational": False, "transport": "virtio"}]}}

    def name(n):
        return "dragonfly-52-54-00-" + f"{(n >> 16) & 255:02x}-{(n >> 8) & 255:02x}-{n & 255:02x}"

    # Hardware ADDED events, timed as they arrive.
    added = {}
    def watch():
        req = urllib.request.Request(
            kube + f"/apis/tinkerbell.org/v1alpha1/namespaces/{ns}/hardware?watch=1&allowWatchBookmarks=false",
            headers=admin)
        with urllib.request.urlopen(req, context=ctx, timeout=3600) as r:
            for line in r:
                ev = json.loads(line)
                if ev["type"] == "ADDED":
                    added.setdefault(ev["object"]["metadata"]["name"], time.perf_counter())
    threading.Thread(target=watch, daemon=True).start()
    time.sleep(1.0)
    rss_idle = rss_kib()

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

    # 1. registration -> Hardware visible
    post_ms, visible_ms, ids = [], [], {}
    for n in range(1, samples + 1):
        t0 = time.perf_counter()
        ids[n] = d("POST", "/api/v1/agent/register", report(n))["machine_id"]
        t1 = time.perf_counter()
        while name(n) not in added:
            time.sleep(0.0005)
            if time.perf_counter() - t0 > 30:
                sys.exit(f"Hardware {name(n)} never appeared")
        post_ms.append((t1 - t0) * 1000)
        visible_ms.append((added[name(n)] - t0) * 1000)

    # 2. Workflow status -> progress visible
    for n in range(1, samples + 1):
        d("POST", f"/api/v1/machines/{ids[n]}/assign", {"os": "debian-12"})
    wf_path = f"/apis/tinkerbell.org/v1alpha1/namespaces/{ns}/workflows"
    for n in range(1, samples + 1):
        for _ in range(3000):
            try:
                k("GET", f"{wf_path}/{name(n)}")
                break
            except urllib.error.HTTPError:
                time.sleep(0.01)
    acts = [("stream-image", "SUCCESS"), ("write-cloud-init", "RUNNING"), ("reboot", "PENDING")]
    status = {"status": {"state": "RUNNING", "globalTimeout": 3600, "templateRendering": "successful",
              "currentState": {"agentID": "a", "taskID": "t1", "taskName": "os-installation",
                               "actionID": "a1", "actionName": "write-cloud-init", "state": "RUNNING"},
              "tasks": [{"id": "t1", "name": "os-installation", "agentID": "a", "actions": [
                  {"id": f"a{i}", "name": a, "image": "img", "timeout": 90, "state": s}
                  for i, (a, s) in enumerate(acts)]}]}}
    progress_ms = []
    for n in range(1, samples + 1):
        t0 = time.perf_counter()
        k("PATCH", f"{wf_path}/{name(n)}/status", status, "application/merge-patch+json")
        while d("GET", f"/api/v1/machines/{ids[n]}").get("progress") != 33:
            time.sleep(0.002)
            if time.perf_counter() - t0 > 30:
                sys.exit(f"machine {n} never showed its progress")
        progress_ms.append((time.perf_counter() - t0) * 1000)

    # 3. RSS with MACHINES machines and their objects
    t0 = time.perf_counter()
    for n in range(samples + 1, machines + 1):
        ids[n] = d("POST", "/api/v1/agent/register", report(n))["machine_id"]
        d("POST", f"/api/v1/machines/{ids[n]}/assign", {"os": "debian-12"})
        if n % 100 == 0:
            print(f"    ... {n} machines registered and assigned", file=sys.stderr)
    while len(added) < machines:
        time.sleep(0.1)
        if time.perf_counter() - t0 > 600:
            sys.exit(f"only {len(added)} Hardware objects after 600 s")
    workflows = 0
    for _ in range(600):
        workflows = len(k("GET", wf_path + "?limit=5000")["items"])
        if workflows >= machines:
            break
        time.sleep(1)
    time.sleep(5)
    rss_full = rss_kib()

    proc.terminate()
    proc.wait(timeout=30)
    k("DELETE", f"/api/v1/namespaces/{ns}")
    shutil.rmtree(work, ignore_errors=True)
    ms = lambda x: f"{x:.1f} ms"
    print(f"registration POST alone        p50 {ms(statistics.median(post_ms))}  p99 {ms(pct(post_ms, 99))}  ({samples} samples)")
    print(f"registration -> Hardware ADDED p50 {ms(statistics.median(visible_ms))}  p99 {ms(pct(visible_ms, 99))}"
          f"  (x{statistics.median(visible_ms) / statistics.median(post_ms):.2f} the POST alone)")
    print(f"Workflow status -> progress    p50 {ms(statistics.median(progress_ms))}  p99 {ms(pct(progress_ms, 99))}  ({samples} samples)")
    print(f"dragonfly RSS idle {rss_idle} KiB; with {machines} machines, {len(added)} Hardware and {workflows} "
          f"Workflows in the cluster {rss_full} KiB (x{rss_full / rss_idle:.2f})")


if __name__ == "__main__":
    main()
