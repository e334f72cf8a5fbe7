//! Representative frames, used as the fuzz seed corpus and by the stable fuzz-corpus test.

use crate::{
    AgentError, AgentMsg, BootConfig, EngineKind, ErrorKind, ExecRequest, ExitStatus, Hello,
    HostMsg, ReadyInfo, RegistryConfig, Request, StatusInfo, StreamDigest, WindowSize,
    PROTOCOL_VERSION,
};

/// One message of each kind, as both directions send them.
pub fn seed_messages() -> (Vec<HostMsg>, Vec<AgentMsg>) {
    let mut d = StreamDigest::new();
    d.update(b"layer bytes");
    let end = d.finish();
    let host = vec![
        HostMsg::Boot(BootConfig {
            seed_storage: true,
            start_engine: true,
            network: true,
            registry: RegistryConfig {
                default: Some("10.0.2.2:5000/yocto".into()),
                insecure: vec!["10.0.2.2:5000".into()],
                secure: false,
                ca_cert: Some(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
            },
            idle_timeout_secs: 1800,
            host_bound: true,
            host_offline: false,
            storage_driver: Some(crate::StorageDriver::Vfs),
        }),
        HostMsg::Detach,
        HostMsg::Request(Request::Exec(ExecRequest {
            argv: vec!["docker".into(), "run".into(), "--rm".into(), "a b".into()],
            env: vec![("K".into(), "v".into())],
            cwd: Some("/".into()),
            stdin: true,
            engine: true,
            tty: None,
        })),
        HostMsg::Request(Request::Exec(ExecRequest {
            argv: vec!["/bin/sh".into()],
            tty: Some(WindowSize { rows: 24, cols: 80 }),
            ..Default::default()
        })),
        HostMsg::Request(Request::SetAuth),
        HostMsg::Request(Request::EngineApi),
        HostMsg::Resize(WindowSize {
            rows: 50,
            cols: 132,
        }),
        HostMsg::Request(Request::PutTar {
            dest: "/tmp/x".into(),
        }),
        HostMsg::Request(Request::GetTar {
            path: "/etc".into(),
        }),
        HostMsg::Request(Request::ImportOci {
            reference: "hello:1.0".into(),
        }),
        HostMsg::Request(Request::ExportStorage),
        HostMsg::Request(Request::Status),
        HostMsg::Request(Request::Shutdown),
        HostMsg::Request(Request::RawSource { bytes: 1 << 20 }),
        HostMsg::Stdin(b"input\n".to_vec()),
        HostMsg::StdinEnd,
        HostMsg::Data(vec![0x5a; 300]),
        HostMsg::End(end),
        HostMsg::Signal(2),
        HostMsg::Ack,
    ];
    let agent = vec![
        AgentMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            arch: "aarch64".into(),
            engine: EngineKind::Docker,
            capabilities: vec!["exec".into(), "tar".into()],
        }),
        AgentMsg::Ready(ReadyInfo {
            init_ms: 2500,
            rootfs_ms: 3000,
            engine_ms: 9000,
            storage_driver: Some(crate::StorageDriver::Overlay),
        }),
        AgentMsg::Stdout(b"REPOSITORY TAG\n".to_vec()),
        AgentMsg::Stderr(b"warning\n".to_vec()),
        AgentMsg::Data(vec![1, 2, 3, 4]),
        AgentMsg::End(end),
        AgentMsg::Exited(ExitStatus::Code(7)),
        AgentMsg::Exited(ExitStatus::Signal(9)),
        AgentMsg::Status(StatusInfo {
            uptime_ms: 1,
            engine_running: true,
            agent_max_rss_kib: 1400,
            mem_total_kib: 2_000_000,
            mem_available_kib: 1_000_000,
        }),
        AgentMsg::Done,
        AgentMsg::Error(AgentError {
            kind: ErrorKind::Engine,
            message: "skopeo failed".into(),
        }),
    ];
    (host, agent)
}

/// Seeds for the `messages` fuzz target: a selector byte (an index into
/// [`crate::fuzzing::MESSAGE_TYPES`]) followed by one postcard payload of that type; every message
/// of [`seed_messages`] and every structure inside one.
pub fn seed_payloads() -> Vec<Vec<u8>> {
    fn payload<T: serde::Serialize>(selector: u8, msg: &T) -> Vec<u8> {
        let mut v = vec![selector];
        v.extend(postcard::to_allocvec(msg).expect("seed encodes"));
        v
    }
    let (host, agent) = seed_messages();
    let mut out = Vec::new();
    for m in &host {
        out.push(payload(0, m));
        match m {
            HostMsg::Boot(b) => {
                out.push(payload(2, b));
                out.push(payload(3, &b.registry));
            }
            HostMsg::Request(r) => {
                out.push(payload(4, r));
                if let Request::Exec(e) = r {
                    out.push(payload(5, e));
                }
            }
            HostMsg::Resize(w) => out.push(payload(11, w)),
            HostMsg::End(e) => out.push(payload(12, e)),
            _ => {}
        }
    }
    for m in &agent {
        out.push(payload(1, m));
        match m {
            AgentMsg::Hello(h) => out.push(payload(6, h)),
            AgentMsg::Ready(r) => out.push(payload(7, r)),
            AgentMsg::Status(s) => out.push(payload(8, s)),
            AgentMsg::Error(e) => out.push(payload(9, e)),
            AgentMsg::Exited(x) => out.push(payload(10, x)),
            _ => {}
        }
    }
    out
}

/// The seed messages as encoded frames.
pub fn seed_frames() -> Vec<Vec<u8>> {
    let (host, agent) = seed_messages();
    let mut frames: Vec<Vec<u8>> = host
        .iter()
        .map(|m| crate::encode_frame(m).expect("seed encodes"))
        .collect();
    frames.extend(
        agent
            .iter()
            .map(|m| crate::encode_frame(m).expect("seed encodes")),
    );
    frames
}
