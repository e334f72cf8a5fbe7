//! What an engine command means on the host, decided before anything boots: which host files it
//! reads or writes (`load -i`, `import`, `save -o`, `cp`, `run -v`), whether it needs a terminal
//! (`-t`) or the host's stdin (`-i`), and the argv the guest runs. Pure: no I/O, so every rule
//! here is unit tested. The guest always receives an argv list, never a joined string.

use std::path::PathBuf;

use thiserror::Error;

use super::run_options::{split_run_args, RunArgs, StdIo};
use crate::engine::volumes::VolumeSpec;
use crate::state::Tool;

/// One engine command, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePlan {
    /// Run `argv` in the guest.
    Plain { argv: Vec<String>, io: StdIo },
    /// `load -i FILE`: the file becomes the engine's stdin (`docker load` reads a tar from it).
    Load { file: PathBuf, argv: Vec<String> },
    /// `import FILE [REF]`: the file becomes the stdin of `docker import - REF`.
    Import { file: PathBuf, argv: Vec<String> },
    /// `save -o FILE IMAGE…`: the engine's stdout goes to FILE, which appears only on success.
    Save { output: PathBuf, argv: Vec<String> },
    /// `cp HOST C:PATH`: a tar of the host path is the stdin of `docker cp - C:PATH`.
    CopyIn { host: PathBuf, argv: Vec<String> },
    /// `cp C:PATH HOST`: `docker cp C:PATH -` writes a tar, unpacked safely into HOST.
    CopyOut { host: PathBuf, argv: Vec<String> },
    /// `run`/`vrun` with host volumes and/or a terminal. Volumes are staged in the guest and
    /// inserted as `-v GUEST:CTR[:MODE]` right after `run`.
    Run {
        argv: Vec<String>,
        volumes: Vec<VolumeSpec>,
        io: StdIo,
        /// `vrun -p`: host port forwards for a VM this command boots.
        publish: Vec<String>,
    },
    /// `pull NAME` with a default registry (docker has no search registries): pull the
    /// qualified name, then tag it with the short one so later commands find it.
    PullQualified { pull: Vec<String>, tag: Vec<String> },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{0}")]
    Usage(String),
}

fn usage(msg: impl Into<String>) -> PlanError {
    PlanError::Usage(msg.into())
}

/// Plans `words` (command word first). `default_registry` is the configured registry for
/// unqualified names.
pub fn plan(
    tool: Tool,
    words: &[String],
    default_registry: Option<&str>,
) -> Result<EnginePlan, PlanError> {
    let engine = tool.engine_cli().to_string();
    let Some((cmd, rest)) = words.split_first() else {
        return Err(usage(format!(
            "no command given; try '{} --help'",
            tool.name()
        )));
    };
    let with = |args: &[String]| -> Vec<String> {
        let mut v = vec![engine.clone(), cmd.clone()];
        v.extend(args.iter().cloned());
        v
    };
    let plain = |args: &[String]| EnginePlan::Plain {
        argv: with(args),
        io: StdIo::Output,
    };
    match cmd.as_str() {
        "image" => {
            const SUBS: &str = "ls, rm, pull, inspect, tag, push, prune, history";
            match rest.first().map(String::as_str) {
                None => Err(usage(format!("image requires a subcommand ({SUBS})"))),
                Some("load") | Some("import") | Some("save") => plan(tool, rest, default_registry),
                Some(
                    "ls" | "list" | "rm" | "remove" | "pull" | "inspect" | "tag" | "push" | "prune"
                    | "history" | "build" | "tree" | "exists" | "mount" | "unmount" | "sign"
                    | "trust" | "untag" | "scp" | "diff",
                ) => Ok(plain(rest)),
                Some(other) if other.starts_with('-') => Ok(plain(rest)),
                Some(other) => Err(usage(format!(
                    "unknown image subcommand: {other}\nValid subcommands: {SUBS}"
                ))),
            }
        }
        "system" if rest.is_empty() => Err(usage(
            "system requires a subcommand: df, prune, events, info",
        )),
        "pull" => {
            let Some(image) = positionals(rest).next() else {
                return Err(usage("pull requires <image>"));
            };
            match (tool, default_registry.and_then(|r| qualify(image, r))) {
                (Tool::Vdkr, Some(full)) => {
                    let mut pull = with(rest);
                    for w in pull.iter_mut().skip(2) {
                        if w == image {
                            *w = full.clone();
                        }
                    }
                    Ok(EnginePlan::PullQualified {
                        pull,
                        tag: vec![engine.clone(), "tag".into(), full, image.clone()],
                    })
                }
                _ => Ok(plain(rest)),
            }
        }
        "load" => plan_load(&engine, rest),
        "import" => plan_import(&engine, rest),
        "save" => plan_save(&engine, rest),
        "cp" => plan_cp(&engine, rest),
        "run" | "create" => {
            let run = split_run_args(rest).map_err(usage)?;
            Ok(run_plan(&engine, cmd, run, Vec::new()))
        }
        "vrun" => plan_vrun(&engine, rest),
        "exec" => {
            let run = split_run_args(rest).map_err(usage)?;
            if run.image_index.is_none_or(|i| i + 1 >= rest.len()) {
                return Err(usage("exec requires <container> <command>"));
            }
            if !run.volumes.is_empty() {
                return Err(usage("exec has no -v option"));
            }
            Ok(EnginePlan::Plain {
                io: run.stdio(),
                argv: with(&run.args),
            })
        }
        "login" => {
            let io = if rest.iter().any(|a| a == "--password-stdin") {
                StdIo::Stdin
            } else if rest
                .iter()
                .any(|a| a == "-p" || a.starts_with("--password"))
            {
                StdIo::Output
            } else {
                // The engine asks for the user name and password on a terminal.
                StdIo::Tty
            };
            Ok(EnginePlan::Plain {
                argv: with(rest),
                io,
            })
        }
        "start" | "attach" => {
            let tty = rest
                .iter()
                .take_while(|a| a.starts_with('-'))
                .any(|a| a == "-i" || a == "--interactive" || a == "-ai" || a == "-ia");
            Ok(EnginePlan::Plain {
                argv: with(rest),
                io: if tty || cmd == "attach" {
                    StdIo::Tty
                } else {
                    StdIo::Output
                },
            })
        }
        _ => Ok(plain(rest)),
    }
}

