//! `cardgate vcard`: runs a virtual card as a vpcd client.
//!
//! Initial PIN values come only from the TOML file (`--config`), never from
//! the command line. Flags override the file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use super::VirtualCard;
use super::config::{CardConfig, Profile, Quirk};
use super::vpcd;

/// Arguments of `cardgate vcard`.
#[derive(Debug, Clone, clap::Args)]
pub struct VcardArgs {
    /// Card model: piv, openpgp, yubikey, esteid, beid, pkcs15, iso
    /// (default: from --config, else piv).
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// TCP port of vpcd (35963 = "Virtual PCD 00 00", 35964 = "Virtual PCD 00 01").
    #[arg(long, default_value_t = vpcd::DEFAULT_PORT)]
    pub port: u16,
    /// Host where vpcd listens.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Card configuration file (TOML), the only place for initial PIN values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Tries of every retry counter (1..=15).
    #[arg(long, value_name = "N")]
    pub max_tries: Option<u8>,
    /// The user PIN is not initialized (6984 until RESET RETRY COUNTER).
    #[arg(long)]
    pub not_initialized: bool,
    /// The user PIN must be changed before use (VERIFY answers 6985).
    #[arg(long)]
    pub must_change: bool,
    /// The user PIN starts blocked.
    #[arg(long)]
    pub blocked: bool,
    /// Imitate a real card's quirk (repeatable).
    #[arg(long = "quirk", value_enum, value_name = "NAME")]
    pub quirks: Vec<Quirk>,
    /// Keep the retry counters in FILE (lines `NAME TRIES SPENT`, no PIN
    /// values): read at start, rewritten whenever they change, so they
    /// survive the process like a real card's survive its removal.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Testing: wait MS milliseconds before answering each command APDU.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub delay_ms: u64,
}

impl VcardArgs {
    /// The card configuration these arguments describe.
    pub fn card_config(&self) -> Result<CardConfig, super::CardConfigError> {
        let mut config = match &self.config {
            Some(path) => CardConfig::load(path)?,
            None => CardConfig::for_profile(self.profile.unwrap_or(Profile::Piv)),
        };
        if let Some(profile) = self.profile {
            config.profile = profile;
        }
        if let Some(n) = self.max_tries {
            config.max_tries = n;
        }
        config.pin_not_initialized |= self.not_initialized;
        config.pin_must_change |= self.must_change;
        config.start_blocked |= self.blocked;
        for &quirk in &self.quirks {
            config = config.with_quirk(quirk);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs the virtual card until the process is stopped.
pub fn run(args: VcardArgs) -> ExitCode {
    let config = match args.card_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cardgate vcard: {e}");
            return ExitCode::from(2);
        }
    };
    let mut card = VirtualCard::new(config);
    if let Some(path) = &args.state {
        match std::fs::read_to_string(path) {
            Ok(saved) => card.restore_counters(&saved),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!("cardgate vcard: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
        if let Err(e) = vpcd::save_counters(path, &card.counters()) {
            eprintln!("cardgate vcard: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let options = vpcd::Options {
        state: args.state.clone(),
        response_delay: std::time::Duration::from_millis(args.delay_ms),
        ..vpcd::Options::default()
    };
    let name = card.profile().name();
    let stop = AtomicBool::new(false);
    let mut waiting_reported = false;
    vpcd::run_with(
        card,
        &args.host,
        args.port,
        &stop,
        &options,
        |event| match event {
            vpcd::Event::Connected { addr } => {
                waiting_reported = false;
                eprintln!("virtual {name} card connected to {addr}");
            }
            vpcd::Event::Disconnected { error } => match error {
                Some(e) => eprintln!("virtual {name} card disconnected: {e}"),
                None => eprintln!("virtual {name} card disconnected"),
            },
            vpcd::Event::ConnectFailed { error, .. } => {
                if !waiting_reported {
                    waiting_reported = true;
                    eprintln!(
                        "waiting for vpcd at {}:{} ({error}); is pcscd with vsmartcard-vpcd running?",
                        args.host, args.port
                    );
                }
            }
        },
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        vcard: VcardArgs,
    }

    fn parse(args: &[&str]) -> Result<VcardArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("vcard").chain(args.iter().copied())).map(|c| c.vcard)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.port, 35963);
        assert_eq!(a.host, "127.0.0.1");
        let c = a.card_config().unwrap();
        assert_eq!(c.profile, Profile::Piv);
        assert_eq!(c.max_tries, 3);
        assert!(c.quirks.is_empty());
    }

    #[test]
    fn flags_build_the_config() {
        let a = parse(&[
            "--profile",
            "openpgp",
            "--port",
            "35964",
            "--max-tries",
            "5",
            "--not-initialized",
            "--must-change",
            "--blocked",
            "--quirk",
            "blocked_sw_63c0",
            "--quirk",
            "empty-verify-spends-try",
        ])
        .unwrap();
        assert_eq!(a.port, 35964);
        let c = a.card_config().unwrap();
        assert_eq!(c.profile, Profile::OpenPgp);
        assert_eq!(c.max_tries, 5);
        assert!(c.pin_not_initialized && c.pin_must_change && c.start_blocked);
        assert!(c.has_quirk(Quirk::BlockedSw63c0));
        assert!(c.has_quirk(Quirk::EmptyVerifySpendsTry));
        assert!(!c.has_quirk(Quirk::ChangeWrongOld6300));
    }

    #[test]
    fn every_profile_by_name() {
        for profile in Profile::ALL {
            let name = clap::ValueEnum::to_possible_value(&profile)
                .unwrap()
                .get_name()
                .to_string();
            let c = parse(&["--profile", &name]).unwrap().card_config().unwrap();
            assert_eq!(c.profile, profile, "{name}");
        }
        for name in ["yubikey", "esteid", "beid", "pkcs15", "iso"] {
            assert!(parse(&["--profile", name]).is_ok(), "{name}");
        }
        let c = parse(&[
            "--profile",
            "iso",
            "--quirk",
            "wrong_verify_6300",
            "--quirk",
            "empty-verify-counts",
        ])
        .unwrap()
        .card_config()
        .unwrap();
        assert!(c.has_quirk(Quirk::WrongVerify6300) && c.has_quirk(Quirk::EmptyVerifySpendsTry));
        assert!(
            parse(&["--profile", "esteid", "--must-change"])
                .unwrap()
                .card_config()
                .is_err()
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["--profile", "gids"]).is_err());
        assert!(parse(&["--quirk", "nope"]).is_err());
        assert!(parse(&["--pin", "123456"]).is_err());
        assert!(parse(&["--max-tries", "0"]).unwrap().card_config().is_err());
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.toml");
        std::fs::write(
            &path,
            "profile = \"openpgp\"\nmax_tries = 4\npw1 = \"abcdef\"\nquirks = [\"change_wrong_old_6300\"]\n",
        )
        .unwrap();
        let a = parse(&["--config", path.to_str().unwrap(), "--max-tries", "6"]).unwrap();
        let c = a.card_config().unwrap();
        assert_eq!(c.profile, Profile::OpenPgp);
        assert_eq!(c.max_tries, 6);
        assert_eq!(
            c.pw1.as_ref().map(|s| s.expose().to_vec()),
            Some(b"abcdef".to_vec())
        );
        assert!(c.has_quirk(Quirk::ChangeWrongOld6300));

        std::fs::write(&path, "profile = \"piv\"\ntries = 4\n").unwrap();
        let e = parse(&["--config", path.to_str().unwrap()])
            .unwrap()
            .card_config()
            .unwrap_err();
        assert!(e.to_string().contains("tries"), "{e}");
    }
}
