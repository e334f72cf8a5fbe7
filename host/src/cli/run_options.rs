//! Reading `run`/`create`/`exec` arguments the way the engine does, far enough to find what the
//! host must act on: `-v HOST:CTR` bind mounts of host paths, `-i`, `-t`, and where the options
//! end (the image or container). Everything else is passed on untouched.

use crate::engine::volumes::VolumeSpec;

/// How the command talks to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdIo {
    /// Output only; stdin is /dev/null (the host's stdin is left alone).
    #[default]
    Output,
    /// The host's stdin is forwarded (`-i`, `load` without `-i`, `login --password-stdin`).
    Stdin,
    /// A pseudo-terminal session (`-t`).
    Tty,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// The arguments with host-path volumes taken out.
    pub args: Vec<String>,
    pub volumes: Vec<VolumeSpec>,
    pub interactive: bool,
    pub tty: bool,
    /// Index in `args` of the first word that is not an option (image, or container for exec).
    pub image_index: Option<usize>,
}

impl RunArgs {
    pub fn stdio(&self) -> StdIo {
        if self.tty {
            StdIo::Tty
        } else if self.interactive {
            StdIo::Stdin
        } else {
            StdIo::Output
        }
    }
}

/// Long options of `docker run`/`podman run`/`exec` that take a value as the next word.
/// Options given as `--opt=value` need no entry; an unknown `--opt` is taken as a flag.
const LONG_WITH_VALUE: &[&str] = &[
    "--add-host",
    "--annotation",
    "--arch",
    "--attach",
    "--authfile",
    "--blkio-weight",
    "--blkio-weight-device",
    "--cap-add",
    "--cap-drop",
    "--cgroup-conf",
    "--cgroup-parent",
    "--cgroupns",
    "--cgroups",
    "--chrootdirs",
    "--cidfile",
    "--conmon-pidfile",
    "--cpu-period",
    "--cpu-quota",
    "--cpu-rt-period",
    "--cpu-rt-runtime",
    "--cpu-shares",
    "--cpus",
    "--cpuset-cpus",
    "--cpuset-mems",
    "--creds",
    "--decryption-key",
    "--detach-keys",
    "--device",
    "--device-cgroup-rule",
    "--device-read-bps",
    "--device-read-iops",
    "--device-write-bps",
    "--device-write-iops",
    "--dns",
    "--dns-option",
    "--dns-opt",
    "--dns-search",
    "--domainname",
    "--entrypoint",
    "--env",
    "--env-file",
    "--expose",
    "--gidmap",
    "--gpus",
    "--group-add",
    "--group-entry",
    "--health-cmd",
    "--health-interval",
    "--health-retries",
    "--health-start-interval",
    "--health-start-period",
    "--health-timeout",
    "--hostname",
    "--hostuser",
    "--hosts-file",
    "--image-volume",
    "--init-path",
    "--ip",
    "--ip6",
    "--ipc",
    "--isolation",
    "--kernel-memory",
    "--label",
    "--label-file",
    "--link",
    "--link-local-ip",
    "--log-driver",
    "--log-opt",
    "--mac-address",
    "--memory",
    "--memory-reservation",
    "--memory-swap",
    "--memory-swappiness",
    "--mount",
    "--name",
    "--net",
    "--network",
    "--net-alias",
    "--network-alias",
    "--oom-score-adj",
    "--os",
    "--passwd-entry",
    "--personality",
    "--pid",
    "--pidfile",
    "--pids-limit",
    "--platform",
    "--pod",
    "--pod-id-file",
    "--preserve-fds",
    "--publish",
    "--pull",
    "--rdt-class",
    "--requires",
    "--restart",
    "--retry",
    "--retry-delay",
    "--runtime",
    "--sdnotify",
    "--seccomp-policy",
    "--secret",
    "--security-opt",
    "--shm-size",
    "--shm-size-systemd",
    "--stop-signal",
    "--stop-timeout",
    "--storage-opt",
    "--subgidname",
    "--subuidname",
    "--sysctl",
    "--timeout",
    "--tmpfs",
    "--tz",
    "--uidmap",
    "--ulimit",
    "--umask",
    "--unsetenv",
    "--user",
    "--userns",
    "--uts",
    "--variant",
    "--volume",
    "--volume-driver",
    "--volumes-from",
    "--workdir",
];

/// Short options that take a value.
const SHORT_WITH_VALUE: &[char] = &['a', 'c', 'e', 'h', 'l', 'm', 'p', 'u', 'v', 'w'];

