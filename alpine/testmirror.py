#!/usr/bin/env python3
"""Lays out a directory like an Alpine mirror, for alpine/test-mirror.sh (tests only).

    testmirror.py --root ROOT --db INSTALLED --lock LOCK --key KEY.pem --key-name NAME
                  --out DIR [--spoil MODE] [--other-key OTHER.pem]

Packs the files of each package the lock's `mirror` lines name (found in ROOT by Alpine's
package database INSTALLED: the verified files of the offline source) into an .apk the way
abuild does (signature, control and data gzip streams; `datahash` in .PKGINFO; apk's per-file
SHA-1 PAX records) and writes a signed APKINDEX.tar.gz, all signed with KEY (a test key: no
genuine Alpine signature is made or checked here). --spoil breaks one thing for a refusal test:
index-unsigned, index-other-key (signed by OTHER under another name), index-forged (signed by
OTHER under KEY's name), index-edited (changed after signing), apk-data (a file added after the
datahash was taken), apk-control (an .apk whose control stream is not the one indexed),
apk-traversal (a correctly signed package writing ../escape), apk-symlink (a correctly
signed package with a symlink to /etc), apk-sigbomb (4 MiB of zeros in the signature stream),
apk-oversize (larger than the index says), apk-badfile (a file whose bytes differ from its
SHA-1 record); index-two-signatures is not a spoil: a signature by an unknown key before the
pinned one, which apk accepts.
"""

import argparse
import base64
import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile


def gz(data):
    return gzip.compress(data, mtime=0)


def tar(entries, cut=False):
    """entries: (TarInfo, bytes or None). PAX, like abuild; cut drops the end-of-archive blocks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, body in entries:
            t.addfile(info, io.BytesIO(body) if body is not None else None)
    raw = buf.getvalue()
    if cut:
        raw = raw.rstrip(b"\0")
        raw += b"\0" * (-len(raw) % 512)
    return raw


def info(name, kind=tarfile.REGTYPE, size=0, mode=0o644, link=""):
    i = tarfile.TarInfo(name)
    i.type, i.size, i.mode, i.linkname, i.mtime = kind, size, mode, link, 0
    return i


def signature(data, key):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "d")
        open(path, "wb").write(data)
        return subprocess.run(["openssl", "dgst", "-sha1", "-sign", key, path], check=True,
                              capture_output=True).stdout


def sign(data, key, name, extra=()):
    """The signature stream: `extra` entries (TarInfo, bytes) first, then KEY's signature."""
    body = signature(data, key)
    entries = list(extra) + [(info(f".SIGN.RSA.{name}", size=len(body)), body)]
    return gz(tar(entries, cut=True))


def package_files(db, root, package):
    files, pkg, folder = [], None, None
    for line in open(db, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        k, _, v = line.partition(":")
        if not line:
            pkg = folder = None
        elif k == "P":
            pkg = v
        elif k == "F":
            folder = v
        elif k == "R" and pkg == package:
            rel = f"{folder}/{v}" if folder else v
            if os.path.lexists(os.path.join(root, rel)):
                files.append(rel)
    return sorted(files)


def data_stream(root, files, spoil):
    entries, dirs = [], set()
    for rel in files:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                entries.append((info(d, tarfile.DIRTYPE, mode=0o755), None))
        full = os.path.join(root, rel)
        if os.path.islink(full):
            entries.append((info(rel, tarfile.SYMTYPE, link=os.readlink(full)), None))
            continue
        body = open(full, "rb").read()
        i = info(rel, size=len(body), mode=os.stat(full).st_mode & 0o755)
        i.pax_headers = {"APK-TOOLS.checksum.SHA1": hashlib.sha1(body).hexdigest()}
        if spoil == "apk-badfile" and rel == files[-1]:
            body = b"X" + body[1:]
        entries.append((i, body))
    if spoil == "apk-symlink":
        entries.append((info("lib/evil", tarfile.SYMTYPE, link="/etc"), None))
    if spoil == "apk-traversal":
        body = b"escaped\n"
        i = info("../escape", size=len(body))
        i.pax_headers = {"APK-TOOLS.checksum.SHA1": hashlib.sha1(body).hexdigest()}
        entries.append((i, body))
    return gz(tar(entries))


def main():
    ap = argparse.ArgumentParser()
    for a in ("--root", "--db", "--lock", "--key", "--key-name", "--out"):
        ap.add_argument(a, required=True)
    ap.add_argument("--spoil", default="")
    ap.add_argument("--other-key")
    a = ap.parse_args()

    release, wanted = None, []
    for line in open(a.lock, encoding="utf-8"):
        w = line.split("#")[0].split()
        if len(w) == 2 and w[0] == "release":
            release = w[1]
        elif len(w) == 5 and w[0] == "mirror":
            wanted.append(w[1:4])
    repos = {}
    for repo, name, version in wanted:
        d = os.path.join(a.out, f"v{release}", repo, "x86_64")
        os.makedirs(d, exist_ok=True)
        files = package_files(a.db, a.root, name)
        if not files:
            raise SystemExit(f"{name}: no files of it in {a.root}")
        data = data_stream(a.root, files, a.spoil)
        datahash = hashlib.sha256(data).hexdigest()
        if a.spoil == "apk-data":
            data = data_stream(a.root, files + files[:1], "")
        pkginfo = f"pkgname = {name}\npkgver = {version}\narch = x86_64\ndatahash = {datahash}\n"
        control = gz(tar([(info(".PKGINFO", size=len(pkginfo)), pkginfo.encode())], cut=True))
        identity = "Q1" + base64.b64encode(hashlib.sha1(control).digest()).decode()
        if a.spoil == "apk-control":
            other = pkginfo + "pkgdesc = changed after indexing\n"
            control = gz(tar([(info(".PKGINFO", size=len(other)), other.encode())], cut=True))
        extra = ()
        if a.spoil == "apk-sigbomb":
            zeros = bytes(4 << 20)
            extra = [(info("padding", size=len(zeros)), zeros)]
        apk = sign(control, a.key, a.key_name, extra) + control + data
        size = len(apk) - 1 if a.spoil == "apk-oversize" else len(apk)
        open(os.path.join(d, f"{name}-{version}.apk"), "wb").write(apk)
        repos.setdefault(repo, []).append(f"C:{identity}\nP:{name}\nV:{version}\nA:x86_64\nS:{size}\n")
    for repo, records in repos.items():
        text = ("\n".join(records) + "\n").encode()
        body = gz(tar([(info("DESCRIPTION", size=5), b"test\n"), (info("APKINDEX", size=len(text)), text)]))
        if a.spoil == "index-unsigned":
            index = body
        elif a.spoil == "index-other-key":
            index = sign(body, a.other_key, "someone-else.rsa.pub") + body
        elif a.spoil == "index-forged":
            index = sign(body, a.other_key, a.key_name) + body
        elif a.spoil == "index-two-signatures":
            other = signature(body, a.other_key)
            index = sign(body, a.key, a.key_name,
                         [(info(".SIGN.RSA.someone-else.rsa.pub", size=len(other)), other)]) + body
        elif a.spoil == "index-edited":
            edited = text.replace(b"S:", b"S:9")
            index = sign(body, a.key, a.key_name) + gz(tar([(info("APKINDEX", size=len(edited)), edited)]))
        else:
            index = sign(body, a.key, a.key_name) + body
        open(os.path.join(a.out, f"v{release}", repo, "x86_64", "APKINDEX.tar.gz"), "wb").write(index)


if __name__ == "__main__":
    main()
