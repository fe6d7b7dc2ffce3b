//! `cardgate origins list|unlock` as a process, in a home of its own: the
//! sites locked after too many wrong PINs, read from the lockout file the
//! daemon keeps, and the user's unlock written back to it.

#[path = "common/home.rs"]
mod home;

use home::Home;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

impl Home {
    /// Where the daemon keeps the lockout state by default.
    fn lockout_file(&self) -> PathBuf {
        self.path("data/cardgate/lockout.toml")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cardgate().args(args).output().unwrap()
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn list_shows_locked_sites_and_unlock_lifts_a_lock() {
    let home = Home::new();
    write(
        &home.lockout_file(),
        &format!(
            "[sites.\"https://bank.example\"]\nstrikes = 6\nlocked_until_unlocked = true\n\n\
             [sites.\"https://shop.example\"]\nstrikes = 3\nlocked_until = {}\n\n\
             [sites.\"https://idle.example\"]\nstrikes = 1\n",
            unix_now() + 120
        ),
    );
    let out = home.run(&["origins", "list"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains(
            "locked   https://bank.example until you unlock it: cardgate origins unlock https://bank.example"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("locked   https://shop.example for "),
        "{stdout}"
    );
    assert!(!stdout.contains("idle.example"), "{stdout}");

    let out = home.run(&["origins", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let locked = v["locked"].as_array().unwrap();
    assert_eq!(locked.len(), 2, "{v}");
    assert_eq!(locked[0]["origin"], "https://bank.example");
    assert_eq!(locked[0]["lock"], "UNTIL_UNLOCKED");
    assert_eq!(locked[0]["strikes"], 6);
    assert_eq!(locked[1]["lock"], "FOR");
    assert!(
        locked[1]["retryAfter"]
            .as_u64()
            .is_some_and(|s| (100..=120).contains(&s)),
        "{v}"
    );

    // Normalised like `allow`.
    let out = home.run(&["origins", "unlock", "HTTPS://Bank.Example:443"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "unlocked https://bank.example");
    let stdout = text(&home.run(&["origins", "list"]).stdout);
    assert!(!stdout.contains("bank.example"), "{stdout}");
    assert!(stdout.contains("locked   https://shop.example"), "{stdout}");
    let file = std::fs::read_to_string(home.lockout_file()).unwrap();
    assert!(!file.contains("bank.example"), "{file}");
    assert!(file.contains("idle.example"), "{file}");

    // Nothing to unlock: exit 1; not an origin: exit 2.
    let out = home.run(&["origins", "unlock", "https://bank.example"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not locked"));
    let out = home.run(&["origins", "unlock", "bank.example"]);
    assert_eq!(out.status.code(), Some(2));
    // A temporary lock is lifted too.
    let out = home.run(&["origins", "unlock", "https://shop.example"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value =
        serde_json::from_slice(&home.run(&["origins", "list", "--json"]).stdout).unwrap();
    assert_eq!(v["locked"], serde_json::json!([]));
}

#[test]
fn the_lockout_file_comes_from_the_configuration() {
    let home = Home::new();
    let custom = home.path("elsewhere/lockout.toml");
    write(
        &home.path("config/cardgate/config.toml"),
        &format!(
            "[limits]\nlockout_file = {:?}\n",
            custom.display().to_string()
        ),
    );
    write(
        &custom,
        "[sites.\"https://bank.example\"]\nstrikes = 6\nlocked_until_unlocked = true\n",
    );
    let out = home.run(&["config", "show"]);
    assert!(
        text(&out.stdout).contains(&custom.display().to_string()),
        "{}",
        text(&out.stdout)
    );
    let out = home.run(&["origins", "unlock", "https://bank.example"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!home.lockout_file().exists());
    // A broken file is an error, not an empty list.
    write(&custom, "sites = 3\n");
    let out = home.run(&["origins", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("lockout.toml"),
        "{}",
        text(&out.stderr)
    );
}
