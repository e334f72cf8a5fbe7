#!/usr/bin/env python3
"""Writes the seed corpora of the host-side fuzz targets under fuzz/seeds/<target>/ from real
artifacts: OCI layouts written by `vcontainer oci build`/`oci index` (single image, multi-arch
index), their gzip layer tars, tar streams as the host's own packer and GNU tar write them, and
the host's config/auth/spec/package-database formats. Each seed stays below 64 KiB.

Usage: fuzz/make_seeds.py VCONTAINER_BINARY   (run by `scripts/fuzz seeds`)
"""
import io, json, os, re, shutil, subprocess, sys, tarfile, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
SEP = b"\n--8<--\n"
MAX = 64 * 1024


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < MAX, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar_bytes(members, fmt=tarfile.GNU_FORMAT):
    """members: (name, kind, extra) with kind file/dir/sym/link/fifo/chr and extra the content,
    link target or mode."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for m in members:
            name, kind = m[0], m[1]
            extra = m[2] if len(m) > 2 else None
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if kind == "file":
                data = extra if isinstance(extra, bytes) else b"hello\n"
                ti.size = len(data)
                ti.mode = m[3] if len(m) > 3 else 0o644
                t.addfile(ti, io.BytesIO(data))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, extra if extra is not None else 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, extra
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, extra
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            t.addfile(ti)
    return buf.getvalue()


# ---------------------------------------------------------------- OCI layouts (real builds)

def make_rootfs(root, flavour):
    os.makedirs(f"{root}/etc", exist_ok=True)
    os.makedirs(f"{root}/usr/bin", exist_ok=True)
    os.makedirs(f"{root}/var/lib/dpkg/info", exist_ok=True)
    with open(f"{root}/etc/hostname", "w") as f:
        f.write(f"{flavour}\n")
    with open(f"{root}/usr/bin/hello", "w") as f:
        f.write("#!/bin/sh\necho hello\n")
    os.chmod(f"{root}/usr/bin/hello", 0o755)
    os.symlink("usr/bin", f"{root}/bin")
    with open(f"{root}/var/lib/dpkg/status", "w") as f:
        f.write("Package: hello\nStatus: install ok installed\nVersion: 1.0-1\n\n"
                "Package: base-files\nStatus: install ok installed\nVersion: 12.4\n")
    with open(f"{root}/var/lib/dpkg/info/hello.list", "w") as f:
        f.write("/.\n/usr\n/usr/bin\n/usr/bin/hello\n")
    with open(f"{root}/var/lib/dpkg/info/base-files.list", "w") as f:
        f.write("/.\n/etc\n/etc/hostname\n")


def placeholder_form(layout):
    """A layout as the oci_layout target's input: index.json, then every blob reachable from it
    in an order where a part names only later parts; digests and sizes become @D<n>/@S<n>."""
    blobs = os.path.join(layout, "blobs", "sha256")
    order = []  # hex digests, parents first

    def visit(desc):
        hexd = desc["digest"].split(":", 1)[1]
        if hexd in order:
            return
        order.append(hexd)
        mt = desc.get("mediaType", "")
        if "manifest" in mt or "index" in mt:
            doc = json.load(open(os.path.join(blobs, hexd)))
            for d in doc.get("manifests", []):
                visit(d)
            if "config" in doc:
                visit(doc["config"])
            for d in doc.get("layers", []):
                visit(d)

    index = json.load(open(os.path.join(layout, "index.json")))
    for d in index["manifests"]:
        visit(d)
    num = {h: i + 1 for i, h in enumerate(order)}

    def subst(raw):
        doc = json.loads(raw)

        def walk(v):
            if isinstance(v, dict):
                d = v.get("digest")
                if isinstance(d, str) and d.startswith("sha256:") and d[7:] in num:
                    n = num[d[7:]]
                    v["digest"] = "@D%d" % n
                    if "size" in v:
                        v["size"] = "@@S%d@@" % n
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(doc)
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        text = re.sub(r'"@@S(\d+)@@"', r"@S\1", text)
        for h, n in num.items():
            text = text.replace("sha256:" + h, "@D%d" % n)
        return text.encode()

    parts = [subst(open(os.path.join(layout, "index.json"), "rb").read())]
    for h in order:
        raw = open(os.path.join(blobs, h), "rb").read()
        try:
            raw.decode()
            json.loads(raw)
            parts.append(subst(raw))
        except (UnicodeDecodeError, ValueError):
            parts.append(raw)  # a layer
    return SEP.join(parts), order


def oci_seeds(vcontainer):
    tmp = tempfile.mkdtemp(prefix="vcontainer-seeds-")
    try:
        layouts = {}
        for arch in ("x86_64", "aarch64"):
            rootfs = f"{tmp}/rootfs-{arch}"
            make_rootfs(rootfs, arch)
            out = f"{tmp}/{arch}-oci"
            subprocess.run([vcontainer, "oci", "build", "-q", "--rootfs", rootfs, "--arch", arch,
                            "-o", out, "--tag", "1.0"], check=True,
                           env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000"))
            layouts[arch] = out
        multi = f"{tmp}/multi-oci"
        r = subprocess.run([vcontainer, "oci", "index", "--help"], capture_output=True, text=True)
        if r.returncode == 0:
            args = [vcontainer, "oci", "index", "-o", multi] + list(layouts.values())
            if subprocess.run(args, capture_output=True).returncode == 0:
                layouts["multi"] = multi
        for name, layout in layouts.items():
            seed, order = placeholder_form(layout)
            write("oci_layout", f"{name}.bin", seed)
            # The layers as the base-image reader sees them.
            if name != "multi":
                blobs = os.path.join(layout, "blobs", "sha256")
                manifest = json.load(open(os.path.join(blobs, order[0])))
                layers = [open(os.path.join(blobs, d["digest"][7:]), "rb").read()
                          for d in manifest["layers"]]
                write("oci_base_layer", f"{name}-layers.bin", SEP.join(layers))
                import gzip
                write("oci_base_layer", f"{name}-plain.bin",
                      SEP.join(gzip.decompress(l) for l in layers))
        # Hand-made: a manifest whose config names no architecture; a nested index.
        cfg = b'{"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        man = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
               b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@D2",'
               b'"size":@S2},"layers":[]}')
        idx = (b'{"schemaVersion":2,"manifests":[{"mediaType":'
               b'"application/vnd.oci.image.manifest.v1+json","digest":"@D1","size":@S1}]}')
        write("oci_layout", "no-arch.bin", SEP.join([idx, man, cfg]))
        nested = (b'{"schemaVersion":2,"manifests":[{"mediaType":'
                  b'"application/vnd.oci.image.index.v1+json","digest":"@D1","size":@S1}]}')
        inner = (b'{"schemaVersion":2,"manifests":[{"mediaType":'
                 b'"application/vnd.oci.image.manifest.v1+json","digest":"@D2","size":@S2,'
                 b'"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}')
        write("oci_layout", "nested.bin", SEP.join([nested, inner, man, cfg]))
    finally:
        shutil.rmtree(tmp)


def base_layer_seeds():
    lower = tar_bytes([("etc", "dir"), ("etc/passwd", "file", b"root:x:0:0::/root:/bin/sh\n"),
                       ("etc/gone", "file"), ("opt", "dir"), ("opt/a", "dir"),
                       ("opt/a/f", "file"), ("bin", "dir"), ("bin/sh", "file", b"\x7fELF"),
                       ("bin/ls", "link", "bin/sh"), ("dev", "dir"), ("dev/null", "chr"),
                       ("run/fifo", "fifo")])
    upper = tar_bytes([("etc/.wh.gone", "file", b""), ("opt/.wh..wh..opq", "file", b""),
                       ("opt/new", "file"), ("bin", "sym", "usr/bin"), ("./usr/bin/sh", "file")])
    write("oci_base_layer", "whiteouts.bin", lower + SEP + upper)
    pax = tar_bytes([("a/" + "long" * 40 + "/name", "file"), ("/abs/file", "file")],
                    fmt=tarfile.PAX_FORMAT)
    write("oci_base_layer", "pax-long-names.bin", pax)


# ---------------------------------------------------------------- tar streams

def tar_seeds():
    tmp = tempfile.mkdtemp(prefix="vcontainer-tarseed-")
    try:
        t = f"{tmp}/tree"
        os.makedirs(f"{t}/etc/sub")
        open(f"{t}/etc/hosts", "w").write("127.0.0.1 localhost\n")
        open(f"{t}/etc/sub/.hidden", "w").write("x")
        os.symlink("hosts", f"{t}/etc/hosts.link")
        os.link(f"{t}/etc/hosts", f"{t}/etc/hosts.hard")
        os.chmod(f"{t}/etc/sub", 0o700)
        # GNU tar, as `docker cp`/the agent's busybox would write it (real tool output).
        for fmt in ("gnu", "posix", "ustar"):
            out = subprocess.run(["tar", "--format", fmt, "-C", t, "-cf", "-", "."],
                                 check=True, capture_output=True).stdout
            write("tar_unpack", f"gnutar-{fmt}.tar", out)
    finally:
        shutil.rmtree(tmp)
    hostile = {
        "dotdot.tar": [("../outside/canary", "file")],
        "absolute.tar": [("/tmp/vcontainer-fuzz-abs", "file")],
        "through-abs-link.tar": [("abs/new", "file")],
        "through-rel-link.tar": [("rel/canary", "file")],
        "replace-link.tar": [("canary", "file", b"overwrite\n")],
        "planted-link.tar": [("l", "sym", "../outside"), ("l/x", "file")],
        "hardlink-out.tar": [("h", "link", "abs/canary"), ("h2", "link", "canary")],
        "hardlink-ok.tar": [("f", "file"), ("g", "link", "f"), ("f", "file", b"again")],
        "special.tar": [("fifo", "fifo"), ("null", "chr"), ("suid", "file", b"#!", 0o4755)],
        "dir-modes.tar": [("./", "dir", 0o700), ("ro", "dir", 0o000), ("ro/f", "file"),
                          ("ro/d", "dir", 0o555), ("ro/d/g", "file")],
        "dir-over-file.tar": [("x", "file"), ("x", "dir"), ("x/y", "file"), ("x", "file")],
    }
    for name, members in hostile.items():
        write("tar_unpack", name, tar_bytes(members))
    write("tar_unpack", "pax.tar",
          tar_bytes([("p/" + "n" * 150, "file"), ("p/l", "sym", "t" * 200)], tarfile.PAX_FORMAT))


# ---------------------------------------------------------------- config-like parsers

def config_seeds():
    c = lambda sel, body: bytes([sel]) + (body.encode() if isinstance(body, str) else body)
    write("config_parsers", "config.bin",
          c(0, "# vcontainer settings\narch=aarch64\nidle-timeout=1800\nauto-daemon=true\n"
               "registry=10.0.2.2:5000/yocto\ntimeout=300\nverbose=0\nunknown=kept\n"))
    write("config_parsers", "config-arch.bin", c(0, "timeout = 60\n" + SEP.decode() + "x86_64\n"))
    for i, v in enumerate(["aarch64", "1800", "true", "10.0.2.2:5000/yocto", "0", "/var/tmp/vc"]):
        write("config_parsers", f"value-{i}.bin", c(1, v))
    write("config_parsers", "auth.bin",
          c(2, '{"auths":{"10.0.2.2:5000":{"auth":"dXNlcjpwYXNz"}},"credHelpers":{}}'))
    for i, v in enumerate(["hello-world-oci:docker:always app:podman:unless-stopped:external",
                           "'quoted name' \"b:docker\" c-latest-oci", "a a:docker:always"]):
        write("config_parsers", f"bundled-{i}.bin", c(3, v))
    for i, v in enumerate(["base:packages:base-files+busybox app:directories:/opt/app+/etc/app",
                           "cfg:files:/etc/hosts+/etc/passwd tools:host:/usr/bin/jq:/usr/bin/jq",
                           "a:files:/x a:files:/y", "empty:packages:+pkg++"]):
        write("config_parsers", f"layers-{i}.bin", c(4, v))
    status = ""
    try:
        # The build machine's own dpkg database: real stanzas (the first few).
        with open("/var/lib/dpkg/status") as f:
            status = "\n\n".join(f.read().split("\n\n")[:12])[:30000]
    except OSError:
        pass
    status = status or "Package: hello\nStatus: install ok installed\nVersion: 1.0\n"
    lst = "/.\n/usr\n/usr/bin\n/usr/bin/hello\n/usr/share/doc/hello\tdiverted\n"
    first = re.search(r"^Package:\s*(\S+)", status, re.M)
    if first and os.path.exists(f"/var/lib/dpkg/info/{first.group(1)}.list"):
        lst = open(f"/var/lib/dpkg/info/{first.group(1)}.list").read()[:20000]
    write("config_parsers", "dpkg.bin", c(5, status + SEP.decode() + lst))
    write("config_parsers", "opkg.bin",
          c(6, "Package: busybox\nVersion: 1.36.1-r0\nStatus: install user installed\n"
               "Architecture: core2-64\n\nPackage: gone\nVersion: 1\nStatus: deinstall ok "
               "not-installed\n" + SEP.decode() + "/bin/busybox\n/etc/\n"))
    for i, v in enumerate(["docker.io/library/alpine:3.19", "10.0.2.2:5000/yocto/app@sha256:" +
                           "a" * 64, "localhost/x", "[::1]:5000/img:tag"]):
        write("config_parsers", f"registry-{i}.bin", c(7, v))
    hexd = "a" * 64
    write("config_parsers", "docker-manifest.bin",
          c(8, f'[{{"Config":"{hexd}.json","RepoTags":["hello:1.0"],"Layers":["l/layer.tar"]}}]'))
    write("config_parsers", "docker-manifest-oci.bin",
          c(8, f'[{{"Config":"blobs/sha256/{hexd}","RepoTags":null}},{{"Config":"x"}}]'))
    write("config_parsers", "detect-docker.bin",
          c(9, tar_bytes([("manifest.json", "file", b"[]"), ("repositories", "file", b"{}")])))
    write("config_parsers", "detect-oci.bin",
          c(9, tar_bytes([("oci-layout", "file", b"{}"), ("index.json", "file", b"{}"),
                          ("blobs/sha256/aa", "file")])))
    write("config_parsers", "storage-conf.bin",
          c(10, '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\n'
                'graphroot = "/var/lib/containers/storage"\n[storage.options]\n'
                'additionalimagestores = [\n]\n'))
    write("config_parsers", "daemon-json.bin",
          c(11, '{"storage-driver": "overlay2", "data-root": "/var/lib/docker", "log-level": "warn"}'))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for t in ("oci_layout", "oci_base_layer", "tar_unpack", "config_parsers"):
        shutil.rmtree(os.path.join(SEEDS, t), ignore_errors=True)
    oci_seeds(sys.argv[1])
    base_layer_seeds()
    tar_seeds()
    config_seeds()