/// Words that are not options (a crude view, enough for commands whose options take no value).
fn positionals(args: &[String]) -> impl Iterator<Item = &String> {
    args.iter().filter(|a| !a.starts_with('-'))
}

/// `REF` qualified with `registry` when it names no registry host (docker's rule: the first
/// path component is a host if it has a `.` or `:` or is `localhost`).
pub fn qualify(reference: &str, registry: &str) -> Option<String> {
    let registry = registry.trim_end_matches('/');
    if registry.is_empty() {
        return None;
    }
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            None
        }
        _ => Some(format!("{registry}/{reference}")),
    }
}

/// Takes `-x VALUE`, `--long VALUE` or `--long=VALUE` out of `args`.
fn take_value(
    args: &mut Vec<String>,
    short: &str,
    long: &str,
) -> Result<Option<String>, PlanError> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == short || a == long {
            let Some(v) = args.get(i + 1).cloned() else {
                return Err(usage(format!("{a} needs a value")));
            };
            args.drain(i..i + 2);
            found = Some(v);
        } else if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            found = Some(v.to_string());
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(found)
}

fn plan_load(engine: &str, rest: &[String]) -> Result<EnginePlan, PlanError> {
    let mut args = rest.to_vec();
    let mut argv = vec![engine.to_string(), "load".to_string()];
    match take_value(&mut args, "-i", "--input")? {
        Some(file) => {
            argv.extend(args);
            Ok(EnginePlan::Load {
                file: PathBuf::from(file),
                argv,
            })
        }
        // `docker load` reads the tar from stdin: forward ours.
        None => {
            argv.extend(args);
            Ok(EnginePlan::Plain {
                argv,
                io: StdIo::Stdin,
            })
        }
    }
}

