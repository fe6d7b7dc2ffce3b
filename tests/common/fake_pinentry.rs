//! Scripted pinentry programs: small shell scripts that speak Assuan like
//! the real pinentry, answering GETPIN with given values in turn or by what
//! the dialog shows, cancelling, never answering, or answering CONFIRM a
//! given way. Every command line the daemon sends is appended to a log file,
//! and the script's pid is recorded.
#![allow(dead_code)] // each test binary uses part of it

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the script does on GETPIN / CONFIRM.
pub enum Behaviour<'a> {
    /// Answers successive GETPINs with these values.
    Pins(&'a [&'a str]),
    /// The same, each after a second (a user typing).
    SlowPins(&'a [&'a str]),
    /// Answers each GETPIN by what the dialog shows: the value of the first
    /// `(needle, value)` whose needle is in the last SETTITLE or SETDESC
    /// line (escapes not decoded; an empty needle matches any dialog);
    /// cancels when none does.
    ByTitle(&'a [(&'a str, &'a str)]),
    Cancel,
    /// Never answers (the daemon must time out and kill it).
    Hang,
    /// CONFIRM answered with OK (allow once).
    ConfirmOk,
    /// CONFIRM answered "not confirmed" (the "always" button).
    ConfirmNotOk,
    /// CONFIRM cancelled (deny).
    ConfirmCancel,
}

pub struct FakePinentry {
    pub program: PathBuf,
    pub log: PathBuf,
    pub pids: PathBuf,
}

impl FakePinentry {
    pub fn new(dir: &Path, name: &str, behaviour: Behaviour) -> FakePinentry {
        let program = dir.join(name);
        let log = dir.join(format!("{name}.log"));
        let pids = dir.join(format!("{name}.pids"));
        let (pins, getpin, confirm) = match behaviour {
            Behaviour::Pins(values) | Behaviour::SlowPins(values) => {
                let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
                let wait = if matches!(behaviour, Behaviour::SlowPins(_)) {
                    "sleep 1; "
                } else {
                    ""
                };
                (
                    quoted.join(" "),
                    format!(
                        r#"{wait}echo "D ${{PINS[$i]}}"; i=$((i+1)); echo $i > "$IDX"; echo OK"#
                    ),
                    "echo OK",
                )
            }
            Behaviour::ByTitle(answers) => {
                let quote = |s: &str| {
                    assert!(!s.contains('\''), "no quotes in a scripted answer");
                    format!("'{s}'")
                };
                let mut getpin = String::from("if false; then :; ");
                for (needle, value) in answers {
                    getpin += &format!(
                        r#"elif [[ "$TITLE" == *{n}* || "$DESC" == *{n}* ]]; then echo "D "{v}; echo OK; "#,
                        n = quote(needle),
                        v = quote(value),
                    );
                }
                getpin += "else echo 'ERR 83886179 Operation cancelled <Pinentry>'; fi";
                (String::new(), getpin, "echo OK")
            }
            Behaviour::Cancel => (
                String::new(),
                "echo 'ERR 83886179 Operation cancelled <Pinentry>'".into(),
                "echo 'ERR 83886179 Operation cancelled <Pinentry>'",
            ),
            Behaviour::Hang => (String::new(), "exec sleep 600".into(), "exec sleep 600"),
            Behaviour::ConfirmOk => (String::new(), "echo ERR 1 no".into(), "echo OK"),
            Behaviour::ConfirmNotOk => (
                String::new(),
                "echo ERR 1 no".into(),
                "echo 'ERR 83886194 Not confirmed <Pinentry>'",
            ),
            Behaviour::ConfirmCancel => (
                String::new(),
                "echo ERR 1 no".into(),
                "echo 'ERR 83886179 Operation cancelled <Pinentry>'",
            ),
        };
        let script = format!(
            r#"#!/bin/bash
echo $$ >> '{pids}'
PINS=({pins})
# The position in PINS survives from one dialog (process) to the next.
IDX='{idx}'
i=$(cat "$IDX" 2>/dev/null || echo 0)
echo "OK Pleased to meet you"
while IFS= read -r line; do
  echo "$line" >> '{log}'
  case "$line" in
    SETTITLE*) TITLE="$line"; echo OK ;;
    SETDESC*) DESC="$line"; echo OK ;;
    GETPIN) {getpin} ;;
    CONFIRM*) {confirm} ;;
    BYE) echo OK; exit 0 ;;
    *) echo OK ;;
  esac
done
"#,
            pids = pids.display(),
            idx = dir.join(format!("{name}.idx")).display(),
            log = log.display(),
        );
        std::fs::write(&program, script).unwrap();
        let _ = std::fs::remove_file(dir.join(format!("{name}.idx")));
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakePinentry { program, log, pids }
    }

    /// Everything the daemon told the dialog so far, escapes decoded.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .replace("%0A", "\n")
            .replace("%25", "%")
    }

    /// How many times the dialog was started.
    pub fn runs(&self) -> usize {
        std::fs::read_to_string(&self.pids)
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// No instance of the script is still running.
    pub fn all_gone(&self) -> bool {
        std::fs::read_to_string(&self.pids)
            .unwrap_or_default()
            .lines()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    }
}
