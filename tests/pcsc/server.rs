//! The daemon (WebSocket protocol) on real pcscd + vpcd + our virtual card
//! process: readers and tokens as PC/SC shows them, PIN operations, and the
//! push notifications when the card process goes away and comes back.

use std::sync::Arc;

use cardgate::Server;
use cardgate::transport::pcsc::PcscBackend;
use libtest_mimic::{Failed, Trial};
use serde_json::{Value, json};

use crate::harness::*;
use crate::ws_client::{self, Client};

/// Every test of this module, by name.
pub fn tests() -> Vec<Trial> {
    trials([
        (
            "daemon_lists_the_virtual_card_and_runs_pin_operations",
            daemon_lists_the_virtual_card_and_runs_pin_operations,
        ),
        (
            "daemon_pushes_card_removed_and_inserted",
            daemon_pushes_card_removed_and_inserted,
        ),
    ])
}

/// Runs `f` against a daemon on the real PC/SC service, bound to port 0;
/// the daemon is shut down afterwards whatever `f` returned.
fn with_daemon<F>(f: F) -> Result<(), Failed>
where
    F: AsyncFnOnce(u16) -> Result<(), Failed>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config = ws_client::local_tool_config();
        let server = Server::start(Arc::new(PcscBackend::new()), config).await?;
        let result = f(server.port()).await;
        server.shutdown().await;
        result
    })
}

fn target(reader: &str, pin: &str, extra: Value) -> Value {
    let mut v = json!({ "reader": reader, "pin": pin });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

fn reader<'a>(readers: &'a Value, name: &str) -> Result<&'a Value, Failed> {
    readers["readers"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .ok_or_else(|| format!("{name:?} not in getReaders: {readers}").into())
}

fn daemon_lists_the_virtual_card_and_runs_pin_operations() -> Result<(), Failed> {
    let _vc = card("piv", PORT_0, &[])?;
    // The other slot may still hold the previous test's card for a moment.
    wait_card(READER_1, false)?;
    with_daemon(async |port| {
        let mut c = Client::connect(port).await;
        let hello = c.ok("hello", json!({ "protocol": 1 })).await;
        check(hello["daemon"] == "cardgate", format!("hello: {hello}"))?;
        let all = c.ok("getReaders", json!({})).await;
        check(all["pcsc"] == "up", format!("pcsc: {all}"))?;
        let r = reader(&all, READER_0)?;
        check(r["cardPresent"] == true, format!("card present: {r}"))?;
        check(
            r["atr"].as_str().is_some_and(|a| a.starts_with("3B")),
            format!("ATR: {r}"),
        )?;
        let token = &r["token"];
        check(token["profile"] == "piv", format!("profile: {token}"))?;
        check(token["protectedAuthPath"] == false, "protectedAuthPath")?;
        let pins = token["pins"].as_array().ok_or("pins")?;
        check(
            pins.len() == 2 && pins[0]["id"] == "pin" && pins[1]["id"] == "puk",
            format!("pins: {pins:?}"),
        )?;
        check(
            pins[0]["remainingTries"] == 3 && pins[0]["validated"] == false,
            format!("PIN status: {}", pins[0]),
        )?;
        // The other vpcd slot is listed, empty.
        let other = reader(&all, READER_1)?;
        check(
            other["cardPresent"] == false,
            format!("empty slot: {other}"),
        )?;

        let e = c
            .err(
                "login",
                target(READER_0, "pin", json!({ "value": "000000" })),
            )
            .await;
        check(
            e["code"] == "PIN_INCORRECT" && e["remainingTries"] == 2,
            format!("wrong PIN: {e}"),
        )?;
        let n = c
            .notification("pinStateChanged", |p| p["reader"] == READER_0)
            .await;
        check(
            n["status"]["remainingTries"] == 2,
            format!("notification: {n}"),
        )?;
        c.ok(
            "login",
            target(
                READER_0,
                "pin",
                json!({ "value": { "type": "pin", "data": "MTIzNDU2" } }),
            ),
        )
        .await;
        let st = c
            .ok("getPinStatus", target(READER_0, "pin", json!({})))
            .await;
        check(
            st["validated"] == true && st["remainingTries"] == 3,
            format!("after the right PIN: {st}"),
        )?;
        c.ok("logout", target(READER_0, "pin", json!({}))).await;
        Ok(())
    })
}

fn daemon_pushes_card_removed_and_inserted() -> Result<(), Failed> {
    let mut vc = card("piv", PORT_1, &[])?;
    with_daemon(async move |port| {
        let mut c = Client::connect(port).await;
        let mut watcher = Client::connect(port).await;
        c.ok("hello", json!({})).await;
        watcher.ok("hello", json!({})).await;
        c.ok(
            "login",
            target(READER_1, "pin", json!({ "value": "123456" })),
        )
        .await;

        vc.kill();
        for client in [&mut c, &mut watcher] {
            let n = client
                .notification("cardRemoved", |p| p["reader"] == READER_1)
                .await;
            check(n["reader"] == READER_1, format!("cardRemoved: {n}"))?;
        }
        let all = c.ok("getReaders", json!({})).await;
        check(
            reader(&all, READER_1)?["cardPresent"] == false,
            format!("after removal: {all}"),
        )?;
        let e = c
            .err("getPinStatus", target(READER_1, "pin", json!({})))
            .await;
        check(e["code"] == "CARD_ABSENT", format!("no card: {e}"))?;

        let _vc = tokio::task::spawn_blocking(|| reinsert_card("piv", PORT_1, &[])).await??;
        for client in [&mut c, &mut watcher] {
            let n = client
                .notification("cardInserted", |p| p["reader"] == READER_1)
                .await;
            check(
                n["token"]["profile"] == "piv"
                    && n["token"]["pins"][0]["remainingTries"] == 3
                    && n["token"]["pins"][0]["validated"] == false,
                format!("cardInserted: {n}"),
            )?;
            check(
                n["atr"].as_str().is_some_and(|a| a.starts_with("3B")),
                format!("ATR: {n}"),
            )?;
        }
        // A new card: not verified; operations work again.
        let st = c
            .ok("getPinStatus", target(READER_1, "pin", json!({})))
            .await;
        check(st["validated"] == false, format!("new card: {st}"))?;
        c.ok(
            "login",
            target(READER_1, "pin", json!({ "value": "123456" })),
        )
        .await;
        Ok(())
    })
}
