//! Command-line grammar of vdkr/vpdmn. Global options are recognised before the command, and
//! after our own commands (`vimport … --storage F`); after an engine command word everything
//! reaches the engine unchanged (upstream stole `-it`, `-v`, `--help` … from anywhere in argv).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Run a container engine of another architecture in a QEMU VM, without root",
    disable_help_subcommand = true
)]
pub struct EngineArgs {
    /// Target architecture: aarch64 or x86_64 (default: from the program name, $VDKR_ARCH /
    /// $VPDMN_ARCH, then the host).
    #[arg(short = 'a', long, value_name = "ARCH", global = true)]
    pub arch: Option<String>,
    /// Use exactly this state directory.
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Named instance: state in ~/.vdkr/NAME (resp. ~/.vpdmn/NAME).
    #[arg(short = 'I', long, value_name = "NAME", global = true)]
    pub instance: Option<String>,
    /// No persistent state: a throw-away state disk, deleted afterwards.
    #[arg(long, global = true)]
    pub stateless: bool,
    /// After the command, write the engine's storage as a tar to FILE.
    #[arg(long, value_name = "FILE", global = true)]
    pub storage: Option<PathBuf>,
    /// Seed the engine's storage from a tar written by --storage (implies --stateless).
    #[arg(long, value_name = "TAR", global = true)]
    pub input_storage: Option<PathBuf>,
    /// Never use KVM, even where it works.
    #[arg(long, global = true)]
    pub no_kvm: bool,
    /// Show what happens (boot, transfers, timings).
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// Print nothing but the engine's output and errors.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: EngineCommand,
}

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Import an OCI image layout directory as NAME:TAG (default imported:latest).
    Vimport {
        path: PathBuf,
        #[arg(default_value = "imported:latest")]
        name: String,
    },
    /// Memory-resident mode: keep a VM running so later commands skip the boot.
    #[command(visible_alias = "vmemres")]
    Memres {
        #[command(subcommand)]
        action: MemresAction,
    },
    /// Any engine command (images, info, version, run, ps, inspect, rmi, tag, …), passed through
    /// with its arguments unchanged.
    #[command(external_subcommand)]
    Engine(Vec<OsString>),
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MemresAction {
    /// Boot the VM and leave it running; later commands use it.
    Start,
    /// Stop it gracefully (engine stopped, state disk synced and unmounted).
    Stop,
    /// Stop, then start again.
    Restart,
    /// Print `running` (exit 0) or `stopped` (exit 1).
    Status,
    /// List the instances under ~/.vdkr (resp. ~/.vpdmn) that have a memory-resident VM.
    List,
}

/// Engine commands passed through as they are. Others are refused with a clear message rather
/// than sent to the engine to fail there.
pub const PASSTHROUGH: &[&str] = &[
    "images",
    "image",
    "info",
    "version",
    "run",
    "ps",
    "inspect",
    "rmi",
    "tag",
    "history",
    "system",
    "rm",
    "logs",
    "start",
    "stop",
    "restart",
    "kill",
    "pause",
    "unpause",
    "commit",
    "pull",
    "push",
    "container",
    "volume",
    "network",
    "events",
    "top",
    "diff",
    "wait",
    "port",
    "stats",
    "create",
    "login",
    "logout",
    "search",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> EngineArgs {
        EngineArgs::try_parse_from(std::iter::once("vdkr").chain(args.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn options_after_the_command_reach_the_engine() {
        let a = parse(&[
            "-a", "aarch64", "run", "--rm", "-v", "x:y", "img", "sh", "-c", "a b",
        ]);
        assert_eq!(a.arch.as_deref(), Some("aarch64"));
        assert!(!a.verbose);
        match a.command {
            EngineCommand::Engine(v) => {
                let v: Vec<_> = v.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                assert_eq!(v, ["run", "--rm", "-v", "x:y", "img", "sh", "-c", "a b"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn globals_after_our_own_commands_are_ours() {
        let a = parse(&[
            "-a",
            "aarch64",
            "vimport",
            "./oci",
            "hello:1.0",
            "--storage",
            "x.tar",
        ]);
        assert_eq!(a.storage, Some(PathBuf::from("x.tar")));
        assert!(
            matches!(a.command, EngineCommand::Vimport { ref name, .. } if name == "hello:1.0")
        );
        let b = parse(&["images", "--storage", "x.tar"]);
        assert_eq!(b.storage, None, "engine commands keep their arguments");
    }

    #[test]
    fn help_after_the_command_is_the_engines() {
        let a = parse(&["images", "--help"]);
        assert!(matches!(a.command, EngineCommand::Engine(v) if v.len() == 2));
    }

    #[test]
    fn vimport_defaults_name() {
        let a = parse(&["--storage", "out.tar", "vimport", "./oci"]);
        assert_eq!(a.storage, Some(PathBuf::from("out.tar")));
        assert!(
            matches!(a.command, EngineCommand::Vimport { ref name, .. } if name == "imported:latest")
        );
    }
}
