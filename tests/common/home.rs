//! A home of its own for the `cardgate` binary under test: its config,
//! data and system files in a temporary directory, and nothing of the
//! caller's environment that would change what it reads or where it logs.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_cardgate");

pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn user_config(&self) -> PathBuf {
        self.path("config/cardgate/config.toml")
    }

    pub fn system_config(&self) -> PathBuf {
        self.path("etc/config.toml")
    }

    /// Writes `text` to `path`, making its folders.
    pub fn write(&self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// The user's allowlist holds `origin`.
    pub fn allow_origin(&self, origin: &str) {
        self.write(
            &self.path("config/cardgate/origins.toml"),
            &format!("allowed = [\"{origin}\"]\n"),
        );
    }

    /// `program` in this home, stdin null.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("CARDGATE_SYSTEM_CONFIG", self.system_config())
            .env_remove("CARDGATE_CONFIG")
            .env_remove("CARDGATE_LOG")
            .env_remove("CARDGATE_POLICY_PATH")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null());
        c
    }

    /// The binary under test in this home.
    pub fn cardgate(&self) -> Command {
        self.cmd(BIN)
    }
}
