//! Recognising a card: which profile describes it and which of its
//! applications answer.
//!
//! 1. Profiles naming ATRs: the first whose ATR matches and one of whose
//!    applications answers SELECT describes the whole card.
//! 2. Otherwise every application of the profiles recognised by AID alone
//!    (PIV, OpenPGP …) that answers SELECT is a group of PIN objects on the
//!    card's one token: a card with PIV and OpenPGP shows four PINs.
//! 3. A PKCS#15 card (ISO/IEC 7816-15) no profile names describes its own
//!    PINs: they are read from its AODF ([`super::pkcs15`]).
//! 4. A card no profile describes is `CARD_NOT_SUPPORTED`, with its ATR and
//!    the well-known applications that answered.
//!
//! Only SELECT, READ BINARY (PKCS#15 files) and, for a profile's hook, GET
//! DATA are sent here: never a VERIFY, with or without data.

use super::pkcs15::{self, PinType, Pkcs15Card, Pkcs15Pin};
use super::profile::{AppProfile, CardProfile, Hook, ProfileSet, assemble};
use super::{
    Application, Credential, Encoding, LogoutForm, PinFormat, PinObject, Role, SoMethod, Token,
    hex, intern, openpgp,
};
use crate::apdu::{StatusWord, commands};
use crate::error::Error;
use crate::transport::{self, Transport, TransportError};

/// Applications `cardgate card probe` and an unsupported card's error look
/// for: (name, AID).
pub const WELL_KNOWN_AIDS: &[(&str, &[u8])] = &[
    ("PIV", &commands::PIV_AID),
    ("OpenPGP", &commands::OPENPGP_AID),
    (
        "PKCS#15",
        &[
            0xA0, 0x00, 0x00, 0x00, 0x63, 0x50, 0x4B, 0x43, 0x53, 0x2D, 0x31, 0x35,
        ],
    ),
    (
        "Estonian ID",
        &[
            0xA0, 0x00, 0x00, 0x00, 0x77, 0x01, 0x08, 0x00, 0x07, 0x00, 0x00, 0xFE, 0x00, 0x00,
            0x01, 0x00,
        ],
    ),
    (
        "Belgian eID",
        &[
            0xA0, 0x00, 0x00, 0x01, 0x77, 0x50, 0x4B, 0x43, 0x53, 0x2D, 0x31, 0x35,
        ],
    ),
    (
        "GIDS",
        &[
            0xA0, 0x00, 0x00, 0x03, 0x97, 0x42, 0x54, 0x46, 0x59, 0x02, 0x01,
        ],
    ),
    (
        "German eID",
        &[0xE8, 0x07, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x03, 0x02],
    ),
    (
        "FIDO U2F",
        &[0xA0, 0x00, 0x00, 0x06, 0x47, 0x2F, 0x00, 0x01],
    ),
    ("Yubico OATH", &[0xA0, 0x00, 0x00, 0x05, 0x27, 0x21, 0x01]),
    ("EMV payment (PPSE)", b"2PAY.SYS.DDF01"),
];

/// Recognises the card behind `t` with `profiles`.
pub fn recognise(t: &mut dyn Transport, profiles: &ProfileSet) -> Result<Token, Error> {
    match detect(t, profiles) {
        Err(TransportError::CardReset) => {
            // Another application reset the card under us: once more.
            t.reconnect(false)?;
            detect(t, profiles)?
        }
        other => other?,
    }
}

fn detect(
    t: &mut dyn Transport,
    profiles: &ProfileSet,
) -> Result<Result<Token, Error>, TransportError> {
    let atr = t.atr().to_vec();
    let candidates: Vec<&CardProfile> = profiles.profiles().filter(|p| !p.template).collect();
    for profile in candidates.iter().filter(|p| !p.atr.is_empty()) {
        if !profile.atr_matches(&atr) {
            continue;
        }
        let answered = answering(t, profile.applications.iter())?;
        if !answered.is_empty() {
            let label = profile.label.clone();
            let clears = profile.select_clears_other;
            if let Some(token) = build(t, &profile.name, label, clears, &answered)? {
                return Ok(Ok(token));
            }
        }
    }
    // Profiles recognised by AID alone: every application that answers.
    let mut answered: Vec<&AppProfile> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for profile in candidates.iter().filter(|p| p.atr.is_empty()) {
        let apps = answering(
            t,
            profile
                .applications
                .iter()
                .filter(|a| !answered.iter().any(|b| b.aid == a.aid)),
        )?;
        if !apps.is_empty() {
            names.push(&profile.name);
            answered.extend(apps);
        }
    }
    if !answered.is_empty() {
        let name = names.join("+");
        let clears = names.len() > 1
            || candidates
                .iter()
                .find(|p| p.name == name)
                .is_none_or(|p| p.select_clears_other);
        if let Some(token) = build(t, &name, None, clears, &answered)? {
            return Ok(Ok(token));
        }
    }
    // A PKCS#15 card describes its own PINs.
    if let Some(card) = pkcs15::discover(t)?
        && let Some(token) = pkcs15_token(&card)
    {
        return Ok(Ok(token));
    }
    let applications = probe(t)?;
    Ok(Err(Error::CardNotSupported {
        atr: hex(&atr),
        applications: applications.iter().map(|(n, _)| n.to_string()).collect(),
    }))
}

