//! `vcontainer units`: autostart units for BUNDLED_CONTAINERS, through the real CLI, checked by
//! systemd itself. Docker units are verified with `systemd-analyze verify --root` against a
//! temp rootfs that has stub `docker`/`podman` executables and stub targets, so that any output
//! at all (an unknown key, a value systemd rejects such as upstream's `Restart=unless-stopped`)
//! fails the test; their enable links are checked with `systemctl --root is-enabled`. Quadlet
//! files are run through podman's quadlet generator when it is installed, and otherwise parsed
//! (only known sections and keys) and turned into the service the generator would make, which
//! `systemd-analyze verify` checks the same way. No VM is booted. systemd-analyze is required
//! (`.ci/install-deps` installs it): without it these tests fail, they do not skip.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vcontainer_tests::vm::{bin_dir, run_command, Run};

const POLICIES: [&str; 5] = ["autostart", "always", "unless-stopped", "on-failure", "no"];

fn vcontainer(args: &[&str]) -> Run {
    let bin = bin_dir().join("vcontainer");
    assert!(
        bin.is_file(),
        "{} missing: cargo build --workspace --bins",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null());
    run_command(cmd)
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!(
            "{name} not found: these tests check the generated units with systemd's own \
             parser. Install the `systemd` package (.ci/install-deps does)"
        )
    })
}

/// A minimal OCI image layout (only `index.json` is looked at by `units`).
fn layout(dir: &Path) {
    fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    fs::write(
        dir.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .expect("write");
}

fn write_exe(path: &Path) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, "#!/bin/sh\nexit 0\n").expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A rootfs with merged /usr (`lib -> usr/lib`, relative, as Yocto makes it) and, so that
/// systemd can load the units, stub engines and the units they refer to.
fn stub_rootfs(root: &Path) {
    fs::create_dir_all(root.join("usr/lib/systemd/system")).expect("mkdir");
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).expect("symlink");
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("symlink");
    write_exe(&root.join("usr/bin/docker"));
    write_exe(&root.join("usr/bin/podman"));
    let units = root.join("usr/lib/systemd/system");
    for t in [
        "sysinit.target",
        "basic.target",
        "shutdown.target",
        "multi-user.target",
        "network-online.target",
    ] {
        fs::write(units.join(t), format!("[Unit]\nDescription={t}\n")).expect("write");
    }
    fs::write(
        units.join("docker.service"),
        "[Unit]\nDescription=docker\n[Service]\nExecStart=/usr/bin/docker\n",
    )
    .expect("write");
}

/// `systemd-analyze verify` of `unit` inside `root`: exit 0 and not a single line of output.
fn verify(root: &Path, unit: &str) -> Result<(), String> {
    let mut cmd = Command::new(require_tool("systemd-analyze"));
    cmd.arg("verify")
        .arg("--man=no")
        .arg(format!("--root={}", root.display()))
        .arg(unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .stdin(Stdio::null());
    let r = run_command(cmd);
    if r.code == Some(0) && r.stdout.trim().is_empty() && r.stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "systemd-analyze verify {unit}: exit {:?}\n{}{}",
            r.code, r.stdout, r.stderr
        ))
    }
}

fn is_enabled(root: &Path, unit: &str) -> String {
    let mut cmd = Command::new(require_tool("systemctl"));
    cmd.arg(format!("--root={}", root.display()))
        .arg("is-enabled")
        .arg(unit)
        .stdin(Stdio::null());
    let r = run_command(cmd);
    r.stdout.trim().to_string()
}

/// An INI-style unit file: section -> [(key, value)].
fn parse_ini(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(s.to_string());
            out.entry(s.to_string()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line:?}"));
        let s = section
            .clone()
            .unwrap_or_else(|| panic!("key outside a section: {line:?}"));
        out.entry(s)
            .or_default()
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn value<'a>(ini: &'a BTreeMap<String, Vec<(String, String)>>, s: &str, k: &str) -> &'a str {
    ini.get(s)
        .and_then(|kv| kv.iter().rev().find(|(key, _)| key == k))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("[{s}] {k}= missing in {ini:?}"))
}

