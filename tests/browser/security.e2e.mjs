// Hostile and honest pages in real headless Chromium against the daemon:
// two sites (site-a.test, site-b.test, both mapped to 127.0.0.1) in three
// tabs. Proves login isolation between tabs and origins, that a page
// brute-forcing the PIN leaves the card with at least one try, and that the
// daemon's PIN dialog and requestCredential never let the PIN reach the page.
//
// Driven by tests/pcsc/browser.rs (`cargo test --test pcsc browser`), which
// owns the card, the daemon (with a scripted pinentry answering 123456) and
// this process. Environment: CARDGATE_URL, CARDGATE_READER, SITE_A_PORT,
// SITE_B_PORT, SCREENSHOT_DIR, CHROMIUM.

import { createServer } from "node:http";
import { join } from "node:path";
import { launchChromium, need, step } from "./common.mjs";

const DAEMON = need("CARDGATE_URL");
const READER = need("CARDGATE_READER");
const SITE_A = Number(need("SITE_A_PORT"));
const SITE_B = Number(need("SITE_B_PORT"));
const SHOTS = need("SCREENSHOT_DIR");
const DIALOG_PIN = "123456"; // what the scripted pinentry types

// ------------------------------------------------------------ the two sites

// Pages host the client themselves (a module from another origin would need
// CORS): the sites serve a copy of the daemon's /scws.js.
const scws = await (await fetch(`${DAEMON}/scws.js`)).text();
const daemonPort = new URL(DAEMON).port;
const page = `<!doctype html><meta charset="utf-8"><title>site</title><pre id="out">loading</pre>
<script type="module">
import SCWS from "/scws.js";
window.SCWS = SCWS;
try {
  window.env = await SCWS.connect({ port: ${daemonPort}, reconnect: false });
  window.pin = () => window.env.getReader(${JSON.stringify(READER)}).token.pins[0];
  document.getElementById("out").textContent = "connected as " + location.origin;
} catch (e) {
  document.getElementById("out").textContent = "refused: " + e.code;
}
window.ready = true;
</script>`;
const servers = [SITE_A, SITE_B].map((port) =>
  createServer((req, res) => {
    if (req.url === "/scws.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(scws);
    } else {
      res.writeHead(200, { "content-type": "text/html" }).end(page);
    }
  }).listen(port, "127.0.0.1"),
);

// ------------------------------------------------------------ the browser

const { context, close } = await launchChromium(SHOTS, {
  args: [
    "--host-resolver-rules=MAP site-a.test 127.0.0.1, MAP site-b.test 127.0.0.1, MAP evil.test 127.0.0.1",
  ],
});

/** Every WebSocket frame any page sent or received. */
const frames = [];
const pageErrors = [];

async function open(url) {
  const p = await context.newPage();
  p.on("pageerror", (e) => pageErrors.push(e.message));
  p.on("websocket", (ws) => {
    ws.on("framereceived", (f) => frames.push(String(f.payload)));
    ws.on("framesent", (f) => frames.push(String(f.payload)));
  });
  await p.goto(url);
  await p.waitForFunction(() => window.ready === true, null, { timeout: 20_000 });
  return p;
}

/** Runs `fn` in the page; a SCWS.Error comes back as `{error: code}`. */
async function run(p, fn, arg) {
  return p.evaluate(
    async ([src, a]) => {
      try {
        return { ok: await (0, eval)(src)(a) };
      } catch (e) {
        return { error: e.code ?? String(e), data: e.data };
      }
    },
    [fn.toString(), arg],
  );
}