/// The applications of `apps` that answer SELECT with 9000.
fn answering<'a>(
    t: &mut dyn Transport,
    apps: impl Iterator<Item = &'a AppProfile>,
) -> Result<Vec<&'a AppProfile>, TransportError> {
    let mut found = Vec::new();
    for app in apps {
        if answers(t, &app.aid)? {
            found.push(app);
        }
    }
    Ok(found)
}

/// The well-known applications that answer SELECT (for an unsupported
/// card's error and `cardgate card probe`).
pub fn probe(t: &mut dyn Transport) -> Result<Vec<(&'static str, Vec<u8>)>, TransportError> {
    let mut found = Vec::new();
    for (name, aid) in WELL_KNOWN_AIDS {
        if answers(t, aid)? {
            found.push((*name, aid.to_vec()));
        }
    }
    Ok(found)
}

/// Whether the card answers SELECT of `aid` with 9000 (nothing else is
/// sent).
pub fn answers(t: &mut dyn Transport, aid: &[u8]) -> Result<bool, TransportError> {
    Ok(transport::exchange(t, &commands::select_aid(aid))?.sw == StatusWord::Ok)
}

fn build(
    t: &mut dyn Transport,
    profile: &str,
    label: Option<String>,
    select_clears_other: bool,
    answered: &[&AppProfile],
) -> Result<Option<Token>, TransportError> {
    let (mut applications, mut pins) = assemble(answered);
    // Applications whose PINs the card describes (PKCS#15), with what the
    // profile adds to them.
    for a in answered.iter().filter(|a| a.pkcs15) {
        let Some(index) = applications
            .iter()
            .position(|x| x.id == a.id && x.aid == a.aid)
        else {
            continue;
        };
        let Some(card) = pkcs15::discover(t)? else {
            tracing::debug!(application = a.id, "no PKCS#15 description on the card");
            continue;
        };
        let mut found = pkcs15_pins(&card, index);
        if let Err(e) = super::profile::patch_pins(&mut found, &a.patches) {
            tracing::warn!(application = a.id, error = %e, "the profile's PIN patches do not fit this card");
            continue;
        }
        pins.extend(found);
    }
    if pins.is_empty() {
        return Ok(None);
    }
    // Ids stay unique on the token: a clash across applications takes the
    // application's id as a prefix.
    let mut seen: Vec<&'static str> = Vec::new();
    for pin in &mut pins {
        if seen.contains(&pin.id) {
            pin.id = intern(&format!("{}-{}", applications[pin.app].id, pin.id));
        }
        seen.push(pin.id);
    }
    for i in 0..applications.len() {
        if applications[i].hook == Some(Hook::Openpgp) {
            transport::exchange(t, &commands::select_aid(&applications[i].aid))?;
            openpgp::hook(t, i, &mut applications, &mut pins)?;
        }
    }
    let label = label.unwrap_or_else(|| {
        let mut labels: Vec<&str> = Vec::new();
        for a in &applications {
            if !labels.contains(&a.label.as_str()) {
                labels.push(&a.label);
            }
        }
        labels.join(" + ")
    });
    tracing::debug!(
        profile,
        applications = applications.len(),
        "card recognised"
    );
    Ok(Some(Token {
        profile: profile.to_string(),
        label,
        applications,
        select_clears_other,
        pins,
    }))
}

impl ProfileSet {
    /// The token a profile presents when its card reports nothing special
    /// (every application, default limits): for checking policies and
    /// showing profiles without a card.
    pub fn offline_token(&self, name: &str) -> Option<Token> {
        let p = self.get(name)?;
        let apps: Vec<&AppProfile> = p.applications.iter().collect();
        let (applications, pins) = assemble(&apps);
        let label = p.label.clone().unwrap_or_else(|| {
            applications
                .first()
                .map_or_else(String::new, |a| a.label.clone())
        });
        Some(Token {
            profile: p.name.clone(),
            label,
            applications,
            select_clears_other: p.select_clears_other,
            pins,
        })
    }
}