/// Checks a Quadlet file: with podman's generator if installed, else by parsing it (known
/// sections; only `[Container]` keys every Quadlet version has) and verifying, with systemd,
/// the service the generator would make from it. Returns the `Image=` value.
fn check_quadlet(file: &Path, scratch: &Path) -> String {
    let text = fs::read_to_string(file).expect("read quadlet");
    let ini = parse_ini(&text);
    let sections: BTreeSet<&str> = ini.keys().map(String::as_str).collect();
    assert_eq!(
        sections,
        BTreeSet::from(["Container", "Install", "Service", "Unit"]),
        "{}",
        file.display()
    );
    for (k, _) in &ini["Container"] {
        assert!(
            ["Image", "ContainerName"].contains(&k.as_str()),
            "[Container] {k}= is not a key every Quadlet version knows ({})",
            file.display()
        );
    }
    assert_eq!(value(&ini, "Install", "WantedBy"), "multi-user.target");
    let image = value(&ini, "Container", "Image").to_string();
    let name = value(&ini, "Container", "ContainerName").to_string();
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("file stem")
        .to_string();

    // The real generator, where podman ≥ 4.4 is installed.
    for gen in [
        "/usr/libexec/podman/quadlet",
        "/usr/lib/systemd/system-generators/podman-system-generator",
    ] {
        if Path::new(gen).is_file() {
            let mut cmd = Command::new(gen);
            cmd.arg("-dryrun")
                .env("QUADLET_UNIT_DIRS", file.parent().expect("dir"))
                .stdin(Stdio::null());
            let r = run_command(cmd);
            assert_eq!(r.code, Some(0), "{gen} -dryrun: {r:?}");
            assert!(
                r.stdout.contains(&format!("{stem}.service")) && !r.stderr.contains("unsupported"),
                "{gen} -dryrun did not convert {}: {r:?}",
                file.display()
            );
            break;
        }
    }

    // What the generator makes: [Unit], [Service] and [Install] copied, plus the podman run.
    let root = scratch.join(&stem);
    stub_rootfs(&root);
    let mut unit = String::new();
    for section in ["Unit", "Service", "Install"] {
        unit.push_str(&format!("[{section}]\n"));
        for (k, v) in &ini[section] {
            unit.push_str(&format!("{k}={v}\n"));
        }
        if section == "Service" {
            unit.push_str(&format!(
                "Environment=PODMAN_SYSTEMD_UNIT=%n\nKillMode=mixed\nDelegate=yes\n\
                 Type=notify\nNotifyAccess=all\nSyslogIdentifier=%N\n\
                 ExecStart=/usr/bin/podman run --name={name} --cidfile=%t/%N.cid --replace --rm \
                 --cgroups=split --sdnotify=conmon -d {image}\n\
                 ExecStop=/usr/bin/podman rm -v -f -i --cidfile=%t/%N.cid\n"
            ));
        }
    }
    fs::write(
        root.join(format!("usr/lib/systemd/system/{stem}.service")),
        unit,
    )
    .expect("write");
    if let Err(e) = verify(&root, &format!("{stem}.service")) {
        panic!("the service Quadlet makes from {}: {e}", file.display());
    }
    image
}

struct Fixture {
    _tmp: tempfile::TempDir,
    deploy: PathBuf,
    root: PathBuf,
    scratch: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let deploy = tmp.path().join("deploy");
        let root = tmp.path().join("rootfs");
        let scratch = tmp.path().join("scratch");
        fs::create_dir_all(&root).expect("mkdir");
        fs::create_dir_all(&scratch).expect("mkdir");
        for p in POLICIES {
            layout(&deploy.join(format!("d-{p}-latest-oci")));
            layout(&deploy.join(format!("p-{p}-latest-oci")));
        }
        layout(&deploy.join("redis-7-oci"));
        layout(&deploy.join("tagged-1.2-oci"));
        layout(&deploy.join("ext-oci"));
        layout(&deploy.join("plain-latest-oci"));
        Self {
            _tmp: tmp,
            deploy,
            root,
            scratch,
        }
    }

    fn units(&self, containers: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "units",
            "--rootfs",
            self.root.to_str().expect("utf8"),
            "--deploy-dir",
            self.deploy.to_str().expect("utf8"),
            "--containers",
            containers,
        ];
        args.extend_from_slice(extra);
        vcontainer(&args)
    }

    /// Every file and link below the rootfs, relative.
    fn tree(&self) -> BTreeSet<PathBuf> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
            for e in fs::read_dir(dir).expect("ls") {
                let e = e.expect("entry");
                let ft = e.file_type().expect("type");
                if ft.is_dir() {
                    walk(base, &e.path(), out);
                } else {
                    out.insert(e.path().strip_prefix(base).expect("prefix").to_path_buf());
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.root, &self.root, &mut out);
        out
    }
}

