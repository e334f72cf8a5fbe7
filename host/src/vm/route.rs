//! Whether this host has a route beyond itself. QEMU's user networking (slirp) gives the guest
//! exactly the host's reach, so a host without a default route has a guest whose DNS lookups can
//! only time out: the agent is told, and makes them fail fast
//! (`BootConfig::host_offline`).

use std::path::Path;

/// True if the host has an IPv4 or IPv6 default route that is up.
pub fn host_has_default_route() -> bool {
    let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
    ipv4_default_route(&read("/proc/net/route"))
        || ipv6_default_route(&read("/proc/net/ipv6_route"))
}

/// RTF_UP in the route flags.
const RTF_UP: u32 = 0x1;

/// `/proc/net/route`: a header line, then `Iface Destination Gateway Flags …` in hex; the
/// default route has destination and mask 0.
fn ipv4_default_route(table: &str) -> bool {
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() >= 8
            && f[1] == "00000000"
            && f[7] == "00000000"
            && u32::from_str_radix(f[3], 16).is_ok_and(|flags| flags & RTF_UP != 0)
    })
}

/// `/proc/net/ipv6_route`: `dest dest_len src src_len next_hop metric refcnt use flags iface`;
/// the default route is `::/0` on an interface other than `lo` (the kernel keeps unreachable
/// `::/0` entries on `lo`).
fn ipv6_default_route(table: &str) -> bool {
    table.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() >= 10
            && f[0].bytes().all(|b| b == b'0')
            && f[1] == "00"
            && f[9] != "lo"
            && u32::from_str_radix(f[8], 16).is_ok_and(|flags| flags & RTF_UP != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn ipv4_default_route_is_found() {
        let with = format!(
            "{HEADER}eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        );
        assert!(ipv4_default_route(&with));
        let without =
            format!("{HEADER}eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        assert!(!ipv4_default_route(&without));
        assert!(!ipv4_default_route(HEADER));
        assert!(!ipv4_default_route(""));
    }

    #[test]
    fn ipv6_default_route_is_found_but_not_on_lo() {
        let zero = "00000000000000000000000000000000";
        let on_eth = format!("{zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n");
        assert!(ipv6_default_route(&on_eth));
        let on_lo =
            format!("{zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200       lo\n");
        assert!(!ipv6_default_route(&on_lo));
        assert!(!ipv6_default_route(""));
    }
}
