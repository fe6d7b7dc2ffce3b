//! Human and JSON output of the CLI.

use super::{CliError, exit, exit_code};
use crate::card::{Token, hex};
use crate::error::Error;
use crate::pin::PinStatus;
use crate::transport::ReaderInfo;
use serde::Serialize;
use serde_json::json;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenReport {
    pub profile: String,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    pub pins: Vec<&'static str>,
    /// Each application with its PIN ids, in token order.
    pub applications: Vec<AppReport>,
}

#[derive(Serialize)]
pub(super) struct AppReport {
    pub id: &'static str,
    pub label: String,
    pub pins: Vec<&'static str>,
}

impl TokenReport {
    fn new(t: &Token) -> Self {
        let mut applications: Vec<AppReport> = Vec::new();
        for pin in &t.pins {
            let app = t.application_of(pin);
            match applications.iter_mut().find(|a| a.id == app.id) {
                Some(a) => a.pins.push(pin.id),
                None => applications.push(AppReport {
                    id: app.id,
                    label: app.label.clone(),
                    pins: vec![pin.id],
                }),
            }
        }
        TokenReport {
            profile: t.profile.clone(),
            label: t.label.clone(),
            serial: t.serial().map(str::to_string),
            pins: t.pins.iter().map(|p| p.id).collect(),
            applications,
        }
    }

    /// "pin, puk" for one application; "PIV card: pin, puk; OpenPGP card
    /// …: user, admin" for several.
    fn pins_line(&self) -> String {
        if self.applications.len() < 2 {
            return self.pins.join(", ");
        }
        self.applications
            .iter()
            .map(|a| format!("{}: {}", a.label, a.pins.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReaderReport {
    pub name: String,
    pub card_present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenReport>,
    /// Why the card could not be used (e.g. CARD_NOT_SUPPORTED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

impl ReaderReport {
    pub(super) fn new(r: &ReaderInfo, token: Option<Result<Token, Error>>) -> Self {
        let (token, error) = match token {
            Some(Ok(t)) => (Some(TokenReport::new(&t)), None),
            Some(Err(e)) => (None, Some(e.to_json())),
            None => (None, None),
        };
        ReaderReport {
            name: r.name.clone(),
            card_present: r.atr.is_some(),
            atr: r.atr.as_deref().map(hex),
            token,
            error,
        }
    }
}

#[derive(Serialize)]
pub(super) struct StatusReport {
    pub reader: String,
    pub token: TokenReport,
    pub pins: Vec<PinStatus>,
}

impl StatusReport {
    pub(super) fn new(reader: String, token: &Token, pins: Vec<PinStatus>) -> Self {
        StatusReport {
            reader,
            token: TokenReport::new(token),
            pins,
        }
    }
}

pub(super) fn print_readers(readers: &Vec<ReaderReport>) {
    if readers.is_empty() {
        println!("No readers found.");
    }
    for r in readers {
        println!("{}", r.name);
        match (&r.atr, &r.token, &r.error) {
            (None, _, _) => println!("  no card"),
            (Some(atr), Some(t), _) => {
                println!("  card:  {} ({}), ATR {atr}", t.label, t.profile);
                println!("  PINs:  {}", t.pins_line());
            }
            (Some(atr), None, Some(e)) if e["code"] == "CARD_NOT_SUPPORTED" => {
                println!("  card:  not supported, ATR {atr}");
                let apps: Vec<&str> = e["applications"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                if !apps.is_empty() {
                    println!("  applications answering: {}", apps.join(", "));
                }
                println!(
                    "  no card profile describes it: see `cardgate card probe` and docs/cards.md"
                );
            }
            (Some(atr), None, Some(e)) => {
                let message = e["message"].as_str().unwrap_or("");
                if message.contains(atr.as_str()) {
                    println!("  card:  {message}");
                } else {
                    println!("  card:  {message} (ATR {atr})");
                }
            }
            (Some(atr), None, None) => println!("  card:  ATR {atr}"),
        }
    }
}

pub(super) fn print_status(s: &StatusReport) {
    println!("{}: {} ({})", s.reader, s.token.label, s.token.profile);
    for p in &s.pins {
        let tries = match p.remaining_tries {
            Some(n) => format!("{n}/{} tries left", p.max_tries),
            None => "tries left unknown".to_string(),
        };
        let mut flags = Vec::new();
        if p.blocked {
            flags.push("BLOCKED");
        }
        if !p.initialized {
            flags.push("not initialized");
        }
        if p.to_be_changed {
            flags.push("must be changed");
        }
        if p.last_try {
            flags.push("last try");
        }
        flags.push(if p.validated {
            "verified"
        } else {
            "not verified"
        });
        println!(
            "  {:<6} {:<11} {:<20} {}",
            p.id,
            p.label,
            tries,
            flags.join(", ")
        );
    }
}

fn print_error(json: bool, e: &CliError) -> u8 {
    let (value, code) = match e {
        CliError::Card(e) => (e.to_json(), exit_code(e)),
        CliError::Input(e) => (
            json!({ "code": e.code(), "message": e.to_string() }),
            if e.code() == "PIN_MISMATCH" {
                exit::BAD_VALUE
            } else {
                exit::INPUT
            },
        ),
    };
    if json {
        println!("{}", json!({ "ok": false, "error": value }));
    } else {
        eprintln!(
            "error: {} [{}]",
            value["message"].as_str().unwrap_or(""),
            value["code"].as_str().unwrap_or("")
        );
    }
    code
}

/// Prints a command's result or error; returns the exit status.
pub(super) fn report<T: Serialize>(
    json: bool,
    result: Result<T, CliError>,
    human: impl Fn(&T),
) -> u8 {
    match result {
        Ok(v) if json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            exit::OK
        }
        Ok(v) => {
            human(&v);
            exit::OK
        }
        Err(e) => print_error(json, &e),
    }
}

/// Like [`report`] for commands that return nothing.
pub(super) fn report_done(json: bool, result: Result<(), CliError>, done: &str) -> u8 {
    match result {
        Ok(()) if json => {
            println!("{}", json!({ "ok": true }));
            exit::OK
        }
        Ok(()) => {
            println!("{done}");
            exit::OK
        }
        Err(e) => print_error(json, &e),
    }
}