#[test]
fn units_for_every_policy_and_both_runtimes_pass_systemd() {
    require_tool("systemd-analyze");
    require_tool("systemctl");
    let f = Fixture::new();
    stub_rootfs(&f.root);
    let before = f.tree();

    let mut spec: Vec<String> = Vec::new();
    for p in POLICIES {
        spec.push(format!("d-{p}:docker:{p}"));
        spec.push(format!("p-{p}:podman:{p}"));
    }
    // W3: unit and import both run redis:7. W4: a tagged dir under the bare name.
    // W2: external without a policy gets no unit. No policy, default runtime: no unit.
    spec.extend(
        [
            "redis-7-oci:docker:always",
            "tagged:podman:autostart",
            "ext:docker:external",
            "plain",
        ]
        .map(String::from),
    );
    let spec = spec.join(" ");
    let r = f.units(&spec, &["--default-runtime", "podman", "--json"]);
    r.assert_ok("vcontainer units");
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(json["units"].as_array().map(Vec::len), Some(12), "{json}");

    // Exactly these files and links were added.
    let mut expected: BTreeSet<PathBuf> = BTreeSet::new();
    let mut docker = Vec::new();
    for p in POLICIES {
        docker.push((
            format!("container-d-{p}.service"),
            format!("d-{p}:latest"),
            p,
        ));
    }
    docker.push(("container-redis.service".into(), "redis:7".into(), "always"));
    for (unit, _, _) in &docker {
        expected.insert(PathBuf::from(format!("usr/lib/systemd/system/{unit}")));
        expected.insert(PathBuf::from(format!(
            "etc/systemd/system/multi-user.target.wants/{unit}"
        )));
    }
    let mut podman = Vec::new();
    for p in POLICIES {
        podman.push((
            format!("container-p-{p}.container"),
            format!("p-{p}:latest"),
            p,
        ));
    }
    podman.push((
        "container-tagged.container".into(),
        "tagged:1.2".into(),
        "autostart",
    ));
    for (file, _, _) in &podman {
        expected.insert(PathBuf::from(format!("etc/containers/systemd/{file}")));
    }
    let added: BTreeSet<PathBuf> = f.tree().difference(&before).cloned().collect();
    assert_eq!(added, expected);
    let written: BTreeSet<PathBuf> = json["written"]
        .as_array()
        .expect("written")
        .iter()
        .map(|v| {
            Path::new(v.as_str().expect("str"))
                .strip_prefix(&f.root)
                .expect("inside rootfs")
                .to_path_buf()
        })
        .collect();
    // Reported as written by the rootfs's own path (lib/, which is a link to usr/lib).
    let expected_written: BTreeSet<PathBuf> = expected
        .iter()
        .map(|p| match p.strip_prefix("usr") {
            Ok(rest) => rest.to_path_buf(),
            Err(_) => p.clone(),
        })
        .collect();
    assert_eq!(written, expected_written);

    let restart = |p: &str| match p {
        "on-failure" => "on-failure",
        "no" => "no",
        _ => "always",
    };
    let mut failures = Vec::new();
    for (unit, image, policy) in &docker {
        let text =
            fs::read_to_string(f.root.join("lib/systemd/system").join(unit)).expect("read unit");
        let ini = parse_ini(&text);
        let name = image.split(':').next().expect("name");
        assert_eq!(
            value(&ini, "Service", "ExecStart"),
            format!("/usr/bin/docker run --rm --name {name} {image}"),
            "{unit}"
        );
        assert_eq!(value(&ini, "Service", "Restart"), restart(policy), "{unit}");
        let link = f
            .root
            .join("etc/systemd/system/multi-user.target.wants")
            .join(unit);
        assert!(
            fs::symlink_metadata(&link)
                .expect("link")
                .file_type()
                .is_symlink()
                && fs::read_link(&link).expect("readlink").is_relative(),
            "{}",
            link.display()
        );
        assert_eq!(is_enabled(&f.root, unit), "enabled", "{unit}");
        if let Err(e) = verify(&f.root, unit) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    for (file, image, policy) in &podman {
        let path = f.root.join("etc/containers/systemd").join(file);
        let got = check_quadlet(&path, &f.scratch);
        assert_eq!(&got, image, "{file}");
        let ini = parse_ini(&fs::read_to_string(&path).expect("read"));
        assert_eq!(value(&ini, "Service", "Restart"), restart(policy), "{file}");
    }
}

/// The check is honest: upstream's unit (Restart=unless-stopped) and an unknown key are
/// reported by the same verification that passes ours.
#[test]
fn negative_control_upstream_unit_is_rejected() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    stub_rootfs(root);
    let unit = "[Unit]\nDescription=Docker Container app:latest\nAfter=docker.service\n\
                Requires=docker.service\n\n[Service]\nType=simple\nRestart=unless-stopped\n\
                RestartSec=5s\nTimeoutStartSec=0\nExecStartPre=-/usr/bin/docker rm -f app\n\
                ExecStart=/usr/bin/docker run --rm --name app app:latest\n\
                ExecStop=/usr/bin/docker stop app\n\n[Install]\nWantedBy=multi-user.target\n";
    let dir = root.join("usr/lib/systemd/system");
    fs::write(dir.join("upstream.service"), unit).expect("write");
    let e = verify(root, "upstream.service").expect_err("systemd must reject unless-stopped");
    assert!(e.contains("unless-stopped"), "{e}");
    fs::write(
        dir.join("typo.service"),
        unit.replace("Restart=unless-stopped", "Restart=always\nRestrat=always"),
    )
    .expect("write");
    let e = verify(root, "typo.service").expect_err("unknown key");
    assert!(e.contains("Restrat"), "{e}");
    fs::write(
        dir.join("noexec.service"),
        unit.replace("Restart=unless-stopped", "Restart=always")
            .replace("/usr/bin/docker run", "/usr/bin/nonexistent run"),
    )
    .expect("write");
    let e = verify(root, "noexec.service").expect_err("missing executable");
    assert!(e.contains("nonexistent"), "{e}");
    fs::write(
        dir.join("good.service"),
        unit.replace("Restart=unless-stopped", "Restart=always"),
    )
    .expect("write");
    verify(root, "good.service").expect("the fixed unit passes");
}