async function until(p, what, fn, arg) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await run(p, fn, arg);
    if (r.ok === true) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what} (${JSON.stringify(r)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let shot = 0;
async function screenshot(p, name) {
  shot += 1;
  await p.screenshot({ path: join(SHOTS, `${String(shot).padStart(2, "0")}-${name}.png`) });
}

async function main() {
  step("an unknown site is refused at the handshake");
  const evil = await open(`http://evil.test:${SITE_A}/`);
  const evilText = await evil.textContent("#out");
  if (!/refused/.test(evilText)) throw new Error(`evil.test connected: ${evilText}`);
  await screenshot(evil, "unknown-site-refused");

  step("three tabs: two of site-a, one of site-b");
  const a1 = await open(`http://site-a.test:${SITE_A}/`);
  const a2 = await open(`http://site-a.test:${SITE_A}/`);
  const b = await open(`http://site-b.test:${SITE_B}/`);
  for (const [p, name] of [[a1, "a1"], [a2, "a2"], [b, "b"]]) {
    const text = await p.textContent("#out");
    if (!/connected/.test(text)) throw new Error(`${name}: ${text}`);
  }

  step("a login belongs to its tab");
  let r = await run(a1, async () => { await window.pin().login("123456"); return window.pin().validated; });
  if (r.ok !== true) throw new Error(`a1 login: ${JSON.stringify(r)}`);
  for (const [p, name] of [[a2, "a2 (same site)"], [b, "b (other site)"]]) {
    r = await run(p, async () => (await window.pin().refresh()).validated);
    if (r.ok !== false) throw new Error(`${name} sees the login: ${JSON.stringify(r)}`);
  }
  step("another site's PIN operation ends it");
  r = await run(b, async () => { await window.pin().logout(); return true; });
  if (r.ok !== true) throw new Error(`b logout: ${JSON.stringify(r)}`);
  await until(a1, "a1 sees its login ended", async () => (await window.pin().refresh()).validated === false);
  await screenshot(a1, "login-ended-by-other-site");

  step("a hostile page brute-forces the PIN");
  const codes = [];
  for (let i = 0; i < 12; i++) {
    r = await run(b, async (v) => { await window.pin().login(v); return "accepted"; }, String(100000 + i));
    codes.push(r.error ?? r.ok);
  }
  console.log(`brute force: ${codes.join(" ")}`);
  if (codes.includes("accepted") || codes.includes("PIN_BLOCKED")) throw new Error(`codes: ${codes}`);
  if (!codes.includes("LAST_TRY_PROTECTED")) throw new Error(`no last-try guard: ${codes}`);
  r = await run(b, async () => { const p = await window.pin().refresh(); return [p.remainingTries, p.blocked]; });
  if (r.ok?.[0] !== 1 || r.ok?.[1] !== false) throw new Error(`after the attack: ${JSON.stringify(r)}`);

  step("the user spends the last try in the daemon's PIN dialog, not the page");
  frames.length = 0;
  r = await run(a1, async () => { await window.pin().login(false); const p = await window.pin().refresh(); return [p.validated, p.remainingTries]; });
  if (JSON.stringify(r.ok) !== "[true,3]") throw new Error(`dialog login: ${JSON.stringify(r)}`);

  step("requestCredential gives the page a handle, not the PIN");
  r = await run(a2, async () => {
    const pin = window.pin();
    const cred = await pin.requestCredential(pin.credentialProperties, pin.initSubmissionsState, pin.token.reader.name, pin.token.label);
    await pin.login(cred);
    // A second use of the same handle is refused.
    let again = "accepted";
    try { await pin.login(cred); } catch (e) { again = e.code; }
    return [(await pin.refresh()).validated, again];
  });
  if (JSON.stringify(r.ok) !== '[true,"CREDENTIAL_HANDLE_INVALID"]') throw new Error(`requestCredential: ${JSON.stringify(r)}`);
  // The dialog PIN never went through any page.
  const leaked = frames.filter((f) => f.includes(DIALOG_PIN));
  if (leaked.length) throw new Error(`the PIN appeared in ${leaked.length} WebSocket frame(s)`);
  console.log(`checked ${frames.length} frames: no PIN`);
  await screenshot(a2, "request-credential");

  if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join("; ")}`);
}

let status = 0;
try {
  await main();
  console.log("@@done");
} catch (e) {
  console.error(`FAIL: ${e.stack || e}`);
  status = 1;
} finally {
  await close();
  for (const s of servers) s.close();
}
process.exit(status);