/// Splits `args` (what follows `run`, `create` or `exec`).
pub fn split_run_args(args: &[String]) -> Result<RunArgs, String> {
    let mut out = RunArgs::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            out.args.extend(args[i + 1..].iter().cloned());
            out.image_index = (i + 1 < args.len()).then_some(out.args.len() - (args.len() - i - 1));
            return Ok(out);
        }
        if !a.starts_with('-') || a == "-" {
            out.image_index = Some(out.args.len());
            out.args.extend(args[i..].iter().cloned());
            return Ok(out);
        }
        let value_of_next = |i: usize| {
            args.get(i + 1)
                .cloned()
                .ok_or_else(|| format!("option {a} needs a value"))
        };
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (a.clone(), None),
            };
            match name.as_str() {
                "--interactive" => out.interactive = inline.as_deref() != Some("false"),
                "--tty" => out.tty = inline.as_deref() != Some("false"),
                _ => {}
            }
            let takes_value = LONG_WITH_VALUE.contains(&name.as_str());
            let value = match (&inline, takes_value) {
                (Some(v), _) => Some(v.clone()),
                (None, true) => {
                    let v = value_of_next(i)?;
                    i += 1;
                    Some(v)
                }
                (None, false) => None,
            };
            if name == "--volume" {
                if let Some(spec) = value.as_deref().and_then(VolumeSpec::parse) {
                    out.volumes.push(spec);
                    i += 1;
                    continue;
                }
            }
            out.args.push(a.clone());
            if inline.is_none() {
                if let Some(v) = value {
                    out.args.push(v);
                }
            }
            i += 1;
            continue;
        }
        // A cluster of short options: `-it`, `-d`, `-p 80:80`, `-eX=1`, `-v/h:/c`.
        let cluster: Vec<char> = a[1..].chars().collect();
        let mut value = None;
        for (k, c) in cluster.iter().enumerate() {
            match c {
                'i' => out.interactive = true,
                't' => out.tty = true,
                c if SHORT_WITH_VALUE.contains(c) => {
                    let attached: String = cluster[k + 1..].iter().collect();
                    value = Some((
                        k,
                        *c,
                        if attached.is_empty() {
                            let v = value_of_next(i)?;
                            i += 1;
                            (v, false)
                        } else {
                            (attached.trim_start_matches('=').to_string(), true)
                        },
                    ));
                    break;
                }
                _ => {}
            }
        }
        match value {
            Some((k, 'v', (v, attached))) => match VolumeSpec::parse(&v) {
                Some(spec) => {
                    // `-dv /h:/c`: keep the other flags of the cluster.
                    if k > 0 {
                        out.args
                            .push(format!("-{}", cluster[..k].iter().collect::<String>()));
                    }
                    out.volumes.push(spec);
                }
                None => {
                    out.args.push(a.clone());
                    if !attached {
                        out.args.push(v);
                    }
                }
            },
            Some((_, _, (v, attached))) => {
                out.args.push(a.clone());
                if !attached {
                    out.args.push(v);
                }
            }
            None => out.args.push(a.clone()),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(words: &[&str]) -> RunArgs {
        let w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        split_run_args(&w).expect("split")
    }

    #[test]
    fn finds_the_image_after_options_with_values() {
        let r = split(&[
            "--rm", "-e", "A=1", "--name", "web", "-p", "80:80", "img", "-it",
        ]);
        assert_eq!(r.image_index, Some(7));
        assert_eq!(r.args[7], "img");
        assert!(
            !r.tty && !r.interactive,
            "-it after the image is the command's"
        );
        let r = split(&["-dv", "/h:/c", "img"]);
        assert_eq!(r.args, ["-d", "img"]);
        assert_eq!(r.volumes.len(), 1);
        let r = split(&["--name=web", "-dit", "img"]);
        assert!(r.tty && r.interactive);
        assert_eq!(r.image_index, Some(2));
    }

    #[test]
    fn host_volumes_are_taken_out_named_ones_stay() {
        let r = split(&[
            "-v",
            "/h/data:/data",
            "--volume=./cfg:/etc/app:ro",
            "-v",
            "named:/x",
            "-v",
            "/anon",
            "img",
        ]);
        assert_eq!(
            r.volumes,
            [
                VolumeSpec {
                    host: "/h/data".into(),
                    container: "/data".into(),
                    mode: None
                },
                VolumeSpec {
                    host: "./cfg".into(),
                    container: "/etc/app".into(),
                    mode: Some("ro".into())
                },
            ]
        );
        assert!(r.volumes[1].read_only());
        assert_eq!(r.args, ["-v", "named:/x", "-v", "/anon", "img"]);
        assert_eq!(r.image_index, Some(4));
    }

    #[test]
    fn errors_on_a_missing_value() {
        let w: Vec<String> = vec!["--name".into()];
        assert!(split_run_args(&w).is_err());
    }
}
