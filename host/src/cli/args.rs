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
    disable_help_subcommand = true,
    after_help = "Engine commands (images, run, ps, exec, cp, save, load, …) take the engine's own \
options after the command word; global options go before it."
)]
pub struct EngineArgs {
    /// Target architecture: aarch64 or x86_64 (default: from the program name, $VDKR_ARCH /
    /// $VPDMN_ARCH, the config file, then the host).
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
    /// Configuration directory (default ~/.config/vdkr resp. ~/.config/vpdmn).
    #[arg(long, value_name = "DIR", global = true)]
    pub config_dir: Option<PathBuf>,
    /// Never use KVM, even where it works.
    #[arg(long, global = true)]
    pub no_kvm: bool,
    /// Boot the prebuilt guest image in DIR/ARCH/ (as `vcontainer image build --out DIR`
    /// writes) instead of the cached one (default: $VDKR_BLOB_DIR resp. $VPDMN_BLOB_DIR).
    #[arg(long, value_name = "DIR", global = true)]
    pub blob_dir: Option<PathBuf>,
    /// Never touch the network for guest images (also $VCONTAINER_OFFLINE=1): use the cache or
    /// --blob-dir, else fail at once naming what is missing.
    #[arg(long, global = true)]
    pub offline: bool,
    /// The engine's storage driver: overlay (docker: overlay2) or vfs; it must be the one the
    /// target's engine is configured with (default: $VDKR_STORAGE_DRIVER resp.
    /// $VPDMN_STORAGE_DRIVER, else what the state already holds, else docker overlay2 and
    /// podman vfs, as upstream's target configuration).
    #[arg(long, value_name = "DRIVER", global = true)]
    pub storage_driver: Option<vcontainer_protocol::StorageDriver>,
    /// Boot the guest without a network interface.
    #[arg(long, global = true)]
    pub no_network: bool,
    /// Never use or auto-start a memory-resident VM: boot one for this command.
    #[arg(long, global = true)]
    pub no_daemon: bool,
    /// Default registry for unqualified image names (host[:port][/namespace]).
    // The doc comment is the option's help text, brackets and all: not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, value_name = "HOST", global = true)]
    pub registry: Option<String>,
    /// No default registry, not even the configured one.
    #[arg(long, global = true, conflicts_with = "registry")]
    pub no_registry: bool,
    /// Registry reached over plain HTTP or unverified TLS (repeatable).
    #[arg(long, value_name = "HOST[:PORT]", global = true)]
    pub insecure_registry: Vec<String>,
    /// Verify TLS for the default registry even when it is a private address.
    #[arg(long, global = true)]
    pub secure_registry: bool,
    /// CA certificate (PEM) for the default registry.
    #[arg(long, value_name = "FILE", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Registry auth file (docker config.json / podman auth.json; mode 0600 or 0400).
    #[arg(long = "config", value_name = "AUTHFILE", global = true)]
    pub auth_file: Option<PathBuf>,
    /// Registry user for the default registry (with --registry-pass).
    #[arg(long, value_name = "USER", global = true)]
    pub registry_user: Option<String>,
    /// Registry password for --registry-user. Visible in `ps`: prefer --config or `login`.
    #[arg(
        long,
        visible_alias = "registry-password",
        value_name = "PASS",
        global = true
    )]
    pub registry_pass: Option<String>,
    /// Show what happens (boot, transfers, timings).
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// Print nothing but the engine's output and errors.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// Machine-readable output for vcontainer's own commands (memres status/list, vstorage,
    /// vconfig).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: EngineCommand,
}

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Import an image: an OCI layout directory or archive, a docker-archive tar, or a plain
    /// root filesystem (directory or tar), as NAME:TAG (default imported:latest).
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
    /// Show or change the configuration (vconfig [KEY [VALUE | --reset]]).
    Vconfig {
        key: Option<String>,
        value: Option<String>,
        /// Put KEY back to its default.
        #[arg(long, requires = "key", conflicts_with = "value")]
        reset: bool,
    },
    /// State directories: list, path, df, clean.
    Vstorage {
        #[command(subcommand)]
        action: Option<VstorageAction>,
    },
    /// Remove this instance's state (images, containers); stops its memory-resident VM first.
    Clean,
    /// A shell in the VM itself (not in a container).
    Vshell,
    /// Any engine command (images, run, vrun, ps, exec, cp, save, load, import, inspect, rmi,
    /// tag, pull, push, login, …), with its arguments unchanged.
    #[command(external_subcommand)]
    Engine(Vec<OsString>),
}

#[derive(Debug, Clone, Subcommand)]
pub enum MemresAction {
    /// Boot the VM and leave it running; later commands use it.
    Start(MemresStart),
    /// Stop it gracefully (engine stopped, state disk synced and unmounted).
    Stop {
        /// Kill it if it does not stop gracefully in time.
        #[arg(short, long)]
        force: bool,
    },
    /// Stop, then start again.
    Restart {
        /// Remove the state directory (images, containers) before starting.
        #[arg(long)]
        clean: bool,
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        start: MemresStart,
    },
    /// Print `running` (exit 0) or `stopped` (exit 1).
    Status,
    /// List the instances under ~/.vdkr (resp. ~/.vpdmn) that have a memory-resident VM.
    List,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct MemresStart {
    /// Forward host port H to guest port G (`[IP:]H:G[/tcp|/udp]`, repeatable): containers
    /// with --network=host serve on the host.
    #[arg(short = 'p', long = "publish", value_name = "H:G")]
    pub publish: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum VstorageAction {
    /// Every state directory with its size and memory-resident status.
    List,
    /// Print the state directory of this arch/instance (or of ARCH).
    Path {
        // Its own id: sharing the global `-a/--arch`'s id made clap fill it from `-a`, so the
        // state directory chosen by `--state-dir`/`-I` was ignored.
        #[arg(id = "storage_arch", value_name = "ARCH")]
        arch: Option<String>,
    },
    /// Disk use of the state disks.
    Df,
    /// Remove the state directory of this arch/instance, of ARCH, or all of them.
    Clean {
        #[arg(id = "storage_arch", value_name = "ARCH")]
        arch: Option<String>,
        #[arg(long, conflicts_with = "storage_arch")]
        all: bool,
    },
}

/// Engine commands passed through as they are. Others are refused with a clear message rather
/// than sent to the engine to fail there.
pub const PASSTHROUGH: &[&str] = &[
    "images",
    "vrun",
    "exec",
    "cp",
    "save",
    "load",
    "import",
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
