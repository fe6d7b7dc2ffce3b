// The demo page with a card carrying two applications, in real headless
// Chromium: a YubiKey (PIV + OpenPGP) in one reader, a PIV card in another.
//
// Driven by tests/pcsc/browser.rs (`cargo test --test pcsc browser`), which
// owns both cards and the daemon. Requests to it (see common.mjs):
//   @@card-tries READER → ok {"pin":3,…}: the card's own tries, read by
//   `cardgate pin status` beside the daemon.
//
// Checks that the page shows one token with four PIN articles (`pin`,
// `puk`, `user`, `admin`) whose headings and form legends name their
// application; that the OpenPGP user PIN is logged in from the page through
// its labels and the keyboard, with the page's counters equal to the card's
// own after a wrong and a right value; that the unblock form of `user`
// offers the reset code while `pin`'s does not, each with its own
// application's unblocking code; and that the page keeps its ids unique and
// every control named. PIN values are never printed.
//
// Environment: CARDGATE_URL, CARDGATE_READER (the PIV card),
// CARDGATE_SECOND_READER (the YubiKey), SCREENSHOT_DIR, CHROMIUM.

import { launchChromium, need, pageKit, runMain, rustSide, step } from "./common.mjs";

const URL_BASE = need("CARDGATE_URL");
const PIV_READER = need("CARDGATE_READER");
const READER = need("CARDGATE_SECOND_READER");
const SHOTS = need("SCREENSHOT_DIR");
const STEP_TIMEOUT = 20_000;

/** The YubiKey's PIN objects in the page's order, with their application's label. */
const PINS = [
  { id: "pin", label: "PIN", application: "piv", app: "PIV card" },
  { id: "puk", label: "PUK", application: "piv", app: "PIV card" },
  { id: "user", label: "User PIN", application: "openpgp", app: "OpenPGP card" },
  { id: "admin", label: "Admin PIN", application: "openpgp", app: "OpenPGP card" },
];

const { ask, close: closeStdin } = rustSide();

const { context, close } = await launchChromium(SHOTS, {
  viewport: { width: 1280, height: 1400 },
});
const page = context.pages()[0] ?? (await context.newPage());
const { pageErrors, screenshot, until } = pageKit(page, SHOTS, { stepTimeout: STEP_TIMEOUT });

function expect(cond, what) {
  if (!cond) throw new Error(what);
}

/** What the page shows of one reader: its card line and each PIN article. */
function readerView(reader) {
  const section = [...document.querySelectorAll(".reader")].find((s) => s.dataset.reader === reader);
  if (!section) return null;
  const text = (node) => node?.textContent.trim() ?? null;
  return {
    card: section.dataset.card,
    cardLine: text(section.querySelector('[data-field="card-state"]')),
    pins: [...section.querySelectorAll(".pin")].map((a) => {
      const heading = document.getElementById(a.getAttribute("aria-labelledby"));
      const unblock = a.querySelector('form[data-form="unblock"]');
      const so = unblock?.querySelector('input[name="so"]');
      const rc = unblock?.querySelector('input[name="resetCode"]');
      return {
        id: a.dataset.pin,
        application: a.dataset.application,
        // The heading's own text, without the status badge.
        heading: heading && [...heading.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join("").trim(),
        fields: Object.fromEntries([...a.querySelectorAll("dd[data-field]")].map((dd) => [dd.dataset.field, dd.dataset.value])),
        message: { code: a.querySelector("[data-message]").dataset.code, text: text(a.querySelector("[data-message]")) },
        forms: [...a.querySelectorAll("form[data-form]")].map((f) => f.dataset.form),
        legends: [...a.querySelectorAll("legend")].map(text),
        soLabel: so ? text(so.labels[0]) : null,
        resetCode: rc ? text(rc.labels[0]) : null,
      };
    }),
  };
}

const view = (reader = READER) => page.evaluate(readerView, reader);
const article = (id) => view().then((v) => v?.pins.find((p) => p.id === id));

/** Until the YubiKey's article `id` shows `fields` (and `message`); polled from here. */
async function untilPin(what, id, { fields = {}, message } = {}) {
  const deadline = Date.now() + STEP_TIMEOUT;
  let a;
  for (;;) {
    a = await article(id).catch(() => undefined);
    const shown = a
      && (!message || (a.message.code === message.code && a.message.text.includes(message.text ?? "")))
      && Object.entries(fields).every(([k, want]) => a.fields[k] === want);
    if (shown) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}\n--- ${id} shows ---\n${JSON.stringify(a)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The page's counters of the YubiKey's four PINs equal the card's own. */
async function countersAsTheCardSays(when) {
  const card = JSON.parse(await ask(`card-tries ${READER}`));
  const sorted = (entries) => JSON.stringify(Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b))));
  const shown = sorted((await view()).pins.map((p) => [p.id, p.fields.remainingTries]));
  const said = sorted(Object.entries(card).map(([id, n]) => [id, n === null ? "" : String(n)]));
  console.log(`tries ${when}: page ${shown}, card ${said}`);
  expect(shown === said,
    `${when}: the page shows tries ${shown}, the card says ${said}`);
  return card;
}