fn plan_import(engine: &str, rest: &[String]) -> Result<EnginePlan, PlanError> {
    // import [-c X] [-m X] [--platform X] FILE|- [REF]
    let mut args = rest.to_vec();
    let mut opts = Vec::new();
    for (short, long) in [("-c", "--change"), ("-m", "--message"), ("", "--platform")] {
        while let Some(v) =
            take_value(&mut args, if short.is_empty() { long } else { short }, long)?
        {
            opts.push(format!("{long}={v}"));
        }
    }
    let (files, flags): (Vec<String>, Vec<String>) = args
        .into_iter()
        .partition(|a| !a.starts_with('-') || a == "-");
    let mut argv = vec![engine.to_string(), "import".to_string()];
    argv.extend(opts);
    argv.extend(flags);
    let (source, reference) = match files.as_slice() {
        [] => return Err(usage("import requires <tarball> [name:tag]")),
        [s] => (s.clone(), "imported:latest".to_string()),
        [s, r] => (s.clone(), r.clone()),
        _ => return Err(usage("import takes <tarball> [name:tag]")),
    };
    argv.push("-".to_string());
    argv.push(reference);
    if source == "-" {
        return Ok(EnginePlan::Plain {
            argv,
            io: StdIo::Stdin,
        });
    }
    if source.contains("://") {
        // A URL: the engine fetches it.
        let n = argv.len();
        argv[n - 2] = source;
        return Ok(EnginePlan::Plain {
            argv,
            io: StdIo::Output,
        });
    }
    Ok(EnginePlan::Import {
        file: PathBuf::from(source),
        argv,
    })
}

fn plan_save(engine: &str, rest: &[String]) -> Result<EnginePlan, PlanError> {
    let mut args = rest.to_vec();
    let output = take_value(&mut args, "-o", "--output")?;
    if positionals(&args).next().is_none() {
        return Err(usage("save requires <image>"));
    }
    let mut argv = vec![engine.to_string(), "save".to_string()];
    argv.extend(args);
    match output {
        Some(o) => Ok(EnginePlan::Save {
            output: PathBuf::from(o),
            argv,
        }),
        None => Ok(EnginePlan::Plain {
            argv,
            io: StdIo::Output,
        }),
    }
}

/// Docker's rule for `cp` arguments: `NAME:PATH` is a container path unless the word starts with
/// `/` or `.` (a local path that happens to contain a colon).
fn container_side(spec: &str) -> Option<(&str, &str)> {
    if spec.starts_with('/') || spec.starts_with('.') {
        return None;
    }
    let (name, path) = spec.split_once(':')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some((name, path))
}

fn plan_cp(engine: &str, rest: &[String]) -> Result<EnginePlan, PlanError> {
    let (flags, paths): (Vec<&String>, Vec<&String>) =
        rest.iter().partition(|a| a.starts_with('-') && a.len() > 1);
    let [src, dst] = paths.as_slice() else {
        return Err(usage(
            "cp requires <src> <dest>: one of them CONTAINER:PATH",
        ));
    };
    let mut argv = vec![engine.to_string(), "cp".to_string()];
    argv.extend(flags.iter().map(|s| s.to_string()));
    match (container_side(src), container_side(dst)) {
        (Some(_), Some(_)) => Err(usage(
            "cp copies between the host and a container: exactly one of <src> and <dest> must be CONTAINER:PATH",
        )),
        (None, None) => Err(usage(
            "cp needs a container side: CONTAINER:PATH as <src> or <dest>",
        )),
        (None, Some(_)) => {
            argv.push("-".to_string());
            argv.push(dst.to_string());
            Ok(EnginePlan::CopyIn {
                host: PathBuf::from(src.as_str()),
                argv,
            })
        }
        (Some(_), None) => {
            argv.push(src.to_string());
            argv.push("-".to_string());
            Ok(EnginePlan::CopyOut {
                host: PathBuf::from(dst.as_str()),
                argv,
            })
        }
    }
}

fn run_plan(engine: &str, cmd: &str, run: RunArgs, publish: Vec<String>) -> EnginePlan {
    let io = run.stdio();
    let mut argv = vec![engine.to_string(), cmd.to_string()];
    argv.extend(run.args);
    if run.volumes.is_empty() && publish.is_empty() {
        EnginePlan::Plain { argv, io }
    } else {
        EnginePlan::Run {
            argv,
            volumes: run.volumes,
            io,
            publish,
        }
    }
}

