//! VM end-to-end test of the OCI image builder (aarch64 guests under TCG; nothing skips):
//! `vcontainer oci build` turns a real Debian rootfs (libc6, libtinfo6, base-files, bash and a
//! dpkg database, plus one file no package owns) into a 3-layer image — two `packages` layers and
//! the automatic `rest` layer — and both engines import it with `vimport` and run it.
//!
//! One memory-resident VM per engine (one boot each), the two engines at once: vimport, images,
//! inspect (arch, ENTRYPOINT, CMD), the default ENTRYPOINT+CMD, a CMD override that reads the
//! `rest` layer's file with the `shell` layer's bash, and an ENTRYPOINT override.

use std::fs;
use std::path::{Path, PathBuf};

use vcontainer_initramfs::Arch;
use vcontainer_tests::vm::{cache_dir, run_tool, s, ResidentGuard};

const ARCH: Arch = Arch::Aarch64;
const APP_CONF: &str = "app-conf-from-the-rest-layer";
const PACKAGES: [&str; 4] = ["libc6", "libtinfo6", "base-files", "bash"];

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn blob(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    read_json(&layout.join("blobs/sha256").join(hex))
}

/// The Debian rootfs and, built from it by the real CLI, the OCI layout `app` tagged 1.0.
fn build_image(work: &Path, home: &Path) -> PathBuf {
    let rootfs = work.join("rootfs");
    vcontainer::bench::fixture::debian_rootfs(ARCH, &cache_dir(), "trixie", &PACKAGES, &rootfs)
        .expect("building the Debian rootfs fixture");
    fs::write(rootfs.join("etc/app.conf"), format!("{APP_CONF}\n")).expect("app.conf");

    let layout = work.join("app-oci");
    let layer_cache = work.join("layer-cache");
    let r = run_tool(
        "vcontainer",
        home,
        &[
            "oci",
            "build",
            "--json",
            "--rootfs",
            s(&rootfs),
            "-a",
            ARCH.name(),
            "-o",
            s(&layout),
            "-t",
            "1.0",
            "--layer",
            "base:packages:libc6+libtinfo6+base-files",
            "--layer",
            "shell:packages:bash",
            "--entrypoint",
            "/bin/bash -c",
            "--cmd",
            "'echo from-cmd'",
            "--revision",
            "none",
            "--branch",
            "none",
            "--source-date-epoch",
            "1700000000",
            "--cache-dir",
            s(&layer_cache),
        ],
    );
    r.assert_ok("vcontainer oci build");
    let report: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", r.stdout));
    eprintln!("build report:\n{report:#}");
    let names: Vec<&str> = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["base", "shell", "rest"], "{report:#}");

    // The layout itself: one manifest of exactly 3 gzip layers, arm64, the ENTRYPOINT/CMD given.
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index:#}");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.0"
    );
    let manifest = blob(&layout, manifests[0]["digest"].as_str().expect("digest"));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 3, "exactly 3 layers: {manifest:#}");
    for l in layers {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{manifest:#}"
        );
    }
    let config = blob(&layout, manifest["config"]["digest"].as_str().expect("cfg"));
    assert_eq!(config["architecture"], "arm64", "{config:#}");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/bash", "-c"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["echo from-cmd"])
    );
    layout
}

/// One engine: a memory-resident VM, the image imported, listed, inspected and run.
fn import_and_run(tool: &'static str, layout: &Path, home: &Path) {
    let _resident = ResidentGuard {
        tool: tool.into(),
        home: home.to_path_buf(),
        args: vec!["-a".into(), ARCH.name().into()],
    };
    let run = |args: &[&str]| {
        let mut full = vec!["-a", ARCH.name()];
        full.extend_from_slice(args);
        run_tool(tool, home, &full)
    };
    let ok = |args: &[&str]| {
        let r = run(args);
        r.assert_ok(&format!("{tool} {}", args.join(" ")));
        r
    };

    ok(&["memres", "start"]);
    ok(&["vimport", s(layout), "app:1.0"]);

    let r = ok(&["images"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("app") && l.contains("1.0")),
        "{tool}: images must list app:1.0:\n{}",
        r.stdout
    );
    let r = ok(&["inspect", "app:1.0"]);
    let inspect: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{tool}: inspect is not JSON ({e}):\n{}", r.stdout));
    let image = &inspect[0];
    assert_eq!(image["Architecture"], "arm64", "{tool}: {image:#}");
    assert_eq!(
        image["Config"]["Entrypoint"],
        serde_json::json!(["/bin/bash", "-c"]),
        "{tool}: {image:#}"
    );
    assert_eq!(
        image["Config"]["Cmd"],
        serde_json::json!(["echo from-cmd"]),
        "{tool}: {image:#}"
    );
    assert_eq!(
        image["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(3),
        "{tool}: {image:#}"
    );

    // The image's own ENTRYPOINT + CMD.
    let r = ok(&["run", "--rm", "app:1.0"]);
    assert_eq!(r.stdout.trim(), "from-cmd", "{tool}: {r:?}");
    // A CMD override: bash (shell layer) on libc/libtinfo (base layer) reads the rest layer's file.
    let r = ok(&[
        "run",
        "--rm",
        "app:1.0",
        r#"read l < /etc/app.conf; echo "$l $((6*7))""#,
    ]);
    assert_eq!(r.stdout.trim(), format!("{APP_CONF} 42"), "{tool}: {r:?}");
    // An ENTRYPOINT override, and the dpkg database the rest layer carries (bash builtins only:
    // the image has no coreutils).
    let r = ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/bash",
        "app:1.0",
        "-c",
        "echo $HOSTTYPE; n=0; while read -r k v; do [[ $k == Package: ]] && n=$((n+1)); done \
         < /var/lib/dpkg/status; echo $n",
    ]);
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        [ARCH.name(), "4"],
        "{tool}: {r:?}"
    );

    ok(&["memres", "stop"]);
}

#[test]
fn oci_build_three_layers_vimport_and_run_in_docker_and_podman() {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let homes = ["home", "home-docker", "home-podman"].map(|h| {
        let p = w.join(h);
        fs::create_dir(&p).expect("home");
        p
    });
    let layout = build_image(w, &homes[0]);

    // Both engines at once (two VMs, like vm_batch): each is one boot.
    std::thread::scope(|scope| {
        let d = scope.spawn(|| import_and_run("vdkr", &layout, &homes[1]));
        let p = scope.spawn(|| import_and_run("vpdmn", &layout, &homes[2]));
        let (d, p) = (d.join(), p.join());
        if let Err(e) = d {
            std::panic::resume_unwind(e);
        }
        if let Err(e) = p {
            std::panic::resume_unwind(e);
        }
    });
}
