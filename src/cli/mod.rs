//! The `cardgate` command line.

mod card;
mod config_cmd;
mod origins;
mod output;
mod policy;
mod prompt;
mod serve;
mod status;
mod systemd;
mod tls_cmd;

use crate::card::SoMethod;
use crate::error::Error;
use crate::pin::SoPath;
use crate::service::Service;
use crate::transport::Backend;
use clap::{Args, CommandFactory, Parser, Subcommand};
use prompt::{PinInput, PromptError};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "cardgate",
    version,
    about = "Smart-card PIN middleware: readers, PIN status, verify, change, unblock"
)]
struct Cli {
    /// More log output on stderr (-v debug, -vv trace). PIN values are never logged.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The user configuration file (default: config.toml in the user's
    /// config directory, or $CARDGATE_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Card(CardCommand),
    /// Run our virtual card (PIV or OpenPGP) in pcscd's vpcd virtual reader.
    Vcard(crate::vcard::cli::VcardArgs),
    /// PIN format policies: list, show a card's constraints, check files, test values.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Card profiles: list, show, check files, probe an unknown card (docs/cards.md).
    #[command(subcommand, name = "card")]
    Cards(card::CardsCommand),
    /// Run the daemon: WebSocket protocol, JavaScript client and demo page on 127.0.0.1.
    Serve(serve::ServeArgs),
    /// Manage the web origins allowed to use the daemon.
    Origins(origins::OriginsArgs),
    /// Run the daemon with simulated readers and cards (no hardware, no pcscd) and its demo page.
    Demo(serve::DemoArgs),
    /// Is a daemon running: its port, version, PC/SC service and readers.
    Status(status::StatusArgs),
    /// The configuration: `config show` prints every setting and where it came from.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// The systemd user service: install, uninstall, status.
    #[command(subcommand)]
    Service(systemd::ServiceCommand),
    /// wss:// support: `tls init` creates a local CA and a certificate for 127.0.0.1/localhost.
    #[command(subcommand)]
    Tls(tls_cmd::TlsCommand),
    /// Native-messaging host for the browser extension (started by the browser).
    NativeHost(crate::native::NativeHostArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page, or write one per command into a directory.
    Man {
        /// Write cardgate.1, cardgate-serve.1 … here instead of printing cardgate.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// Commands that work with readers and cards through PC/SC.
#[derive(Subcommand)]
enum CardCommand {
    /// List readers, cards and the PIN objects on them.
    Readers(ReadersArgs),
    /// Work with a card's PINs.
    #[command(subcommand)]
    Pin(PinCommand),
}

#[derive(Args)]
struct ReadersArgs {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Reader name, or a unique part of it (default: the first reader with a card).
    #[arg(long, short)]
    reader: Option<String>,
    /// PIN object id, as listed by `pin status` (default: the card's user PIN).
    #[arg(long = "pin", short = 'p', value_name = "ID")]
    pin: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EntryArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Read values from stdin, one per line, instead of a no-echo prompt.
    #[arg(long)]
    pin_stdin: bool,
}

#[derive(Subcommand)]
enum PinCommand {
    /// Show every PIN object's status (tries left, blocked, verified …) without spending a try.
    Status(TargetArgs),
    /// Verify (log in with) a PIN. With --so, the security officer PIN.
    Verify {
        #[command(flatten)]
        entry: EntryArgs,
        /// Verify the security officer PIN (OpenPGP admin PIN).
        #[arg(long)]
        so: bool,
    },
    /// Change a PIN: asks for the current and the new value.
    Change {
        #[command(flatten)]
        entry: EntryArgs,
    },
    /// Unblock / re-initialise a PIN with the PUK, admin PIN or reset code, setting a new value.
    Unblock {
        #[command(flatten)]
        entry: EntryArgs,
        /// Use the OpenPGP reset code instead of the admin PIN.
        #[arg(long)]
        reset_code: bool,
    },
    /// End the verified state of a PIN.
    Logout(TargetArgs),
}

/// Exit statuses, documented in README.md and docs/errors.md.
pub(crate) mod exit {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// Any other failure.
    pub(crate) const OTHER: u8 = 1;
    /// The command line itself was wrong.
    pub(crate) const USAGE: u8 = 2;
    /// A wrong PIN or SO credential, with tries left.
    pub(crate) const WRONG_PIN: u8 = 3;
    /// The PIN or its SO credential is blocked (or a wrong value just spent
    /// its last try).
    pub(crate) const BLOCKED: u8 = 4;
    /// No such reader, no card in it, or the card was removed.
    pub(crate) const NO_READER: u8 = 5;
    /// The PC/SC service is not running.
    pub(crate) const NO_SERVICE: u8 = 6;
    /// The card or the operation is not supported, or there is no such PIN
    /// object.
    pub(crate) const NOT_SUPPORTED: u8 = 7;
    /// A value of the wrong length or format or against the policy, or two
    /// entries of a new PIN that differ.
    pub(crate) const BAD_VALUE: u8 = 8;
    /// No terminal to prompt on, or stdin ended early.
    pub(crate) const INPUT: u8 = 9;
    /// A configuration file cannot be used (sysexits EX_CONFIG; the unit
    /// does not restart on it).
    pub(crate) const CONFIG: u8 = 78;
}

/// The exit status for an error.
pub(crate) fn exit_code(e: &Error) -> u8 {
    match e {
        // A wrong value that spent the last try: the PIN is blocked now.
        Error::PinIncorrect {
            remaining_tries: Some(0),
        }
        | Error::SoPinIncorrect {
            remaining_tries: Some(0),
        } => exit::BLOCKED,
        Error::PinIncorrect { .. } | Error::SoPinIncorrect { .. } => exit::WRONG_PIN,
        Error::PinBlocked | Error::SoPinBlocked => exit::BLOCKED,
        Error::ReaderNotFound(_) | Error::CardAbsent | Error::CardRemoved => exit::NO_READER,
        Error::NoPcscService => exit::NO_SERVICE,
        Error::CardNotSupported { .. }
        | Error::OperationNotSupported(_)
        | Error::PinNotFound(_) => exit::NOT_SUPPORTED,
        Error::PinLengthInvalid { .. }
        | Error::PinFormatInvalid
        | Error::PinMismatch
        | Error::ConstraintViolation { .. } => exit::BAD_VALUE,
        _ => exit::OTHER,
    }
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    // Commands that need no configuration.
    let command = match cli.command {
        Command::Vcard(args) => {
            crate::logging::init(cli.verbose);
            return crate::vcard::cli::run(args);
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cardgate",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => return man(dir),
        other => other,
    };
    // Sockets passed by systemd are taken before any thread starts.
    let inherited = match &command {
        Command::Serve(_) | Command::Demo(_) => match serve::take_inherited() {
            Ok(l) => l,
            Err(code) => return code,
        },
        _ => Vec::new(),
    };
    let mut overrides = match &command {
        Command::Serve(a) => a.overrides(),
        Command::Demo(a) => a.serve_args().overrides(),
        _ => crate::config::Overrides::default(),
    };
    overrides.log_level = crate::logging::verbosity(cli.verbose);
    overrides.user_file = cli.config.clone();
    let config = match crate::config::Config::load(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    crate::logging::init_with(&config.log_level);
    policy::use_config(&config);
    card::use_config(&config);
    match command {
        Command::Policy(command) => ExitCode::from(policy::run(command)),
        Command::Cards(command) => ExitCode::from(card::run(command)),
        Command::Serve(_) => serve::serve(&config, inherited),
        Command::Demo(args) => serve::demo(args, &config, inherited),
        Command::Origins(args) => origins::run(args, &config),
        Command::Status(args) => status::run(args, &config),
        Command::Config(c) => config_cmd::run(c, &config),
        Command::Service(c) => systemd::run(c),
        Command::Tls(c) => tls_cmd::run(c, &config),
        Command::NativeHost(args) => crate::native::run(args, &config, cli.config.as_deref()),
        Command::Card(command) => {
            let backend: Arc<dyn Backend> = Arc::new(crate::transport::pcsc::PcscBackend::new());
            ExitCode::from(run(
                &Service::with_policies(backend, policy::load())
                    .with_profiles(Arc::new(card::profiles())),
                command,
            ))
        }
        Command::Vcard(_) | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled above")
        }
    }
}

fn man(dir: Option<std::path::PathBuf>) -> ExitCode {
    let cmd = Cli::command();
    let result = match dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        Some(dir) => {
            std::fs::create_dir_all(&dir).and_then(|()| clap_mangen::generate_to(cmd, &dir))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(service: &Service, command: CardCommand) -> u8 {
    match command {
        CardCommand::Readers(a) => output::report(a.json, readers(service), output::print_readers),
        CardCommand::Pin(PinCommand::Status(t)) => {
            output::report(t.json, status(service, &t), output::print_status)
        }
        CardCommand::Pin(PinCommand::Verify { entry, so }) => {
            let json = entry.target.json;
            output::report_done(json, verify(service, entry, so), "PIN verified")
        }
        CardCommand::Pin(PinCommand::Change { entry }) => {
            let json = entry.target.json;
            output::report_done(json, change(service, entry), "PIN changed")
        }
        CardCommand::Pin(PinCommand::Unblock { entry, reset_code }) => {
            let json = entry.target.json;
            output::report_done(
                json,
                unblock(service, entry, reset_code),
                "PIN unblocked and set",
            )
        }
        CardCommand::Pin(PinCommand::Logout(t)) => {
            output::report_done(t.json, logout(service, &t), "logged out")
        }
    }
}

/// A failure of a CLI command: from the card, or from reading input.
pub(crate) enum CliError {
    /// The card or the PIN engine refused or failed.
    Card(Error),
    /// The PIN could not be read (prompt or stdin).
    Input(PromptError),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Card(e)
    }
}

impl From<PromptError> for CliError {
    fn from(e: PromptError) -> Self {
        CliError::Input(e)
    }
}

fn readers(service: &Service) -> Result<Vec<output::ReaderReport>, CliError> {
    let mut out = Vec::new();
    for r in service.readers()? {
        let token = match &r.atr {
            None => None,
            Some(_) => {
                let name = r.name.clone();
                Some(service.with_engine(&name, |e| Ok(e.token().clone())))
            }
        };
        out.push(output::ReaderReport::new(&r, token));
    }
    Ok(out)
}

fn status(service: &Service, t: &TargetArgs) -> Result<output::StatusReport, CliError> {
    let reader = service.resolve_reader(t.reader.as_deref())?;
    let pin = t.pin.clone();
    let name = reader.clone();
    let (token, pins) = service.with_engine(&reader, move |e| {
        let pins = match &pin {
            Some(id) => vec![e.status(id)?],
            None => e.statuses()?,
        };
        Ok((e.token().clone(), pins))
    })?;
    Ok(output::StatusReport::new(name, &token, pins))
}

/// The reader and PIN object a command targets, plus what the prompts need.
struct Resolved {
    reader: String,
    pin_id: String,
    label: String,
    so: Option<SoMethod>,
    reset_code: Option<SoMethod>,
}

fn resolve(service: &Service, t: &TargetArgs) -> Result<Resolved, CliError> {
    let reader = service.resolve_reader(t.reader.as_deref())?;
    let wanted = t.pin.clone();
    let pin = service.with_engine(&reader, move |e| {
        let token = e.token();
        match &wanted {
            Some(id) => token
                .pin(id)
                .cloned()
                .ok_or_else(|| Error::PinNotFound(id.clone())),
            None => Ok(token.default_pin().clone()),
        }
    })?;
    Ok(Resolved {
        reader,
        pin_id: pin.id.to_string(),
        label: pin.credential.label.clone(),
        so: pin.so,
        reset_code: pin.reset_code,
    })
}

fn verify(service: &Service, entry: EntryArgs, so: bool) -> Result<(), CliError> {
    let r = resolve(service, &entry.target)?;
    let label = if so {
        match &r.so {
            Some(SoMethod::VerifyThenReset(c)) => c.label.clone(),
            Some(SoMethod::CodeWithNewPin(c)) => {
                // Nothing would be checked now: the card only sees the PUK
                // together with a new PIN.
                return Err(Error::OperationNotSupported(format!(
                    "checking the {} on its own (use `cardgate pin unblock`)",
                    c.label
                ))
                .into());
            }
            None => {
                return Err(Error::OperationNotSupported(format!(
                    "security officer login for the {}",
                    r.label
                ))
                .into());
            }
        }
    } else {
        r.label.clone()
    };
    let mut input = PinInput::new(entry.pin_stdin);
    let value = input.read(&format!("{label}: "))?;
    let id = r.pin_id.clone();
    Ok(service.with_engine(&r.reader, move |e| e.login(&id, &value, so))?)
}

fn change(service: &Service, entry: EntryArgs) -> Result<(), CliError> {
    let r = resolve(service, &entry.target)?;
    let mut input = PinInput::new(entry.pin_stdin);
    let old = input.read(&format!("Current {}: ", r.label))?;
    let new = input.read_new(&r.label)?;
    let id = r.pin_id.clone();
    Ok(service.with_engine(&r.reader, move |e| e.change(&id, &old, &new))?)
}

fn unblock(service: &Service, entry: EntryArgs, reset_code: bool) -> Result<(), CliError> {
    let r = resolve(service, &entry.target)?;
    let (method, path) = if reset_code {
        (r.reset_code.as_ref(), SoPath::ResetCode)
    } else {
        (r.so.as_ref(), SoPath::Default)
    };
    let Some(method) = method else {
        let what = if reset_code {
            "a reset code"
        } else {
            "unblocking"
        };
        return Err(Error::OperationNotSupported(format!("{what} for the {}", r.label)).into());
    };
    let mut input = PinInput::new(entry.pin_stdin);
    let code = input.read(&format!("{}: ", method.credential().label))?;
    let new = input.read_new(&r.label)?;
    let id = r.pin_id.clone();
    // SO login and init in one job: the code never outlives the operation.
    Ok(service.with_engine(&r.reader, move |e| {
        let result = e
            .login_so(&id, &code, path)
            .and_then(|()| e.init(&id, &new));
        // Never leave an admin PIN verified on the card once we are done.
        let _ = e.logout(&id);
        result
    })?)
}

fn logout(service: &Service, t: &TargetArgs) -> Result<(), CliError> {
    let r = resolve(service, t)?;
    let id = r.pin_id.clone();
    Ok(service.with_engine(&r.reader, move |e| e.logout(&id))?)
}