/** The accessibility rules the page keeps: unique ids, named controls and regions, no tab order traps. */
async function accessibility() {
  const problems = await page.evaluate(() => {
    const out = [];
    const seen = new Map();
    for (const e of document.querySelectorAll("[id]")) seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
    for (const [id, n] of seen) if (n > 1) out.push(`id ${id} used ${n} times`);
    for (const e of document.querySelectorAll("[aria-labelledby]")) {
      for (const id of e.getAttribute("aria-labelledby").split(/\s+/)) {
        if (!document.getElementById(id)) out.push(`aria-labelledby ${id} names nothing`);
      }
    }
    for (const input of document.querySelectorAll("input, select, textarea")) {
      const label = [...input.labels].map((l) => l.textContent.trim()).join(" ");
      if (!label && !input.getAttribute("aria-label")) out.push(`input ${input.name} (${input.id}) has no label`);
    }
    for (const b of document.querySelectorAll("button")) {
      if (!b.textContent.trim() && !b.getAttribute("aria-label")) out.push("a button without a name");
    }
    for (const f of document.querySelectorAll("fieldset")) {
      if (!f.querySelector(":scope > legend")?.textContent.trim()) out.push("a fieldset without a legend");
    }
    for (const e of document.querySelectorAll("[tabindex]")) {
      if (Number(e.getAttribute("tabindex")) > 0) out.push(`positive tabindex on ${e.tagName}`);
    }
    return out;
  });
  expect(problems.length === 0, `accessibility:\n${problems.join("\n")}`);
}

