// What the browser end-to-end scripts (demo.e2e.mjs, demo-yubikey.e2e.mjs,
// security.e2e.mjs) share: their environment, progress lines, requests to
// the Rust side and headless Chromium on a fresh profile. All are driven by
// tests/pcsc/browser.rs.

import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/** The environment variable `name`; the script fails without it. */
export function need(name) {
  const v = process.env[name];
  if (!v) fail(`environment variable ${name} is not set (run through cargo test --test pcsc browser)`);
  return v;
}

export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

export function step(text) {
  console.log(`step: ${text}`);
}

/** Chromium's flags in every script: no sandbox, GPU, QUIC or background traffic. */
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Headless Chromium (through playwright-core) on a fresh profile; the
 * screenshot folder `shots` is made. `args` follow the common flags, the
 * other `options` go to the launch as they are. `close()` closes the
 * browser and removes the profile.
 */
export async function launchChromium(shots, { args = [], ...options } = {}) {
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    fail(`playwright-core is not installed: run \`npm ci --prefix tests/browser\` (${e.message})`);
  }
  if (!existsSync(CHROMIUM)) {
    fail(`no Chromium at ${CHROMIUM}: install Debian's package (\`apt-get install -y chromium\`) or set CHROMIUM`);
  }
  mkdirSync(shots, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "cardgate-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...FLAGS, ...args],
    ...options,
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/**
 * Requests to the Rust test, which owns the card and daemon processes: a
 * request line `@@NAME [ARGS]` on stdout, answered on stdin by `ok [VALUE]`
 * or `error MESSAGE`. `ask(request)` resolves to VALUE ("" when none) and
 * throws on an error; `close()` stops reading stdin.
 */
export function rustSide() {
  const stdin = createInterface({ input: process.stdin });
  const answers = [];
  const waiting = [];
  stdin.on("line", (line) => {
    const w = waiting.shift();
    if (w) w(line);
    else answers.push(line);
  });
  stdin.on("close", () => {
    for (const w of waiting.splice(0)) w("error stdin closed");
  });
  const ask = async (request) => {
    console.log(`@@${request}`);
    const line = answers.length ? answers.shift() : await new Promise((r) => waiting.push(r));
    if (line === "ok") return "";
    if (line.startsWith("ok ")) return line.slice(3);
    throw new Error(`${request} failed on the Rust side: ${line}`);
  };
  return { ask, close: () => stdin.close() };
}

/**
 * Runs a script's `main` the way every browser script ends: `@@done` on
 * success; on failure the message, a screenshot and exit code 1; the
 * browser and stdin closed either way.
 */
export async function runMain(main, { screenshot, close, closeStdin }) {
  let code = 0;
  try {
    await main();
    console.log("@@done");
  } catch (e) {
    console.error(`FAIL: ${e.message}`);
    await screenshot("failure").catch(() => {});
    code = 1;
  } finally {
    await close();
    closeStdin();
  }
  process.exit(code);
}

/**
 * What every demo-page script does with its page: collect the page's
 * errors (console errors matching `ignore` aside), number its screenshots
 * in `shots`, and wait for a condition in the page with an error that
 * says what was awaited and what the page shows.
 */
export function pageKit(page, shots, { stepTimeout, ignore = null } = {}) {
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !(ignore && ignore.test(m.text()))) {
      pageErrors.push(`console: ${m.text()}`);
    }
  });
  let shot = 0;
  const screenshot = async (name) => {
    shot += 1;
    const file = join(shots, `${String(shot).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
  };
  const until = async (what, fn, arg) => {
    try {
      await page.waitForFunction(fn, arg, { timeout: stepTimeout, polling: 50 });
    } catch {
      const text = await page.evaluate(() => document.querySelector("main")?.innerText ?? "").catch(() => "?");
      throw new Error(`timed out waiting for: ${what}\n--- page text ---\n${text.slice(0, 4000)}`);
    }
  };
  return { pageErrors, screenshot, until };
}
