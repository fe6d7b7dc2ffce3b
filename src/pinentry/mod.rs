//! The daemon's own PIN dialog, through `pinentry` — the Assuan-protocol
//! program gpg-agent uses (pinentry-gnome3, -qt, -gtk, -curses, -tty …).
//! With it a page can ask for a PIN operation without ever seeing the PIN.
//!
//! Assuan in short: the client writes command lines (`SETDESC text`,
//! `GETPIN`, `CONFIRM`, `BYE`), the program answers `OK`, `ERR code text`,
//! or data lines `D text` before `OK`. Text is percent-escaped (`%`, CR, LF).

use crate::secret::Secret;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long the user has to answer, unless configured otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// gpg-error codes pinentry uses (source 5 = pinentry, in the high byte).
const GPG_ERR_TIMEOUT: u32 = 62;
const GPG_ERR_CANCELED: u32 = 99;
const GPG_ERR_NOT_CONFIRMED: u32 = 114;

/// Programs tried, in order, when none is configured (as gpg-agent does).
const KNOWN_PROGRAMS: [&str; 7] = [
    "pinentry-gnome3",
    "pinentry-qt",
    "pinentry-gtk-2",
    "pinentry-gtk",
    "pinentry-curses",
    "pinentry-tty",
    "pinentry",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why a PIN dialog gave no value.
pub(crate) enum DialogError {
    #[error("no PIN dialog program (pinentry) is available: {0}")]
    /// No pinentry program could be found or run.
    Unavailable(String),
    #[error("the user cancelled the PIN dialog")]
    /// The user cancelled.
    Cancelled,
    #[error("the PIN dialog timed out")]
    /// The user did not answer in time.
    Timeout,
    #[error("the PIN dialog failed: {0}")]
    /// The program failed, or answered with an error.
    Failed(String),
}

impl From<DialogError> for crate::error::Error {
    fn from(e: DialogError) -> Self {
        use crate::error::Error;
        match e {
            DialogError::Unavailable(why) => Error::PinDialogUnavailable(why),
            DialogError::Cancelled => Error::PinEntryCancelled,
            DialogError::Timeout => Error::PinEntryTimeout,
            DialogError::Failed(why) => Error::PinDialogUnavailable(why),
        }
    }
}

/// What a PIN dialog shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct PinPrompt {
    /// The window title.
    pub title: String,
    /// The long text: which PIN, which card, which site, tries left.
    pub description: String,
    /// The label next to the entry field, e.g. "PIN:".
    pub prompt: String,
    /// The previous attempt's error, shown prominently.
    pub error: Option<String>,
    /// Ask twice and compare (new PINs).
    pub repeat: bool,
}

/// The answer to a consent question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consent {
    /// Allow this connection only; ask again next time.
    AllowOnce,
    /// Allow, and add the origin to the allowlist.
    AlwaysAllow,
    /// Refuse, and remember it: the origin is not asked about again.
    Deny,
}

/// Where to find pinentry and how long to wait for the user.
#[derive(Debug, Clone)]
pub struct PinDialog {
    program: Option<PathBuf>,
    /// How long the user has to answer.
    pub timeout: Duration,
}

impl PinDialog {
    /// Uses `program`, or finds one like gpg-agent does.
    pub fn new(program: Option<PathBuf>, timeout: Duration) -> Self {
        PinDialog { program, timeout }
    }

    /// The program that will be run, or why there is none.
    pub(crate) fn program(&self) -> Result<PathBuf, DialogError> {
        if let Some(p) = &self.program {
            return Ok(p.clone());
        }
        find_program().ok_or_else(|| {
            DialogError::Unavailable(
                "set PINENTRY_PROGRAM or install pinentry-gnome3, pinentry-qt or pinentry-curses"
                    .into(),
            )
        })
    }