async function main() {
  step("load /demo with a PIV card and a YubiKey");
  await page.goto(`${URL_BASE}/demo`);
  await until("connected", () => document.querySelector("#connection")?.dataset.state === "connected");
  await until("both cards shown with their PINs", ([a, b]) =>
    [a, b].every((r) => {
      const s = [...document.querySelectorAll(".reader")].find((x) => x.dataset.reader === r);
      return s?.dataset.card === "present" && s.querySelectorAll(".pin").length > 0;
    }), [PIV_READER, READER]);
  for (const p of PINS) await untilPin(`${p.id}: tries shown`, p.id, { fields: { remainingTries: "3", validated: "false" } });
  await screenshot("yubikey-loaded");

  step("one token, four PIN objects grouped by application");
  const v = await view();
  expect(/YubiKey/.test(v.cardLine), `card line: ${v.cardLine}`);
  expect(JSON.stringify(v.pins.map((p) => [p.id, p.application])) === JSON.stringify(PINS.map((p) => [p.id, p.application])),
    `PIN articles: ${JSON.stringify(v.pins.map((p) => [p.id, p.application]))}`);
  for (const p of PINS) {
    const a = v.pins.find((x) => x.id === p.id);
    // The application's label, which may go on (OpenPGP: its serial number).
    expect(a.heading.startsWith(`${p.label} — ${p.app}`), `${p.id} heading: ${JSON.stringify(a.heading)}`);
    expect(a.legends.length > 0 && a.legends.every((l) => l.includes(` — ${p.app}`)),
      `${p.id} legends must name ${p.app}: ${JSON.stringify(a.legends)}`);
    // The accessible tree: a heading of that name, each form a group of that name.
    const headings = await page.getByRole("heading", { name: `${p.label} — ${p.app}` }).count();
    expect(headings === 1, `${headings} headings named "${p.label} — ${p.app}"`);
  }
  const forms = Object.fromEntries(v.pins.map((p) => [p.id, p.forms]));
  expect(JSON.stringify(forms) === JSON.stringify({
    pin: ["login", "change", "unblock"], puk: ["change"],
    user: ["login", "change", "unblock"], admin: ["change"],
  }), `forms: ${JSON.stringify(forms)}`);

  step("a card with one application names none");
  const piv = await view(PIV_READER);
  const pivPin = piv.pins.find((p) => p.id === "pin");
  expect(pivPin?.heading === "PIN", `PIV card's PIN heading: ${JSON.stringify(pivPin?.heading)}`);
  expect(pivPin.legends[0] === "Log in", `PIV card's legends: ${JSON.stringify(pivPin.legends)}`);

  step("unblocking: PUK for the PIV PIN, admin PIN or reset code for the OpenPGP user PIN");
  const pin = v.pins.find((p) => p.id === "pin");
  const user = v.pins.find((p) => p.id === "user");
  expect(pin.soLabel === "PUK" && pin.resetCode === null, `pin's unblock form: ${JSON.stringify(pin)}`);
  expect(user.soLabel === "Admin PIN" && /reset code/.test(user.resetCode ?? ""), `user's unblock form: ${JSON.stringify(user)}`);
  await accessibility();

  step("the reset code checkbox is reached and toggled with the keyboard");
  const unblockUser = page.getByRole("group", { name: "Unblock / reset with the Admin PIN — OpenPGP card" });
  await unblockUser.getByLabel("Admin PIN", { exact: true }).focus();
  for (let i = 0; i < 3; i++) await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => ({ name: document.activeElement?.name, checked: document.activeElement?.checked }));
  expect(focused.name === "resetCode" && focused.checked === false, `Tab from the admin PIN field reached ${JSON.stringify(focused)}`);
  await page.keyboard.press("Space");
  expect(await unblockUser.getByRole("checkbox").isChecked(), "Space did not check the reset code box");
  await page.keyboard.press("Space");
  expect(!(await unblockUser.getByRole("checkbox").isChecked()), "Space did not clear the reset code box");
  await page.keyboard.press("Tab");
  expect(await page.evaluate(() => document.activeElement?.dataset.action) === "unblock", "Tab after the box does not reach Unblock");

  step("the card's counters as the page shows them, before any login");
  await countersAsTheCardSays("before");

  step("a wrong OpenPGP user PIN from the page: only its counter falls");
  const loginUser = page.getByRole("group", { name: "Log in — OpenPGP card" });
  await loginUser.getByLabel(/^User PIN/).fill("000000");
  await loginUser.getByRole("button", { name: "Log in", exact: true }).click();
  await untilPin("wrong user PIN", "user", {
    message: { code: "PIN_INCORRECT", text: "2 tries left" },
    fields: { remainingTries: "2", tryCountLow: "true", validated: "false" },
  });
  for (const id of ["pin", "puk", "admin"]) {
    const a = await article(id);
    expect(a.fields.remainingTries === "3", `${id} shows ${a.fields.remainingTries} tries after a wrong user PIN`);
  }
  const after = await countersAsTheCardSays("after a wrong user PIN");
  expect(after.user === 2 && after.pin === 3 && after.puk === 3 && after.admin === 3, `card: ${JSON.stringify(after)}`);
  await screenshot("yubikey-wrong-user-pin");

  step("the right OpenPGP user PIN, typed and submitted with the keyboard");
  await loginUser.getByLabel(/^User PIN/).focus();
  await page.keyboard.type("123456");
  await page.keyboard.press("Enter");
  await untilPin("user PIN verified", "user", {
    message: { code: "OK", text: "verified" },
    fields: { remainingTries: "3", tryCountLow: "false", validated: "true" },
  });
  const pivAfter = await article("pin");
  expect(pivAfter.fields.validated === "false", "the PIV PIN shows verified after the OpenPGP login");
  await screenshot("yubikey-user-verified");
  await accessibility();

  // Last: reading the card beside the daemon selects each application,
  // which ends the OpenPGP verification on a YubiKey.
  const end = await countersAsTheCardSays("after the right user PIN");
  expect(Object.values(end).every((n) => n === 3), `card: ${JSON.stringify(end)}`);

  expect(pageErrors.length === 0, `errors in the page:\n${pageErrors.join("\n")}`);
}

await runMain(main, { screenshot, close, closeStdin });
