//! Fuzzes the host's parsers of user-supplied files and values. `data[0]` picks the parser, the
//! rest is its input (parts separated by `\n--8<--\n` where a parser reads two files):
//!
//! 0. config file (`<state>/config`, part 1 `<state>/arch`): load, read every key; setting a key
//!    and loading again keeps every other value (render/parse round trip).
//! 1. config values: `Key::validate` for every key; a normalised value validates to itself.
//! 2. registry auth file (`--config`, mode 0600): `read_auth_file`; accepted bytes are returned
//!    unchanged and are a JSON object.
//! 3. BUNDLED_CONTAINERS: `parse_bundled` for both default runtimes; every entry re-parses to
//!    itself and its derived names do not panic.
//! 4. OCI_LAYERS: `parse_layers`; each entry's items and type.
//! 5. dpkg / 6. opkg status (part 1: a `.list` file of the first package): `PackageDb`.
//! 7. registry strings: `registry_host`, `is_private_host`, `qualify_image`.
//! 8. docker-archive `manifest.json` (as `vimport` parses it).
//! 9. import-source detection of a file (uncompressed; compressed inputs spawn a tool and are
//!    skipped).
//! 10. a target's `/etc/containers/storage.conf` / 11. `/etc/docker/daemon.json`, read from a
//!    scratch rootfs as `populate-rootfs` reads them: a driver it reports is one vcontainer
//!    writes, and the parsers agree with the file-level reading.
#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vcontainer::bundling::spec::{
    image_name_and_tag, is_tag_token, is_valid_image_name, parse_bundled, parse_entry, Runtime,
};
use vcontainer::bundling::target;
use vcontainer::cli::config::{Config, KEYS};
use vcontainer::guest::registry::{is_private_host, qualify_image, read_auth_file, registry_host};
use vcontainer_fuzz::{split_parts, Scratch};
use vcontainer_oci::layer_spec::parse_layers;
use vcontainer_oci::pkgdb::PackageDb;

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn config(dir: &Path, parts: &[&[u8]]) {
    fs::write(dir.join("config"), parts[0]).expect("config");
    if let Some(arch) = parts.get(1) {
        fs::write(dir.join("arch"), arch).expect("arch");
    }
    let Ok(mut c) = Config::load(dir) else { return };
    let before: Vec<Option<String>> = KEYS
        .iter()
        .map(|k| c.get(k.name).map(String::from))
        .collect();
    let _ = (c.arch(), c.file());
    for k in KEYS {
        let _ = (c.flag(k.name), c.seconds(k.name));
    }
    if c.set("verbose", "1").is_err() {
        return;
    }
    let again = Config::load(dir).expect("a saved config loads");
    for (k, b) in KEYS.iter().zip(&before) {
        let got = again.get(k.name).map(String::from);
        if k.name == "verbose" {
            assert_eq!(got.as_deref(), Some("1"));
        } else {
            assert_eq!(&got, b, "{}: value changed by saving another key", k.name);
        }
    }
}