    /// Asks for one value (two, compared, with `repeat`).
    pub(crate) fn get_pin(&self, p: &PinPrompt) -> Result<Secret, DialogError> {
        let mut commands = vec![
            format!("SETTITLE {}", escape(&p.title)),
            format!("SETDESC {}", escape(&p.description)),
            format!("SETPROMPT {}", escape(&p.prompt)),
            format!("SETTIMEOUT {}", self.timeout.as_secs()),
        ];
        if let Some(e) = &p.error {
            commands.push(format!("SETERROR {}", escape(e)));
        }
        if p.repeat {
            commands.push(format!("SETREPEAT {}", escape("Repeat:")));
            commands.push(format!(
                "SETREPEATERROR {}",
                escape("The values do not match")
            ));
        }
        let answer = self.run(&commands, "GETPIN")?;
        Ok(Secret::new(answer.to_vec()))
    }

    /// Asks a yes/no/always question: OK = allow once, "not OK" = always
    /// allow, cancel = deny.
    pub(crate) fn confirm(&self, title: &str, description: &str) -> Result<Consent, DialogError> {
        let commands = vec![
            format!("SETTITLE {}", escape(title)),
            format!("SETDESC {}", escape(description)),
            format!("SETOK {}", escape("Allow once")),
            format!("SETNOTOK {}", escape("Always allow")),
            format!("SETCANCEL {}", escape("Deny")),
            format!("SETTIMEOUT {}", self.timeout.as_secs()),
        ];
        match self.run(&commands, "CONFIRM") {
            Ok(_) => Ok(Consent::AllowOnce),
            Err(DialogError::Failed(code)) if code == "not confirmed" => Ok(Consent::AlwaysAllow),
            Err(DialogError::Cancelled) => Ok(Consent::Deny),
            Err(e) => Err(e),
        }
    }

