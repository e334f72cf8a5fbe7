//! `vconfig [KEY [VALUE | --reset]]`: show or change the configuration file.

use std::io::IsTerminal;

use anyhow::{bail, Result};

use super::settings::Settings;
use crate::cli::config::{key, KEYS};

pub fn vconfig(
    settings: &Settings,
    key_name: Option<&str>,
    value: Option<&str>,
    reset: bool,
    json: bool,
) -> Result<i32> {
    let mut config = settings.config.clone();
    let tool = settings.tool.name();
    match (key_name, value, reset) {
        (None, _, _) => {
            if json {
                let map: serde_json::Map<String, serde_json::Value> = KEYS
                    .iter()
                    .map(|k| {
                        let v = config.get(k.name).unwrap_or(k.default);
                        (k.name.to_string(), serde_json::Value::String(v.to_string()))
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&map)?);
                return Ok(0);
            }
            let colour = std::io::stdout().is_terminal();
            println!("{tool} configuration ({}):", config.file().display());
            println!();
            for k in KEYS {
                match config.get(k.name) {
                    Some(v) => println!("  {} = {v}", k.name),
                    None if colour => {
                        println!(
                            "  {} = \x1b[2m{} (default)\x1b[0m",
                            k.name,
                            shown_default(k.default)
                        )
                    }
                    None => println!("  {} = {} (default)", k.name, shown_default(k.default)),
                }
            }
            println!();
            println!("Config directory: {}", config.dir().display());
            Ok(0)
        }
        (Some(name), None, false) => {
            let k = key(name)?;
            let v = config.get(k.name).unwrap_or(k.default);
            if json {
                println!("{}", serde_json::json!({ k.name: v }));
            } else {
                println!("{v}");
            }
            Ok(0)
        }
        (Some(name), None, true) => {
            let k = config.reset(name)?;
            println!("Reset {} to default: {}", k.name, shown_default(k.default));
            Ok(0)
        }
        (Some(name), Some(v), false) => {
            let stored = config.set(name, v)?;
            println!("Set {name} = {stored}");
            Ok(0)
        }
        (Some(_), Some(_), true) => bail!("give a value or --reset, not both"),
    }
}

fn shown_default(d: &str) -> &str {
    if d.is_empty() {
        "(none)"
    } else {
        d
    }
}
