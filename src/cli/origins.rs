//! `cardgate origins list|allow|revoke|unlock`: the web origins allowed to
//! use the daemon, and the sites locked after too many wrong PINs. A running
//! daemon picks changes up at the next handshake or request (an unlock: at
//! the site's next PIN value).

use crate::security::lockout::{Lock, Lockout, LockoutFile, Now};
use crate::security::origin::{Origin, OriginsFile};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct OriginsArgs {
    /// The allowlist file (default: origins.toml in the user's config directory).
    #[arg(long, value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    #[command(subcommand)]
    command: OriginsCommand,
}

#[derive(Subcommand)]
enum OriginsCommand {
    /// Show the allowed origins, and the sites locked after too many wrong PINs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Allow a web origin, e.g. https://bank.example
    Allow { origin: String },
    /// Revoke an allowed origin (its open connections are closed), or forget
    /// a denial so the site is asked about again.
    Revoke { origin: String },
    /// Lift the lock of a site locked after too many wrong PINs (until
    /// unlocked, or for a while), and forget its wrong values.
    Unlock { origin: String },
}

pub(super) fn run(args: OriginsArgs, config: &crate::config::Config) -> ExitCode {
    if let OriginsCommand::Unlock { origin } = &args.command {
        return unlock(origin, config);
    }
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
            let locked = match locked_sites(config) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if json {
                let locked: Vec<_> = locked
                    .iter()
                    .map(|(site, strikes, lock)| {
                        let mut v = serde_json::json!({ "origin": site, "strikes": strikes });
                        match lock {
                            Lock::UntilUnlocked => v["lock"] = "UNTIL_UNLOCKED".into(),
                            Lock::For(d) => {
                                v["lock"] = "FOR".into();
                                v["retryAfter"] = d.as_secs().max(1).into();
                            }
                        }
                        v
                    })
                    .collect();
                let v = serde_json::json!({
                    "file": path,
                    "allowed": file.allowed,
                    "denied": file.denied,
                    "allowNullOrigin": file.allow_null_origin,
                    "allowMissingOrigin": file.allow_missing_origin,
                    "lockoutFile": config.limits.lockout_file,
                    "locked": locked,
                });
                println!("{v}");
            } else {
                if file.allowed.is_empty() && file.denied.is_empty() {
                    println!("No web origin is allowed ({}).", path.display());
                }
                for o in &file.allowed {
                    println!("allowed  {o}");
                }
                for o in &file.denied {
                    println!("denied   {o}");
                }
                for (site, _, lock) in &locked {
                    match lock {
                        Lock::UntilUnlocked => println!(
                            "locked   {site} until you unlock it: cardgate origins unlock {site}"
                        ),
                        Lock::For(d) => {
                            println!("locked   {site} for {} s more", d.as_secs().max(1))
                        }
                    }
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
        OriginsCommand::Unlock { .. } => unreachable!("handled above"),
    }
}

/// The sites locked now: origin, strikes, lock (none without a lockout file).
fn locked_sites(config: &crate::config::Config) -> Result<Vec<(String, u32, Lock)>, String> {
    let Some(path) = &config.limits.lockout_file else {
        return Ok(Vec::new());
    };
    LockoutFile::load(path)?;
    let lockout = Lockout::new(config.limits.lockout, Some(path.clone()));
    Ok(lockout
        .sites(Now::current())
        .into_iter()
        .filter_map(|(site, s)| s.lock.map(|l| (site, s.strikes, l)))
        .collect())
}

/// `origins unlock ORIGIN`: a running daemon sees it at the site's next value.
fn unlock(origin: &str, config: &crate::config::Config) -> ExitCode {
    let Some(path) = config.limits.lockout_file.clone() else {
        eprintln!(
            "error: no lockout file (limits.lockout_file is empty in config.toml): locks end with the daemon"
        );
        return ExitCode::FAILURE;
    };
    let file = match LockoutFile::load(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Normalised like `allow`; `null` and `(local tool)` as they are stored.
    let site = match Origin::parse(origin) {
        Ok(o) => o.to_string(),
        Err(_) if file.sites.contains_key(origin) => origin.to_string(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match Lockout::new(config.limits.lockout, Some(path)).unlock(&site) {
        Ok(true) => {
            println!("unlocked {site}");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("{site} is not locked");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
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
