//! Guest networking on real VMs: a memory-resident VM pushes to and pulls from a registry on the
//! host (Debian's `docker-registry` on 127.0.0.1, reached from the guest as 10.0.2.2 through QEMU
//! user networking, declared with `--insecure-registry`), and a host port forwarded with
//! `memres start -p HOST:GUEST` reaches a server in a `--network=host` container. docker on an
//! x86_64 guest, podman on an aarch64 guest (upstream's vpdmn ignored registry settings).

use std::path::Path;
use std::time::{Duration, Instant};

use vcontainer::bench::fixture::write_layout_with_files;
use vcontainer_initramfs::Arch;
use vcontainer_tests::registry::{free_port, http_get, Registry};
use vcontainer_tests::vm::{busybox_for, run_tool, Run};

const PAGE: &str = "hello from the guest\n";

/// Stops the memory-resident VM when the test ends, passed or not.
struct Memres<'a> {
    tool: &'a str,
    home: &'a Path,
    arch: &'a str,
    stopped: bool,
}

impl Memres<'_> {
    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["-a", self.arch];
        all.extend_from_slice(args);
        run_tool(self.tool, self.home, &all)
    }

    fn stop(mut self) {
        self.stopped = true;
        self.run(&["memres", "stop"]).assert_ok("memres stop");
    }
}

impl Drop for Memres<'_> {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.run(&["memres", "stop"]);
        }
    }
}

fn registry_and_port_forward(arch: Arch, tool: &str) {
    let registry = Registry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let a = arch.name();
    let layout = work.path().join("web-oci");
    write_layout_with_files(
        &layout,
        arch.oci(),
        &busybox_for(arch),
        "1",
        &[("www/index.html", PAGE.as_bytes())],
    )
    .expect("fixture");

    let guest_registry = format!("10.0.2.2:{}", registry.port);
    let host_port = free_port().to_string();
    let forward = format!("{host_port}:8080");
    let vm = Memres {
        tool,
        home: &home,
        arch: a,
        stopped: false,
    };
    vm.run(&[
        "memres",
        "start",
        "--insecure-registry",
        &guest_registry,
        "-p",
        &forward,
    ])
    .assert_ok("memres start with network, registry and port forward");

    // Push to the host's registry from inside the guest, forget the image, pull it back.
    let remote = format!("{guest_registry}/test/busybox:1");
    vm.run(&["vimport", layout.to_str().expect("utf8"), "web:1"])
        .assert_ok("vimport");
    vm.run(&["tag", "web:1", &remote]).assert_ok("tag");
    vm.run(&["push", &remote])
        .assert_ok("push to the host registry");
    let tags = http_get(registry.port, "/v2/test/busybox/tags/list").unwrap_or_default();
    assert!(
        tags.contains("\"1\""),
        "the registry has the pushed tag: {tags}"
    );
    vm.run(&["rmi", "web:1", &remote]).assert_ok("rmi");
    let r = vm.run(&["images"]);
    r.assert_ok("images");
    assert!(!r.stdout.contains("test/busybox"), "removed: {}", r.stdout);
    vm.run(&["pull", &remote])
        .assert_ok("pull from the host registry");
    let r = vm.run(&["run", "--rm", &remote, "cat", "/www/index.html"]);
    r.assert_ok("run the pulled image");
    assert_eq!(r.stdout, PAGE);

    // A host port forwarded into the guest reaches a server in a host-network container.
    vm.run(&[
        "run",
        "-d",
        "--network=host",
        "--name",
        "web",
        &remote,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ])
    .assert_ok("start httpd in the guest");
    let port: u16 = host_port.parse().expect("port");
    let t0 = Instant::now();
    let page = loop {
        // slirp accepts on the host side at once and resets when the guest port is closed, so
        // retry until httpd answers.
        match http_get(port, "/index.html") {
            Some(resp) if resp.contains(PAGE.trim()) => break resp,
            other => {
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "no page through host port {port} -> guest 8080: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    assert!(page.starts_with("HTTP/1."), "{page}");
    // The forwards are QEMU's: `ps`, `memres status --json` and `memres list` show them.
    let r = vm.run(&["ps"]);
    r.assert_ok("ps");
    assert!(
        r.stdout.contains("Host port forwards") && r.stdout.contains(&format!(":{host_port}")),
        "{}",
        r.stdout
    );
    let r = vm.run(&["--json", "memres", "status"]);
    r.assert_ok("memres status --json");
    assert!(
        r.stdout.contains(&format!("\"host\": {host_port}")),
        "{}",
        r.stdout
    );
    let r = vm.run(&["memres", "list"]);
    r.assert_ok("memres list");
    assert!(
        r.stdout.contains(&format!("{host_port}->8080/tcp")),
        "{}",
        r.stdout
    );
    vm.run(&["rm", "-f", "web"]).assert_ok("rm -f web");
    vm.stop();
}

#[test]
fn x86_64_docker_registry_and_port_forward() {
    registry_and_port_forward(Arch::X86_64, "vdkr");
}

#[test]
fn aarch64_podman_registry_and_port_forward() {
    registry_and_port_forward(Arch::Aarch64, "vpdmn");
}
