//! Reusable harness for tests on the real pcscd + vpcd: pcscd control,
//! virtual card processes, event helpers, the CLI.
//!
//! Everything started here is stopped by pid when its guard drops.
#![allow(dead_code)] // not every test binary uses every helper

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use cardgate::transport::pcsc::PcscBackend;
use cardgate::transport::{Backend, Event};
use libtest_mimic::{Failed, Trial};

/// A test of the tier.
pub type TestFn = fn() -> Result<(), Failed>;

/// A module's tests as trials, by name.
pub fn trials<const N: usize>(tests: [(&'static str, TestFn); N]) -> Vec<Trial> {
    tests
        .into_iter()
        .map(|(name, f)| Trial::test(name, f))
        .collect()
}

/// Fails with `what` unless `cond` holds.
pub fn check(cond: bool, what: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}

/// Fails unless `got` is `want`, saying both.
pub fn eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> Result<(), Failed> {
    check(got == want, format!("{what}: got {got:?}, want {want:?}"))
}

/// vpcd slot 0: the card process connects to this port.
pub const PORT_0: u16 = 35963;
pub const READER_0: &str = "Virtual PCD 00 00";
/// vpcd slot 1.
pub const PORT_1: u16 = 35964;
pub const READER_1: &str = "Virtual PCD 00 01";

/// The reader name of a vpcd port.
pub fn reader_for_port(port: u16) -> &'static str {
    match port {
        PORT_0 => READER_0,
        PORT_1 => READER_1,
        _ => panic!("no vpcd reader on port {port}"),
    }
}

/// Polls `cond` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reader names from `SCardListReaders`, or the PC/SC error.
pub fn list_reader_names() -> Result<Vec<String>, pcsc::Error> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)?;
    Ok(ctx
        .list_readers_owned()?
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect())
}

/// Whether a pcscd answers (on the socket this process uses).
pub fn service_reachable() -> bool {
    list_reader_names().is_ok()
}

/// Waits until pcscd answers and lists every reader in `names`.
pub fn wait_for_readers(names: &[&str], timeout: Duration) -> Result<(), String> {
    poll(timeout, || {
        let listed = list_reader_names().ok()?;
        names
            .iter()
            .all(|n| listed.iter().any(|l| l == n))
            .then_some(())
    })
    .ok_or_else(|| {
        format!(
            "readers {names:?} not listed after {timeout:?} (now: {:?})",
            list_reader_names()
        )
    })
}