#[test]
fn bad_input_fails_cleanly_and_writes_nothing() {
    let f = Fixture::new();
    let custom = f.scratch.join("custom.service");
    fs::write(&custom, "[Service]\nExecStart=/bin/true\n").expect("write");
    let custom_arg = |name: &str| format!("{name}={}", custom.display());
    let cases: Vec<(String, Vec<String>, Vec<&str>)> = vec![
        (
            "d-always:docker:always app:dockr".into(),
            vec![],
            vec!["'app:dockr'", "unknown runtime 'dockr'", "docker, podman"],
        ),
        (
            "app:autostart".into(),
            vec![],
            vec![
                "'app:autostart'",
                "app:docker:autostart or app:podman:autostart",
            ],
        ),
        (
            "d-always:docker:external:always".into(),
            vec![],
            vec!["'external' must be the last field"],
        ),
        (
            "d-always:docker:sometimes".into(),
            vec![],
            vec!["unknown policy 'sometimes'", "unless-stopped, on-failure"],
        ),
        (
            "d-always:docker:always d-always:docker".into(),
            vec![],
            vec!["twice"],
        ),
        (
            "d-always:docker:always missing:docker:always".into(),
            vec![],
            vec!["MISSING CONTAINER", "missing-latest-oci", "missing-oci"],
        ),
        (
            "d-always:docker:always plain:docker".into(),
            vec!["--service-file".into(), custom_arg("plain")],
            vec!["has no autostart policy"],
        ),
        (
            "d-always:docker:always".into(),
            vec!["--service-file".into(), custom_arg("typo")],
            vec!["no BUNDLED_CONTAINERS entry is named so"],
        ),
        (
            "d-always:docker:always".into(),
            vec![
                "--service-file".into(),
                format!("d-always={}", f.scratch.join("nope").display()),
            ],
            vec!["No such file"],
        ),
        (
            "d-always:docker:always d-always:podman:always".into(),
            vec![],
            vec!["container-d-always.service"],
        ),
    ];
    for (spec, extra, needles) in cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let r = f.units(&spec, &extra);
        assert_ne!(r.code, Some(0), "{spec}: must fail: {r:?}");
        assert!(r.code.is_some(), "{spec}: died of a signal: {r:?}");
        for n in needles {
            assert!(r.stderr.contains(n), "{spec}: {n:?} not in {}", r.stderr);
        }
        assert!(f.tree().is_empty(), "{spec}: wrote {:?}", f.tree());
    }
    // A rootfs that does not exist is not created.
    let r = vcontainer(&[
        "units",
        "--rootfs",
        f.scratch.join("no-rootfs").to_str().expect("utf8"),
        "--deploy-dir",
        f.deploy.to_str().expect("utf8"),
        "--containers",
        "d-always:docker:always",
    ]);
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(!f.scratch.join("no-rootfs").exists());
}