/// The token of a PKCS#15 card from what its AODF says (PKCS#15 v1.1
/// §6.8): each PIN's label, reference, type, lengths, pad character and
/// flags, and the unblocking PIN named by its authId. The card does not
/// say how to read a counter: none is read (a site's value is refused at
/// an unknown count; the user's dialog, pinpad and command line may go
/// on, and learn the count from the card's answers). `None` when the
/// application has no AID to select again or no usable PIN.
fn pkcs15_token(card: &Pkcs15Card) -> Option<Token> {
    let aid = card.application.aid.clone()?;
    let label = card
        .application
        .label
        .clone()
        .unwrap_or_else(|| "PKCS#15 card".into());
    let mut pins = pkcs15_pins(card, 0);
    let first_user = pins.iter().position(|p| p.credential.role == Role::User)?;
    let first = pins.remove(first_user);
    pins.insert(0, first);
    Some(Token {
        profile: "pkcs15".into(),
        label: label.clone(),
        applications: vec![Application {
            id: "pkcs15",
            label,
            aid,
            serial: None,
            hook: None,
        }],
        select_clears_other: true,
        pins,
    })
}

/// The PIN objects a PKCS#15 description gives, in application `app`.
fn pkcs15_pins(card: &Pkcs15Card, app: usize) -> Vec<PinObject> {
    let usable: Vec<&Pkcs15Pin> = card
        .pins
        .iter()
        .filter(|p| !matches!(p.pin_type, PinType::HalfNibbleBcd))
        .collect();
    let creds: Vec<(&Pkcs15Pin, Credential)> =
        usable.iter().map(|p| (*p, pkcs15_credential(p))).collect();
    let mut pins = Vec::new();
    let mut ids: Vec<&'static str> = Vec::new();
    for (p, cred) in &creds {
        let base = match cred.role {
            Role::SecurityOfficer => "so-pin",
            Role::Unblock => "puk",
            _ => "pin",
        };
        let mut id = intern(base);
        let mut n = 2;
        while ids.contains(&id) {
            id = intern(&format!("{base}{n}"));
            n += 1;
        }
        ids.push(id);
        // PKCS#15 convention: a PIN's own authId names the PIN that
        // unblocks it.
        let so = p
            .parent_auth_id
            .as_ref()
            .filter(|_| !p.flags.unblock_disabled)
            .and_then(|parent| {
                creds
                    .iter()
                    .find(|(q, _)| q.auth_id == *parent && q.auth_id != p.auth_id)
            })
            .map(|(_, c)| SoMethod::CodeWithNewPin(c.clone()));
        pins.push(PinObject {
            id,
            app,
            credential: cred.clone(),
            so,
            reset_code: None,
        });
    }
    pins
}

fn pkcs15_credential(p: &Pkcs15Pin) -> Credential {
    let (encoding, numeric) = match p.pin_type {
        PinType::Bcd => (Encoding::Bcd, true),
        PinType::AsciiNumeric => (Encoding::Ascii, true),
        PinType::Iso9564_1 => (Encoding::Format2, true),
        PinType::Utf8 | PinType::HalfNibbleBcd => (Encoding::Utf8, false),
    };
    let max_len = p
        .max_length
        .unwrap_or(p.stored_length)
        .max(p.min_length.max(1));
    let (pad, stored_len) = if p.flags.needs_padding {
        (Some(p.pad_char.unwrap_or(0xFF)), p.stored_length)
    } else {
        (None, 0)
    };
    let stored_len = if encoding == Encoding::Format2 {
        8
    } else {
        stored_len
    };
    let role = if p.flags.so_pin {
        Role::SecurityOfficer
    } else if p.flags.unblocking_pin {
        Role::Unblock
    } else {
        Role::User
    };
    let reference = p.reference_or_default();
    Credential {
        label: p
            .label
            .clone()
            .unwrap_or_else(|| format!("PIN {reference:02X}")),
        role,
        app: 0,
        reference,
        change_reference: reference,
        format: PinFormat {
            min_len: p.min_length.max(1),
            max_len,
            numeric,
            encoding,
            pad,
            stored_len,
        },
        status: Vec::new(),
        // An unblocking PIN travels with the new PIN (RESET RETRY
        // COUNTER P1=00); it is not checked alone.
        verifiable: !p.flags.unblocking_pin,
        default_max_tries: 3,
        checked_by_change: false,
        logout: LogoutForm::VerifyFf,
        logout_also: Vec::new(),
        sw_map: Vec::new(),
        new_same_as_old: Vec::new(),
    }
}
