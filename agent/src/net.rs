//! The guest's network on QEMU user networking (slirp): the first non-loopback interface gets
//! the address slirp expects (10.0.2.15/24), a default route via slirp's gateway (10.0.2.2, which
//! is also the host) and slirp's DNS forwarder (10.0.2.3) in /etc/resolv.conf.
//!
//! Done with rtnetlink requests like `lo` in [`crate::loopback`] (the guest has no `ip` tool):
//! that needs no unsafe code, unlike the SIOCSIFADDR/SIOCADDRT ioctls, whose `rtentry` libc only
//! defines for musl.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use thiserror::Error;

use crate::loopback::{newlink_up_request, parse_ack};
use crate::{debug, log};

pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub const PREFIX_LEN: u8 = 24;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// virtio_net is loaded in stage 1 and probes its device while loading, so the interface is
/// normally there at once; the bound covers a slow probe under a loaded TCG host.
const INTERFACE_DEADLINE: Duration = Duration::from_secs(10);
const INTERFACE_POLL: Duration = Duration::from_millis(20);

const SYS_CLASS_NET: &str = "/sys/class/net";

const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const AF_INET: u8 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("no network interface appeared within {secs} s (found only: {found}); is virtio_net in the initramfs and a virtio-net device attached?")]
    NoInterface { secs: u64, found: String },
    #[error("{step} on {interface}: {errno}")]
    Netlink {
        step: &'static str,
        interface: String,
        errno: Errno,
    },
    #[error("writing {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Brings up the guest network; returns the interface used. `offline`: the host has no route
/// out ([`vcontainer_protocol::BootConfig::host_offline`]).
pub fn configure_guest_network(offline: bool) -> Result<String, NetError> {
    let t0 = Instant::now();
    let (name, index) = wait_for_interface(Path::new(SYS_CLASS_NET), INTERFACE_DEADLINE)?;
    debug!(
        "network interface {name} (index {index}) after {} ms",
        t0.elapsed().as_millis()
    );
    let nl = |step: &'static str| {
        let interface = name.clone();
        move |errno| NetError::Netlink {
            step,
            interface,
            errno,
        }
    };
    let fd = netlink_socket().map_err(nl("netlink socket"))?;
    request(&fd, &newaddr_request(index, GUEST_ADDR, PREFIX_LEN, 2))
        .map_err(nl("adding address 10.0.2.15/24"))?;
    request(&fd, &newlink_up_request(index as i32, 3)).map_err(nl("setting the link up"))?;
    request(&fd, &default_route_request(index, GATEWAY, 4))
        .map_err(nl("adding the default route via 10.0.2.2"))?;
    write_resolv_conf(Path::new("/etc/resolv.conf"), offline)?;
    log!(
        "network: {name} {GUEST_ADDR}/{PREFIX_LEN} via {GATEWAY} in {} ms",
        t0.elapsed().as_millis()
    );
    Ok(name)
}

/// `/etc/resolv.conf` with slirp's DNS forwarder; replaces a link (systemd-resolved style) too.
/// On an offline host the forwarder can never answer: one attempt of one second (glibc, Go and
/// so dockerd and podman all honour these options) instead of the defaults' 5 s × 2 per lookup.
pub fn write_resolv_conf(path: &Path, offline: bool) -> Result<(), NetError> {
    let err = |source| NetError::Io {
        path: path.display().to_string(),
        source,
    };
    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        fs::remove_file(path).map_err(err)?;
    }
    fs::write(path, resolv_conf(offline)).map_err(err)
}

fn resolv_conf(offline: bool) -> String {
    if offline {
        format!("nameserver {DNS}\noptions timeout:1 attempts:1\n")
    } else {
        format!("nameserver {DNS}\n")
    }
}

/// The interface to configure among `names`: `eth0` if present, else the first other non-`lo`
/// one in name order (upstream tried eth0, enp0s2, enp0s3, ens3).
pub fn pick_interface(mut names: Vec<String>) -> Option<String> {
    names.retain(|n| n != "lo");
    names.sort();
    if names.iter().any(|n| n == "eth0") {
        return Some("eth0".into());
    }
    names.into_iter().next()
}

