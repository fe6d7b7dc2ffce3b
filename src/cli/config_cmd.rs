//! `cardgate config show`: every setting's effective value and where it
//! came from (command line, environment, user file, system file, default).

use crate::config::{Config, Source};
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum ConfigCommand {
    /// Print the effective configuration as TOML, each value commented with its source.
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the paths of the configuration files.
    Path,
}

pub(super) fn run(command: ConfigCommand, config: &Config) -> ExitCode {
    match command {
        ConfigCommand::Show { json } => {
            if json {
                println!("{}", to_json(config));
            } else {
                print!("{}", to_text(config));
            }
        }
        ConfigCommand::Path => {
            for (source, exists) in &config.files {
                let (kind, path) = match source {
                    Source::System(p) => ("system", p),
                    Source::User(p) => ("user", p),
                    _ => continue,
                };
                let state = if *exists { "" } else { " (absent)" };
                println!("{kind}: {}{state}", path.display());
            }
        }
    }
    ExitCode::SUCCESS
}

fn source_json(s: &Source) -> Value {
    match s {
        Source::Default => json!({ "kind": "default" }),
        Source::System(p) | Source::User(p) => json!({ "kind": s.kind(), "file": p }),
        Source::Env(v) => json!({ "kind": s.kind(), "name": v }),
        Source::Flag(v) => json!({ "kind": s.kind(), "name": v }),
    }
}

fn to_json(config: &Config) -> Value {
    let mut settings = serde_json::Map::new();
    for (key, value) in config.values() {
        let source = config.source(key).cloned().unwrap_or(Source::Default);
        settings.insert(
            key.to_string(),
            json!({ "value": value, "source": source_json(&source) }),
        );
    }
    let files: Vec<Value> = config
        .files
        .iter()
        .map(|(s, exists)| {
            let mut v = source_json(s);
            v["exists"] = json!(exists);
            v
        })
        .collect();
    json!({ "files": files, "settings": settings })
}

/// Valid TOML: a file made of it reproduces the effective values.
fn to_text(config: &Config) -> String {
    let mut out = String::from("# cardgate effective configuration\n");
    for (source, exists) in &config.files {
        let state = if *exists { "" } else { " (absent)" };
        out.push_str(&format!("# {source}{state}\n"));
    }
    let mut section = "";
    for (key, value) in config.values() {
        let (sec, name) = key.split_once('.').unwrap_or(("", key));
        if sec != section {
            out.push_str(&format!("\n[{sec}]\n"));
            section = sec;
        }
        let source = config.source(key).cloned().unwrap_or(Source::Default);
        let line = format!("{name} = {value}");
        out.push_str(&format!("{line:<52} # {source}\n"));
    }
    out
}
