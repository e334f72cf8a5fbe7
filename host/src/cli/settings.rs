//! The effective settings of one invocation: command-line options, then the tool's environment
//! variables (`VDKR_*` / `VPDMN_*`), then the config file, then defaults — in that precedence.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vcontainer_initramfs::Arch;

use super::arch_select::resolve_arch;
use super::args::EngineArgs;
use crate::cli::config::Config;
use crate::guest::boot_image::ImageChoice;
use crate::guest::instance::StateChoice;
use crate::guest::options::GuestOptions;
use crate::guest::registry::RegistryOptions;
use crate::state::Tool;

/// Everything an invocation needs to know besides its command.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tool: Tool,
    pub arch: Arch,
    pub config: Config,
    /// Base directory of the state directories (`~/.vdkr`, `$VDKR_STATE_DIR`, `state-dir=`).
    pub state_base: PathBuf,
    pub state: StateChoice,
    pub guest: GuestOptions,
    /// Auto-start a memory-resident VM: `$VDKR_AUTO_DAEMON` if set, else the config's
    /// `auto-daemon` (default true, as upstream), and never with `--no-daemon`.
    pub auto_daemon: bool,
    /// The state directory was named (`--state-dir`, `-I`) rather than defaulted from the arch.
    pub state_named: bool,
    /// `--no-daemon`: never use a memory-resident VM.
    pub no_daemon: bool,
    /// One-shot command limit in seconds (0: none).
    pub timeout_secs: u64,
    pub verbose: bool,
}

/// Where settings come from besides the command line (the process environment in real use).
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Settings {
    pub fn resolve(
        tool: Tool,
        argv0_arch: Option<&str>,
        args: &EngineArgs,
        env: &dyn Environment,
    ) -> Result<Settings> {
        let prefix = tool.env_prefix();
        let var = |suffix: &str| env.var(&format!("{prefix}_{suffix}"));
        let home = env.var("HOME").map(PathBuf::from);
        let config_dir = match (&args.config_dir, var("CONFIG_DIR"), &home) {
            (Some(d), _, _) => d.clone(),
            (None, Some(d), _) => PathBuf::from(d),
            (None, None, Some(h)) => h.join(".config").join(tool.name()),
            (None, None, None) => bail!("HOME is not set: give --config-dir"),
        };
        let config = Config::load(&config_dir)?;

        let env_arch = var("ARCH");
        let arch = resolve_arch(
            args.arch.as_deref(),
            argv0_arch,
            env_arch.as_deref().or(config.arch()),
        )
        .with_context(|| "choosing the target architecture")?;

        let state_base = match (var("STATE_DIR"), config.get("state-dir"), &home) {
            (Some(d), _, _) => PathBuf::from(d),
            (None, Some(d), _) => expand_home(d, home.as_deref()),
            (None, None, Some(h)) => tool.default_base(h),
            (None, None, None) => bail!("HOME is not set: give --state-dir"),
        };
        let env_true = |suffix: &str| var(suffix).is_some_and(|v| v == "true" || v == "1");
        let stateless = args.stateless || args.input_storage.is_some();
        let state = if stateless {
            StateChoice::Stateless
        } else if let Some(dir) = &args.state_dir {
            StateChoice::Dir(dir.clone())
        } else if let Some(name) = &args.instance {
            crate::state::StateDir::resolve(
                tool,
                &state_base,
                &crate::state::StateLocation::Instance(name.clone()),
            )?;
            StateChoice::Dir(state_base.join(name))
        } else if env_true("STATELESS") {
            StateChoice::Stateless
        } else {
            StateChoice::Dir(state_base.join(arch.name()))
        };

        let registry = RegistryOptions {
            default: if args.no_registry {
                None
            } else {
                args.registry
                    .clone()
                    .or_else(|| config.get("registry").map(str::to_string))
            },
            insecure: args.insecure_registry.clone(),
            secure: args.secure_registry,
            ca_cert: args.ca_cert.clone(),
            auth_file: args
                .auth_file
                .clone()
                .or_else(|| var("CONFIG").map(PathBuf::from)),
            credentials: match (&args.registry_user, &args.registry_pass) {
                (Some(user), Some(password)) => Some(crate::guest::registry::Credentials {
                    user: user.clone(),
                    password: password.clone(),
                }),
                (None, None) => None,
                (None, Some(_)) => bail!("--registry-pass needs --registry-user"),
                (Some(_), None) => bail!(
                    "--registry-user needs --registry-pass (or use --config AUTHFILE, or `login`)"
                ),
            },
        };
        let auto_daemon = match var("AUTO_DAEMON").as_deref() {
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => bail!("${prefix}_AUTO_DAEMON={other:?}: expected true or false"),
            None => config.flag("auto-daemon"),
        };
        let timeout_secs = match var("TIMEOUT") {
            Some(t) => t
                .parse()
                .with_context(|| format!("${prefix}_TIMEOUT={t:?} is not a number of seconds"))?,
            None => config.seconds("timeout"),
        };
        let storage_driver = match (args.storage_driver, var("STORAGE_DRIVER")) {
            (Some(d), _) => Some(d),
            (None, Some(name)) => Some(
                name.parse()
                    .map_err(|e| anyhow::anyhow!("${prefix}_STORAGE_DRIVER: {e}"))?,
            ),
            (None, None) => None,
        };
        Ok(Settings {
            tool,
            arch,
            state_base,
            state,
            guest: GuestOptions {
                network: !args.no_network,
                registry,
                ports: Vec::new(),
                idle_timeout_secs: config.seconds("idle-timeout"),
                image: ImageChoice {
                    blob_dir: args
                        .blob_dir
                        .clone()
                        .or_else(|| var("BLOB_DIR").map(PathBuf::from)),
                    offline: args.offline
                        || crate::guest::boot_image::offline_value(
                            env.var(crate::guest::boot_image::OFFLINE_ENV).as_deref(),
                        ),
                },
                storage_driver,
            },
            auto_daemon: auto_daemon && !args.no_daemon,
            state_named: args.state_dir.is_some() || args.instance.is_some(),
            no_daemon: args.no_daemon,
            timeout_secs,
            verbose: args.verbose || env_true("VERBOSE") || config.flag("verbose"),
            config,
        })
    }
}

fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    struct FakeEnv(HashMap<String, String>);

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn settings(tool: Tool, argv: &[&str], env: &[(&str, String)]) -> Result<Settings> {
        let args = EngineArgs::try_parse_from(std::iter::once("x").chain(argv.iter().copied()))?;
        let env = FakeEnv(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
        Settings::resolve(tool, None, &args, &env)
    }

    #[test]
    fn arch_precedence_flag_env_config_legacy() {
        let home = tempfile::tempdir().expect("tempdir");
        let h = home.path().display().to_string();
        let cfg = home.path().join(".config/vdkr");
        std::fs::create_dir_all(&cfg).expect("mkdir");
        std::fs::write(cfg.join("arch"), "x86_64\n").expect("write");
        let base = [("HOME", h.clone())];
        let s = settings(Tool::Vdkr, &["images"], &base).expect("settings");
        assert_eq!(s.arch, Arch::X86_64, "legacy arch file");
        std::fs::write(cfg.join("config"), "arch=aarch64\n").expect("write");
        let s = settings(Tool::Vdkr, &["images"], &base).expect("settings");
        assert_eq!(s.arch, Arch::Aarch64, "config beats legacy file");
        let env = [("HOME", h.clone()), ("VDKR_ARCH", "x86_64".to_string())];
        assert_eq!(
            settings(Tool::Vdkr, &["images"], &env).expect("s").arch,
            Arch::X86_64,
            "env beats config"
        );
        // vpdmn reads its own variable and its own config directory.
        let s = settings(Tool::Vpdmn, &["images"], &env).expect("settings");
        assert_eq!(Some(s.arch), Arch::host());
        let s = settings(Tool::Vdkr, &["-a", "aarch64", "images"], &env).expect("settings");
        assert_eq!(s.arch, Arch::Aarch64, "flag beats env");
    }

    #[test]
    fn state_choice_and_env_variables() {
        let home = tempfile::tempdir().expect("tempdir");
        let h = home.path().display().to_string();
        let env = [("HOME", h.clone())];
        let s = settings(Tool::Vdkr, &["-a", "x86_64", "images"], &env).expect("s");
        assert!(
            matches!(s.state, StateChoice::Dir(ref d) if d == &home.path().join(".vdkr/x86_64"))
        );
        let s = settings(Tool::Vdkr, &["-I", "web", "images"], &env).expect("s");
        assert!(matches!(s.state, StateChoice::Dir(ref d) if d == &home.path().join(".vdkr/web")));
        assert!(settings(Tool::Vdkr, &["-I", "../x", "images"], &env).is_err());
        let env2 = [
            ("HOME", h.clone()),
            ("VDKR_STATE_DIR", "/srv/v".to_string()),
            ("VDKR_VERBOSE", "true".to_string()),
        ];
        let s = settings(Tool::Vdkr, &["-a", "aarch64", "images"], &env2).expect("s");
        assert!(matches!(s.state, StateChoice::Dir(ref d) if d == Path::new("/srv/v/aarch64")));
        assert!(s.verbose);
        let env3 = [("HOME", h), ("VDKR_STATELESS", "true".to_string())];
        let s = settings(Tool::Vdkr, &["images"], &env3).expect("s");
        assert!(matches!(s.state, StateChoice::Stateless));
    }

    #[test]
    fn auto_daemon_defaults_on_and_builds_switch_it_off() {
        let home = tempfile::tempdir().expect("tempdir");
        let h = home.path().display().to_string();
        let env = [("HOME", h.clone())];
        let s = settings(Tool::Vdkr, &["-a", "x86_64", "images"], &env).expect("s");
        assert!(s.auto_daemon, "upstream's default");
        assert!(!s.state_named);
        let s = settings(Tool::Vdkr, &["--no-daemon", "images"], &env).expect("s");
        assert!(!s.auto_daemon);
        let off = [("HOME", h.clone()), ("VDKR_AUTO_DAEMON", "false".into())];
        assert!(
            !settings(Tool::Vdkr, &["images"], &off)
                .expect("s")
                .auto_daemon
        );
        let other_tool = [("HOME", h.clone()), ("VPDMN_AUTO_DAEMON", "false".into())];
        assert!(
            settings(Tool::Vdkr, &["images"], &other_tool)
                .expect("s")
                .auto_daemon
        );
        let bad = [("HOME", h.clone()), ("VDKR_AUTO_DAEMON", "maybe".into())];
        let err = settings(Tool::Vdkr, &["images"], &bad).expect_err("bad value");
        assert!(err.to_string().contains("VDKR_AUTO_DAEMON"), "{err}");
        let cfg = home.path().join(".config/vdkr");
        std::fs::create_dir_all(&cfg).expect("mkdir");
        std::fs::write(cfg.join("config"), "auto-daemon=false\n").expect("write");
        assert!(
            !settings(Tool::Vdkr, &["images"], &env)
                .expect("s")
                .auto_daemon
        );
        let on = [("HOME", h), ("VDKR_AUTO_DAEMON", "true".into())];
        assert!(
            settings(Tool::Vdkr, &["images"], &on)
                .expect("s")
                .auto_daemon,
            "env beats config"
        );
        let s = settings(Tool::Vdkr, &["--state-dir", "/srv/s", "images"], &env).expect("s");
        assert!(s.state_named);
    }

    #[test]
    fn registry_from_flags_config_and_env() {
        let home = tempfile::tempdir().expect("tempdir");
        let h = home.path().display().to_string();
        let cfg = home.path().join(".config/vpdmn");
        std::fs::create_dir_all(&cfg).expect("mkdir");
        std::fs::write(cfg.join("config"), "registry=10.0.2.2:5000/yocto\n").expect("write");
        let env = [
            ("HOME", h.clone()),
            ("VPDMN_CONFIG", "/a/auth.json".to_string()),
        ];
        let s = settings(Tool::Vpdmn, &["images"], &env).expect("s");
        assert_eq!(
            s.guest.registry.default.as_deref(),
            Some("10.0.2.2:5000/yocto")
        );
        assert_eq!(
            s.guest.registry.auth_file.as_deref(),
            Some(Path::new("/a/auth.json"))
        );
        let s = settings(Tool::Vpdmn, &["--no-registry", "images"], &env).expect("s");
        assert_eq!(s.guest.registry.default, None);
        let s = settings(
            Tool::Vpdmn,
            &[
                "--insecure-registry",
                "a:1",
                "--insecure-registry",
                "b:2",
                "images",
            ],
            &env,
        )
        .expect("s");
        assert_eq!(s.guest.registry.insecure, ["a:1", "b:2"]);
        assert!(settings(Tool::Vpdmn, &["--registry-pass", "x", "images"], &env).is_err());
    }
}
