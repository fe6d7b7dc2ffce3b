//! Optional `wss://` for browsers that refuse `ws://` from https pages
//! (Safari): `cardgate tls init` makes a local CA and a certificate for
//! 127.0.0.1, ::1 and localhost, signed by it; the daemon then accepts TLS
//! on its own port, next to plain HTTP (it tells them apart by the first
//! byte a client sends).
//!
//! The CA is name-constrained to those three names, and its private key is
//! never written anywhere: once the certificate is signed the key is gone,
//! so trusting the CA can never let anyone vouch for another site. Renewing
//! means running `cardgate tls init --force` again and trusting the new CA.

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// Apple's limit for locally trusted server certificates.
pub(crate) const VALIDITY_DAYS: i64 = 825;

/// The files `cardgate tls init` writes.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The CA certificate users trust in their browser or OS.
    pub ca: PathBuf,
    /// The server certificate (127.0.0.1, ::1, localhost).
    pub cert: PathBuf,
    /// Its private key (mode 0600).
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir`.
    pub(crate) fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// What `init` made.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    /// Where the certificate and key were written.
    pub files: TlsFiles,
    /// When the certificate expires.
    pub not_after: OffsetDateTime,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Creates the CA and the server certificate. Existing files are kept
/// unless `force`.
pub(crate) fn init(files: &TlsFiles, force: bool) -> Result<Generated, String> {
    if !force
        && let Some(existing) = [&files.ca, &files.cert, &files.key]
            .into_iter()
            .find(|p| p.exists())
    {
        return Err(format!(
            "{} exists already (use --force to replace the certificate; the new CA must then be trusted again)",
            existing.display()
        ));
    }
    let now = OffsetDateTime::now_utc();
    let not_before = now - Duration::days(1);
    let not_after = now + Duration::days(VALIDITY_DAYS);
    let who = whoami();

    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("cardgate local CA ({who})"));
    ca.distinguished_name
        .push(DnType::OrganizationName, "cardgate");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName("localhost".into()),
            GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 1], [255; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6(Ipv6Addr::LOCALHOST.octets(), [255; 16])),
        ],
        excluded_subtrees: Vec::new(),
    });
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate().map_err(|e| err("generating the CA key", e))?;
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(|e| err("signing the CA", e))?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "cardgate on localhost");
    leaf.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().map_err(|e| err("name", e))?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_key = KeyPair::generate().map_err(|e| err("generating the key", e))?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| err("signing the certificate", e))?;
    // The CA's key goes no further than this function.
    drop(issuer);

    if let Some(dir) = files.key.parent() {
        create_private_dir(dir)?;
    }
    for p in [&files.ca, &files.cert] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&dir.display().to_string(), e))?;
        }
    }
    write_file(&files.key, leaf_key.serialize_pem().as_bytes(), true)?;
    write_file(&files.cert, leaf_cert.pem().as_bytes(), false)?;
    write_file(&files.ca, ca_cert.pem().as_bytes(), false)?;
    Ok(Generated {
        files: files.clone(),
        not_after,
    })
}

fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "user".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("COMPUTERNAME").ok());
    match host {
        Some(h) => format!("{user}@{h}"),
        None => user,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| err(&dir.display().to_string(), e))
}

/// Writes through a temporary file and a rename; `private` files are 0600
/// from the moment they exist.
fn write_file(path: &Path, data: &[u8], private: bool) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut f = o
        .open(&tmp)
        .map_err(|e| err(&tmp.display().to_string(), e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| err(&tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(&path.display().to_string(), e))
}

/// The rustls server configuration for the certificate and key files.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let hint = "(run `cardgate tls init`)";
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e} {hint}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e} {hint}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How to trust the CA, per OS and browser.
pub(crate) fn trust_instructions(ca: &Path) -> String {
    let ca = ca.display();
    format!(
        "\
Trust the CA certificate {ca} once, then set `enabled = true` under [tls] in
config.toml and restart the daemon (`systemctl --user restart cardgate`).
Pages then use wss://127.0.0.1:PORT/ws (or wss://localhost:PORT/ws); the
demo is at https://127.0.0.1:PORT/demo.

  Debian/Ubuntu (Chrome, Chromium — NSS user database; package libnss3-tools):
    certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n 'cardgate local CA' -i {ca}
  Firefox (any OS): Settings → Privacy & Security → Certificates → View
    Certificates → Authorities → Import…, select {ca}, tick
    \"Trust this CA to identify websites\".
  System-wide on Debian (needs root; curl, other tools):
    sudo cp {ca} /usr/local/share/ca-certificates/cardgate-local-ca.crt && sudo update-ca-certificates
  macOS (Safari, Chrome):
    security add-trusted-cert -r trustRoot -p ssl -k ~/Library/Keychains/login.keychain-db {ca}
  Windows (Edge, Chrome):
    certutil -user -addstore Root {ca}

The CA can only vouch for 127.0.0.1, ::1 and localhost (name constraints),
and its private key was discarded after signing: nobody can issue anything
else with it. The certificate is valid for {VALIDITY_DAYS} days; renew with
`cardgate tls init --force` and trust the new CA.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_files_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_dir(&dir.path().join("tls"));
        init(&files, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = std::fs::read_to_string(&files.key).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        // Only the server's key is stored: no other private key anywhere.
        for p in [&files.ca, &files.cert] {
            assert!(!std::fs::read_to_string(p).unwrap().contains("PRIVATE"));
        }
        server_config(&files.cert, &files.key).unwrap();
        assert!(init(&files, false).unwrap_err().contains("exists already"));
        init(&files, true).unwrap();
    }
}