fn interfaces(sys_class_net: &Path) -> Vec<String> {
    fs::read_dir(sys_class_net)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits up to `deadline` for a non-loopback interface; returns its name and index.
pub fn wait_for_interface(
    sys_class_net: &Path,
    deadline: Duration,
) -> Result<(String, u32), NetError> {
    let t0 = Instant::now();
    loop {
        let names = interfaces(sys_class_net);
        if let Some(name) = pick_interface(names.clone()) {
            let index = fs::read_to_string(sys_class_net.join(&name).join("ifindex"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let Some(index) = index {
                return Ok((name, index));
            }
        }
        if t0.elapsed() >= deadline {
            return Err(NetError::NoInterface {
                secs: deadline.as_secs(),
                found: if names.is_empty() {
                    "nothing".into()
                } else {
                    names.join(", ")
                },
            });
        }
        std::thread::sleep(INTERFACE_POLL);
    }
}

fn netlink_socket() -> Result<OwnedFd, Errno> {
    socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
}

/// Sends one request and reads its acknowledgement. EEXIST is success: the address or route is
/// what we wanted.
fn request(fd: &OwnedFd, msg: &[u8]) -> Result<(), Errno> {
    sendto(
        fd.as_raw_fd(),
        msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut reply = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    match parse_ack(&reply[..n]) {
        Err(Errno::EEXIST) => Ok(()),
        other => other,
    }
}

fn header(buf: &mut Vec<u8>, msg_type: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by `finish`
    buf.extend_from_slice(&msg_type.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel
}

/// An rtattr carrying 4 bytes (an IPv4 address or an interface index): 8 bytes, aligned.
fn attr4(buf: &mut Vec<u8>, kind: u16, value: [u8; 4]) {
    buf.extend_from_slice(&8u16.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&value);
}

fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf
}

fn broadcast(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) | host_bits)
}

/// RTM_NEWADDR: `addr/prefix_len` (with its broadcast address) on interface `index`.
pub fn newaddr_request(index: u32, addr: Ipv4Addr, prefix_len: u8, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(48);
    header(
        &mut buf,
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
    );
    // ifaddrmsg: family, prefixlen, flags, scope, index
    buf.extend_from_slice(&[AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE]);
    buf.extend_from_slice(&index.to_ne_bytes());
    attr4(&mut buf, IFA_LOCAL, addr.octets());
    attr4(&mut buf, IFA_ADDRESS, addr.octets());
    attr4(
        &mut buf,
        IFA_BROADCAST,
        broadcast(addr, prefix_len).octets(),
    );
    finish(buf)
}

/// RTM_NEWROUTE: the default route (0.0.0.0/0) via `gateway` out of interface `index`.
pub fn default_route_request(index: u32, gateway: Ipv4Addr, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(44);
    header(
        &mut buf,
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
    );
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
    buf.extend_from_slice(&[
        AF_INET,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ]);
    buf.extend_from_slice(&0u32.to_ne_bytes());
    attr4(&mut buf, RTA_GATEWAY, gateway.octets());
    attr4(&mut buf, RTA_OIF, index.to_ne_bytes());
    finish(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_ne_bytes([b[i], b[i + 1]])
    }

    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    #[test]
    fn newaddr_layout() {
        let m = newaddr_request(2, GUEST_ADDR, PREFIX_LEN, 9);
        assert_eq!(m.len(), 48);
        assert_eq!(u32_at(&m, 0), 48);
        assert_eq!(u16_at(&m, 4), RTM_NEWADDR);
        assert_eq!(u16_at(&m, 6), 0x605);
        assert_eq!(u32_at(&m, 8), 9);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32_at(&m, 20), 2);
        assert_eq!((u16_at(&m, 24), u16_at(&m, 26)), (8, IFA_LOCAL));
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
        assert_eq!((u16_at(&m, 32), u16_at(&m, 34)), (8, IFA_ADDRESS));
        assert_eq!(&m[36..40], &[10, 0, 2, 15]);
        assert_eq!((u16_at(&m, 40), u16_at(&m, 42)), (8, IFA_BROADCAST));
        assert_eq!(&m[44..48], &[10, 0, 2, 255]);
    }

    #[test]
    fn default_route_layout() {
        let m = default_route_request(3, GATEWAY, 4);
        assert_eq!(m.len(), 44);
        assert_eq!(u32_at(&m, 0), 44);
        assert_eq!(u16_at(&m, 4), RTM_NEWROUTE);
        assert_eq!(&m[16..24], &[AF_INET, 0, 0, 0, 254, 3, 0, 1]);
        assert_eq!(u32_at(&m, 24), 0);
        assert_eq!((u16_at(&m, 28), u16_at(&m, 30)), (8, RTA_GATEWAY));
        assert_eq!(&m[32..36], &[10, 0, 2, 2]);
        assert_eq!((u16_at(&m, 36), u16_at(&m, 38)), (8, RTA_OIF));
        assert_eq!(u32_at(&m, 40), 3);
    }

    #[test]
    fn broadcast_addresses() {
        assert_eq!(broadcast(GUEST_ADDR, 24), Ipv4Addr::new(10, 0, 2, 255));
        assert_eq!(broadcast(GUEST_ADDR, 32), GUEST_ADDR);
        assert_eq!(broadcast(GUEST_ADDR, 0), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn interface_choice() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_interface(v(&["lo", "enp0s3", "eth0"])),
            Some("eth0".into())
        );
        assert_eq!(
            pick_interface(v(&["lo", "enp0s3", "ens3"])),
            Some("enp0s3".into())
        );
        assert_eq!(pick_interface(v(&["lo"])), None);
    }

    #[test]
    fn waits_for_an_interface_and_names_what_it_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("lo")).expect("mkdir");
        let err = wait_for_interface(dir.path(), Duration::from_millis(50))
            .expect_err("none")
            .to_string();
        assert!(err.contains("found only: lo"), "{err}");
        fs::create_dir(dir.path().join("eth0")).expect("mkdir");
        fs::write(dir.path().join("eth0/ifindex"), "2\n").expect("write");
        assert_eq!(
            wait_for_interface(dir.path(), Duration::from_millis(50)).expect("found"),
            ("eth0".to_string(), 2)
        );
    }

    #[test]
    fn resolv_conf_replaces_a_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::os::unix::fs::symlink("/nonexistent/stub-resolv.conf", &path).expect("link");
        write_resolv_conf(&path, false).expect("write");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "nameserver 10.0.2.3\n"
        );
        write_resolv_conf(&path, true).expect("write");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "nameserver 10.0.2.3\noptions timeout:1 attempts:1\n"
        );
    }
}
