#!/usr/bin/env python3
"""Checks Alpine files taken from a source against Alpine's own package database.

    verify.py --db INSTALLED --root DIR --lock alpine/lock --keys alpine/keys
              [--debian-keys SCRIPT]

Every file and symlink under DIR must be listed in INSTALLED (apk's /lib/apk/db/installed)
with the same checksum (`Z:Q1` + base64 SHA-1 of the content, or of the target for a
symlink), and belong to a package of the version alpine/lock pins. The signing keys in
DIR/etc/apk/keys must be the pinned ones (alpine/keys); with --debian-keys, the pinned keys
must also be the ones Debian's alpine-chroot-install script embeds (a second, independent
source). Prints what it checked; exits 1 naming the first file that does not match.
"""

import argparse
import base64
import hashlib
import os
import re
import sys


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def read_db(path):
    """path -> (package, version, checksum) for every file of every installed package."""
    files = {}
    pkg = ver = folder = name = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                pkg = ver = folder = name = None
                continue
            key, _, value = line.partition(":")
            if key == "P":
                pkg = value
            elif key == "V":
                ver = value
            elif key == "F":
                folder = value
            elif key == "R":
                name = f"{folder}/{value}" if folder else value
            elif key == "Z" and name is not None:
                files[name] = (pkg, ver, value)
    return files


def q1(path):
    h = hashlib.sha1()
    if os.path.islink(path):
        h.update(os.readlink(path).encode())
    else:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return "Q1" + base64.b64encode(h.digest()).decode()


def read_lock(path):
    packages = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#")[0].split()
            if len(words) == 3 and words[0] == "package":
                packages[words[1]] = words[2]
    return packages


def key_body(text):
    return "".join(l for l in text.splitlines() if l and not l.startswith("-----"))


def check_debian_keys(script_path, pinned_keys, keys_dir):
    with open(script_path, encoding="utf-8") as f:
        script = f.read()
    embedded = dict(re.findall(r"^([0-9a-f]{8}):(\S+)$", script, re.M))
    for k in pinned_keys:
        short = k.rsplit("-", 1)[-1].split(".")[0]
        body = embedded.get(short, "").replace("\\n", "")
        if body != key_body(open(os.path.join(keys_dir, k), encoding="ascii").read()):
            fail(f"signing key {k}: not the one Debian's alpine-chroot-install embeds")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db")
    ap.add_argument("--root")
    ap.add_argument("--lock")
    ap.add_argument("--keys", required=True)
    ap.add_argument("--debian-keys")
    ap.add_argument("--only-keys", action="store_true", help="only the pinned keys against Debian's")
    a = ap.parse_args()
    if a.only_keys:
        check_debian_keys(a.debian_keys, sorted(os.listdir(a.keys)), a.keys)
        print(f"signing keys: {len(os.listdir(a.keys))} pinned, the same in Debian's alpine-chroot-install")
        return
    if not (a.db and a.root and a.lock):
        fail("--db, --root and --lock are needed (or --only-keys)")

    files = read_db(a.db)
    pinned = read_lock(a.lock)
    seen = {}
    count = 0
    for top, dirs, names in os.walk(a.root):
        dirs.sort()
        for n in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            full = os.path.join(top, n)
            rel = os.path.relpath(full, a.root)
            entry = files.get(rel)
            if entry is None:
                fail(f"{rel}: not a file of any installed Alpine package")
            pkg, ver, want = entry
            if pinned.get(pkg) != ver:
                fail(f"{rel}: from {pkg} {ver}, but alpine/lock pins {pkg} {pinned.get(pkg)}")
            got = q1(full)
            if got != want:
                fail(f"{rel}: checksum {got}, the package database says {want}")
            seen[pkg] = ver
            count += 1
    for pkg in pinned:
        if pkg not in seen:
            fail(f"alpine/lock pins {pkg}, but nothing of it was taken")

    keys_dir = os.path.join(a.root, "etc/apk/keys")
    pinned_keys = sorted(os.listdir(a.keys))
    for k in pinned_keys:
        with open(os.path.join(a.keys, k), encoding="ascii") as f:
            mine = f.read()
        theirs_path = os.path.join(keys_dir, k)
        if not os.path.exists(theirs_path):
            fail(f"signing key {k}: not in the source")
        with open(theirs_path, encoding="ascii") as f:
            if key_body(f.read()) != key_body(mine):
                fail(f"signing key {k}: differs from the pinned one")
    if a.debian_keys:
        check_debian_keys(a.debian_keys, pinned_keys, a.keys)
    print(f"verified {count} files of {len(seen)} packages against the package database:")
    for pkg in sorted(seen):
        print(f"  {pkg} {seen[pkg]}")
    print(f"signing keys: {len(pinned_keys)} pinned" + (", the same in Debian's alpine-chroot-install" if a.debian_keys else ""))


if __name__ == "__main__":
    main()
