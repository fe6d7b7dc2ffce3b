//! Reading PIN values: a no-echo terminal prompt, or one per line from
//! stdin with `--pin-stdin`. Never from argv.

use crate::secret::Secret;
use std::io::BufRead;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PromptError {
    #[error("no terminal to ask for the PIN on; use --pin-stdin")]
    NoTerminal,
    #[error("standard input ended before every value was read")]
    StdinEnded,
    #[error("the new values do not match")]
    Mismatch,
    #[error("could not read the value: {0}")]
    Io(String),
}

impl PromptError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            PromptError::Mismatch => "PIN_MISMATCH",
            _ => "INPUT_ERROR",
        }
    }
}

pub(super) struct PinInput {
    stdin: bool,
}

impl PinInput {
    pub(super) fn new(stdin: bool) -> Self {
        PinInput { stdin }
    }

    /// Reads one value.
    pub(super) fn read(&mut self, prompt: &str) -> Result<Secret, PromptError> {
        if self.stdin {
            let mut line = String::new();
            let n = std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| PromptError::Io(e.kind().to_string()))?;
            if n == 0 {
                return Err(PromptError::StdinEnded);
            }
            let trimmed = line.trim_end_matches(['\n', '\r']).len();
            line.truncate(trimmed);
            return Ok(Secret::from_string(line));
        }
        match rpassword::prompt_password(prompt) {
            Ok(v) => Ok(Secret::from_string(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(6) => {
                Err(PromptError::NoTerminal)
            }
            Err(e) => Err(PromptError::Io(e.kind().to_string())),
        }
    }

    /// Reads a new value; on a terminal, asks twice and compares.
    pub(super) fn read_new(&mut self, label: &str) -> Result<Secret, PromptError> {
        let new = self.read(&format!("New {label}: "))?;
        if !self.stdin {
            let again = self.read(&format!("New {label} again: "))?;
            if again != new {
                return Err(PromptError::Mismatch);
            }
        }
        Ok(new)
    }
}
