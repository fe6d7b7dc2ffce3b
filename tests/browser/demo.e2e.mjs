// Browser end-to-end test of cardgate's demo page in real headless Chromium.
//
// Driven by tests/pcsc/browser.rs (`cargo test --test pcsc browser`), which
// owns every process: pcscd's virtual card process and the daemon. This
// script only drives the browser; to remove or insert the card, or restart
// the daemon, it prints a request line on stdout and waits for the answer
// on stdin:
//
//   stdout: @@remove-card | @@insert-card | @@restart-daemon | @@done
//   stdin:  ok | error <message>
//
// Any other stdout line is progress. Environment:
//   CARDGATE_URL     http://127.0.0.1:PORT (the daemon under test)
//   CARDGATE_READER  the reader holding the virtual PIV card
//   SCREENSHOT_DIR   where screenshots go
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// Assertions read the page's DOM (stable data-* attributes of demo.html).
// PIN values are never printed.

import { launchChromium, need, pageKit, runMain, rustSide, step } from "./common.mjs";

const URL_BASE = need("CARDGATE_URL");
const READER = need("CARDGATE_READER");
const SHOTS = need("SCREENSHOT_DIR");
const STEP_TIMEOUT = 20_000;

// ------------------------------------------------------------ the Rust side

const { ask, close: closeStdin } = rustSide();

// ------------------------------------------------------------ the browser

const { context, close } = await launchChromium(SHOTS, {
  viewport: { width: 1280, height: 1000 },
});
const page = context.pages()[0] ?? (await context.newPage());
// While the daemon restarts, Chromium logs each failed reconnection attempt.
const { pageErrors, screenshot, until } = pageKit(page, SHOTS, {
  stepTimeout: STEP_TIMEOUT,
  ignore: /WebSocket connection to .* failed/,
});

// Helpers reading the PIN card of the reader under test.
const pinSel = (pin) => ({ reader: READER, pin });

function pinField(arg) {
  const section = [...document.querySelectorAll(".reader")].find((s) => s.dataset.reader === arg.reader);
  const article = section && [...section.querySelectorAll(".pin")].find((a) => a.dataset.pin === arg.pin);
  if (!article) return false;
  if (arg.message) {
    const m = article.querySelector("[data-message]");
    if (m.dataset.code !== arg.message.code) return false;
    if (arg.message.text && !m.textContent.includes(arg.message.text)) return false;
  }
  for (const [field, value] of Object.entries(arg.fields || {})) {
    if (article.querySelector(`dd[data-field="${field}"]`)?.dataset.value !== value) return false;
  }
  for (const [key, value] of Object.entries(arg.data || {})) {
    if (article.dataset[key] !== value) return false;
  }
  return true;
}

function pinLocator(pin) {
  return page.locator(`.reader[data-reader="${READER}"] .pin[data-pin="${pin}"]`);
}

/** Clears the page's message so the next one is surely new. */
async function clearMessage(pin) {
  await pinLocator(pin)
    .locator("[data-message]")
    .evaluate((m) => {
      m.dataset.code = "";
      m.textContent = "";
    });
}

async function login(value, expect) {
  const a = pinLocator("pin");
  await clearMessage("pin");
  await a.locator('form[data-form="login"] input[name="pin"]').fill(value);
  await a.locator('[data-action="login"]').click();
  await until(`login → ${JSON.stringify(expect)}`, pinField, { ...pinSel("pin"), ...expect });
}

async function readerState(card) {
  await until(`reader ${READER} card=${card}`, (arg) => {
    const s = [...document.querySelectorAll(".reader")].find((x) => x.dataset.reader === arg.reader);
    return s && s.dataset.card === arg.card;
  }, { reader: READER, card });
}

async function connection(state) {
  await until(`connection ${state}`, (s) => document.querySelector("#connection")?.dataset.state === s, state);
}

