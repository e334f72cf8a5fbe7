//! `vcontainer units`: its arguments and entry point, over the `bundling::units` library.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::bundling::spec::{self, Policy, Runtime};
use crate::bundling::units::{
    plan_units, render_units, service_name, systemd_restart, write_units,
};

/// Command-line arguments of `vcontainer units`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The target root filesystem (an existing directory).
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// Where the OCI directories are (DEPLOY_DIR_IMAGE).
    #[arg(long, value_name = "DIR")]
    pub deploy_dir: PathBuf,
    #[command(flatten)]
    pub input: super::spec::SpecInput,
    /// Custom unit (docker) or Quadlet file (podman) for the entry whose first field is NAME
    /// (upstream: CONTAINER_SERVICE_FILE[NAME]). Repeatable.
    #[arg(long = "service-file", value_name = "NAME=PATH", value_parser = parse_service_file)]
    pub service_files: Vec<(String, PathBuf)>,
    /// Print what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

fn parse_service_file(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("'{s}': expected NAME=PATH")),
    }
}

#[derive(Serialize)]
struct UnitReport {
    entry: String,
    runtime: Runtime,
    policy: Policy,
    restart: &'static str,
    image: String,
    service: String,
    files: Vec<PathBuf>,
}

pub async fn run(args: Args, reporter: &crate::util::progress::Reporter) -> anyhow::Result<()> {
    let containers = args.input.parse()?;
    let mut custom: HashMap<String, PathBuf> = HashMap::new();
    for (name, path) in &args.service_files {
        if custom.insert(name.clone(), path.clone()).is_some() {
            anyhow::bail!("--service-file given twice for '{name}'");
        }
    }
    // Only entries with a policy get units, so only those need their OCI dir; entries named
    // by a service file are resolved too, so that a service file for an entry without a
    // policy is reported as such.
    let wanted: Vec<_> = containers
        .iter()
        .filter(|c| c.policy.is_some() || custom.contains_key(&c.name))
        .cloned()
        .collect();
    let resolved = spec::resolve_all(&wanted, &args.deploy_dir)?;
    let files = plan_units(&resolved, &custom)?;
    let written = if args.dry_run {
        files
            .iter()
            .map(|f| args.rootfs.join(&f.rel_path))
            .collect()
    } else {
        write_units(&args.rootfs, &files)?
    };

    let reports: Vec<UnitReport> = resolved
        .iter()
        .filter_map(|c| {
            let policy = c.container.policy?;
            let mine = render_units(c, policy);
            Some(UnitReport {
                entry: c.container.entry.clone(),
                runtime: c.container.runtime,
                policy,
                restart: systemd_restart(policy),
                image: c.reference(),
                service: service_name(c),
                files: mine.iter().map(|f| args.rootfs.join(&f.rel_path)).collect(),
            })
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dry_run": args.dry_run,
                "units": reports,
                "written": if args.dry_run { Vec::new() } else { written },
            }))?
        );
        return Ok(());
    }
    if reports.is_empty() {
        reporter.notice("no entry has an autostart policy; no units written");
    }
    for r in &reports {
        for f in &r.files {
            println!(
                "{}{} ({} {}, Restart={})",
                if args.dry_run { "would write " } else { "" },
                f.display(),
                r.runtime,
                r.image,
                r.restart
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_file_argument() {
        assert_eq!(
            parse_service_file("app=/x/y.service"),
            Ok(("app".into(), PathBuf::from("/x/y.service")))
        );
        for bad in ["app", "=x", "app=", ""] {
            assert!(parse_service_file(bad).is_err(), "{bad}");
        }
    }
}
