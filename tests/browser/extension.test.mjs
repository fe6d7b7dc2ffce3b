// The extension's close-code handling (native/extension/page.js and
// background.js), run in node with stand-ins for the page's window and the
// browser's extension API: no browser needed. Run by tests/extension_js.rs
// (`node --test tests/browser/extension.test.mjs`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const EXTENSION = new URL("../../native/extension/", import.meta.url);
const source = (name) => readFileSync(new URL(name, EXTENSION), "utf8");
const TO_EXT = "cardgate:page->ext";
const TO_PAGE = "cardgate:ext->page";
const DAEMON_URL = "ws://127.0.0.1:27183/ws";

// What crosses to another context is a copy (as the browser's structured
// clone), made of this context's objects.
const clone = (msg) => JSON.parse(JSON.stringify(msg));

// Node 20 has no CloseEvent.
class CloseEvent extends Event {
  constructor(type, init = {}) {
    super(type);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? "";
    this.wasClean = init.wasClean ?? false;
  }
}

/// page.js in a window of its own. `posted`: what it sent the extension;
/// `deliver(msg)`: a message from the extension to the page.
function loadPage() {
  const window = new EventTarget();
  const posted = [];
  const native = [];
  window.WebSocket = function NativeWebSocket(url) {
    native.push(url);
    this.url = url;
  };
  window.postMessage = (data) => {
    if (data && data.tag === TO_EXT) posted.push(clone(data.msg));
  };
  const context = vm.createContext({
    window,
    EventTarget,
    Event,
    MessageEvent,
    CloseEvent,
    DOMException,
    URL,
    console: { warn() {}, log() {} },
  });
  vm.runInContext(source("page.js"), context);
  const deliver = (msg) => {
    const ev = new Event("message");
    ev.source = window;
    ev.data = { tag: TO_PAGE, msg };
    window.dispatchEvent(ev);
  };
  return { WebSocket: window.WebSocket, posted, native, deliver };
}

/// A socket of the page and the events it fired, in order.
function open(page) {
  const ws = new page.WebSocket(DAEMON_URL);
  const events = [];
  for (const type of ["open", "error", "close"]) {
    ws.addEventListener(type, (e) =>
      events.push(type === "close" ? { type, code: e.code, reason: e.reason, wasClean: e.wasClean } : { type }),
    );
  }
  const session = page.posted.at(-1).session;
  return { ws, events, session };
}

test("a session the host closes with 1000 is a clean close", () => {
  const page = loadPage();
  const { ws, events, session } = open(page);
  page.deliver({ type: "opened", session });
  assert.equal(ws.readyState, 1);
  page.deliver({ type: "closed", session, code: 1000, reason: "bye" });
  assert.deepEqual(events, [
    { type: "open" },
    { type: "close", code: 1000, reason: "bye", wasClean: true },
  ]);
  assert.equal(ws.readyState, 3);
});

test("any other code from the host is an unclean close, after an error event", () => {
  for (const code of [1008, 1009, 1011, 4000]) {
    const page = loadPage();
    const { events, session } = open(page);
    page.deliver({ type: "opened", session });
    page.deliver({ type: "closed", session, code, reason: "why" });
    assert.deepEqual(events.slice(1), [
      { type: "error" },
      { type: "close", code, reason: "why", wasClean: false },
    ]);
  }
});

test("a close without a code is 1006", () => {
  const page = loadPage();
  const { events, session } = open(page);
  page.deliver({ type: "opened", session });
  page.deliver({ type: "closed", session });
  assert.deepEqual(events.at(-1), { type: "close", code: 1006, reason: "", wasClean: false });
});

test("a refused session is an error and an unclean 1006 close, never open", () => {
  const page = loadPage();
  const { ws, events, session } = open(page);
  page.deliver({ type: "refused", session, code: "ORIGIN_NOT_ALLOWED", message: "no" });
  assert.deepEqual(events, [{ type: "error" }, { type: "close", code: 1006, reason: "", wasClean: false }]);
  assert.equal(ws.readyState, 3);
});

test("the page's own close sends its code and closes cleanly once", () => {
  const page = loadPage();
  const { ws, events, session } = open(page);
  page.deliver({ type: "opened", session });
  ws.close(4001, "done");
  assert.deepEqual(page.posted.at(-1), { type: "close", session, code: 4001 });
  assert.deepEqual(events.at(-1), { type: "close", code: 4001, reason: "done", wasClean: true });
  // The host's answer after that changes nothing.
  page.deliver({ type: "closed", session, code: 1000 });
  ws.close();
  assert.equal(events.filter((e) => e.type === "close").length, 1);
  assert.equal(page.posted.filter((m) => m.type === "close").length, 1);
});

