//! The browser extension's JavaScript (native/extension/): its close-code
//! handling between the page's socket, the extension and the native host,
//! run in node with stand-ins for the browser (tests/browser/extension.test.mjs).
//! Needs Node.js (>= 20), as the browser test does; no browser.

use std::path::Path;
use std::process::Command;

#[test]
fn extension_close_codes() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/extension.test.mjs");
    let out = Command::new("node")
        .arg("--test")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` (install Node.js >= 20): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The runner ran the tests, not nothing.
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(!stdout.contains("# pass 0\n"), "{stdout}");
}
