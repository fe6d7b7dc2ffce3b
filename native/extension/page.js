// cardgate extension, page side (the page's own JavaScript world).
//
// Replaces `WebSocket` for the cardgate daemon's URL only
// (ws[s]://127.0.0.1|localhost|[::1]:PORT/ws): such a socket is carried by
// the extension to `cardgate native-host` over native messaging, which
// relays it to the daemon, so the SCWS client (scws.js) works unchanged
// where the browser's policy blocks loopback connections. Every other
// WebSocket is the browser's own.
(() => {
  "use strict";
  const NativeWebSocket = window.WebSocket;
  const DAEMON = /^wss?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\/ws\/?$/i;
  const TO_EXT = "cardgate:page->ext";
  const TO_PAGE = "cardgate:ext->page";
  const sockets = new Map();
  let next = 1;

  const post = (msg) => window.postMessage({ tag: TO_EXT, msg }, "*");

  class CardgateSocket extends EventTarget {
    constructor(url) {
      super();
      this.url = String(url);
      this.readyState = CardgateSocket.CONNECTING;
      this.protocol = "";
      this.extensions = "";
      this.binaryType = "blob";
      this.bufferedAmount = 0;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      this._session = next++;
      sockets.set(this._session, this);
      post({ type: "open", session: this._session });
    }
    send(data) {
      if (this.readyState === CardgateSocket.CONNECTING) {
        throw new DOMException("WebSocket is still connecting", "InvalidStateError");
      }
      if (this.readyState !== CardgateSocket.OPEN) return;
      post({ type: "message", session: this._session, data: String(data) });
    }
    close(code = 1000, reason = "") {
      if (this.readyState >= CardgateSocket.CLOSING) return;
      post({ type: "close", session: this._session, code });
      this._end(code, reason, true);
    }
    _fire(event) {
      this.dispatchEvent(event);
      const handler = this["on" + event.type];
      if (typeof handler === "function") handler.call(this, event);
    }
    _end(code, reason, clean) {
      if (this.readyState === CardgateSocket.CLOSED) return;
      sockets.delete(this._session);
      if (!clean) this._fire(new Event("error"));
      this.readyState = CardgateSocket.CLOSED;
      this._fire(new CloseEvent("close", { code, reason, wasClean: clean }));
    }
    _receive(msg) {
      switch (msg.type) {
        case "opened":
          this.readyState = CardgateSocket.OPEN;
          this._fire(new Event("open"));
          break;
        case "message":
          this._fire(new MessageEvent("message", { data: msg.data, origin: new URL(this.url).origin }));
          break;
        case "refused":
          console.warn(`cardgate: ${msg.code}: ${msg.message}`);
          this._end(1006, "", false);
          break;
        case "closed":
          this._end(msg.code || 1006, msg.reason || "", msg.code === 1000);
          break;
      }
    }
  }
  for (const [k, v] of Object.entries({ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 })) {
    CardgateSocket[k] = v;
    CardgateSocket.prototype[k] = v;
  }

  window.addEventListener("message", (ev) => {
    if (ev.source !== window || !ev.data || ev.data.tag !== TO_PAGE) return;
    const msg = ev.data.msg;
    const socket = sockets.get(msg.session);
    if (socket) socket._receive(msg);
  });

  function WebSocket(url, protocols) {
    if (!new.target) throw new TypeError("Failed to construct 'WebSocket': use 'new'");
    if (DAEMON.test(String(url))) return new CardgateSocket(url);
    return protocols === undefined ? new NativeWebSocket(url) : new NativeWebSocket(url, protocols);
  }
  WebSocket.prototype = NativeWebSocket.prototype;
  for (const k of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) WebSocket[k] = NativeWebSocket[k];
  Object.defineProperty(window, "WebSocket", { value: WebSocket, writable: true, configurable: true });
  // Lets pages and tests tell the extension is there.
  Object.defineProperty(window, "cardgateNativeMessaging", { value: true });
})();
