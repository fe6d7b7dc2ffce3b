//! `cardgate service install|uninstall|status`: the systemd user units for
//! the current user.
//!
//! When the Debian package's units are in `/usr/lib/systemd/user/` and this
//! is the packaged binary, `install` only enables them; otherwise it writes
//! `cardgate.service` and `cardgate.socket` into `~/.config/systemd/user/`
//! with `ExecStart=` pointing at this binary. Then it runs `systemctl
//! --user` (the program named by `CARDGATE_SYSTEMCTL`, if set), and says so
//! plainly when that is not possible.

use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub(super) const SERVICE_UNIT: &str = include_str!("../../packaging/systemd/cardgate.service");
pub(super) const SOCKET_UNIT: &str = include_str!("../../packaging/systemd/cardgate.socket");
/// Where the Debian package installs the units.
pub(super) const PACKAGED_DIR: &str = "/usr/lib/systemd/user";
const PACKAGED_BINARY: &str = "/usr/bin/cardgate";
/// The first line of the units `install` writes (so `uninstall` only
/// removes its own files).
const MARKER: &str =
    "# Written by `cardgate service install`; removed by `cardgate service uninstall`.";

#[derive(Subcommand)]
pub(super) enum ServiceCommand {
    /// Install and start the user units (cardgate.socket starts the daemon on demand).
    Install {
        /// Write the units into ~/.config/systemd/user even when packaged ones exist.
        #[arg(long)]
        copy: bool,
        /// Only write the units; do not run systemctl.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop and disable the user units, and remove the ones `install` wrote.
    Uninstall,
    /// Show the units' state (systemctl --user status).
    Status,
}

/// `~/.config/systemd/user` (honours XDG_CONFIG_HOME).
pub(super) fn user_unit_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.config_dir().join("systemd").join("user"))
}

/// The units with `ExecStart=` naming `binary`.
pub(super) fn units_for(binary: &Path) -> [(&'static str, String); 2] {
    let exec = format!("ExecStart={} serve", binary.display());
    let service = SERVICE_UNIT.replace("ExecStart=/usr/bin/cardgate serve", &exec);
    [
        ("cardgate.service", format!("{MARKER}\n{service}")),
        ("cardgate.socket", format!("{MARKER}\n{SOCKET_UNIT}")),
    ]
}

fn systemctl_program() -> String {
    std::env::var("CARDGATE_SYSTEMCTL").unwrap_or_else(|_| "systemctl".into())
}

/// Runs `systemctl --user ARGS`; Err with a sentence when it cannot.
fn systemctl(args: &[&str]) -> Result<(), String> {
    let program = systemctl_program();
    let shown = format!("systemctl --user {}", args.join(" "));
    match Command::new(&program).arg("--user").args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "systemctl was not found: this system does not run systemd (`{shown}` not run)"
        )),
        Err(e) => Err(format!("`{shown}` could not run: {e}")),
    }
}

fn packaged() -> bool {
    let exe = std::env::current_exe().ok();
    Path::new(PACKAGED_DIR).join("cardgate.socket").exists()
        && exe.as_deref() == Some(Path::new(PACKAGED_BINARY))
}

pub(super) fn run(command: ServiceCommand) -> ExitCode {
    match command {
        ServiceCommand::Install { copy, no_start } => install(copy, no_start),
        ServiceCommand::Uninstall => uninstall(),
        ServiceCommand::Status => status(),
    }
}

fn install(copy: bool, no_start: bool) -> ExitCode {
    if copy || !packaged() {
        let Some(dir) = user_unit_dir() else {
            eprintln!("error: no home directory for this user");
            return ExitCode::FAILURE;
        };
        let exe = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: cannot tell where this binary is: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("error: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for (name, text) in units_for(&exe) {
            let path = dir.join(name);
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    } else {
        println!("using the packaged units in {PACKAGED_DIR}");
    }
    if no_start {
        println!(
            "not started (--no-start): run `systemctl --user daemon-reload && systemctl --user enable --now cardgate.socket`"
        );
        return ExitCode::SUCCESS;
    }
    let steps: [&[&str]; 2] = [&["daemon-reload"], &["enable", "--now", "cardgate.socket"]];
    for step in steps {
        if let Err(e) = systemctl(step) {
            eprintln!("the units are installed but NOT enabled: {e}");
            eprintln!(
                "run `systemctl --user enable --now cardgate.socket` in your desktop session, or start the daemon by hand with `cardgate serve`"
            );
            return ExitCode::FAILURE;
        }
    }
    println!("cardgate.socket is enabled and listening; the daemon starts on the first connection");
    ExitCode::SUCCESS
}

fn uninstall() -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    if let Err(e) = systemctl(&["disable", "--now", "cardgate.socket", "cardgate.service"]) {
        eprintln!("warning: {e}");
        code = ExitCode::FAILURE;
    }
    if let Some(dir) = user_unit_dir() {
        for name in ["cardgate.service", "cardgate.socket"] {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) if text.starts_with(MARKER) => match std::fs::remove_file(&path) {
                    Ok(()) => println!("removed {}", path.display()),
                    Err(e) => {
                        eprintln!("error: {}: {e}", path.display());
                        code = ExitCode::FAILURE;
                    }
                },
                Ok(_) => println!(
                    "left {} alone: `cardgate service install` did not write it",
                    path.display()
                ),
                Err(_) => {}
            }
        }
    }
    let _ = systemctl(&["daemon-reload"]);
    if packaged() {
        println!(
            "the packaged units stay in {PACKAGED_DIR} (disabled for you); `apt remove cardgate` removes them"
        );
    }
    code
}

fn status() -> ExitCode {
    for (label, dir) in [
        ("user units", user_unit_dir()),
        ("packaged units", Some(PathBuf::from(PACKAGED_DIR))),
    ] {
        if let Some(dir) = dir {
            let present = dir.join("cardgate.socket").exists();
            println!(
                "{label}: {} ({})",
                dir.display(),
                if present { "installed" } else { "none" }
            );
        }
    }
    let program = systemctl_program();
    match Command::new(&program)
        .args([
            "--user",
            "--no-pager",
            "status",
            "cardgate.socket",
            "cardgate.service",
        ])
        .status()
    {
        // systemctl status: 3 = not running, still a useful answer.
        Ok(s) if s.success() || s.code() == Some(3) => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!(
                "systemctl --user could not report (no user service manager in this session?)"
            );
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("systemctl was not found: this system does not run systemd");
            ExitCode::FAILURE
        }
    }
}
