//! Man pages and shell completions, generated from the clap definitions so they cannot drift
//! from what the parser accepts.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use super::args::EngineArgs;
use super::project_args::{ProjectArgs, PROGRAMS};

/// The clap command of one of our programs, named as it is installed.
fn command_for(program: &str) -> clap::Command {
    match program {
        "vcontainer" => ProjectArgs::command(),
        name => EngineArgs::command()
            .name(name.to_string())
            .bin_name(name.to_string()),
    }
}

/// Writes `PROGRAM.1` and `PROGRAM-SUBCOMMAND.1` pages into `dir`.
pub fn write_man_pages(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for program in PROGRAMS {
        let cmd = command_for(program);
        written.push(render(&cmd, program, dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{program}-{}", sub.get_name());
            let sub = sub.clone().name(name.clone());
            written.push(render(&sub, &name, dir)?);
        }
    }
    Ok(written)
}

fn render(cmd: &clap::Command, name: &str, dir: &Path) -> Result<std::path::PathBuf> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Prints the completion script of `program` for `shell` to stdout.
pub fn print_completions(shell: Shell, program: &str) {
    let mut cmd = command_for(program);
    clap_complete::generate(shell, &mut cmd, program, &mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_every_program_and_subcommand() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pages = write_man_pages(dir.path()).expect("pages");
        for want in [
            "vdkr.1",
            "vpdmn-memres.1",
            "vdkr-vimport.1",
            "vcontainer-bench.1",
        ] {
            assert!(
                pages.iter().any(|p| p.ends_with(want)),
                "{want} missing from {pages:?}"
            );
        }
        let vdkr = std::fs::read_to_string(dir.path().join("vdkr.1")).expect("read");
        assert!(vdkr.contains("insecure\\-registry"), "options documented");
    }

    #[test]
    fn completions_parse_for_every_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command_for("vdkr"), "vdkr", &mut out);
            let text = String::from_utf8(out).expect("utf8");
            assert!(
                text.contains("memres"),
                "{shell}: {}",
                &text[..200.min(text.len())]
            );
        }
    }
}