fn pkgdb(dir: &Path, kind: &str, parts: &[&[u8]]) {
    let db = dir.join(format!("var/lib/{kind}"));
    fs::create_dir_all(db.join("info")).expect("mkdir");
    fs::write(db.join("status"), parts[0]).expect("status");
    let status = text(parts[0]);
    let names: Vec<&str> = status
        .lines()
        .filter_map(|l| l.strip_prefix("Package:"))
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.contains(['/', '\0']) && n.len() < 200)
        .take(8)
        .collect();
    if let (Some(first), Some(list)) = (names.first(), parts.get(1)) {
        fs::write(db.join("info").join(format!("{first}.list")), list).expect("list");
    }
    let Ok(pdb) = PackageDb::open(dir) else {
        return;
    };
    let _ = pdb.kind();
    for n in &names {
        if pdb.version(n).is_ok() {
            if let Ok(files) = pdb.files(n) {
                for f in files {
                    assert!(
                        !f.as_os_str().is_empty()
                            && f.components().all(|c| matches!(c, Component::Normal(_))),
                        "{n}: listed path {f:?} not plain and relative"
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let scratch = SCRATCH.get_or_init(|| Scratch::new("config"));
    let dir = &scratch.root;
    let parts = split_parts(input);
    match sel % 12 {
        0 => {
            scratch.reset();
            config(dir, &parts);
        }
        1 => {
            let t = text(input);
            for k in KEYS {
                if let Ok(v) = k.validate(&t) {
                    assert_eq!(
                        k.validate(&v).ok().as_deref(),
                        Some(v.as_str()),
                        "{}",
                        k.name
                    );
                }
            }
        }
        2 => {
            scratch.reset();
            let f = dir.join("auth.json");
            fs::write(&f, input).expect("auth");
            fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).expect("chmod");
            if let Ok(a) = read_auth_file(&f) {
                assert_eq!(a.bytes, input, "auth bytes changed");
                let v: serde_json::Value = serde_json::from_slice(&a.bytes).expect("json");
                assert!(v.is_object());
            }
        }
        3 => {
            let t = text(input);
            for rt in Runtime::ALL {
                let Ok(entries) = parse_bundled(&t, rt) else {
                    continue;
                };
                for c in entries {
                    let _ = (c.recipe(), c.build_dependency());
                    let again = parse_entry(&c.entry, rt).expect("a parsed entry re-parses");
                    assert_eq!(again, c, "entry re-parses differently");
                }
            }
            let _ = (
                image_name_and_tag(&t),
                is_tag_token(&t),
                is_valid_image_name(&t),
            );
        }
        4 => {
            if let Ok(layers) = parse_layers(&text(input)) {
                for l in layers {
                    let _ = (l.layer_type().as_str(), l.sorted_items());
                }
            }
        }
        5 | 6 => {
            scratch.reset();
            pkgdb(dir, if sel % 10 == 5 { "dpkg" } else { "opkg" }, &parts);
        }
        7 => {
            let t = text(input);
            let _ = is_private_host(registry_host(&t));
            let _ = qualify_image(&t, "10.0.2.2:5000/yocto");
            let _ = qualify_image("alpine:3", &t);
        }
        8 => {
            if let Ok((id, tag, n)) =
                vcontainer::engine::import_source::parse_docker_manifest_bytes(input)
            {
                assert!(n >= 1);
                assert!(id.is_some() || tag.is_some());
                if let Some(id) = id {
                    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
                }
            }
        }
        10 | 11 => {
            scratch.reset();
            let (runtime, rel) = if sel % 12 == 10 {
                (Runtime::Podman, "etc/containers/storage.conf")
            } else {
                (Runtime::Docker, "etc/docker/daemon.json")
            };
            let file = dir.join(rel);
            fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            fs::write(&file, input).expect("write");
            let parsed = if runtime == Runtime::Podman {
                target::parse_storage_conf(&text(input))
            } else {
                target::parse_daemon_json(&text(input))
            };
            match target::configured_driver(dir, runtime) {
                Ok(Some(c)) => {
                    let settings = parsed.expect("the file reading parsed it");
                    assert_eq!(
                        c.driver.map(|d| d.engine_name(runtime.tool().engine_kind()).to_string()),
                        settings
                            .driver
                            .filter(|d| !d.trim().is_empty())
                            .map(|d| vcontainer_protocol::StorageDriver::from_engine_name(&d)
                                .expect("a reported driver is one vcontainer writes")
                                .engine_name(runtime.tool().engine_kind())
                                .to_string())
                    );
                }
                Ok(None) => panic!("the file exists"),
                Err(_) => {}
            }
        }
        _ => {
            let compressed = input.starts_with(&[0x1f, 0x8b])
                || input.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
                || input.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
                || input.starts_with(b"BZh");
            if !compressed {
                scratch.reset();
                let f = dir.join("image.tar");
                fs::write(&f, input).expect("tar");
                if let Ok(src) = vcontainer::engine::import_source::detect(&f) {
                    let _ = (src.path(), src.kind());
                }
            }
        }
    }
});
