//! `cardgate status`: asks the daemon's `/health` on the configured port.

use crate::config::Config;
use clap::Args;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub(super) struct StatusArgs {
    /// The port to ask (default: `port` in config.toml).
    #[arg(long)]
    port: Option<u16>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// GET /health on 127.0.0.1:port.
pub(super) fn health(port: u16, timeout: Duration) -> Result<Value, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("not an HTTP answer (another program on this port?)")?;
    if !head.starts_with("HTTP/1.1 200") {
        let first = head.lines().next().unwrap_or("");
        return Err(format!(
            "answered {first:?} (another program on this port?)"
        ));
    }
    let v: Value =
        serde_json::from_str(body).map_err(|_| "the answer is not cardgate's health JSON")?;
    if v.get("status").is_none() {
        return Err("the answer is not cardgate's health JSON".into());
    }
    Ok(v)
}

pub(super) fn run(args: StatusArgs, config: &Config) -> ExitCode {
    let port = args.port.unwrap_or(config.port);
    let client = env!("CARGO_PKG_VERSION");
    match health(port, Duration::from_secs(3)) {
        Ok(h) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "running": true, "port": port, "health": h, "client": client })
                );
            } else {
                let version = h["version"].as_str().unwrap_or("?");
                println!("cardgate {version} is running on 127.0.0.1:{port}");
                if version != client {
                    println!("  (this command is cardgate {client})");
                }
                println!("  PC/SC service: {}", h["pcsc"].as_str().unwrap_or("?"));
                match h["readers"].as_array() {
                    Some(r) if !r.is_empty() => {
                        println!("  readers:");
                        for name in r {
                            println!("    {}", name.as_str().unwrap_or("?"));
                        }
                    }
                    _ => println!("  readers: none"),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "running": false, "port": port, "error": e, "client": client })
                );
            } else {
                println!("no cardgate daemon answers on 127.0.0.1:{port}: {e}");
                println!(
                    "  start it with `systemctl --user start cardgate.socket` (or `cardgate serve`);"
                );
                println!("  `cardgate service status` shows the systemd units");
            }
            ExitCode::FAILURE
        }
    }
}
