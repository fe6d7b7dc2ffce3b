//! Declarative transcript tests for the virtual card (in the spirit of
//! Nitrokey opcard-rs): each `tests/transcripts/*.toml` holds a card
//! configuration and a list of steps, command → expected response.
//!
//! ```toml
//! [card]                      # a cardgate::vcard::CardConfig
//! profile = "piv"
//!
//! [[step]]
//! note = "what this step shows"   # optional
//! send = "00 20 00 80 08 '123456' FF FF"   # hex, and ASCII between single quotes
//! sw = "90 00"                # expect this status word (data ignored)
//! # or: expect = "…"          # expect exactly this data || SW
//! # or: prefix = "…"          # expect the response to start with this, SW 9000
//! repeat = 2                  # optional: send it this many times, same expectation
//!
//! [[step]]
//! reset = true                # power-cycle the card
//! ```

use std::path::Path;

use cardgate::vcard::{CardConfig, VirtualCard};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transcript {
    card: CardConfig,
    step: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    note: Option<String>,
    send: Option<String>,
    sw: Option<String>,
    expect: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    reset: bool,
    repeat: Option<usize>,
}

/// Hex digits (whitespace ignored) and 'ASCII' segments.
fn bytes(spec: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut parts = spec.split('\'');
    let mut in_text = false;
    for part in parts.by_ref() {
        if in_text {
            out.extend_from_slice(part.as_bytes());
        } else {
            let hex: String = part.split_whitespace().collect();
            if !hex.len().is_multiple_of(2) {
                return Err(format!("odd number of hex digits in {spec:?}"));
            }
            for i in (0..hex.len()).step_by(2) {
                out.push(
                    u8::from_str_radix(&hex[i..i + 2], 16)
                        .map_err(|e| format!("bad hex in {spec:?}: {e}"))?,
                );
            }
        }
        in_text = !in_text;
    }
    if !in_text {
        return Err(format!("unbalanced quote in {spec:?}"));
    }
    Ok(out)
}

fn show(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let t: Transcript = toml::from_str(&text).map_err(|e| e.to_string())?;
    t.card.validate().map_err(|e| e.to_string())?;
    let mut card = VirtualCard::new(t.card);
    let mut exchanges = 0;
    for (i, step) in t.step.iter().enumerate() {
        let here = format!(
            "step {} ({})",
            i + 1,
            step.note.as_deref().unwrap_or("no note")
        );
        if step.reset {
            if step.send.is_some() {
                return Err(format!("{here}: `reset` and `send` in one step"));
            }
            card.reset();
            continue;
        }
        let send = bytes(step.send.as_deref().ok_or(format!("{here}: no `send`"))?)?;
        let expectations = [&step.sw, &step.expect, &step.prefix]
            .iter()
            .filter(|e| e.is_some())
            .count();
        if expectations != 1 {
            return Err(format!("{here}: give exactly one of sw, expect, prefix"));
        }
        for round in 0..step.repeat.unwrap_or(1) {
            let got = card.process(&send);
            exchanges += 1;
            let fail = |what: &str| {
                Err(format!(
                    "{here}, round {}: sent {}\n  expected {what}\n  got      {}",
                    round + 1,
                    show(&send),
                    show(&got)
                ))
            };
            if let Some(sw) = &step.sw {
                let sw = bytes(sw)?;
                if got.len() < 2 || got[got.len() - 2..] != sw[..] {
                    return fail(&format!("SW {}", show(&sw)));
                }
            } else if let Some(expect) = &step.expect {
                let expect = bytes(expect)?;
                if got != expect {
                    return fail(&show(&expect));
                }
            } else if let Some(prefix) = &step.prefix {
                let prefix = bytes(prefix)?;
                if !got.starts_with(&prefix) || !got.ends_with(&[0x90, 0x00]) {
                    return fail(&format!("{} … 90 00", show(&prefix)));
                }
            }
        }
    }
    Ok(exchanges)
}

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/transcripts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "transcripts missing in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        match run(file) {
            Ok(n) => eprintln!("{name}: {n} exchanges ok"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn hex_and_text_specs() {
    assert_eq!(
        bytes("00 20 'ab' FF").unwrap(),
        vec![0, 0x20, b'a', b'b', 0xFF]
    );
    assert_eq!(bytes("''").unwrap(), Vec::<u8>::new());
    assert!(bytes("0").is_err());
    assert!(bytes("'a").is_err());
}
