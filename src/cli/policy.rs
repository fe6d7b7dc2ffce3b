//! `cardgate policy list|show|check|test`: the PIN policies in use, a
//! card's effective constraints, checking policy files, and trying values
//! against the constraints (never touching the card).

use super::output;
use super::prompt::PinInput;
use super::{CliError, exit};
use crate::card::Token;
use crate::error::Error;
use crate::policy::{
    self, CardPolicy, Matcher, PinPolicy, Policy, PolicyError, PolicySet, PolicySources,
};
use crate::service::Service;
use crate::transport::Backend;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub(super) enum PolicyCommand {
    /// List the policy files in use (built in, system, user) and those refused.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the effective constraints of a card's PIN objects (or, with
    /// --profile, of a profile's default card, without a reader).
    Show(Where),
    /// Check policy files: each problem is printed with its file and line.
    Check {
        /// Policy files (TOML).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Test a new PIN against a PIN object's constraints, pass/fail for each.
    /// Reads the current PIN (empty line: unknown) and the new PIN, one per
    /// line, from stdin (a no-echo prompt on a terminal). Nothing is sent to the card.
    Test(Where),
}

#[derive(Args)]
pub(super) struct Where {
    /// Reader name, or a unique part of it (default: the first reader with a card).
    #[arg(long, short)]
    reader: Option<String>,
    /// PIN object id (default: every PIN object for `show`, the user PIN for `test`).
    #[arg(long = "pin", short = 'p', value_name = "ID")]
    pin: Option<String>,
    /// Use this profile's default limits instead of a card in a reader.
    #[arg(long, value_enum, conflicts_with = "reader")]
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(policy::known_profiles()))]
    profile: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// The policy set the daemon and the other commands use, with refused
/// files logged as warnings.
pub(super) fn load() -> Arc<PolicySet> {
    let (set, errors) = PolicySet::load(&sources());
    for e in errors {
        tracing::warn!("policy file ignored: {e}");
    }
    Arc::new(set)
}

static SOURCES: std::sync::OnceLock<PolicySources> = std::sync::OnceLock::new();

/// Uses the configuration's policy directories (`policy_dirs`,
/// `CARDGATE_POLICY_PATH`) from now on.
pub(super) fn use_config(config: &crate::config::Config) {
    let _ = SOURCES.set(config.policy_sources());
}

/// The policy directories: from the configuration when it was loaded.
fn sources() -> PolicySources {
    SOURCES
        .get()
        .cloned()
        .unwrap_or_else(PolicySources::standard)
}

pub(super) fn run(command: PolicyCommand) -> u8 {
    match command {
        PolicyCommand::List { json } => list(json),
        PolicyCommand::Show(w) => output::report(w.json, show(&w), print_show),
        PolicyCommand::Check { files, json } => check(&files, json),
        PolicyCommand::Test(w) => test(&w),
    }
}

// ---- list -----------------------------------------------------------------

fn error_json(e: &PolicyError) -> Value {
    json!({ "file": e.file, "line": e.line, "message": e.message })
}

fn match_json(m: &Matcher) -> Value {
    json!({
        "profile": m.profile,
        "atr": m.atr.as_ref().map(|r| r.as_str()),
        "aid": m.aid.as_deref().map(crate::card::hex),
        "label": m.label.as_ref().map(|r| r.as_str()),
    })
}

fn match_text(m: &Matcher) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &m.profile {
        parts.push(format!("profile={p}"));
    }
    if let Some(r) = &m.atr {
        parts.push(format!("atr=/{}/", r.as_str()));
    }
    if let Some(a) = &m.aid {
        parts.push(format!("aid={}", crate::card::hex(a)));
    }
    if let Some(r) = &m.label {
        parts.push(format!("label=/{}/", r.as_str()));
    }
    parts.join(" ")
}

fn policy_json(p: &Policy) -> Value {
    json!({
        "name": p.name,
        "source": p.source.to_string(),
        "layer": p.layer,
        "description": p.description,
        "match": match_json(&p.matcher),
        "pins": p.pins,
    })
}

