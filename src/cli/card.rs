//! `cardgate card list|show|check|probe`: the card profiles in effect, one
//! profile resolved in full, checking a profile file, and what can be
//! learnt safely from an unknown card, with a draft profile for it
//! (docs/cards.md).
//!
//! `probe` sends SELECT, READ BINARY and GET RESPONSE only: every command
//! goes through [`ReadOnly`], which refuses any other instruction before
//! it reaches the card, so no VERIFY (with or without data) can be sent.

use super::output;
use super::{CliError, exit};
use crate::apdu::StatusWord;
use crate::card::pkcs15::{self, PinType, Pkcs15Card, Pkcs15Pin};
use crate::card::profile::{AppProfile, AtrPattern, CardProfile, Hook};
use crate::card::{
    Credential, Encoding, LogoutForm, PinObject, ProfileError, ProfileSet, Role, SoMethod,
    StatusSource, hex,
};
use crate::error::Error;
use crate::service::Service;
use crate::transport::{Backend, Transport, TransportError};
use clap::Subcommand;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub(super) enum CardsCommand {
    /// List the card profiles in effect (built in, system, user) and the files refused.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one profile in full, resolved (after `base`): applications, PINs,
    /// references, encodings, how tries are read, status words.
    Show {
        /// The profile's name, as `card list` shows it.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check a profile file against the built-in profiles (its bases); on
    /// success print what `show` prints for it.
    Check {
        /// A card profile (TOML).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// What can be learnt safely from the card in a reader (ATR, applications
    /// answering SELECT, PKCS#15 PINs, the profile recognising it) and a
    /// draft profile to complete. Sends no VERIFY: SELECT, READ BINARY and
    /// GET RESPONSE only.
    Probe {
        /// Reader name, or a unique part of it (default: the first reader with a card).
        #[arg(long, short)]
        reader: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

static DIRS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

/// Uses the configuration's card profile directories (`card_dirs`,
/// `CARDGATE_CARDS_PATH`) from now on.
pub(super) fn use_config(config: &crate::config::Config) {
    let _ = DIRS.set(
        config
            .card_dirs
            .clone()
            .unwrap_or_else(ProfileSet::standard_dirs),
    );
}

/// The card profile directories: from the configuration when it was loaded.
pub(super) fn dirs() -> Vec<PathBuf> {
    DIRS.get()
        .cloned()
        .unwrap_or_else(ProfileSet::standard_dirs)
}

/// The card profiles in effect: built-in, then the directories'.
pub(super) fn profiles() -> ProfileSet {
    ProfileSet::load(&dirs())
}

pub(super) fn run(command: CardsCommand) -> u8 {
    match command {
        CardsCommand::List { json } => list(json),
        CardsCommand::Show { name, json } => show(&name, json),
        CardsCommand::Check { file, json } => check(&file, json),
        CardsCommand::Probe { reader, json } => {
            output::report(json, probe_reader(reader.as_deref()), print_probe)
        }
    }
}

// ---- reports --------------------------------------------------------------

/// An ATR pattern: `mask` only when some bits do not count.
#[derive(Serialize)]
struct AtrReport {
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mask: Option<String>,
}

impl AtrReport {
    fn new(p: &AtrPattern) -> Self {
        AtrReport {
            value: hex(&p.value),
            mask: (!p.mask.iter().all(|m| *m == 0xFF)).then(|| hex(&p.mask)),
        }
    }
}

/// How a PIN is unblocked: the RESET RETRY COUNTER form and the code.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UnblockReport {
    /// `code-and-new` (P1=00) or `new-after-so` (P1=02).
    method: &'static str,
    /// The PIN id of the code, when it is a PIN object of the application.
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<String>,
    label: String,
    reference: String,
}

/// One way of reading the tries left (`tries` in docs/cards.md).
#[derive(Serialize)]
#[serde(rename_all_fields = "camelCase", tag = "source")]
enum TriesReport {
    #[serde(rename = "empty-verify")]
    EmptyVerify,
    #[serde(rename = "openpgp-pw-status")]
    OpenpgpPwStatus { index: usize },
    #[serde(rename = "query")]
    Query {
        apdu: String,
        tags: Vec<String>,
        offset: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_tags: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_offset: Option<usize>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PinReport {
    id: String,
    label: String,
    role: &'static str,
    reference: String,
    /// Bit 8 of the reference set: specific to its application (ended by
    /// selecting another one), else global to the card.
    specific: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    change_reference: Option<String>,
    /// The AID selected before its commands, when it is not the
    /// application's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    select: Option<String>,
    encoding: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pad: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored_length: Option<usize>,
    min_length: usize,
    max_length: usize,
    chars: &'static str,
    max_tries: u8,
    verify: bool,
    checked_by_change: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    unblock: Option<UnblockReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset_code: Option<UnblockReport>,
    /// Tried in order; empty: the tries are not read (unknown).
    tries: Vec<TriesReport>,
    logout: &'static str,
    logout_also: Vec<String>,
    /// Card status word → its meaning.
    status_words: BTreeMap<String, &'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppReport {
    id: String,
    label: String,
    aid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook: Option<&'static str>,
    /// Its PINs are read from the card's PKCS#15 description.
    pkcs15: bool,
    pins: Vec<PinReport>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileReport {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    description: String,
    source: String,
    template: bool,
    atr: Vec<AtrReport>,
    select_clears_other: bool,
    applications: Vec<AppReport>,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Signature => "signature",
        Role::SecurityOfficer => "security-officer",
        Role::Unblock => "unblock",
    }
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Ascii => "ascii",
        Encoding::Utf8 => "utf8",
        Encoding::Bcd => "bcd",
        Encoding::Format2 => "format2",
    }
}

fn logout_name(l: LogoutForm) -> &'static str {
    match l {
        LogoutForm::VerifyFf => "verify-ff",
        LogoutForm::Reset => "reset",
    }
}

/// A status word's meaning, in the words of `status-words`.
fn sw_meaning(sw: StatusWord) -> &'static str {
    crate::card::profile::status_word_meaning(sw).unwrap_or("other")
}

fn tags_hex(tags: &[u32]) -> Vec<String> {
    tags.iter()
        .map(|t| {
            let b = t.to_be_bytes();
            let start = b.iter().position(|x| *x != 0).unwrap_or(3);
            hex(&b[start..])
        })
        .collect()
}

fn tries_report(s: &StatusSource) -> TriesReport {
    match s {
        StatusSource::EmptyVerify => TriesReport::EmptyVerify,
        StatusSource::OpenPgpPwStatus { tries_index } => TriesReport::OpenpgpPwStatus {
            index: *tries_index,
        },
        StatusSource::Query(q) => TriesReport::Query {
            apdu: hex(&q.apdu),
            tags: tags_hex(&q.tries.tags),
            offset: q.tries.offset,
            max_tags: q.max.as_ref().map(|m| tags_hex(&m.tags)),
            max_offset: q.max.as_ref().map(|m| m.offset),
        },
    }
}

fn unblock_report(m: &SoMethod, app: &AppProfile) -> UnblockReport {
    let (method, c) = match m {
        SoMethod::CodeWithNewPin(c) => ("code-and-new", c),
        SoMethod::VerifyThenReset(c) => ("new-after-so", c),
    };
    UnblockReport {
        method,
        by: app
            .pins
            .iter()
            .find(|p| p.credential == *c)
            .map(|p| p.id.to_string()),
        label: c.label.clone(),
        reference: format!("{:02X}", c.reference),
    }
}

fn pin_report(p: &PinObject, app: &AppProfile) -> PinReport {
    let c: &Credential = &p.credential;
    let f = &c.format;
    PinReport {
        id: p.id.to_string(),
        label: c.label.clone(),
        role: role_name(c.role),
        reference: format!("{:02X}", c.reference),
        specific: c.reference & 0x80 != 0,
        change_reference: (c.change_reference != c.reference)
            .then(|| format!("{:02X}", c.change_reference)),
        select: c
            .app
            .checked_sub(1)
            .and_then(|i| app.extra_selects.get(i))
            .map(|a| hex(a)),
        encoding: encoding_name(f.encoding),
        pad: f.pad.map(|b| format!("{b:02X}")),
        stored_length: (f.stored_len != 0).then_some(f.stored_len),
        min_length: f.min_len,
        max_length: f.max_len,
        chars: if f.numeric { "digits" } else { "any" },
        max_tries: c.default_max_tries,
        verify: c.verifiable,
        checked_by_change: c.checked_by_change,
        unblock: p.so.as_ref().map(|m| unblock_report(m, app)),
        reset_code: p.reset_code.as_ref().map(|m| unblock_report(m, app)),
        tries: c.status.iter().map(tries_report).collect(),
        logout: logout_name(c.logout),
        logout_also: c.logout_also.iter().map(|r| format!("{r:02X}")).collect(),
        status_words: c
            .sw_map
            .iter()
            .map(|(sw, m)| (format!("{sw:04X}"), sw_meaning(*m)))
            .chain(
                c.new_same_as_old
                    .iter()
                    .map(|sw| (format!("{sw:04X}"), crate::card::profile::NEW_SAME_AS_OLD)),
            )
            .collect(),
    }
}

fn profile_report(p: &CardProfile) -> ProfileReport {
    ProfileReport {
        name: p.name.clone(),
        label: p.label.clone(),
        description: p.description.clone(),
        source: p.source.to_string(),
        template: p.template,
        atr: p.atr.iter().map(AtrReport::new).collect(),
        select_clears_other: p.select_clears_other,
        applications: p
            .applications
            .iter()
            .map(|a| AppReport {
                id: a.id.to_string(),
                label: a.label.clone(),
                aid: hex(&a.aid),
                hook: a.hook.map(|h| match h {
                    Hook::Openpgp => "openpgp",
                }),
                pkcs15: a.pkcs15,
                pins: a.pins.iter().map(|p| pin_report(p, a)).collect(),
            })
            .collect(),
    }
}

/// Hex with a space between bytes, as profile files write it.
fn spaced(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn tries_text(t: &TriesReport) -> String {
    match t {
        TriesReport::EmptyVerify => "empty VERIFY (63Cx; the card spends nothing)".into(),
        TriesReport::OpenpgpPwStatus { index } => {
            format!("OpenPGP PW status DO C4, byte {index}")
        }
        TriesReport::Query {
            apdu,
            tags,
            offset,
            max_tags,
            max_offset,
        } => {
            let at = |tags: &[String], offset: usize| {
                let path = if tags.is_empty() {
                    "the answer".to_string()
                } else {
                    tags.join("/")
                };
                format!("{path} byte {offset}")
            };
            let mut s = format!("query {}: tries at {}", spaced(apdu), at(tags, *offset));
            if max_tags.is_some() || max_offset.is_some() {
                let tags = max_tags.as_deref().unwrap_or(tags);
                s.push_str(&format!(
                    ", maximum at {}",
                    at(tags, max_offset.unwrap_or(0))
                ));
            }
            s
        }
    }
}

fn print_profile(p: &ProfileReport) {
    let label = p
        .label
        .as_deref()
        .map(|l| format!(" — {l}"))
        .unwrap_or_default();
    let template = if p.template { ", template" } else { "" };
    println!("{}{label} ({}{template})", p.name, p.source);
    if !p.description.is_empty() {
        println!("  {}", p.description);
    }
    if p.atr.is_empty() {
        println!("  ATR: any (recognised by its applications' AIDs)");
    }
    for a in &p.atr {
        match &a.mask {
            None => println!("  ATR: {}", spaced(&a.value)),
            Some(m) => println!("  ATR: {} mask {}", spaced(&a.value), spaced(m)),
        }
    }
    println!(
        "  selecting one application ends the others' specific verifications: {}",
        if p.select_clears_other { "yes" } else { "no" }
    );
    for a in &p.applications {
        let hook = a
            .hook
            .map(|h| format!(", code hook {h}"))
            .unwrap_or_default();
        println!(
            "  application {} ({}), AID {}{hook}",
            a.id,
            a.label,
            spaced(&a.aid)
        );
        if a.pkcs15 {
            println!(
                "    PINs: from the card's PKCS#15 description (AODF), with this profile's patches"
            );
        }
        for pin in &a.pins {
            print_pin(pin);
        }
    }
}

fn print_pin(p: &PinReport) {
    println!("    PIN {} ({}), role {}", p.id, p.label, p.role);
    let scope = if p.specific { "specific" } else { "global" };
    let mut refs = format!("reference {} ({scope})", p.reference);
    if let Some(c) = &p.change_reference {
        refs.push_str(&format!(
            ", {c} in CHANGE REFERENCE DATA and RESET RETRY COUNTER"
        ));
    }
    if let Some(s) = &p.select {
        refs.push_str(&format!(", after SELECT {}", spaced(s)));
    }
    println!("      {refs}");
    let mut value = format!(
        "{}-{} {}, {}",
        p.min_length,
        p.max_length,
        if p.chars == "digits" {
            "digits"
        } else {
            "characters"
        },
        p.encoding
    );
    match (&p.pad, p.stored_length) {
        (Some(pad), Some(n)) => value.push_str(&format!(", padded with {pad} to {n} bytes")),
        (None, Some(n)) => value.push_str(&format!(", {n} bytes")),
        _ => {}
    }
    println!("      value: {value}");
    let mut uses = Vec::new();
    if !p.verify {
        uses.push("never VERIFYed alone".to_string());
    }
    if p.checked_by_change {
        uses.push("checked by changing it to itself".to_string());
    }
    if !uses.is_empty() {
        println!("      {}", uses.join("; "));
    }
    println!("      maximum tries: {}", p.max_tries);
    if p.tries.is_empty() {
        println!("      tries: not read (unknown)");
    }
    for t in &p.tries {
        println!("      tries: {}", tries_text(t));
    }
    for (what, u) in [("unblock", &p.unblock), ("reset code", &p.reset_code)] {
        if let Some(u) = u {
            let by = u.by.as_deref().unwrap_or("a hidden code");
            let form = match u.method {
                "code-and-new" => "RESET RETRY COUNTER P1=00 with the code and the new value",
                _ => "VERIFY of the code, then RESET RETRY COUNTER P1=02 with the new value",
            };
            println!(
                "      {what}: {by} ({}, reference {}): {form}",
                u.label, u.reference
            );
        }
    }
    let mut logout = match p.logout {
        "reset" => "a card reset".to_string(),
        _ => "VERIFY P1=FF".to_string(),
    };
    if !p.logout_also.is_empty() {
        logout.push_str(&format!(", also ending {}", p.logout_also.join(", ")));
    }
    println!("      logout: {logout}");
    if !p.status_words.is_empty() {
        let sws: Vec<String> = p
            .status_words
            .iter()
            .map(|(sw, m)| format!("{sw} = {m}"))
            .collect();
        println!("      status words: {}", sws.join(", "));
    }
}

// ---- list -----------------------------------------------------------------

fn error_json(e: &ProfileError) -> Value {
    json!({ "file": e.source_name, "message": e.message })
}

fn list(json: bool) -> u8 {
    let dirs = dirs();
    let set = ProfileSet::load(&dirs);
    let profiles: Vec<Value> = set
        .profiles()
        .map(|p| {
            json!({
                "name": p.name,
                "label": p.label,
                "description": p.description,
                "source": p.source.to_string(),
                "template": p.template,
                "atrPatterns": p.atr.len(),
                "applications": p.applications.iter().map(|a| json!({
                    "id": a.id,
                    "aid": hex(&a.aid),
                    "pins": a.pins.iter().map(|p| p.id).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    if json {
        let v = json!({
            "directories": dirs
                .iter()
                .map(|d| json!({ "path": d, "exists": d.is_dir() }))
                .collect::<Vec<_>>(),
            "profiles": profiles,
            "errors": set.errors.iter().map(error_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit::OK;
    }
    println!("Card profile sources, lowest precedence first:");
    println!("  built-in (embedded)");
    for d in &dirs {
        let state = if d.is_dir() { "" } else { " (absent)" };
        println!("  {}{state}", d.display());
    }
    println!("Profiles, in the order cards are matched against them:");
    for p in set.profiles() {
        let kind = if p.template {
            "template".to_string()
        } else if p.atr.is_empty() {
            "by AID".to_string()
        } else {
            format!(
                "{} ATR{}",
                p.atr.len(),
                if p.atr.len() == 1 { "" } else { "s" }
            )
        };
        let apps: Vec<String> = p
            .applications
            .iter()
            .map(|a| {
                let pins: Vec<&str> = a.pins.iter().map(|p| p.id).collect();
                format!("{} ({})", a.id, pins.join(", "))
            })
            .collect();
        println!(
            "  {:<10} {:<9} {:<32} from {}",
            p.name,
            kind,
            apps.join("; "),
            p.source
        );
    }
    for e in &set.errors {
        eprintln!("warning: card profile refused: {e}");
    }
    exit::OK
}

// ---- show -----------------------------------------------------------------

fn show(name: &str, json: bool) -> u8 {
    let set = profiles();
    match set.get(name) {
        Some(p) => output::report(json, Ok::<_, CliError>(profile_report(p)), print_profile),
        None => {
            let known: Vec<&str> = set.profiles().map(|p| p.name.as_str()).collect();
            let message = format!(
                "no card profile {name:?} (known: {}; see `cardgate card list`)",
                known.join(", ")
            );
            if json {
                println!(
                    "{}",
                    json!({ "ok": false, "error": { "code": "PROFILE_NOT_FOUND", "message": message } })
                );
            } else {
                eprintln!("error: {message}");
            }
            exit::USAGE
        }
    }
}

// ---- check ----------------------------------------------------------------

/// What a file does that is allowed but deserves a second look.
fn warnings(p: &CardProfile) -> Vec<String> {
    let mut out = Vec::new();
    if ProfileSet::builtin().get(&p.name).is_some() {
        out.push(format!(
            "it replaces the built-in profile `{}` when installed",
            p.name
        ));
    }
    for a in &p.applications {
        for pin in &a.pins {
            if pin.credential.status.contains(&StatusSource::EmptyVerify) {
                out.push(format!(
                    "PIN `{}` reads its tries with an empty VERIFY: only if the card's documentation says it spends nothing",
                    pin.id
                ));
            }
        }
    }
    out
}

fn check(file: &std::path::Path, json: bool) -> u8 {
    match ProfileSet::builtin().load_file(file) {
        Ok(p) => {
            let warnings = warnings(&p);
            let report = profile_report(&p);
            if json {
                let v =
                    json!({ "ok": true, "file": file, "warnings": warnings, "profile": report });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("{}: ok", file.display());
                for w in &warnings {
                    println!("note: {w}");
                }
                print_profile(&report);
            }
            exit::OK
        }
        Err(e) => {
            if json {
                let v = json!({ "ok": false, "file": file, "error": error_json(&e) });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                eprintln!("{e}");
            }
            exit::OTHER
        }
    }
}

// ---- probe ----------------------------------------------------------------

/// Instructions a probe may send: SELECT, READ BINARY, GET RESPONSE.
const PROBE_INS: [u8; 3] = [0xA4, 0xB0, 0xC0];

/// A transport that lets through only [`PROBE_INS`]: anything else (a
/// VERIFY above all) is refused before it reaches the card.
pub(crate) struct ReadOnly<'t> {
    inner: &'t mut dyn Transport,
    /// The instruction of every command sent, in order.
    sent: Vec<u8>,
}

impl<'t> ReadOnly<'t> {
    pub(crate) fn new(inner: &'t mut dyn Transport) -> Self {
        ReadOnly {
            inner,
            sent: Vec::new(),
        }
    }
}

impl Transport for ReadOnly<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let ins = apdu.get(1).copied().unwrap_or(0);
        if apdu.len() < 4 || !PROBE_INS.contains(&ins) {
            return Err(TransportError::Other(format!(
                "the probe does not send instruction {ins:02X}"
            )));
        }
        self.sent.push(ins);
        self.inner.transmit(apdu)
    }

    fn control(&mut self, _code: u32, _data: &[u8]) -> Result<Vec<u8>, TransportError> {
        Err(TransportError::Unsupported)
    }

    fn reconnect(&mut self, _reset: bool) -> Result<(), TransportError> {
        self.inner.reconnect(false)
    }

    fn atr(&self) -> &[u8] {
        self.inner.atr()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AnsweringApp {
    /// Its well-known name, or `PROFILE.APPLICATION` of the profile naming
    /// its AID.
    pub(crate) name: String,
    pub(crate) aid: String,
    /// The built-in application with this AID, usable as a `base`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) base: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pkcs15PinReport {
    pub(crate) label: Option<String>,
    pub(crate) auth_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parent_auth_id: Option<String>,
    pub(crate) reference: String,
    pub(crate) pin_type: &'static str,
    pub(crate) min_length: usize,
    pub(crate) stored_length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_length: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pad_char: Option<String>,
    pub(crate) flags: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pkcs15Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) aid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    pub(crate) pins: Vec<Pkcs15PinReport>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Recognised {
    pub(crate) profile: String,
    pub(crate) applications: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProbeReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reader: Option<String>,
    pub(crate) atr: String,
    /// Applications that answered SELECT with 9000.
    pub(crate) applications: Vec<AnsweringApp>,
    /// The PKCS#15 application and its PINs, when the card has one.
    pub(crate) pkcs15: Option<Pkcs15Report>,
    /// The profile that recognises the card (as the daemon would), if any.
    pub(crate) recognised_by: Option<Recognised>,
    /// How many commands of each kind were sent: SELECT, READ BINARY and
    /// GET RESPONSE, nothing else.
    pub(crate) sent: BTreeMap<&'static str, usize>,
    /// A profile to complete (TOML).
    pub(crate) draft: String,
}

fn probe_reader(reader: Option<&str>) -> Result<ProbeReport, CliError> {
    let backend: Arc<dyn Backend> = Arc::new(crate::transport::pcsc::PcscBackend::new());
    let name = Service::new(backend.clone()).resolve_reader(reader)?;
    let mut t = backend.connect(&name).map_err(Error::from)?;
    let profiles = profiles();
    let result = probe(t.as_mut(), &profiles);
    // Leave the card as it is (no reset).
    t.disconnect();
    let mut report = result.map_err(Error::from)?;
    report.reader = Some(name);
    Ok(report)
}

/// What can be learnt from the card behind `t` without presenting
/// anything: ATR, applications answering SELECT (the well-known ones and
/// every profile's), the PKCS#15 PINs, the profile recognising it, and a
/// draft profile. Only SELECT, READ BINARY and GET RESPONSE reach the card.
pub(crate) fn probe(
    t: &mut dyn Transport,
    profiles: &ProfileSet,
) -> Result<ProbeReport, TransportError> {
    let mut t = ReadOnly::new(t);
    let atr = t.atr().to_vec();
    let mut answering: Vec<AnsweringApp> = Vec::new();
    let builtin = ProfileSet::builtin();
    // A built-in application with this AID, usable as a `base`: those of
    // profiles recognised by AID alone first (they hold no `base` of their
    // own, and bases are not chained).
    let base_of = |aid: &[u8]| -> Option<String> {
        let mut ps: Vec<&CardProfile> = builtin.profiles().filter(|p| !p.template).collect();
        ps.sort_by_key(|p| !p.atr.is_empty());
        ps.into_iter().find_map(|p| {
            p.applications
                .iter()
                .find(|a| a.aid == aid)
                .map(|a| format!("{}.{}", p.name, a.id))
        })
    };
    for (name, aid) in crate::card::probe(&mut t)? {
        answering.push(AnsweringApp {
            name: name.to_string(),
            base: base_of(&aid),
            aid: hex(&aid),
        });
    }
    // Every profile's applications (templates' too): SELECT only.
    let mut tried: Vec<Vec<u8>> = crate::card::WELL_KNOWN_AIDS
        .iter()
        .map(|(_, a)| a.to_vec())
        .collect();
    for p in profiles.profiles() {
        for a in &p.applications {
            if tried.contains(&a.aid) {
                continue;
            }
            tried.push(a.aid.clone());
            if crate::card::answers(&mut t, &a.aid)? {
                answering.push(AnsweringApp {
                    name: format!("{}.{}", p.name, a.id),
                    base: base_of(&a.aid),
                    aid: hex(&a.aid),
                });
            }
        }
    }
    let card = pkcs15::discover(&mut t)?;
    let recognised_by = recognised(&atr, &answering, profiles);
    let draft = draft(&atr, &answering, card.as_ref());
    let mut sent = BTreeMap::new();
    for ins in &t.sent {
        let name = match ins {
            0xA4 => "select",
            0xB0 => "readBinary",
            _ => "getResponse",
        };
        *sent.entry(name).or_insert(0) += 1;
    }
    Ok(ProbeReport {
        reader: None,
        atr: hex(&atr),
        applications: answering,
        pkcs15: card.as_ref().map(pkcs15_report),
        recognised_by,
        sent,
        draft,
    })
}

/// The profile the daemon would recognise the card with (card/recognise.rs),
/// worked out from the applications that answered.
fn recognised(atr: &[u8], answering: &[AnsweringApp], profiles: &ProfileSet) -> Option<Recognised> {
    let answered = |a: &AppProfile| answering.iter().any(|x| x.aid == hex(&a.aid));
    let candidates: Vec<&CardProfile> = profiles.profiles().filter(|p| !p.template).collect();
    for p in candidates.iter().filter(|p| !p.atr.is_empty()) {
        if !p.atr_matches(atr) {
            continue;
        }
        let apps: Vec<String> = p
            .applications
            .iter()
            .filter(|a| answered(a))
            .map(|a| a.id.to_string())
            .collect();
        if !apps.is_empty() {
            return Some(Recognised {
                profile: p.name.clone(),
                applications: apps,
            });
        }
    }
    let mut names = Vec::new();
    let mut apps: Vec<String> = Vec::new();
    let mut seen: Vec<&[u8]> = Vec::new();
    for p in candidates.iter().filter(|p| p.atr.is_empty()) {
        let mut any = false;
        for a in &p.applications {
            if answered(a) && !seen.contains(&a.aid.as_slice()) {
                seen.push(&a.aid);
                apps.push(a.id.to_string());
                any = true;
            }
        }
        if any {
            names.push(p.name.clone());
        }
    }
    (!names.is_empty()).then(|| Recognised {
        profile: names.join("+"),
        applications: apps,
    })
}

fn pin_type_name(t: PinType) -> &'static str {
    match t {
        PinType::Bcd => "bcd",
        PinType::AsciiNumeric => "ascii-numeric",
        PinType::Utf8 => "utf8",
        PinType::HalfNibbleBcd => "half-nibble-bcd",
        PinType::Iso9564_1 => "iso9564-1",
    }
}

fn pkcs15_report(c: &Pkcs15Card) -> Pkcs15Report {
    Pkcs15Report {
        aid: c.application.aid.as_deref().map(hex),
        label: c.application.label.clone(),
        path: c.application.path.as_deref().map(hex),
        pins: c
            .pins
            .iter()
            .map(|p| Pkcs15PinReport {
                label: p.label.clone(),
                auth_id: hex(&p.auth_id),
                parent_auth_id: p.parent_auth_id.as_deref().map(hex),
                reference: format!("{:02X}", p.reference_or_default()),
                pin_type: pin_type_name(p.pin_type),
                min_length: p.min_length,
                stored_length: p.stored_length,
                max_length: p.max_length,
                pad_char: p.pad_char.map(|b| format!("{b:02X}")),
                flags: flag_names(&p.flags),
                path: p.path.as_deref().map(hex),
            })
            .collect(),
    }
}

/// The PKCS#15 `PinFlags` set, by their ASN.1 names.
fn flag_names(f: &pkcs15::PinFlags) -> Vec<&'static str> {
    [
        (f.case_sensitive, "case-sensitive"),
        (f.local, "local"),
        (f.change_disabled, "change-disabled"),
        (f.unblock_disabled, "unblock-disabled"),
        (f.initialized, "initialized"),
        (f.needs_padding, "needs-padding"),
        (f.unblocking_pin, "unblockingPin"),
        (f.so_pin, "soPin"),
        (f.disable_allowed, "disable-allowed"),
        (f.integrity_protected, "integrity-protected"),
        (f.confidentiality_protected, "confidentiality-protected"),
        (f.exchange_ref_data, "exchangeRefData"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

// ---- the draft profile ----------------------------------------------------

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// An id of letters, digits and `-` from a name ("PKCS#15" → "pkcs-15").
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// `base` made unique among `taken` (which it joins).
fn unique(base: &str, fallback: &str, taken: &mut Vec<String>) -> String {
    let base = if base.is_empty() { fallback } else { base };
    let mut id = base.to_string();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    taken.push(id.clone());
    id
}

/// Applications that answer SELECT but hold no PIN cardgate would present.
const NOT_PIN_APPLICATIONS: &[&str] = &["FIDO U2F", "Yubico OATH", "EMV payment (PPSE)"];

const TRIES_COMMENT: &str = "\
# tries: not read, so the count stays unknown and a page's value is refused.
# Name a way from the card's documentation, e.g. a read-only query:
#   tries = [{ source = \"query\", apdu = \"00 CB ...\", tags = [\"...\"] }]
# Never `{ source = \"empty-verify\" }` unless the documentation says an empty
# VERIFY spends nothing: some cards count it as a wrong PIN.
";

/// A draft profile for the card: what was read is filled in, what cannot
/// be known is a `"TODO"` placeholder (refused by `cardgate card check`
/// until it is replaced) or a comment.
pub(crate) fn draft(atr: &[u8], answering: &[AnsweringApp], card: Option<&Pkcs15Card>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Draft card profile written by `cardgate card probe`. Replace every \"TODO\"\n\
         # from the card's documentation, check it with `cardgate card check FILE`,\n\
         # then copy it to the cards/ folder of cardgate's config directory\n\
         # (docs/cards.md)."
    );
    let _ = writeln!(
        s,
        "name = \"my-card\"                # letters, digits, - and _"
    );
    let _ = writeln!(s, "# label = \"...\"                 # the token's name");
    let _ = writeln!(s, "# description = \"...\"");
    let _ = writeln!(s, "atr = [{}]", toml_str(&spaced(&hex(atr))));
    let _ = writeln!(
        s,
        "# select-clears-other = true      # the safe default; see docs/cards.md"
    );
    let mut app_ids: Vec<String> = Vec::new();
    let mut pin_ids: Vec<String> = Vec::new();
    let p15_aid = card.and_then(|c| c.application.aid.as_deref()).map(hex);
    let mut p15_done = false;
    for a in answering {
        if Some(&a.aid) == p15_aid.as_ref() {
            if let (Some(card), false) = (card, p15_done) {
                pkcs15_block(&mut s, card, &mut app_ids, &mut pin_ids);
                p15_done = true;
            }
            continue;
        }
        if NOT_PIN_APPLICATIONS.contains(&a.name.as_str()) {
            let _ = writeln!(
                s,
                "\n# {} ({}) answers SELECT: it holds no PIN cardgate presents.",
                a.name,
                spaced(&a.aid)
            );
            continue;
        }
        if let Some(base) = &a.base {
            let app = base.split_once('.').map_or(base.as_str(), |(_, a)| a);
            let id = unique(app, "app", &mut app_ids);
            let _ = writeln!(
                s,
                "\n# {} answered SELECT: the built-in application with its AID.",
                spaced(&a.aid)
            );
            let _ = writeln!(s, "[[application]]");
            let _ = writeln!(s, "id = {}", toml_str(&id));
            let _ = writeln!(s, "base = {}", toml_str(base));
            continue;
        }
        placeholder_block(&mut s, &a.name, Some(&a.aid), &mut app_ids, &mut pin_ids);
    }
    if let (Some(card), false) = (card, p15_done) {
        pkcs15_block(&mut s, card, &mut app_ids, &mut pin_ids);
        p15_done = true;
    }
    if app_ids.is_empty() && !p15_done {
        let _ = writeln!(
            s,
            "\n# No application answered SELECT with a known AID: take it from the card's documentation."
        );
        placeholder_block(&mut s, "application", None, &mut app_ids, &mut pin_ids);
    }
    s
}

fn placeholder_block(
    s: &mut String,
    name: &str,
    aid: Option<&str>,
    app_ids: &mut Vec<String>,
    pin_ids: &mut Vec<String>,
) {
    let id = unique(
        &slug(name.rsplit('.').next().unwrap_or(name)),
        "app",
        app_ids,
    );
    let pin = unique(
        &if pin_ids.is_empty() {
            "pin".to_string()
        } else {
            format!("{id}-pin")
        },
        "pin",
        pin_ids,
    );
    let _ = writeln!(s, "\n[[application]]");
    let _ = writeln!(s, "id = {}", toml_str(&id));
    if !name.contains('.') {
        let _ = writeln!(s, "label = {}", toml_str(name));
    }
    match aid {
        Some(aid) => {
            let _ = writeln!(s, "aid = {}   # answered SELECT", toml_str(&spaced(aid)));
        }
        None => {
            let _ = writeln!(
                s,
                "aid = \"TODO\"                    # the AID that selects it"
            );
        }
    }
    let _ = writeln!(
        s,
        "\n# Nothing on the card describes this application's PINs: each field\n\
         # comes from the card's documentation. A wrong reference or encoding\n\
         # sends a value the card counts as wrong."
    );
    let _ = writeln!(s, "[[application.pin]]");
    let _ = writeln!(s, "id = {}", toml_str(&pin));
    let _ = writeln!(s, "label = \"PIN\"");
    let _ = writeln!(
        s,
        "role = \"user\"                    # user, signature, security-officer or unblock"
    );
    let _ = writeln!(
        s,
        "reference = \"TODO\"               # P2 of VERIFY, e.g. 0x81 (b8 set: specific to this application)"
    );
    let _ = writeln!(
        s,
        "encoding = \"TODO\"                # ascii, utf8, bcd or format2"
    );
    let _ = writeln!(
        s,
        "# pad = 0xFF                      # the padding byte, with stored-length"
    );
    let _ = writeln!(s, "# stored-length = 8");
    let _ = writeln!(s, "min-length = \"TODO\"");
    let _ = writeln!(s, "max-length = \"TODO\"");
    let _ = writeln!(s, "# chars = \"digits\"                # digits or any");
    let _ = writeln!(
        s,
        "# unblocked-by = \"puk\"            # the PIN object that unblocks it, with `unblock`"
    );
    let _ = writeln!(
        s,
        "# max-tries = 3                   # the counter's maximum (default 3)"
    );
    s.push_str(TRIES_COMMENT);
}

fn pkcs15_block(
    s: &mut String,
    card: &Pkcs15Card,
    app_ids: &mut Vec<String>,
    pin_ids: &mut Vec<String>,
) {
    let label = card.application.label.as_deref().unwrap_or("PKCS#15");
    let id = unique("pkcs15", "app", app_ids);
    let _ = writeln!(s, "\n[[application]]");
    let _ = writeln!(s, "id = {}", toml_str(&id));
    let _ = writeln!(s, "label = {}", toml_str(label));
    match &card.application.aid {
        Some(aid) => {
            let _ = writeln!(
                s,
                "aid = {}   # the PKCS#15 application",
                toml_str(&spaced(&hex(aid)))
            );
        }
        None => {
            let _ = writeln!(
                s,
                "aid = \"TODO\"                    # found as DF 5015 without an AID: a profile selects by AID"
            );
        }
    }
    if card.pins.is_empty() {
        let _ = writeln!(
            s,
            "# The card's AODF describes no PIN: add each from the card's documentation."
        );
        let _ = writeln!(s, "[[application.pin]]");
        let _ = writeln!(s, "id = \"pin\"");
        let _ = writeln!(s, "reference = \"TODO\"");
        let _ = writeln!(s, "encoding = \"TODO\"");
        let _ = writeln!(s, "min-length = \"TODO\"");
        let _ = writeln!(s, "max-length = \"TODO\"");
        s.push_str(TRIES_COMMENT);
        return;
    }
    let ids: Vec<String> = card
        .pins
        .iter()
        .map(|p| {
            let base = slug(p.label.as_deref().unwrap_or(""));
            unique(&base, "pin", pin_ids)
        })
        .collect();
    for (p, id) in card.pins.iter().zip(&ids) {
        pkcs15_pin(s, p, id, card, &ids);
    }
}

fn pkcs15_pin(s: &mut String, p: &Pkcs15Pin, id: &str, card: &Pkcs15Card, ids: &[String]) {
    let f = &p.flags;
    let _ = writeln!(
        s,
        "\n# From the card's AODF: authId {}, flags {}.",
        hex(&p.auth_id),
        flag_names(f).join(", ")
    );
    let _ = writeln!(s, "[[application.pin]]");
    let _ = writeln!(s, "id = {}", toml_str(id));
    if let Some(l) = &p.label {
        let _ = writeln!(s, "label = {}", toml_str(l));
    }
    let role = if f.so_pin {
        "security-officer"
    } else if f.unblocking_pin {
        "unblock"
    } else {
        "user"
    };
    let _ = writeln!(s, "role = {}", toml_str(role));
    let r = p.reference_or_default();
    let scope = if r & 0x80 != 0 {
        "specific to the application"
    } else {
        "global to the card"
    };
    let _ = writeln!(s, "reference = 0x{r:02X}                 # {scope}");
    let own_df = |path: &Vec<u8>| {
        Some(path) == card.application.path.as_ref() || path[..] == [0x3F, 0x00, 0x50, 0x15]
    };
    if let Some(path) = p.path.as_ref().filter(|p| !own_df(p)) {
        let _ = writeln!(
            s,
            "# The card names DF {} for this PIN (`select` takes an AID if it is another application's).",
            hex(path)
        );
    }
    // The PIN that unblocks it: its parent authId, when that is a PUK or
    // the SO PIN of this card.
    let parent = p.parent_auth_id.as_ref().and_then(|parent| {
        card.pins
            .iter()
            .position(|q| q.auth_id == *parent && q.auth_id != p.auth_id)
    });
    if let Some(i) = parent {
        let q = &card.pins[i];
        if q.flags.unblocking_pin || q.flags.so_pin {
            let _ = writeln!(s, "unblocked-by = {}", toml_str(&ids[i]));
            let form = if q.flags.unblocking_pin {
                "code-and-new"
            } else {
                "new-after-so"
            };
            let _ = writeln!(
                s,
                "unblock = {}           # check the RESET RETRY COUNTER form in the card's documentation",
                toml_str(form)
            );
        }
    }
    let (encoding, digits) = match p.pin_type {
        PinType::AsciiNumeric => (Some("ascii"), true),
        PinType::Utf8 => (Some("utf8"), false),
        PinType::Bcd => (Some("bcd"), true),
        PinType::Iso9564_1 => (Some("format2"), true),
        PinType::HalfNibbleBcd => (None, true),
    };
    match encoding {
        Some(e) => {
            let _ = writeln!(
                s,
                "encoding = {}                # pinType {}",
                toml_str(e),
                pin_type_name(p.pin_type)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "encoding = \"TODO\"                # pinType half-nibble-bcd has no encoding here"
            );
        }
    }
    let max = match (p.max_length, encoding) {
        (Some(m), _) => Some(m),
        (None, Some("format2")) => Some(12),
        (None, Some("bcd")) if p.stored_length > 0 => Some(p.stored_length * 2),
        (None, _) if p.stored_length > 0 => Some(p.stored_length),
        _ => None,
    };
    if encoding == Some("format2") {
        let _ = writeln!(s, "stored-length = 8");
    } else if f.needs_padding && p.stored_length > 0 {
        match p.pad_char {
            Some(b) => {
                let _ = writeln!(s, "pad = 0x{b:02X}");
            }
            None => {
                let _ = writeln!(
                    s,
                    "pad = \"TODO\"                     # needs-padding, and the card gives no padChar"
                );
            }
        }
        let _ = writeln!(s, "stored-length = {}", p.stored_length);
    }
    let _ = writeln!(s, "min-length = {}", p.min_length.max(1));
    match max {
        Some(m) => {
            let _ = writeln!(s, "max-length = {}", m.min(127));
        }
        None => {
            let _ = writeln!(s, "max-length = \"TODO\"");
        }
    }
    let _ = writeln!(
        s,
        "chars = {}",
        toml_str(if digits { "digits" } else { "any" })
    );
    let _ = writeln!(
        s,
        "# max-tries = 3                   # PKCS#15 does not say: the counter's maximum (default 3)"
    );
    s.push_str(TRIES_COMMENT);
}

fn print_probe(r: &ProbeReport) {
    if let Some(reader) = &r.reader {
        println!("{reader}");
    }
    println!("  ATR: {}", spaced(&r.atr));
    if r.applications.is_empty() {
        println!("  applications answering SELECT: none of the known AIDs");
    }
    for a in &r.applications {
        println!(
            "  application answering SELECT: {} ({})",
            a.name,
            spaced(&a.aid)
        );
    }
    match &r.pkcs15 {
        None => println!("  PKCS#15: none"),
        Some(p) => {
            let aid = p
                .aid
                .as_deref()
                .map(spaced)
                .unwrap_or_else(|| "no AID".into());
            println!("  PKCS#15: application {aid}, {} PIN(s)", p.pins.len());
            for pin in &p.pins {
                println!(
                    "    {} reference {}, {} {}-{} stored {}{}, flags {}",
                    pin.label.as_deref().unwrap_or("(no label)"),
                    pin.reference,
                    pin.pin_type,
                    pin.min_length,
                    pin.max_length
                        .map_or_else(|| "?".to_string(), |m| m.to_string()),
                    pin.stored_length,
                    pin.pad_char
                        .as_deref()
                        .map(|c| format!(" pad {c}"))
                        .unwrap_or_default(),
                    pin.flags.join(", ")
                );
            }
        }
    }
    match &r.recognised_by {
        Some(p) => println!(
            "  recognised by: {} ({})",
            p.profile,
            p.applications.join(", ")
        ),
        None => println!("  recognised by: no profile"),
    }
    let sent: Vec<String> = r.sent.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("  sent: {} (no VERIFY)", sent.join(", "));
    println!("\n# ---- draft profile ----");
    print!("{}", r.draft);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcard::sim::SimBackend;
    use crate::vcard::{CardConfig, Profile, Quirk, VirtualCard};

    const READER: &str = "Sim Reader 0";

    fn probe_card(card: VirtualCard) -> (SimBackend, ProbeReport) {
        let sim = SimBackend::new();
        sim.add_reader(READER);
        sim.insert_card(READER, card).unwrap();
        let mut t = sim.connect(READER).unwrap();
        let report = probe(t.as_mut(), &ProfileSet::builtin()).unwrap();
        (sim, report)
    }

    fn counters(sim: &SimBackend, names: &[&str]) -> Vec<Option<u8>> {
        sim.with_card(READER, |c| names.iter().map(|n| c.tries(n)).collect())
            .unwrap()
    }

    fn only_reading_commands(sim: &SimBackend) {
        let sent = sim.with_card(READER, |c| c.commands().to_vec()).unwrap();
        assert!(!sent.is_empty());
        for (h, _) in sent {
            assert!(PROBE_INS.contains(&h[1]), "sent {h:02X?}");
        }
    }

    fn load(text: &str) -> Result<CardProfile, ProfileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("draft.toml");
        std::fs::write(&path, text).unwrap();
        ProfileSet::builtin().load_file(&path)
    }

    #[test]
    fn probing_an_unknown_card_spends_nothing_and_drafts_a_profile() {
        let card = VirtualCard::new(
            CardConfig::for_profile(Profile::Iso)
                .with_quirk(Quirk::EmptyVerifySpendsTry)
                .with_quirk(Quirk::WrongVerify6300),
        );
        let (sim, r) = {
            let sim = SimBackend::new();
            sim.add_reader(READER);
            sim.insert_card(READER, card).unwrap();
            let before = counters(&sim, &["pin", "puk"]);
            let mut t = sim.connect(READER).unwrap();
            let r = probe(t.as_mut(), &ProfileSet::builtin()).unwrap();
            assert_eq!(counters(&sim, &["pin", "puk"]), before);
            (sim, r)
        };
        only_reading_commands(&sim);
        assert!(r.recognised_by.is_none());
        assert!(r.pkcs15.is_none());
        assert_eq!(r.sent.keys().copied().collect::<Vec<_>>(), ["select"]);
        // The card's application answers the ISO template's AID.
        assert!(
            r.applications.iter().any(|a| a.aid == "F06361726467617465"),
            "{:?}",
            r.applications.iter().map(|a| &a.name).collect::<Vec<_>>()
        );
        // The draft names what cannot be known, and is refused until it is
        // completed; never an empty VERIFY.
        assert!(!r.draft.contains("source = \"empty-verify\" }]\n"));
        assert!(r.draft.lines().all(|l| !l.starts_with("tries")));
        let e = load(&r.draft).unwrap_err();
        assert!(e.message.contains("TODO"), "{e}");
        let done = r
            .draft
            .replace("reference = \"TODO\"", "reference = 0x81")
            .replace("encoding = \"TODO\"", "encoding = \"ascii\"")
            .replace("min-length = \"TODO\"", "min-length = 4")
            .replace("max-length = \"TODO\"", "max-length = 8");
        let p = load(&done).unwrap_or_else(|e| panic!("{e}\n{done}"));
        let pin = &p.applications[0].pins[0];
        assert_eq!(pin.credential.reference, 0x81);
        assert!(pin.credential.status.is_empty());
        assert!(p.atr_matches(&hex_bytes(&r.atr)));
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        crate::card::profile::parse_hex(s).unwrap()
    }

    #[test]
    fn probing_a_pkcs15_card_reads_its_pins_and_drafts_a_valid_profile() {
        let card = VirtualCard::new(CardConfig::for_profile(Profile::Pkcs15));
        let sim = SimBackend::new();
        sim.add_reader(READER);
        sim.insert_card(READER, card).unwrap();
        let before = counters(&sim, &["pin", "puk"]);
        let mut t = sim.connect(READER).unwrap();
        let r = probe(t.as_mut(), &ProfileSet::builtin()).unwrap();
        assert_eq!(counters(&sim, &["pin", "puk"]), before);
        only_reading_commands(&sim);
        let p15 = r.pkcs15.as_ref().unwrap();
        assert_eq!(p15.pins.len(), 2);
        assert!(r.sent.contains_key("readBinary"));
        let p = load(&r.draft).unwrap_or_else(|e| panic!("{e}\n{}", r.draft));
        let pins: Vec<(&str, u8)> = p.applications[0]
            .pins
            .iter()
            .map(|p| (p.id, p.credential.reference))
            .collect();
        assert_eq!(pins, [("user-pin", 0x81), ("puk", 0x82)], "{}", r.draft);
        let user = &p.applications[0].pins[0].credential;
        assert_eq!(user.format.stored_len, 8);
        assert_eq!(user.format.pad, Some(0xFF));
        assert!(user.status.is_empty(), "tries are never guessed");
    }

    #[test]
    fn probing_a_yubikey_names_its_profile_and_bases() {
        let (_sim, r) = probe_card(VirtualCard::new(CardConfig::for_profile(Profile::YubiKey)));
        let rec = r.recognised_by.as_ref().unwrap();
        assert_eq!(rec.profile, "yubikey");
        assert_eq!(rec.applications, ["piv", "openpgp"]);
        assert!(r.draft.contains("base = \"piv.piv\""), "{}", r.draft);
        load(&r.draft.replace("my-card", "my-yubikey")).unwrap();
    }

    #[test]
    fn the_guard_refuses_a_verify() {
        let sim = SimBackend::new();
        sim.add_reader(READER);
        sim.insert_card(
            READER,
            VirtualCard::new(CardConfig::for_profile(Profile::Piv)),
        )
        .unwrap();
        let mut t = sim.connect(READER).unwrap();
        let mut g = ReadOnly::new(t.as_mut());
        assert!(g.transmit(&[0x00, 0x20, 0x00, 0x80]).is_err());
        assert!(sim.with_card(READER, |c| c.commands().is_empty()).unwrap());
    }
}