/// Sends SIGTERM to `child` (by pid), waits up to 5 s, then SIGKILL + wait.
pub fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let exited = poll(Duration::from_secs(5), || {
        child.try_wait().ok().flatten().map(|_| ())
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The shared pcscd for the test run: the running one if any, else one
/// started here (`pcscd --foreground`) and stopped by pid on drop.
pub struct Pcscd {
    started: Option<Child>,
}

impl Pcscd {
    /// Uses the running pcscd, or starts one; returns when both vpcd readers
    /// are listed.
    pub fn ensure() -> Result<Pcscd, String> {
        // Ask the service itself: a process list can show a dying pcscd.
        let pcscd = if service_reachable() {
            Pcscd { started: None }
        } else {
            let child = Command::new("pcscd")
                .arg("--foreground")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start pcscd: {e}"))?;
            Pcscd {
                started: Some(child),
            }
        };
        wait_for_readers(&[READER_0, READER_1], Duration::from_secs(10))?;
        Ok(pcscd)
    }

    /// Whether this harness started pcscd (and will stop it).
    pub fn started_here(&self) -> bool {
        self.started.is_some()
    }

    /// The pid of the pcscd started here.
    pub fn pid(&self) -> Option<u32> {
        self.started.as_ref().map(Child::id)
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        if let Some(child) = &mut self.started {
            terminate(child);
        }
    }
}

/// The `cardgate` binary under test.
pub fn cardgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cardgate")
}

/// Runs the CLI with `env` set and `stdin` fed; returns (exit status,
/// stdout). A panic on its stderr fails the test.
pub fn cli(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Result<(i32, String), Failed> {
    let mut child = Command::new(cardgate_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        !stderr.contains("panicked"),
        format!("the CLI panicked: {stderr}"),
    )?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// The CLI's output as JSON.
pub fn json(s: &str) -> Result<serde_json::Value, Failed> {
    serde_json::from_str(s).map_err(|e| format!("not JSON ({e}): {s}").into())
}

/// A `cardgate vcard` process in a vpcd slot; killed (by pid) and reaped on
/// drop, which pcscd sees as a card removal.
pub struct VirtualCardProcess {
    child: Option<Child>,
    port: u16,
}

impl VirtualCardProcess {
    /// Spawns `cardgate vcard --profile PROFILE --port PORT [extra...]` with
    /// stdin null. Set `CARDGATE_TEST_VERBOSE=1` to see its stderr.
    pub fn spawn(profile: &str, port: u16, extra: &[&str]) -> Result<Self, String> {
        let verbose = std::env::var_os("CARDGATE_TEST_VERBOSE").is_some();
        let child = Command::new(cardgate_bin())
            .args(["vcard", "--profile", profile, "--port", &port.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if verbose {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .map_err(|e| format!("cannot start the virtual card: {e}"))?;
        Ok(VirtualCardProcess {
            child: Some(child),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn reader(&self) -> &'static str {
        reader_for_port(self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process now (SIGKILL, by pid) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for VirtualCardProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a card may take to appear in or leave a vpcd reader.
pub const CARD_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits until pcscd shows a card in `reader` (or no card, with `present = false`).
pub fn wait_card(reader: &str, present: bool) -> Result<(), String> {
    let backend = PcscBackend::new();
    poll(CARD_TIMEOUT, || {
        let readers = backend.list_readers().ok()?;
        let r = readers.iter().find(|r| r.name == reader)?;
        (r.atr.is_some() == present).then_some(())
    })
    .ok_or_else(|| format!("card in {reader:?} did not become present={present}"))
}

/// A virtual card process, inserted and seen by pcscd. Waits first for the
/// previous test's card to leave the slot.
pub fn card(profile: &str, port: u16, extra: &[&str]) -> Result<VirtualCardProcess, String> {
    wait_card(reader_for_port(port), false)?;
    let vc = VirtualCardProcess::spawn(profile, port, extra)?;
    wait_card(vc.reader(), true)?;
    Ok(vc)
}

/// Inserts a card again right after one was removed from the same slot:
/// vpcd may refuse an immediate re-insertion, so this retries.
pub fn reinsert_card(
    profile: &str,
    port: u16,
    extra: &[&str],
) -> Result<VirtualCardProcess, String> {
    let reader = reader_for_port(port);
    wait_card(reader, false)?;
    poll(CARD_TIMEOUT, || {
        let vc = VirtualCardProcess::spawn(profile, port, extra).ok()?;
        wait_card(reader, true).ok().map(|()| vc)
    })
    .ok_or_else(|| format!("the card could not be inserted again in {reader:?}"))
}

/// Waits up to `timeout` for an event matching `pred`, skipping others.
/// The error lists what was seen instead.
pub fn wait_for_event(
    rx: &Receiver<Event>,
    timeout: Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> Result<Event, String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return Ok(ev),
            Ok(ev) => seen.push(ev),
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "no matching event within {timeout:?}; seen: {seen:?}"
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("event channel closed; seen: {seen:?}"));
            }
        }
    }
}

/// Collects events until none arrives for `quiet`.
pub fn collect_events(rx: &Receiver<Event>, quiet: Duration) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.recv_timeout(quiet) {
        out.push(ev);
    }
    out
}

/// A pcscd of our own in a private mount namespace (`unshare -m`, needs
/// root), so tests can stop and restart a PC/SC service without touching
/// the shared one. Its socket is `dir/pcscd.comm` (clients reach it with
/// `PCSCLITE_CSOCK_NAME`); its vpcd readers listen on `vpcd_port` and
/// `vpcd_port + 1`.
pub struct PrivatePcscd {
    child: Option<Child>,
    dir: PathBuf,
    conf: PathBuf,
}

impl PrivatePcscd {
    /// Whether private pcscd instances can be started here.
    pub fn supported() -> bool {
        Command::new("unshare")
            .args(["-m", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Prepares the socket and config directories under `base` (not started).
    pub fn new(base: &Path, vpcd_port: u16) -> std::io::Result<Self> {
        let dir = base.join("run");
        let conf = base.join("reader.conf.d");
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&conf)?;
        std::fs::write(
            conf.join("vpcd"),
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x{vpcd_port:04X}\n\
                 LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID    0x{vpcd_port:04X}\n"
            ),
        )?;
        Ok(PrivatePcscd {
            child: None,
            dir,
            conf,
        })
    }

    /// The value for `PCSCLITE_CSOCK_NAME`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("pcscd.comm")
    }

    /// Starts the daemon and waits until its socket exists.
    pub fn start(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        // /run/pcscd (pid file, socket) is our directory inside the
        // namespace; `exec` keeps the pid of the spawned process. On a
        // machine where pcscd never ran, the mount point does not exist yet.
        let script = format!(
            "mkdir -p /run/pcscd && mount --bind '{}' /run/pcscd && exec pcscd --foreground -c '{}'",
            self.dir.display(),
            self.conf.display()
        );
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a private pcscd: {e}"))?;
        self.child = Some(child);
        let sock = self.socket();
        poll(Duration::from_secs(10), || sock.exists().then_some(()))
            .ok_or_else(|| "private pcscd did not create its socket".to_string())
    }

    /// Stops the daemon (SIGTERM by pid, then SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Drop for PrivatePcscd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `cardgate serve` process, for tests and the benchmark that need the
/// daemon as users run it (its own process: RSS, CPU, crashes). Started
/// with `NOTIFY_SOCKET` pointing at a datagram socket of ours: it says
/// READY (with its port) once its sockets accept connections. Stopped by
/// pid (SIGTERM, then SIGKILL) on drop.
pub struct DaemonProcess {
    child: Option<Child>,
    /// Kept until the daemon stops (it says STOPPING there too).
    notify: PathBuf,
    _notify_socket: std::os::unix::net::UnixDatagram,
    pub port: u16,
    /// From spawn to READY.
    pub ready_after: Duration,
}

impl DaemonProcess {
    /// `config` is the user config file (`CARDGATE_CONFIG`; no system
    /// file); `wrap` a program to run it under (a profiler), `stderr` where
    /// its log goes. `dir` holds the notify socket.
    pub fn spawn(
        dir: &Path,
        config: &Path,
        wrap: &[String],
        stderr: Stdio,
    ) -> Result<DaemonProcess, String> {
        use std::os::unix::net::UnixDatagram;
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let sock_path = dir.join(format!("notify-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).map_err(|e| format!("notify socket: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let mut cmd = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(cardgate_bin());
                c
            }
            None => Command::new(cardgate_bin()),
        };
        let start = Instant::now();
        let child = cmd
            .arg("serve")
            .env("CARDGATE_CONFIG", config)
            .env("CARDGATE_SYSTEM_CONFIG", "")
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("CARDGATE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start cardgate serve: {e}"))?;
        let mut buf = [0u8; 512];
        let received = sock.recv(&mut buf);
        let ready_after = start.elapsed();
        let mut daemon = DaemonProcess {
            child: Some(child),
            notify: sock_path,
            _notify_socket: sock,
            port: 0,
            ready_after,
        };
        let len = received.map_err(|e| format!("no READY from the daemon: {e}"))?;
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        daemon.port = text
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("no port in {text:?}"))?;
        Ok(daemon)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Still running (not exited, not crashed)?
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> Result<u64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map_err(|e| format!("daemon status: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| "no VmRSS".to_string())
    }

    /// utime + stime of the whole process, in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> Result<u64, String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map_err(|e| format!("daemon stat: {e}"))?;
        let rest = &stat[stat.rfind(')').ok_or("stat")? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f[i].parse::<u64>().map_err(|e| e.to_string());
        Ok(n(11)? + n(12)?)
    }

    /// Context switches (voluntary and not) of all its threads: every
    /// wake-up of any thread counts.
    pub fn wakeups(&self) -> Result<u64, String> {
        let mut total = 0;
        let dir = format!("/proc/{}/task", self.pid());
        for t in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
            let path = t.map_err(|e| e.to_string())?.path().join("status");
            let status = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            for l in status.lines() {
                if let Some(v) = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    total += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
        Ok(total)
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// SIGTERM (graceful shutdown), SIGKILL after 5 s; the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        terminate(&mut child);
        let status = child.wait().ok();
        let _ = std::fs::remove_file(&self.notify);
        status
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Time on a CPU of every live thread of process `pid`, in ns
/// (`/proc/PID/task/*/schedstat`): exact where clock ticks are 10 ms.
pub fn cpu_ns(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for t in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = t.map_err(|e| e.to_string())?.path().join("schedstat");
        // A thread may end between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(&path) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Busy and total jiffies of the whole machine (`/proc/stat`), every CPU.
pub fn machine_jiffies() -> Result<(u64, u64), String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let line = stat.lines().next().ok_or("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}