fn list(json: bool) -> u8 {
    let sources = sources();
    let (set, errors) = PolicySet::load(&sources);
    if json {
        let dirs: Vec<Value> = sources
            .dirs
            .iter()
            .map(|d| json!({ "kind": d.kind, "path": d.path, "exists": d.path.is_dir() }))
            .collect();
        let v = json!({
            "builtin": sources.builtin,
            "directories": dirs,
            "policies": set.policies().iter().map(policy_json).collect::<Vec<_>>(),
            "errors": errors.iter().map(error_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit::OK;
    }
    println!("Policy sources, lowest precedence first:");
    println!("  builtin (embedded)");
    for d in &sources.dirs {
        let state = if d.path.is_dir() { "" } else { " (absent)" };
        let kind = serde_json::to_value(d.kind).unwrap_or_default();
        println!(
            "  {} {}{state}",
            kind.as_str().unwrap_or(""),
            d.path.display()
        );
    }
    println!("Policies:");
    for p in set.policies() {
        let pins: Vec<&str> = p.pins.keys().map(String::as_str).collect();
        println!(
            "  {:<12} {:<28} pins: {:<12} from {}",
            p.name,
            match_text(&p.matcher),
            pins.join(", "),
            p.source
        );
        if let Some(d) = &p.description {
            println!("  {:<12} {d}", "");
        }
    }
    for e in &errors {
        eprintln!("warning: policy file refused: {e}");
    }
    exit::OK
}

// ---- show -----------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PinReport {
    id: String,
    label: String,
    #[serde(flatten)]
    policy: PinPolicy,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShowReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    reader: Option<String>,
    profile: String,
    token: String,
    pins: Vec<PinReport>,
}

/// The token and its resolved policy: from the card in a reader, or from a
/// profile's default card.
fn resolve(w: &Where) -> Result<(Option<String>, Token, CardPolicy), CliError> {
    let policies = load();
    if let Some(profile) = &w.profile {
        let token = policy::offline_token(profile).ok_or_else(|| {
            CliError::Card(Error::OperationNotSupported(format!(
                "a card without a reader for the {profile} profile"
            )))
        })?;
        let card = policies.resolve(&token, &[]);
        return Ok((None, token, card));
    }
    let backend: Arc<dyn Backend> = Arc::new(crate::transport::pcsc::PcscBackend::new());
    let service =
        Service::with_policies(backend, policies).with_profiles(Arc::new(super::card::profiles()));
    let reader = service.resolve_reader(w.reader.as_deref())?;
    let (token, card) = service.with_engine(&reader, |e| {
        Ok((e.token().clone(), e.card_policy().clone()))
    })?;
    Ok((Some(reader), token, card))
}

fn pin_report(token: &Token, card: &CardPolicy, id: &str) -> Result<PinReport, Error> {
    let pin = token
        .pin(id)
        .ok_or_else(|| Error::PinNotFound(id.to_string()))?;
    let policy = card
        .pin(pin.id)
        .cloned()
        .ok_or_else(|| Error::PinNotFound(id.to_string()))?;
    Ok(PinReport {
        id: pin.id.to_string(),
        label: policy
            .label
            .clone()
            .unwrap_or_else(|| pin.credential.label.clone()),
        policy,
    })
}

fn show(w: &Where) -> Result<ShowReport, CliError> {
    let (reader, token, card) = resolve(w)?;
    let ids: Vec<&str> = match &w.pin {
        Some(id) => vec![id.as_str()],
        None => token.pins.iter().map(|p| p.id).collect(),
    };
    let pins = ids
        .into_iter()
        .map(|id| pin_report(&token, &card, id))
        .collect::<Result<_, _>>()?;
    Ok(ShowReport {
        reader,
        profile: token.profile.clone(),
        token: token.label.clone(),
        pins,
    })
}

fn origin_text(p: &PinPolicy) -> String {
    match (&p.policy, &p.source) {
        (Some(name), Some(source)) => format!("policy {name} ({source})"),
        _ => "the card's limits only".to_string(),
    }
}

fn print_show(r: &ShowReport) {
    match &r.reader {
        Some(reader) => println!("{reader}: {} ({})", r.token, r.profile),
        None => println!("{} ({}), default limits", r.token, r.profile),
    }
    for p in &r.pins {
        let low = p
            .policy
            .try_count_low
            .map(|t| format!(", tryCountLow when <= {t} tries left"))
            .unwrap_or_default();
        println!("  {} ({}): {}{low}", p.id, p.label, origin_text(&p.policy));
        print_constraints(&p.policy, None);
    }
}

fn print_constraints(p: &PinPolicy, results: Option<&[bool]>) {
    let width = p
        .constraints
        .iter()
        .map(|c| c.to_string().len())
        .max()
        .unwrap_or(0);
    for (i, c) in p.constraints.iter().enumerate() {
        let mark = match results.and_then(|r| r.get(i)) {
            Some(true) => "pass  ",
            Some(false) => "FAIL  ",
            None => "",
        };
        println!(
            "    {mark}{:>2}. {:<width$}  {}",
            i + 1,
            c.to_string(),
            c.describe()
        );
    }
}

// ---- check ----------------------------------------------------------------

fn check(files: &[PathBuf], json: bool) -> u8 {
    let mut bad = 0;
    let mut out = Vec::new();
    for path in files {
        match policy::load_file(path, 1) {
            Ok(p) => {
                if !json {
                    let pins: Vec<&str> = p.pins.keys().map(String::as_str).collect();
                    println!(
                        "{}: ok — policy {} for {}, pins: {}",
                        path.display(),
                        p.name,
                        match_text(&p.matcher),
                        pins.join(", ")
                    );
                }
                out.push(json!({ "file": path, "ok": true, "policy": policy_json(&p) }));
            }
            Err(e) => {
                bad += 1;
                if !json {
                    eprintln!("{e}");
                }
                out.push(json!({ "file": path, "ok": false, "error": error_json(&e) }));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "ok": bad == 0, "files": out }))
                .unwrap_or_default()
        );
    }
    if bad == 0 { exit::OK } else { exit::OTHER }
}

