// cardgate extension, background: one native-messaging port to
// `cardgate native-host`, shared by every page; each page's socket is a
// session there, opened with the page's origin as the browser reports it
// (port.sender), never as the page claims. The host relays each session to
// the cardgate daemon with that origin, where the user's allowlist
// (`cardgate origins allow`) is checked as for any page.
"use strict";
const HOST = "org.cardgate.native";
let native = null;
let nextSession = 1;
// host session -> { port, local }
const routes = new Map();

function host() {
  if (native) return native;
  native = chrome.runtime.connectNative(HOST);
  native.onMessage.addListener((msg) => {
    if (msg.type === "error") {
      console.warn("cardgate native host:", msg.code, msg.message);
      return;
    }
    const route = routes.get(msg.session);
    if (!route) return;
    route.port.postMessage({ ...msg, session: route.local });
    if (msg.type === "closed" || msg.type === "refused") routes.delete(msg.session);
  });
  native.onDisconnect.addListener(() => {
    const why = chrome.runtime.lastError ? chrome.runtime.lastError.message : "it exited";
    console.warn(`cardgate native host disconnected: ${why}`);
    for (const [, route] of routes) {
      route.port.postMessage({ type: "closed", session: route.local, code: 1006, reason: why });
    }
    routes.clear();
    native = null;
  });
  return native;
}

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== "cardgate" || !port.sender) return;
  const origin = port.sender.origin || new URL(port.sender.url).origin;
  const mine = new Map(); // page session -> host session
  port.onMessage.addListener((msg) => {
    if (msg.type === "open") {
      const id = nextSession++;
      mine.set(msg.session, id);
      routes.set(id, { port, local: msg.session });
      host().postMessage({ type: "open", session: id, origin });
      return;
    }
    const id = mine.get(msg.session);
    if (id === undefined || !routes.has(id)) return;
    if (msg.type === "message") {
      host().postMessage({ type: "message", session: id, data: String(msg.data) });
    } else if (msg.type === "close") {
      host().postMessage({ type: "close", session: id, code: Number(msg.code) || 1000 });
      routes.delete(id);
      mine.delete(msg.session);
    }
  });
  port.onDisconnect.addListener(() => {
    for (const id of mine.values()) {
      if (routes.delete(id) && native) native.postMessage({ type: "close", session: id });
    }
  });
});