async function main() {
  step("load /demo");
  await page.goto(`${URL_BASE}/demo`);
  await connection("connected");
  await readerState("present");
  await until("fresh PIN: 3 tries, not verified", pinField, {
    ...pinSel("pin"),
    fields: { remainingTries: "3", validated: "false", blocked: "false" },
  });
  const cardLine = await page.locator(`.reader[data-reader="${READER}"] [data-field="card-state"]`).textContent();
  if (!cardLine.includes("PIV")) throw new Error(`card line: ${cardLine}`);
  await screenshot("loaded");

  step("the JS client's object model in the page");
  const api = await page.evaluate(async () => {
    const mod = await import("/scws.js");
    const SCWS = mod.default;
    const pinProps = Object.getOwnPropertyNames(SCWS.Pin.prototype);
    let requestCredential = null;
    try {
      // The daemon's dialog is cancelled in this run: resolves to undefined.
      const r = await SCWS.Pin.prototype.requestCredential({ pinLabel: "PIN", methods: {} }, new SCWS.CredentialState({ pinTriesLeft: 3 }));
      requestCredential = { resolved: r === undefined ? "undefined" : typeof r };
    } catch (e) {
      requestCredential = { isScwsError: e instanceof SCWS.Error, code: e.code, message: e.message };
    }
    const cv = new SCWS.CredentialValue({ type: "pin", data: new TextEncoder().encode("42").buffer });
    const env = window.cardgateDemo.env;
    const pin = env.readers.find((r) => r.token)?.token.pins[0];
    return {
      globalScws: window.SCWS === SCWS,
      named: ["connect", "Pin", "CredentialState", "CredentialValue", "Error"].every((n) => n in mod),
      pinProps,
      requestCredential,
      cv: cv.toJSON(),
      isEventTarget: env instanceof EventTarget,
      credentialProperties: pin?.credentialProperties,
      initSubmissionsState: pin && { tries: pin.initSubmissionsState.remainingTries, cls: pin.initSubmissionsState instanceof SCWS.CredentialState },
      tokenFields: pin && { label: pin.token.label, reader: pin.token.reader.name, pins: pin.token.pins.length, protectedAuthPath: pin.token.protectedAuthPath },
    };
  });
  const seed = [
    "token", "label", "initialized", "toBeChanged", "blocked", "tryCountLow", "lastTry", "remainingTries",
    "validated", "initSubmissionsState", "credentialProperties",
    "login", "change", "init", "logout", "getConstraints", "checkConstraints", "requestCredential",
  ];
  const missing = seed.filter((n) => !api.pinProps.includes(n));
  if (missing.length) throw new Error(`SCWS.Pin lacks ${missing.join(", ")}`);
  if (!api.globalScws || !api.named || !api.isEventTarget) throw new Error(`exports: ${JSON.stringify(api)}`);
  if (api.requestCredential?.resolved !== "undefined") {
    throw new Error(`requestCredential: ${JSON.stringify(api.requestCredential)}`);
  }
  if (api.cv.type !== "pin" || api.cv.data !== "NDI=") throw new Error(`CredentialValue: ${JSON.stringify(api.cv)}`);
  if (api.credentialProperties?.pinLabel !== "PIN" || api.credentialProperties.methods.fingerBio !== false) {
    throw new Error(`credentialProperties: ${JSON.stringify(api.credentialProperties)}`);
  }
  if (api.initSubmissionsState?.tries !== 3 || !api.initSubmissionsState.cls) {
    throw new Error(`initSubmissionsState: ${JSON.stringify(api.initSubmissionsState)}`);
  }
  if (api.tokenFields?.reader !== READER || api.tokenFields.pins !== 2 || api.tokenFields.protectedAuthPath !== false) {
    throw new Error(`token: ${JSON.stringify(api.tokenFields)}`);
  }

  step("wrong PIN: remaining tries fall on the page");
  await login("000000", { message: { code: "PIN_INCORRECT", text: "2 tries left" }, fields: { remainingTries: "2", tryCountLow: "true" } });
  await screenshot("wrong-pin-2-tries-left");

  step("right PIN");
  await login("123456", { message: { code: "OK" }, fields: { validated: "true", remainingTries: "3" }, data: { validated: "true" } });
  await screenshot("verified");

  step("a too short PIN is refused before the card");
  await login("12", { message: { code: "PIN_LENGTH_INVALID" }, fields: { remainingTries: "3" } });

  step("constraints checked live while typing the new PIN");
  const change = pinLocator("pin").locator('form[data-form="change"]');
  await until("constraints note", (arg) => {
    const s = [...document.querySelectorAll(".reader")].find((x) => x.dataset.reader === arg.reader);
    const n = s?.querySelector('.pin[data-pin="pin"] [data-constraints-note]');
    return n && (n.dataset.constraintsNote === "available" || n.dataset.constraintsNote === "unavailable");
  }, { reader: READER });
  const constraintState = () =>
    change.locator("[data-constraints] li").evaluateAll((lis) => lis.map((li) => li.dataset.ok));
  await change.locator('input[name="new"]').pressSequentially("12");
  await until("a constraint fails for a 2-digit PIN", (arg) => {
    const s = [...document.querySelectorAll(".reader")].find((x) => x.dataset.reader === arg.reader);
    return [...(s?.querySelectorAll('.pin[data-pin="pin"] [data-constraints] li') ?? [])].some((li) => li.dataset.ok === "false");
  }, { reader: READER });
  await change.locator('input[name="old"]').fill("123456");
  await change.locator('input[name="new"]').fill("");
  await change.locator('input[name="new"]').pressSequentially("12581379");
  await until("every constraint holds for a good PIN", (arg) => {
    const s = [...document.querySelectorAll(".reader")].find((x) => x.dataset.reader === arg.reader);
    const lis = [...(s?.querySelectorAll('.pin[data-pin="pin"] [data-constraints] li') ?? [])];
    return lis.length > 0 && lis.every((li) => li.dataset.ok === "true");
  }, { reader: READER });
  const note = await change.locator("[data-constraints-note]").textContent();
  console.log(`constraints: ${JSON.stringify(await constraintState())} (${note.trim()})`);
  await screenshot("constraints-live");

  step("change the PIN");
  await change.locator('input[name="confirm"]').fill("12581379");
  await clearMessage("pin");
  await change.locator('[data-action="change"]').click();
  await until("PIN changed", pinField, { ...pinSel("pin"), message: { code: "OK", text: "changed" } });

  step("log out");
  await clearMessage("pin");
  await pinLocator("pin").locator('[data-action="logout"]').click();
  await until("logged out", pinField, { ...pinSel("pin"), message: { code: "OK" }, fields: { validated: "false" } });

  step("the old PIN no longer works; the page cannot spend the last try");
  await login("123456", { message: { code: "PIN_INCORRECT", text: "2 tries left" }, fields: { remainingTries: "2" } });
  await login("000000", { message: { code: "PIN_INCORRECT", text: "1 try left" }, fields: { remainingTries: "1", lastTry: "true" } });
  // Even the right PIN: a value typed into a page never spends the last try.
  await login("12581379", { message: { code: "LAST_TRY_PROTECTED" }, fields: { remainingTries: "1", blocked: "false" } });
  await login("000000", { message: { code: "LAST_TRY_PROTECTED" }, fields: { remainingTries: "1", blocked: "false" } });
  await screenshot("last-try-protected");

  step("a PUK typed into the page is not risked: the card does not show its count");
  const unblock = pinLocator("pin").locator('form[data-form="unblock"]');
  // (No wrong PUK here: two wrong PINs from this site already count towards
  // its lockout; a third wrong value would lock the site for 5 minutes.)
  await unblock.locator('input[name="so"]').fill("12345678");
  await unblock.locator('input[name="new"]').fill("112233");
  await unblock.locator('input[name="confirm"]').fill("112233");
  await clearMessage("pin");
  await unblock.locator('[data-action="unblock"]').click();
  await until("PUK from the page refused", pinField, {
    ...pinSel("pin"),
    message: { code: "LAST_TRY_PROTECTED", text: "cardgate's own dialog" },
    fields: { blocked: "false", remainingTries: "1" },
  });
  await screenshot("page-puk-not-risked");

  step("card removed");
  await ask("remove-card");
  await readerState("absent");
  const removed = await page.locator(`.reader[data-reader="${READER}"] [data-field="card-state"]`).textContent();
  if (!/removed/i.test(removed)) throw new Error(`card line after removal: ${removed}`);
  if ((await pinLocator("pin").count()) !== 0) throw new Error("the PIN is still shown after removal");
  await until("event log shows the removal", () =>
    [...document.querySelectorAll('#events li[data-event="readerstatechanged"]')].some((li) => li.textContent.includes("cardRemoved")));
  await screenshot("card-removed");

  step("card inserted again (a new virtual card: default PIN)");
  await ask("insert-card");
  await readerState("present");
  await until("new card: 3 tries, not verified", pinField, { ...pinSel("pin"), fields: { remainingTries: "3", validated: "false" } });
  await login("123456", { message: { code: "OK" }, fields: { validated: "true" } });
  await screenshot("card-reinserted");

  step("the daemon restarts: the page reconnects and refreshes");
  await ask("restart-daemon");
  await connection("connected");
  await until("event log shows the reconnection", () => document.querySelector('#events li[data-event="reconnected"]') !== null);
  await until("the daemon logged the card out when it stopped", pinField, {
    ...pinSel("pin"),
    fields: { validated: "false", remainingTries: "3" },
  });
  await readerState("present");
  const disconnects = await page.locator('#events li[data-event="disconnected"]').count();
  if (disconnects < 1) throw new Error("no disconnected event was shown");
  await login("123456", { message: { code: "OK" }, fields: { validated: "true" } });
  await screenshot("daemon-restarted");

  if (pageErrors.length) throw new Error(`errors in the page:\n${pageErrors.join("\n")}`);
}

await runMain(main, { screenshot, close, closeStdin });