/// `vrun [-it|-i|-t|--interactive] [--no-network] [-p H:G] [-v H:C] IMAGE [CMD…]`: a throw-away
/// container (`run --rm`) with the host network, whose entrypoint is cleared when a command is
/// given.
fn plan_vrun(engine: &str, rest: &[String]) -> Result<EnginePlan, PlanError> {
    let mut i = 0;
    let (mut interactive, mut tty, mut network) = (false, false, true);
    let mut volumes_args = Vec::new();
    let mut publish = Vec::new();
    while let Some(a) = rest.get(i) {
        match a.as_str() {
            "-it" | "-ti" | "--interactive" => (interactive, tty) = (true, true),
            "-i" => interactive = true,
            "-t" => tty = true,
            "--no-network" => network = false,
            "-p" | "--publish" | "-v" | "--volume" => {
                let Some(v) = rest.get(i + 1) else {
                    return Err(usage(format!("vrun: {a} needs a value")));
                };
                if a.starts_with("-p") || a == "--publish" {
                    publish.push(v.clone());
                } else {
                    volumes_args.push("-v".to_string());
                    volumes_args.push(v.clone());
                }
                i += 1;
            }
            _ => break,
        }
        i += 1;
    }
    let Some(image) = rest.get(i) else {
        return Err(usage(
            "Usage: vrun [-it] [--no-network] [-p H:G] [-v HOST:CTR] IMAGE [COMMAND [ARG…]]",
        ));
    };
    let command = &rest[i + 1..];
    let mut words = vec!["--rm".to_string()];
    if interactive {
        words.push("-i".to_string());
    }
    if tty {
        words.push("-t".to_string());
    }
    words.push(
        if network {
            "--network=host"
        } else {
            "--network=none"
        }
        .to_string(),
    );
    words.extend(volumes_args);
    if !command.is_empty() {
        words.push("--entrypoint=".to_string());
    }
    words.push(image.clone());
    words.extend(command.iter().cloned());
    let run = split_run_args(&words).map_err(usage)?;
    Ok(run_plan(engine, "run", run, publish))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(words: &[&str]) -> Result<EnginePlan, PlanError> {
        let w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        plan(Tool::Vdkr, &w, None)
    }

    fn argv(plan: &EnginePlan) -> Vec<&str> {
        match plan {
            EnginePlan::Plain { argv, .. }
            | EnginePlan::Load { argv, .. }
            | EnginePlan::Import { argv, .. }
            | EnginePlan::Save { argv, .. }
            | EnginePlan::CopyIn { argv, .. }
            | EnginePlan::CopyOut { argv, .. }
            | EnginePlan::Run { argv, .. }
            | EnginePlan::PullQualified { pull: argv, .. } => {
                argv.iter().map(String::as_str).collect()
            }
        }
    }

    #[test]
    fn arguments_arrive_unchanged() {
        let plan = p(&["run", "--rm", "img", "sh", "-c", "echo 'a b' \"$X\" *"]).expect("plan");
        assert_eq!(
            argv(&plan),
            [
                "docker",
                "run",
                "--rm",
                "img",
                "sh",
                "-c",
                "echo 'a b' \"$X\" *"
            ]
        );
        assert!(matches!(
            plan,
            EnginePlan::Plain {
                io: StdIo::Output,
                ..
            }
        ));
        let w: Vec<String> = ["images", "-a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(argv(&plan_for(Tool::Vpdmn, &w)), ["podman", "images", "-a"]);
    }

    fn plan_for(tool: Tool, w: &[String]) -> EnginePlan {
        plan(tool, w, None).expect("plan")
    }

    #[test]
    fn interactive_and_tty() {
        let it = p(&["run", "-it", "--rm", "img", "sh"]).expect("plan");
        assert!(matches!(it, EnginePlan::Plain { io: StdIo::Tty, .. }));
        let i = p(&["run", "-i", "img", "cat"]).expect("plan");
        assert!(matches!(
            i,
            EnginePlan::Plain {
                io: StdIo::Stdin,
                ..
            }
        ));
        // -i after the image belongs to the command.
        let c = p(&["run", "img", "grep", "-i", "x"]).expect("plan");
        assert!(matches!(
            c,
            EnginePlan::Plain {
                io: StdIo::Output,
                ..
            }
        ));
        let e = p(&["exec", "-it", "web", "sh"]).expect("plan");
        assert!(matches!(e, EnginePlan::Plain { io: StdIo::Tty, .. }));
        assert_eq!(argv(&e), ["docker", "exec", "-it", "web", "sh"]);
        assert_eq!(
            p(&["exec", "web"]),
            Err(usage("exec requires <container> <command>"))
        );
    }

    #[test]
    fn load_import_save() {
        let l = p(&["load", "-i", "/x/img.tar", "-q"]).expect("plan");
        assert_eq!(
            l,
            EnginePlan::Load {
                file: "/x/img.tar".into(),
                argv: vec!["docker".into(), "load".into(), "-q".into()]
            }
        );
        assert!(matches!(
            p(&["load"]),
            Ok(EnginePlan::Plain {
                io: StdIo::Stdin,
                ..
            })
        ));
        let i = p(&["import", "-c", "CMD [\"sh\"]", "root.tar"]).expect("plan");
        assert_eq!(
            argv(&i),
            [
                "docker",
                "import",
                "--change=CMD [\"sh\"]",
                "-",
                "imported:latest"
            ]
        );
        let s = p(&["save", "-o", "out.tar", "a:1", "b:2"]).expect("plan");
        assert_eq!(
            s,
            EnginePlan::Save {
                output: "out.tar".into(),
                argv: vec!["docker".into(), "save".into(), "a:1".into(), "b:2".into()]
            }
        );
        assert!(p(&["save", "-o", "x.tar"]).is_err());
        assert!(p(&["load", "-i"]).is_err());
    }

    #[test]
    fn cp_directions() {
        let i = p(&["cp", "./dir", "web:/srv"]).expect("plan");
        assert_eq!(
            i,
            EnginePlan::CopyIn {
                host: "./dir".into(),
                argv: vec!["docker".into(), "cp".into(), "-".into(), "web:/srv".into()]
            }
        );
        let o = p(&["cp", "-L", "web:/etc/hostname", "/tmp/h"]).expect("plan");
        assert_eq!(argv(&o), ["docker", "cp", "-L", "web:/etc/hostname", "-"]);
        assert!(p(&["cp", "a:/x", "b:/y"]).is_err());
        assert!(p(&["cp", "/a", "/b"]).is_err());
        assert!(
            p(&["cp", "/a:b", "./c"]).is_err(),
            "a leading / is a host path"
        );
        assert!(p(&["cp", "x"]).is_err());
    }

    #[test]
    fn vrun_clears_the_entrypoint_only_with_a_command() {
        let v = p(&["vrun", "img", "echo", "hi"]).expect("plan");
        assert_eq!(
            argv(&v),
            [
                "docker",
                "run",
                "--rm",
                "--network=host",
                "--entrypoint=",
                "img",
                "echo",
                "hi"
            ]
        );
        let v = p(&["vrun", "-it", "--no-network", "img"]).expect("plan");
        assert_eq!(
            argv(&v),
            ["docker", "run", "--rm", "-i", "-t", "--network=none", "img"]
        );
        assert!(matches!(v, EnginePlan::Plain { io: StdIo::Tty, .. }));
        let v = p(&["vrun", "-p", "8080:80", "-v", "/h:/c", "img"]).expect("plan");
        let EnginePlan::Run {
            volumes, publish, ..
        } = v
        else {
            panic!("expected Run")
        };
        assert_eq!(publish, ["8080:80"]);
        assert_eq!(volumes.len(), 1);
        assert!(p(&["vrun"]).is_err());
    }

    #[test]
    fn pull_with_a_default_registry() {
        let w: Vec<String> = ["pull", "app:1"].iter().map(|s| s.to_string()).collect();
        let plan = plan(Tool::Vdkr, &w, Some("10.0.2.2:5000/yocto")).expect("plan");
        assert_eq!(
            plan,
            EnginePlan::PullQualified {
                pull: vec![
                    "docker".into(),
                    "pull".into(),
                    "10.0.2.2:5000/yocto/app:1".into()
                ],
                tag: vec![
                    "docker".into(),
                    "tag".into(),
                    "10.0.2.2:5000/yocto/app:1".into(),
                    "app:1".into()
                ],
            }
        );
        // podman resolves short names itself (unqualified-search-registries).
        assert!(matches!(
            plan_for_registry(Tool::Vpdmn, &w),
            EnginePlan::Plain { .. }
        ));
        assert_eq!(qualify("quay.io/x/y", "r:1"), None);
        assert_eq!(qualify("localhost/y", "r:1"), None);
        assert_eq!(
            qualify("library/busybox", "r:1/ns").as_deref(),
            Some("r:1/ns/library/busybox")
        );
        assert!(p(&["pull"]).is_err());
    }

    fn plan_for_registry(tool: Tool, w: &[String]) -> EnginePlan {
        plan(tool, w, Some("r:5000")).expect("plan")
    }

    #[test]
    fn image_and_system_need_a_subcommand() {
        assert!(p(&["image"]).is_err());
        assert!(p(&["image", "frobnicate"]).is_err());
        assert!(p(&["system"]).is_err());
        assert_eq!(
            argv(&p(&["image", "ls"]).expect("plan")),
            ["docker", "image", "ls"]
        );
        assert!(matches!(
            p(&["image", "load", "-i", "x.tar"]),
            Ok(EnginePlan::Load { .. })
        ));
    }
}
