//! Brings up `lo` with one rtnetlink RTM_NEWLINK request: containers (and dockerd's own
//! loopback API checks) expect a working loopback, and the guest has no `ip` tool to do it.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const IFF_UP: u32 = 1;

/// nlmsghdr (16 bytes) + ifinfomsg (16 bytes) setting IFF_UP on interface `index`.
pub fn newlink_up_request(index: i32, seq: u32) -> [u8; 32] {
    let mut msg = [0u8; 32];
    msg[0..4].copy_from_slice(&32u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel. ifi_family AF_UNSPEC, ifi_type 0.
    msg[20..24].copy_from_slice(&index.to_ne_bytes());
    msg[24..28].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg[28..32].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change: only touch IFF_UP
    msg
}

/// Reads the kernel's NLMSG_ERROR acknowledgement: error 0 means success.
pub fn parse_ack(reply: &[u8]) -> Result<(), Errno> {
    if reply.len() < 20 {
        return Err(Errno::EBADMSG);
    }
    let msg_type = u16::from_ne_bytes([reply[4], reply[5]]);
    if msg_type != NLMSG_ERROR {
        return Err(Errno::EBADMSG);
    }
    let error = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if error == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw(-error))
    }
}

fn loopback_index() -> i32 {
    std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1) // lo is always interface 1 in a fresh network namespace
}

pub fn bring_up_loopback() -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let request = newlink_up_request(loopback_index(), 1);
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut reply = [0u8; 512];
    let n = recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    parse_ack(&reply[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let msg = newlink_up_request(1, 7);
        assert_eq!(u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]), 32);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), RTM_NEWLINK);
        assert_eq!(u16::from_ne_bytes([msg[6], msg[7]]), 5);
        assert_eq!(u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]), 7);
        assert_eq!(i32::from_ne_bytes([msg[20], msg[21], msg[22], msg[23]]), 1);
    }

    #[test]
    fn ack_parsing() {
        let mut ack = [0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_ack(&ack), Ok(()));
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(parse_ack(&ack), Err(Errno::EPERM));
        assert_eq!(parse_ack(&ack[..10]), Err(Errno::EBADMSG));
    }
}
