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
