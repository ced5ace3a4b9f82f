#!/usr/bin/env python3
"""Takes Alpine packages from a mirror, each checked before a byte of it is used.

    mirror.py --mirror URL --lock alpine/lock --keys alpine/keys --cache DIR --out ROOT
              [--update-lock]

URL is an Alpine mirror (http, https or file), laid out as Alpine's: for each `mirror REPO
NAME VERSION CHECKSUM` line of the lock, URL/v<release>/REPO/x86_64/APKINDEX.tar.gz and
NAME-VERSION.apk next to it. The checks, in order (any failure stops, naming what failed):

1. Each APKINDEX.tar.gz is signed (`.SIGN.RSA.<key>` or `.SIGN.RSA256.<key>` in its first gzip
   stream: RSA over the SHA-1 or SHA-256 of the rest of the file) by one of the keys in
   --keys, checked with openssl.
2. The index lists NAME at exactly the lock's VERSION; when the lock records a CHECKSUM, the
   index's `C:` checksum is that one (`--update-lock` records it after a deliberate bump).
3. Each .apk is at most the size the index gives; its control stream's SHA-1 is the index's
   `C:` (apk's package identity); its own signature (first stream) verifies over the control
   stream with a pinned key; its .PKGINFO names NAME and VERSION; the SHA-256 of its data
   stream is the .PKGINFO's `datahash`; each file's SHA-1 (apk's per-file PAX record) matches.
4. Only regular files, directories and relative symlinks under ROOT are written: no absolute
   path, no `..`, no device, no hard link.

Downloads are bounded in time (30 s without progress) and size (the index's size for a
package, 64 MiB for an index, 1 GiB unpacked per stream, 64 KiB for a signature stream).
Exit status: 3 when the mirror cannot be reached, 4 when it no longer has the versions the
lock pins (Alpine keeps only the newest build of each package: bump the lock), 1 for any
failed check (never fall back past a bad mirror).
Standard library and the openssl command only.
"""

import argparse
import base64
import hashlib
import http.client
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

INDEX_MAX = 64 << 20
UNPACKED_MAX = 1 << 30
# The first stream of an index or package holds only signatures.
SIGNATURE_MAX = 64 << 10
TIMEOUT = 30


class Unreachable(Exception):
    pass


class Refused(Exception):
    pass


class Outdated(Exception):
    """The mirror has moved past the lock's versions."""


def fail(msg):
    raise Refused(msg)


def download(url, limit, missing=None):
    """The body at url, at most limit bytes; Unreachable when it cannot be had (a dropped
    connection included), `missing` (or a refusal) on 404."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            length = r.headers.get("Content-Length")
            data = r.read(limit + 1)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            if missing is not None:
                raise missing from e
            fail(f"{url}: not on the mirror (404)")
        raise Unreachable(f"{url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise Unreachable(f"{url}: {getattr(e, 'reason', e)}") from e
    if len(data) > limit:
        fail(f"{url}: larger than {limit} bytes")
    if length is not None and length.isdigit() and int(length) != len(data):
        raise Unreachable(f"{url}: {len(data)} of {length} bytes arrived")
    return data


def gzip_streams(data, what):
    """The byte ranges of the concatenated gzip members of data (each at most UNPACKED_MAX)."""
    streams, pos = [], 0
    while pos < len(data):
        d, total, at = zlib.decompressobj(31), 0, pos
        try:
            # At most 1 MiB of output per call: a bomb never sits in memory whole.
            limit = SIGNATURE_MAX if not streams else UNPACKED_MAX
            while not d.eof and at < len(data):
                chunk = data[at:at + (1 << 16)]
                at += len(chunk)
                total += len(d.decompress(chunk, 1 << 20))
                while d.unconsumed_tail and total <= limit:
                    total += len(d.decompress(d.unconsumed_tail, 1 << 20))
                if total > limit:
                    fail(f"{what}: gzip stream {len(streams) + 1} unpacks to more than {limit} bytes")
        except zlib.error as e:
            fail(f"{what}: gzip stream {len(streams) + 1} is corrupt ({e})")
        if not d.eof:
            fail(f"{what}: gzip stream {len(streams) + 1} is truncated")
        end = at - len(d.unused_data)
        streams.append((pos, end))
        pos = end
    return streams


def tar_members(stream, what):
    """(TarInfo, bytes or None) for each member of one gzip'd tar stream, read as a stream (apk
    cuts the end-of-archive blocks)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r|gz") as t:
            for m in t:
                yield m, (t.extractfile(m).read() if m.isreg() else None)
    except (tarfile.TarError, zlib.error, EOFError) as e:
        fail(f"{what}: not a gzip'd tar stream ({e})")


