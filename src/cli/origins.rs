//! `cardgate origins list|allow|revoke`: the web origins allowed to use the
//! daemon. A running daemon picks changes up at the next handshake or request.

use crate::security::origin::{Origin, OriginsFile};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct OriginsArgs {
    /// The allowlist file (default: origins.toml in the user's config directory).
    #[arg(long, value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    #[command(subcommand)]
    command: OriginsCommand,
}

#[derive(Subcommand)]
enum OriginsCommand {
    /// Show the allowed origins.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Allow a web origin, e.g. https://bank.example
    Allow { origin: String },
    /// Revoke an allowed origin (its open connections are closed), or forget
    /// a denial so the site is asked about again.
    Revoke { origin: String },
}

pub fn run(args: OriginsArgs, config: &crate::config::Config) -> ExitCode {
    let Some(path) = args.file.or_else(|| config.origins_file.clone()) else {
        eprintln!("error: no allowlist file (origins.file is empty in config.toml); use --file");
        return ExitCode::FAILURE;
    };
    let mut file = match OriginsFile::load(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let normalised = |text: &str| Origin::parse(text).map(|o| o.to_string());
    match args.command {
        OriginsCommand::List { json } => {
            if json {
                let v = serde_json::json!({
                    "file": path,
                    "allowed": file.allowed,
                    "denied": file.denied,
                    "allowNullOrigin": file.allow_null_origin,
                    "allowMissingOrigin": file.allow_missing_origin,
                });
                println!("{v}");
            } else if file.allowed.is_empty() && file.denied.is_empty() {
                println!("No web origin is allowed ({}).", path.display());
            } else {
                for o in &file.allowed {
                    println!("allowed  {o}");
                }
                for o in &file.denied {
                    println!("denied   {o}");
                }
            }
            ExitCode::SUCCESS
        }
        OriginsCommand::Allow { origin } => match normalised(&origin) {
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Ok(o) => {
                file.denied.retain(|d| d != &o);
                if !file.allowed.contains(&o) {
                    file.allowed.push(o.clone());
                }
                save(&file, &path, &format!("allowed {o}"))
            }
        },
        OriginsCommand::Revoke { origin } => {
            let target = normalised(&origin).unwrap_or(origin);
            let before = file.allowed.len() + file.denied.len();
            let keep = |o: &String| normalised(o).map(|n| n != target).unwrap_or(true);
            file.allowed.retain(keep);
            file.denied.retain(keep);
            if file.allowed.len() + file.denied.len() == before {
                eprintln!("{target} was not allowed");
                return ExitCode::FAILURE;
            }
            save(&file, &path, &format!("revoked {target}"))
        }
    }
}

fn save(file: &OriginsFile, path: &std::path::Path, done: &str) -> ExitCode {
    match file.save(path) {
        Ok(()) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
