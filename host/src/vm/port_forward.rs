//! Host ports forwarded into a guest (`memres start -p [IP:]HOST:GUEST[/tcp|/udp]`): what QEMU's
//! user networking is told to listen on.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// Transport protocol of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    Tcp,
    Udp,
}

impl PortProto {
    pub fn name(self) -> &'static str {
        match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for PortProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn all_interfaces() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}

/// A host port forwarded to a guest port: QEMU listens on `bind:host` and connects to the
/// guest's `guest` port (upstream mapped host H to guest H, ignoring G).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortForward {
    /// Host address QEMU listens on; `0.0.0.0` (all interfaces) unless given, like `docker -p`.
    #[serde(default = "all_interfaces")]
    pub bind: Ipv4Addr,
    pub host: u16,
    pub guest: u16,
    pub proto: PortProto,
}

/// Why a `-p` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port forward {spec:?}: {reason} (expected [IP:]HOST:GUEST[/tcp|/udp], e.g. 8080:80 or 127.0.0.1:8080:80/tcp)")]
pub struct PortForwardError {
    pub spec: String,
    pub reason: String,
}

fn parse_port(what: &str, text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("{what} port {p} is outside 1-65535")),
        Err(_) if text.is_empty() => Err(format!("{what} port is missing")),
        Err(_) => Err(format!("{what} port {text:?} is not a number")),
    }
}

impl FromStr for PortForward {
    type Err = PortForwardError;

    /// `[IP:]HOST:GUEST[/tcp|/udp]` as `memres start -p` takes it.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| PortForwardError {
            spec: spec.to_string(),
            reason,
        };
        let (ports, proto) = match spec.rsplit_once('/') {
            Some((p, "tcp")) => (p, PortProto::Tcp),
            Some((p, "udp")) => (p, PortProto::Udp),
            Some((_, other)) => {
                return Err(fail(format!("protocol {other:?} is neither tcp nor udp")))
            }
            None => (spec, PortProto::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (bind, host, guest) = match parts.as_slice() {
            [h, g] => (all_interfaces(), *h, *g),
            [ip, h, g] => {
                let bind = ip
                    .parse::<Ipv4Addr>()
                    .map_err(|_| fail(format!("bind address {ip:?} is not an IPv4 address")))?;
                (bind, *h, *g)
            }
            [_] => return Err(fail("both a host and a guest port are needed".into())),
            _ => return Err(fail("too many ':'-separated parts".into())),
        };
        Ok(PortForward {
            bind,
            host: parse_port("host", host).map_err(fail)?,
            guest: parse_port("guest", guest).map_err(fail)?,
            proto,
        })
    }
}

impl std::fmt::Display for PortForward {
    /// `IP:HOST:GUEST/PROTO`, what `ps` and `memres status` show and [`FromStr`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}/{}",
            self.bind, self.host, self.guest, self.proto
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(s: &str) -> PortForward {
        s.parse().expect(s)
    }

    #[test]
    fn parses_host_guest_and_defaults_to_all_interfaces_tcp() {
        assert_eq!(
            pf("8080:80"),
            PortForward {
                bind: Ipv4Addr::UNSPECIFIED,
                host: 8080,
                guest: 80,
                proto: PortProto::Tcp
            }
        );
        let p = pf("127.0.0.1:5353:53/udp");
        assert_eq!(p.bind, Ipv4Addr::LOCALHOST);
        assert_eq!((p.host, p.guest, p.proto), (5353, 53, PortProto::Udp));
        assert_eq!(pf("1:65535/tcp").guest, 65535);
    }

    #[test]
    fn display_round_trips() {
        for s in ["8080:80", "127.0.0.1:5353:53/udp", "10.1.2.3:1:2/tcp"] {
            let p = pf(s);
            assert_eq!(pf(&p.to_string()), p);
        }
        assert_eq!(pf("8080:80").to_string(), "0.0.0.0:8080:80/tcp");
    }

    #[test]
    fn refuses_bad_specs_with_the_reason() {
        for (spec, reason) in [
            ("8080", "both a host and a guest port"),
            ("0:80", "host port 0 is outside 1-65535"),
            ("8080:65536", "guest port 65536 is outside"),
            ("8080:80/sctp", "protocol \"sctp\""),
            ("x:80", "host port \"x\" is not a number"),
            (":80", "host port is missing"),
            ("localhost:80:80", "not an IPv4 address"),
            ("1.2.3.4:1:2:3", "too many"),
            ("", "both a host and a guest port"),
        ] {
            let err = spec.parse::<PortForward>().expect_err(spec).to_string();
            assert!(err.contains(reason), "{spec}: {err}");
            assert!(err.contains("[IP:]HOST:GUEST"), "{err}");
        }
    }

    #[test]
    fn records_without_bind_address_read_as_all_interfaces() {
        let p: PortForward =
            serde_json::from_str(r#"{"host":1,"guest":2,"proto":"udp"}"#).expect("json");
        assert_eq!(p.bind, Ipv4Addr::UNSPECIFIED);
        let json = serde_json::to_string(&pf("127.0.0.1:1:2")).expect("json");
        assert_eq!(
            serde_json::from_str::<PortForward>(&json).expect("back"),
            pf("127.0.0.1:1:2")
        );
    }
}
