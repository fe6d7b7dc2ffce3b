//! `cardgate tls init`: the local CA and the certificate for wss://.

use crate::config::Config;
use crate::tls::{TlsFiles, init, trust_instructions};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum TlsCommand {
    /// Create a local CA and a certificate for 127.0.0.1, ::1 and localhost
    /// (in the data directory, or where tls.cert / tls.key say); print how to trust it.
    Init {
        /// Replace existing files (the new CA must be trusted again).
        #[arg(long)]
        force: bool,
        /// Write ca.pem, cert.pem and key.pem into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

pub(super) fn run(command: TlsCommand, config: &Config) -> ExitCode {
    match command {
        TlsCommand::Init { force, dir } => {
            let files = match dir {
                Some(d) => TlsFiles::in_dir(&d),
                None => {
                    let ca = config
                        .tls
                        .cert
                        .parent()
                        .map(|d| d.join("ca.pem"))
                        .unwrap_or_else(|| PathBuf::from("ca.pem"));
                    TlsFiles {
                        ca,
                        cert: config.tls.cert.clone(),
                        key: config.tls.key.clone(),
                    }
                }
            };
            match init(&files, force) {
                Ok(g) => {
                    println!("CA certificate:     {}", g.files.ca.display());
                    println!("server certificate: {}", g.files.cert.display());
                    println!("private key:        {} (mode 0600)", g.files.key.display());
                    println!("valid until:        {}", g.not_after.date());
                    println!();
                    print!("{}", trust_instructions(&g.files.ca));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