// ---- test -----------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TestReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    reader: Option<String>,
    pin: String,
    label: String,
    #[serde(flatten)]
    policy: PinPolicy,
    /// One per constraint, in order: `checkConstraints`.
    results: Vec<bool>,
    ok: bool,
}

fn test(w: &Where) -> u8 {
    let result = run_test(w);
    let failed = matches!(&result, Ok(r) if !r.ok);
    let code = output::report(w.json, result, |r: &TestReport| {
        println!("{} ({}): {}", r.pin, r.label, origin_text(&r.policy));
        print_constraints(&r.policy, Some(&r.results));
        let n = r.results.iter().filter(|ok| !**ok).count();
        if n == 0 {
            println!("the new PIN meets every constraint");
        } else {
            println!("the new PIN breaks {n} of {} constraints", r.results.len());
        }
    });
    if code == exit::OK && failed {
        exit::BAD_VALUE
    } else {
        code
    }
}

fn run_test(w: &Where) -> Result<TestReport, CliError> {
    let (reader, token, card) = resolve(w)?;
    let id = w
        .pin
        .clone()
        .unwrap_or_else(|| token.default_pin().id.to_string());
    let report = pin_report(&token, &card, &id)?;
    let mut input = PinInput::new(!std::io::stdin().is_terminal());
    let old = input.read(&format!("Current {} (empty if unknown): ", report.label))?;
    let new = input.read(&format!("New {}: ", report.label))?;
    // The same check the engine runs before `change` / `init`.
    let results = report.policy.check(&old, &new);
    Ok(TestReport {
        reader,
        pin: report.id,
        label: report.label,
        ok: results.iter().all(|ok| *ok),
        policy: report.policy,
        results,
    })
}