test("a close with no code sends 1000", () => {
  const page = loadPage();
  const { ws, session } = open(page);
  page.deliver({ type: "opened", session });
  ws.close();
  assert.deepEqual(page.posted.at(-1), { type: "close", session, code: 1000 });
});

test("only the daemon's URL is carried by the extension", () => {
  const page = loadPage();
  new page.WebSocket("wss://example.com/ws");
  new page.WebSocket("ws://127.0.0.1:27183/other");
  assert.deepEqual(page.native, ["wss://example.com/ws", "ws://127.0.0.1:27183/other"]);
  assert.equal(page.posted.length, 0);
});

/// A port of the extension API: its listeners, and what was posted on it.
function fakePort(extra = {}) {
  const listeners = { message: [], disconnect: [] };
  return {
    ...extra,
    posted: [],
    postMessage(msg) {
      this.posted.push(clone(msg));
    },
    onMessage: { addListener: (f) => listeners.message.push(f) },
    onDisconnect: { addListener: (f) => listeners.disconnect.push(f) },
    emit(msg) {
      for (const f of listeners.message) f(msg);
    },
    disconnect() {
      for (const f of listeners.disconnect) f();
    },
  };
}

/// background.js with a fake `chrome`: `connect(origin)` is a page's port,
/// `host()` the native host's port (once a page needed it).
function loadBackground() {
  const hosts = [];
  let onConnect = null;
  const chrome = {
    runtime: {
      lastError: null,
      connectNative(name) {
        assert.equal(name, "org.cardgate.native");
        const port = fakePort();
        hosts.push(port);
        return port;
      },
      onConnect: { addListener: (f) => (onConnect = f) },
    },
  };
  const context = vm.createContext({ chrome, URL, Map, Number, String, console: { warn() {} } });
  vm.runInContext(source("background.js"), context);
  const connect = (origin) => {
    const port = fakePort({ name: "cardgate", sender: { origin, url: `${origin}/page` } });
    onConnect(port);
    return port;
  };
  return { chrome, connect, host: () => hosts.at(-1), hosts };
}

test("the page's close code reaches the host; a missing or bad one is 1000", () => {
  const bg = loadBackground();
  const page = bg.connect("https://bank.example");
  for (const [local, code, sent] of [
    [1, 4000, 4000],
    [2, undefined, 1000],
    [3, "x", 1000],
  ]) {
    page.emit({ type: "open", session: local });
    const id = bg.host().posted.at(-1).session;
    assert.deepEqual(bg.host().posted.at(-1), { type: "open", session: id, origin: "https://bank.example" });
    page.emit({ type: "close", session: local, code });
    assert.deepEqual(bg.host().posted.at(-1), { type: "close", session: id, code: sent });
  }
});

test("the host's closed reaches the page under its own session, once", () => {
  const bg = loadBackground();
  const page = bg.connect("https://bank.example");
  page.emit({ type: "open", session: 7 });
  const id = bg.host().posted.at(-1).session;
  bg.host().emit({ type: "opened", session: id });
  // A session whose messages piled up: an error envelope, then closed 1008.
  bg.host().emit({ type: "error", session: id, code: "TOO_MANY_MESSAGES", message: "…" });
  bg.host().emit({ type: "closed", session: id, code: 1008, reason: "too many messages waiting for the daemon" });
  assert.deepEqual(page.posted, [
    { type: "opened", session: 7 },
    { type: "closed", session: 7, code: 1008, reason: "too many messages waiting for the daemon" },
  ]);
  // The route is gone: nothing more is delivered or sent for it.
  bg.host().emit({ type: "message", session: id, data: "{}" });
  page.emit({ type: "message", session: 7, data: "{}" });
  assert.equal(page.posted.length, 2);
  assert.equal(bg.host().posted.filter((m) => m.type === "message").length, 0);
});

test("when the host goes away every open session is closed with 1006", () => {
  const bg = loadBackground();
  const a = bg.connect("https://bank.example");
  const b = bg.connect("https://shop.example");
  a.emit({ type: "open", session: 1 });
  b.emit({ type: "open", session: 1 });
  bg.chrome.runtime.lastError = { message: "Native host has exited." };
  bg.host().disconnect();
  for (const page of [a, b]) {
    assert.deepEqual(page.posted, [{ type: "closed", session: 1, code: 1006, reason: "Native host has exited." }]);
  }
  // The next session starts a new host.
  a.emit({ type: "open", session: 2 });
  assert.equal(bg.hosts.length, 2);
});

test("a page that goes away closes its sessions at the host", () => {
  const bg = loadBackground();
  const page = bg.connect("https://bank.example");
  page.emit({ type: "open", session: 1 });
  page.emit({ type: "open", session: 2 });
  const ids = bg.host().posted.map((m) => m.session);
  page.disconnect();
  assert.deepEqual(
    bg.host().posted.slice(2),
    ids.map((session) => ({ type: "close", session })),
  );
});
