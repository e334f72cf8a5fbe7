//! `--blob-dir`: which guest image a booting `vcontainer` command uses, shared by every such
//! command (`vdkr`/`vpdmn` have it among their global options, see `settings.rs`).

use std::path::PathBuf;

use crate::guest::boot_image::{offline_value, ImageChoice, OFFLINE_ENV};
use crate::state::Tool;

use super::settings::Environment;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ImageArgs {
    /// Boot the prebuilt guest image in DIR/ARCH/ (as `vcontainer image build --out DIR`
    /// writes) instead of the cached one. Default: $VCONTAINER_BLOB_DIR, then the engine's
    /// $VDKR_BLOB_DIR or $VPDMN_BLOB_DIR.
    #[arg(long, value_name = "DIR")]
    pub blob_dir: Option<PathBuf>,
    /// Never touch the network for guest images (also $VCONTAINER_OFFLINE=1): use the cache or
    /// --blob-dir, else fail at once naming what is missing.
    #[arg(long)]
    pub offline: bool,
}

impl ImageArgs {
    /// The choice for a command that runs the engines of `tools`: the option, then
    /// `$VCONTAINER_BLOB_DIR`, then each tool's own variable in turn.
    pub fn choice(&self, tools: &[Tool], env: &dyn Environment) -> ImageChoice {
        let blob_dir = self.blob_dir.clone().or_else(|| {
            std::iter::once("VCONTAINER_BLOB_DIR".to_string())
                .chain(tools.iter().map(|t| format!("{}_BLOB_DIR", t.env_prefix())))
                .find_map(|v| env.var(&v))
                .map(PathBuf::from)
        });
        let offline = self.offline || offline_value(env.var(OFFLINE_ENV).as_deref());
        ImageChoice { blob_dir, offline }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Env(HashMap<&'static str, &'static str>);
    impl Environment for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    #[test]
    fn the_option_wins_then_the_project_then_the_engine_variable() {
        let env = Env(HashMap::from([
            ("VPDMN_BLOB_DIR", "/p"),
            ("VDKR_BLOB_DIR", "/d"),
        ]));
        let none = ImageArgs::default();
        assert_eq!(
            none.choice(&[Tool::Vpdmn], &env).blob_dir,
            Some(PathBuf::from("/p"))
        );
        assert_eq!(
            none.choice(&[Tool::Vdkr, Tool::Vpdmn], &env).blob_dir,
            Some(PathBuf::from("/d"))
        );
        let flag = ImageArgs {
            blob_dir: Some("/f".into()),
            offline: false,
        };
        assert_eq!(
            flag.choice(&[Tool::Vdkr], &env).blob_dir,
            Some(PathBuf::from("/f"))
        );
        let env = Env(HashMap::from([
            ("VCONTAINER_BLOB_DIR", "/v"),
            ("VDKR_BLOB_DIR", "/d"),
        ]));
        assert_eq!(
            none.choice(&[Tool::Vdkr], &env).blob_dir,
            Some(PathBuf::from("/v"))
        );
        assert_eq!(none.choice(&[], &Env(HashMap::new())).blob_dir, None);
    }
}