#[test]
fn custom_service_files_replace_generated_ones() {
    require_tool("systemd-analyze");
    let f = Fixture::new();
    stub_rootfs(&f.root);
    let svc = f.scratch.join("mine.service");
    fs::write(
        &svc,
        "[Unit]\nDescription=mine\nRequires=docker.service\nAfter=docker.service\n\
         [Service]\nExecStart=/usr/bin/docker run --rm --name mine d-always:latest\n\
         Restart=on-failure\n[Install]\nWantedBy=multi-user.target\n",
    )
    .expect("write");
    let quad = f.scratch.join("mine.container");
    fs::write(
        &quad,
        "[Unit]\nDescription=mine\n[Container]\nImage=p-always:latest\nContainerName=mine\n\
         [Service]\nRestart=on-failure\n[Install]\nWantedBy=multi-user.target\n",
    )
    .expect("write");
    let r = f.units(
        "d-always:docker:always p-always:podman:always d-no:docker:no",
        &[
            "--service-file",
            &format!("d-always={}", svc.display()),
            "--service-file",
            &format!("p-always={}", quad.display()),
        ],
    );
    r.assert_ok("units with service files");
    let unit = f.root.join("lib/systemd/system/container-d-always.service");
    assert_eq!(
        fs::read(&unit).expect("read"),
        fs::read(&svc).expect("read")
    );
    assert_eq!(
        fs::metadata(&unit).expect("stat").permissions().mode() & 0o7777,
        0o644
    );
    assert_eq!(is_enabled(&f.root, "container-d-always.service"), "enabled");
    verify(&f.root, "container-d-always.service").expect("custom unit verifies");
    assert_eq!(
        fs::read(
            f.root
                .join("etc/containers/systemd/container-p-always.container")
        )
        .expect("read"),
        fs::read(&quad).expect("read")
    );
    // The entry without a custom file still gets the generated unit.
    let gen =
        fs::read_to_string(f.root.join("lib/systemd/system/container-d-no.service")).expect("read");
    assert!(gen.contains("Restart=no"), "{gen}");
    for line in r.stdout.lines() {
        assert!(line.starts_with(f.root.to_str().expect("utf8")), "{line}");
    }
    // Running again replaces in place.
    r.assert_ok("again");
    let again = f.units("d-no:docker:always", &[]);
    again.assert_ok("rerun");
    let gen =
        fs::read_to_string(f.root.join("lib/systemd/system/container-d-no.service")).expect("read");
    assert!(gen.contains("Restart=always"), "{gen}");
}