    /// Asks a yes/no question: `true` only when the user chose `yes`
    /// (cancel, the other button or closing the dialog is no).
    pub(crate) fn ask(
        &self,
        title: &str,
        description: &str,
        yes: &str,
        no: &str,
    ) -> Result<bool, DialogError> {
        let commands = vec![
            format!("SETTITLE {}", escape(title)),
            format!("SETDESC {}", escape(description)),
            format!("SETOK {}", escape(yes)),
            format!("SETCANCEL {}", escape(no)),
            format!("SETTIMEOUT {}", self.timeout.as_secs()),
        ];
        match self.run(&commands, "CONFIRM") {
            Ok(_) => Ok(true),
            Err(DialogError::Cancelled) => Ok(false),
            Err(DialogError::Failed(code)) if code == "not confirmed" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs one dialog session: greeting, setup commands, the final command;
    /// returns its data. The whole session is bounded by the timeout (plus a
    /// little for the program to start): the program is killed after that.
    fn run(&self, setup: &[String], last: &str) -> Result<Zeroizing<Vec<u8>>, DialogError> {
        let program = self.program()?;
        let mut child = spawn(&program)?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| DialogError::Failed("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| DialogError::Failed("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        let setup = setup.to_vec();
        let last = last.to_string();
        let talker = std::thread::spawn(move || {
            let mut session = Session {
                input: stdin,
                output: BufReader::new(stdout),
            };
            let _ = tx.send(session.talk(&setup, &last));
        });
        let limit = self.timeout + Duration::from_secs(5);
        let result = match rx.recv_timeout(limit) {
            Ok(r) => r,
            Err(_) => Err(DialogError::Timeout),
        };
        // Whatever happened, the program goes away (by its pid).
        let _ = child.kill();
        let _ = child.wait();
        let _ = talker.join();
        result
    }
}

fn spawn(program: &Path) -> Result<Child, DialogError> {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd.spawn()
        .map_err(|e| DialogError::Unavailable(format!("cannot run {}: {e}", program.display())))
}

struct Session<R> {
    input: ChildStdin,
    output: BufReader<R>,
}

impl<R: std::io::Read> Session<R> {
    fn talk(&mut self, setup: &[String], last: &str) -> Result<Zeroizing<Vec<u8>>, DialogError> {
        self.expect_ok()?; // the greeting
        if let Ok(tty) = std::env::var("GPG_TTY") {
            self.command(&format!("OPTION ttyname={tty}"))?;
        }
        for c in setup {
            // Old pinentries do not know every SET command: not fatal.
            match self.command(c) {
                Ok(_) | Err(DialogError::Failed(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let data = self.command(last)?;
        let _ = self.send("BYE");
        Ok(data)
    }

    fn send(&mut self, line: &str) -> Result<(), DialogError> {
        let io =
            |e: std::io::Error| DialogError::Failed(format!("pinentry went away: {}", e.kind()));
        self.input.write_all(line.as_bytes()).map_err(io)?;
        self.input.write_all(b"\n").map_err(io)?;
        self.input.flush().map_err(io)
    }

    fn command(&mut self, line: &str) -> Result<Zeroizing<Vec<u8>>, DialogError> {
        self.send(line)?;
        self.expect_ok()
    }

    /// Reads lines up to `OK` or `ERR`, collecting `D` data.
    fn expect_ok(&mut self) -> Result<Zeroizing<Vec<u8>>, DialogError> {
        let mut data = Zeroizing::new(Vec::new());
        loop {
            let mut line = Zeroizing::new(Vec::new());
            let n = self
                .output
                .read_until(b'\n', &mut line)
                .map_err(|e| DialogError::Failed(format!("reading pinentry: {}", e.kind())))?;
            if n == 0 {
                return Err(DialogError::Failed("pinentry closed its output".into()));
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.as_slice() == b"OK" || line.starts_with(b"OK ") {
                return Ok(data);
            }
            if let Some(rest) = line.strip_prefix(b"D ") {
                unescape_into(rest, &mut data);
            } else if let Some(rest) = line.strip_prefix(b"ERR ") {
                return Err(error_from(&String::from_utf8_lossy(rest)));
            }
            // S (status), # (comment), INQUIRE: ignored.
        }
    }
}

fn error_from(rest: &str) -> DialogError {
    let code: u32 = rest
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    match code & 0xFFFF {
        GPG_ERR_CANCELED => DialogError::Cancelled,
        GPG_ERR_TIMEOUT => DialogError::Timeout,
        GPG_ERR_NOT_CONFIRMED => DialogError::Failed("not confirmed".into()),
        _ => DialogError::Failed(rest.to_string()),
    }
}

/// Percent-escapes text for an Assuan command line.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes `%XX` escapes of a data line straight into `out`.
fn unescape_into(src: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < src.len() {
        if src[i] == b'%'
            && i + 2 < src.len()
            && let (Some(h), Some(l)) = (hex_val(src[i + 1]), hex_val(src[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(src[i]);
        i += 1;
    }
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Finds pinentry like gpg-agent: `PINENTRY_PROGRAM`, the `pinentry-program`
/// of `gpg-agent.conf`, then well-known names on `PATH`.
pub(crate) fn find_program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PINENTRY_PROGRAM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let gnupg_home = std::env::var_os("GNUPGHOME")
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().join(".gnupg")));
    if let Some(conf) = gnupg_home.map(|h| h.join("gpg-agent.conf"))
        && let Ok(text) = std::fs::read_to_string(conf)
    {
        for line in text.lines() {
            if let Some(p) = line.trim().strip_prefix("pinentry-program") {
                let p = p.trim();
                if !p.is_empty() {
                    return Some(PathBuf::from(p));
                }
            }
        }
    }
    let path = std::env::var_os("PATH")?;
    KNOWN_PROGRAMS.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unescapes() {
        assert_eq!(escape("100%\nsure"), "100%25%0Asure");
        let mut out = Vec::new();
        unescape_into(b"a%25b%0Ac%zz%4", &mut out);
        assert_eq!(out, b"a%b\nc%zz%4");
    }

    #[test]
    fn maps_pinentry_errors() {
        assert_eq!(
            error_from("83886179 Operation cancelled <Pinentry>"),
            DialogError::Cancelled
        );
        assert_eq!(
            error_from("83886142 Timeout <Pinentry>"),
            DialogError::Timeout
        );
        assert_eq!(
            error_from("83886194 Not confirmed"),
            DialogError::Failed("not confirmed".into())
        );
    }
}
