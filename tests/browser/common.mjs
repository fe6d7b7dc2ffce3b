// What the browser end-to-end scripts (demo.e2e.mjs, security.e2e.mjs)
// share: their environment, progress lines, and headless Chromium on a
// fresh profile. Both are driven by tests/pcsc/browser.rs.

import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