def check_signature(sig_stream, signed, keys, what):
    """The name of the pinned key whose signature over signed is in sig_stream. As apk does,
    signatures by keys not pinned are skipped and the first by a pinned key decides."""
    others = []
    for m, body in tar_members(sig_stream, what):
        for prefix, digest in ((".SIGN.RSA512.", "-sha512"), (".SIGN.RSA256.", "-sha256"),
                               (".SIGN.RSA.", "-sha1")):
            if m.name.startswith(prefix) and body is not None:
                key = m.name[len(prefix):]
                if "/" in key or key not in keys:
                    others.append(key)
                    break
                with tempfile.TemporaryDirectory() as tmp:
                    sig, dat = os.path.join(tmp, "sig"), os.path.join(tmp, "data")
                    open(sig, "wb").write(body)
                    open(dat, "wb").write(signed)
                    r = subprocess.run(["openssl", "dgst", digest, "-verify", keys[key], "-signature", sig, dat],
                                       capture_output=True)
                if r.returncode != 0:
                    said = (r.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
                    fail(f"{what}: the signature by {key} does not verify ({said})")
                return key
    if others:
        fail(f"{what}: signed by {', '.join(others)}, not one of the pinned keys")
    fail(f"{what}: not signed (no .SIGN.RSA entry in its first stream)")


def read_index(data, keys, what):
    """name -> {field: value} of a signed APKINDEX.tar.gz."""
    streams = gzip_streams(data, what)
    if len(streams) < 2:
        fail(f"{what}: not signed (a single gzip stream)")
    (s0, e0), rest = streams[0], streams[0][1]
    key = check_signature(data[s0:e0], data[rest:], keys, what)
    entries = {}
    for _, body in [x for s, e in streams[1:] for x in tar_members(data[s:e], what) if x[0].name == "APKINDEX"]:
        for record in body.decode("utf-8", "replace").split("\n\n"):
            fields = dict(line.split(":", 1) for line in record.splitlines() if ":" in line)
            if "P" in fields and fields.get("A", "x86_64") in ("x86_64", "noarch"):
                entries[fields["P"]] = fields
    if not entries:
        fail(f"{what}: no APKINDEX in it")
    return key, entries


def q1(data):
    return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def identity_of(apk):
    """The package checksum of a cached .apk, None when it is not one."""
    d = zlib.decompressobj(31)
    try:
        d.decompress(apk, 1 << 20)
        rest = d.unused_data
        d = zlib.decompressobj(31)
        d.decompress(rest, 1 << 24)
    except zlib.error:
        return None
    return q1(rest[: len(rest) - len(d.unused_data)]) if d.eof else None


def safe_path(name, what):
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or not name:
        fail(f"{what}: unsafe path {name!r} in its data")
    return name


def unpack_apk(data, name, version, identity, keys, out, what):
    streams = gzip_streams(data, what)
    if len(streams) != 3:
        fail(f"{what}: {len(streams)} gzip streams, an .apk has 3 (signature, control, data)")
    (s0, e0), (s1, e1), (s2, e2) = streams
    control = data[s1:e1]
    got = q1(control)
    if got != identity:
        fail(f"{what}: checksum {got}, the signed index says {identity}")
    check_signature(data[s0:e0], control, keys, what)
    info = {}
    for m, body in tar_members(control, what):
        if m.name == ".PKGINFO" and body is not None:
            for line in body.decode("utf-8", "replace").splitlines():
                if " = " in line and not line.startswith("#"):
                    k, v = line.split(" = ", 1)
                    if k in ("pkgname", "pkgver", "arch", "datahash") and k in info:
                        fail(f"{what}: .PKGINFO gives {k} twice")
                    info.setdefault(k, v)
    if (info.get("pkgname"), info.get("pkgver")) != (name, version):
        fail(f"{what}: .PKGINFO names {info.get('pkgname')} {info.get('pkgver')}")
    if info.get("arch", "x86_64") not in ("x86_64", "noarch"):
        fail(f"{what}: built for {info.get('arch')}, not x86_64")
    got = hashlib.sha256(data[s2:e2]).hexdigest()
    if got != info.get("datahash"):
        fail(f"{what}: data stream SHA-256 {got}, its .PKGINFO says {info.get('datahash')}")
    count = 0
    for m, body in tar_members(data[s2:e2], what):
        path = os.path.join(out, safe_path(m.name.rstrip("/"), what))
        if m.isdir():
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        if m.issym():
            target = m.linkname
            if target.startswith("/") or ".." in target.split("/"):
                fail(f"{what}: symlink {m.name} -> {target} leaves its place")
            os.symlink(target, path)
        elif m.isreg():
            want = m.pax_headers.get("APK-TOOLS.checksum.SHA1")
            if want is not None and hashlib.sha1(body).hexdigest() != want:
                fail(f"{what}: {m.name}: SHA-1 differs from the package's record")
            with open(path, "wb") as f:
                f.write(body)
            os.chmod(path, m.mode & 0o755)
        else:
            fail(f"{what}: {m.name}: neither file, directory nor symlink")
        count += 1
    return count


def read_lock(path):
    release, wanted = None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#")[0].split()
            if len(words) == 2 and words[0] == "release":
                release = words[1]
            elif len(words) == 5 and words[0] == "mirror":
                wanted.append(tuple(words[1:]))
    if not release or not wanted:
        fail(f"{path}: no release or no `mirror REPO NAME VERSION CHECKSUM` lines")
    return release, wanted


def main():
    ap = argparse.ArgumentParser()
    for a in ("--mirror", "--lock", "--keys", "--cache", "--out"):
        ap.add_argument(a, required=True)
    ap.add_argument("--update-lock", action="store_true")
    a = ap.parse_args()
    keys = {k: os.path.join(a.keys, k) for k in os.listdir(a.keys)}
    release, wanted = read_lock(a.lock)
    base = a.mirror.rstrip("/") + f"/v{release}"
    os.makedirs(a.cache, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    indexes, recorded = {}, {}
    try:
        for repo, name, version, pin in wanted:
            if repo not in indexes:
                url = f"{base}/{repo}/x86_64/APKINDEX.tar.gz"
                key, entries = read_index(download(url, INDEX_MAX), keys, url)
                indexes[repo] = entries
                print(f"{repo}/x86_64/APKINDEX.tar.gz: {len(entries)} packages, signed by {key}")
            e = indexes[repo].get(name)
            if e is None:
                fail(f"{name}: not in the {repo} index")
            if e.get("V") != version:
                raise Outdated(f"{name}: the {repo} index has {e.get('V')}, the lock pins {version}")
            identity = e.get("C", "")
            if pin != "-" and identity != pin and not a.update_lock:
                fail(f"{name} {version}: the signed index says {identity}, the lock records {pin}")
            recorded[(repo, name)] = identity
            url = f"{base}/{repo}/x86_64/{name}-{version}.apk"
            cached = os.path.join(a.cache, f"{name}-{version}.apk")
            data = open(cached, "rb").read() if os.path.exists(cached) else None
            files = None
            if data is not None and identity_of(data) == identity:
                try:
                    files = unpack_apk(data, name, version, identity, keys, a.out, cached)
                except Refused as err:
                    print(f"{cached}: refused ({err}), downloading it again")
            if files is None:
                size = int(e.get("S", "0"))
                if size <= 0:
                    fail(f"{name}: the index gives no size")
                data = download(url, size, Outdated(f"{url}: no longer on the mirror (404)"))
                files = unpack_apk(data, name, version, identity, keys, a.out, url)
            with open(cached + ".tmp", "wb") as f:
                f.write(data)
            os.replace(cached + ".tmp", cached)
            how = "as the lock records" if pin != "-" else "lock: not recorded yet"
            print(f"{name} {version}: {len(data)} bytes, {files} files, checksum {identity} ({how})")
    except Unreachable as e:
        print(f"unreachable: {e}", file=sys.stderr)
        sys.exit(3)
    except Outdated as e:
        print(f"error: {e}: the mirror has moved past alpine/lock; bump the versions there, then"
              " run alpine/fetch.sh --alpine-mirror URL --update-lock OUT", file=sys.stderr)
        sys.exit(4)
    if a.update_lock:
        with open(a.lock, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            words = line.split()
            if len(words) == 5 and words[0] == "mirror":
                words[4] = recorded.get((words[1], words[2]), words[4])
                lines[i] = " ".join(words)
        with open(a.lock, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{a.lock}: {len(recorded)} package checksums recorded")


if __name__ == "__main__":
    try:
        main()
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
