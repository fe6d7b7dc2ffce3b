// cardgate's SCWS JavaScript client: the SCWS object model (SCWS.Pin,
// SCWS.CredentialState, SCWS.CredentialValue, SCWS.Error …) over the daemon's
// JSON-RPC 2.0 WebSocket protocol (docs/protocol.md). Types: /scws.d.ts.
//
// An ES module with no dependencies and no build step:
//
//   import SCWS from "http://127.0.0.1:27183/scws.js";
//   const env = await SCWS.connect();            // {port, host} optional
//   const pin = env.readers.find((r) => r.token)?.token.pins[0];
//   try { await pin.login("123456"); }
//   catch (e) { if (e.code === "PIN_INCORRECT") console.log(e.remainingTries, "tries left"); }
//
// Importing the module also sets `globalThis.SCWS` (window.SCWS) when it is
// not defined yet, for pages written against the global `SCWS` object.
//
// PIN values are sent to the daemon only; this module never logs them.

/** The daemon's default port. */
export const DEFAULT_PORT = 27183;
/** The default host: the IPv4 loopback address. */
export const DEFAULT_HOST = "127.0.0.1";
/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;
/** This client's version. */
export const VERSION = "0.1.0";

const NATIVE_ERROR = globalThis.Error;
const INTERNAL = Symbol("cardgate internal");

// ------------------------------------------------------------------ errors

/**
 * Every failure of this module. `code` is the stable string code of
 * docs/errors.md (`PIN_INCORRECT`, `PIN_BLOCKED` …) or one of the client's
 * own (`DAEMON_UNREACHABLE`, `DAEMON_DISCONNECTED`, `INVALID_ARGUMENT`).
 */
export class SCWSError extends NATIVE_ERROR {
  constructor(code, message, data = {}) {
    super(message || code);
    this.name = "SCWS.Error";
    /** Stable string code: branch on it, never on `message`. */
    this.code = code;
    /** Everything the daemon sent with the error (`remainingTries`, `minLength` …). */
    this.data = { ...data, code };
    if (typeof data.remainingTries === "number") {
      /** Tries left of the PIN (or SO credential) concerned, when known. */
      this.remainingTries = data.remainingTries;
    }
    /** The JSON-RPC error code, for errors that came from the daemon. */
    this.rpcCode = typeof data.rpcCode === "number" ? data.rpcCode : undefined;
    delete this.data.rpcCode;
  }

  /** Builds the error of a JSON-RPC error object. */
  static fromRpc(error) {
    const data = error && typeof error.data === "object" && error.data ? error.data : {};
    const code = typeof data.code === "string" ? data.code : "DAEMON_ERROR";
    const message = data.message || (error && error.message) || code;
    return new SCWSError(code, message, { ...data, rpcCode: error && error.code });
  }
}

function invalidArgument(message) {
  return new SCWSError("INVALID_ARGUMENT", message);
}

// ------------------------------------------------------------ credentials

/**
 * The credential state shown by a PIN dialog (SCWS.CredentialState).
 * `new CredentialState({pinTriesLeft, bioFingerprint, bioFacial}, error)`.
 */
export class CredentialState {
  constructor(state = {}, error = null) {
    const s = state && typeof state === "object" ? state : {};
    /** The state object as given to the constructor. */
    this.state = s;
    /** PIN tries left to display, or null. */
    this.remainingTries = numberOrNull(s.pinTriesLeft);
    /** Fingerprint tries left to display, or null. */
    this.fingerprintRemainingTries = numberOrNull(s.bioFingerprint && s.bioFingerprint.triesLeft);
    /** Ten booleans (left little finger … right little finger), or null. */
    this.fingerprintFingers =
      s.bioFingerprint && Array.isArray(s.bioFingerprint.fingers)
        ? s.bioFingerprint.fingers.slice(0, 10).map(Boolean)
        : null;
    /** Facial tries left to display, or null. */
    this.facialRemainingTries = numberOrNull(s.bioFacial && s.bioFacial.triesLeft);
    /** An error message to display, or null. */
    this.error = error == null ? null : String(error);
  }

  /** The same as `remainingTries` (the constructor's field name). */
  get pinTriesLeft() {
    return this.remainingTries;
  }
}

function numberOrNull(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

const CREDENTIAL_TYPES = ["pin", "finger", "facial"];
/** Where a CredentialValue from requestCredential keeps its daemon handle. */
const HANDLE = Symbol("cardgate credential handle");
/** The environment of the last SCWS.connect(), for requestCredential without a token. */
let lastEnvironment = null;

/**
 * A credential value usable with Pin.login / change / init
 * (SCWS.CredentialValue): `new CredentialValue({type: "pin", data})` where
 * `data` is an ArrayBuffer (or a typed array, or a string, taken as UTF-8).
 */
export class CredentialValue {
  constructor(value) {
    if (!value || typeof value !== "object") {
      throw invalidArgument("CredentialValue needs an object {type, subtype, data}");
    }
    if (!CREDENTIAL_TYPES.includes(value.type)) {
      throw invalidArgument('CredentialValue.type must be "pin", "finger" or "facial"');
    }
    if (value.type === "finger") {
      if (!Number.isInteger(value.subtype) || value.subtype < 0 || value.subtype > 9) {
        throw invalidArgument("a finger credential's subtype is the finger index 0..9");
      }
    } else if (value.subtype !== undefined) {
      throw invalidArgument("subtype is only defined for finger credentials");
    }
    /** `{type, subtype, data: ArrayBuffer}`. */
    this.value = {
      type: value.type,
      subtype: value.subtype,
      data: toArrayBuffer(value.data),
    };
  }

  /** A "pin" credential from a string (UTF-8). */
  static fromPin(pin) {
    return new CredentialValue({ type: "pin", data: String(pin) });
  }

  /**
   * The wire form: `{type, data: base64}` (plus `subtype` for fingers), or
   * `{type: "pin", handle}` for a credential from requestCredential (its
   * `data` is an opaque one-time handle; the PIN stays in the daemon).
   */
  toJSON() {
    if (this[HANDLE]) return { type: "pin", handle: this[HANDLE] };
    const out = { type: this.value.type, data: base64(this.value.data) };
    if (this.value.subtype !== undefined) out.subtype = this.value.subtype;
    return out;
  }
}

function toArrayBuffer(data) {
  if (data instanceof ArrayBuffer) return data.slice(0);
  if (ArrayBuffer.isView(data)) {
    return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  }
  if (typeof data === "string") return new TextEncoder().encode(data).buffer;
  throw invalidArgument("CredentialValue.data must be an ArrayBuffer, a typed array or a string");
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin);
}

/** A PIN value as sent on the wire: a string, a CredentialValue, false or null. */
function wireValue(value, name) {
  if (typeof value === "string") return value;
  if (value instanceof CredentialValue) return value.toJSON();
  if (value === false) return false;
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return String(value);
  throw invalidArgument(`${name} must be a string, a SCWS.CredentialValue, false or null`);
}

// ------------------------------------------------------------ PIN objects

function callerError() {
  return new TypeError("SCWS objects are created by SCWS.connect(), not with new");
}

/** A PIN that protects smart-card contents (SCWS.Pin). */
export class Pin {
  #token;
  #status;

  constructor(key, token, status) {
    if (key !== INTERNAL) throw callerError();
    this.#token = token;
    this.#status = { ...status };
  }

  /** The PIN object's id in the token: PIV `pin`, `puk`; OpenPGP `user`, `admin`. */
  get id() {
    return this.#status.id;
  }
  /** The SCWS.Token this PIN belongs to. */
  get token() {
    return this.#token;
  }
  /** The PIN label (may be undefined). */
  get label() {
    return this.#status.label || undefined;
  }
  get initialized() {
    return !!this.#status.initialized;
  }
  get toBeChanged() {
    return !!this.#status.toBeChanged;
  }
  get blocked() {
    return !!this.#status.blocked;
  }
  get tryCountLow() {
    return !!this.#status.tryCountLow;
  }
  get lastTry() {
    return !!this.#status.lastTry;
  }
  /** Tries left, or undefined when the card does not tell. */
  get remainingTries() {
    return typeof this.#status.remainingTries === "number" ? this.#status.remainingTries : undefined;
  }
  get validated() {
    return !!this.#status.validated;
  }
  /** Maximum of the try counter (cardgate extension). */
  get maxTries() {
    return this.#status.maxTries;
  }
  /** The id of the card application this PIN belongs to: `piv`, `openpgp`, `esteid` … (cardgate extension). */
  get application() {
    return this.#status.application;
  }
  /** The security officer is logged in, ready for init() (cardgate extension). */
  get soValidated() {
    return !!this.#status.soValidated;
  }
  /** The card's length limits in bytes, and digits-only (cardgate extension). */
  get minLength() {
    return this.#status.minLength;
  }
  get maxLength() {
    return this.#status.maxLength;
  }
  get numeric() {
    return !!this.#status.numeric;
  }
  /** The raw PinStatus last received from the daemon (a copy). */
  get status() {
    return { ...this.#status };
  }
  /** False once the card is removed (the object then refers to no card). */
  get attached() {
    return this.#token.attached;
  }
  /** A SCWS.CredentialState with the current tries, for a PIN dialog. */
  get initSubmissionsState() {
    return new CredentialState({ pinTriesLeft: this.remainingTries ?? null });
  }
  /** `{pinLabel, methods: {facialBio, fingerBio, fingerBioIsOneToManySupported}}`. */
  get credentialProperties() {
    return {
      pinLabel: this.label ?? "",
      methods: { facialBio: false, fingerBio: false, fingerBioIsOneToManySupported: false },
    };
  }

  /** Verifies the PIN (`so`: the security officer's PUK / admin PIN instead). */
  login(value, so = false, options = {}) {
    return this.#op("login", () => {
      const params = { value: wireValue(value, "value"), so: !!so };
      if (options && options.soPath) params.soPath = options.soPath;
      return params;
    });
  }

  /** Changes the PIN from `oldValue` to `newValue`. */
  change(oldValue, newValue) {
    return this.#op("change", () => ({
      oldValue: wireValue(oldValue, "oldValue"),
      newValue: wireValue(newValue, "newValue"),
    }));
  }

  /** Sets a new PIN value (unblocking it) after login(soValue, true). */
  init(newValue) {
    return this.#op("init", () => ({ newValue: wireValue(newValue, "newValue") }));
  }

  /** Ends the verified state of the PIN (and of its SO login). */
  logout() {
    return this.#op("logout", () => ({}));
  }

  /** The PIN format constraints: `[{type: "minLength", minLength: 6}, …]`. */
  getConstraints() {
    return this.#call("getConstraints", {});
  }

  /** One boolean per constraint of getConstraints(), in the same order. */
  checkConstraints(oldPin, newPin) {
    let params;
    try {
      params = { newPin: wireValue(newPin, "newPin") };
      if (oldPin !== undefined && oldPin !== null) params.oldPin = wireValue(oldPin, "oldPin");
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#call("checkConstraints", params);
  }

  /** Reads the PIN's status again from the card (no try is spent). */
  async refresh() {
    const status = await this.#call("getPinStatus", {});
    this[INTERNAL](status);
    return this;
  }

  /**
   * Shows the daemon's own PIN dialog (SCWS Pin.requestCredential). Resolves
   * to a SCWS.CredentialValue whose `data` is an opaque one-time handle — the
   * PIN itself never reaches the page — usable once with login() on the same
   * connection within 60 s; `undefined` when the user cancels. Works without
   * a token (`SCWS.Pin.prototype.requestCredential(...)`, use case 2) once
   * SCWS.connect() was called. On a Pin of a token, the dialog shows the
   * card's own label and tries left, read when it opens.
   */
  async requestCredential(credentialProperties, credentialState, readerName, cardLabel) {
    const token = this instanceof Pin ? this.#token : null;
    const env = token?.reader?.environment ?? lastEnvironment;
    if (!env) {
      throw new SCWSError("DAEMON_DISCONNECTED", "call SCWS.connect() before requestCredential()", {});
    }
    const state = credentialState ?? {};
    // On a Pin of a token the daemon shows the card's own label and tries
    // (a count the page passes in credentialState is never shown as the
    // card's); the page's error text is shown as the page's message.
    const onThisCard = token && (readerName == null || readerName === token.reader.name);
    const params = {
      pinLabel: credentialProperties?.pinLabel ?? null,
      error: typeof state.error === "string" ? state.error : null,
      reader: readerName ?? (onThisCard ? token.reader.name : null),
      cardLabel: cardLabel ?? null,
      pin: onThisCard ? this.id : null,
    };
    const result = await env.call("requestCredential", params);
    if (!result) return undefined;
    const cred = new CredentialValue({ type: "pin", data: result.handle });
    cred[HANDLE] = result.handle;
    return cred;
  }

  #call(method, params) {
    const token = this.#token;
    if (!token.attached) {
      return Promise.reject(
        new SCWSError("CARD_REMOVED", "the card of this PIN object was removed", {
          reader: token.reader.name,
        }),
      );
    }
    return token.reader.environment.call(method, {
      reader: token.reader.name,
      pin: this.id,
      ...params,
    });
  }

  async #op(method, build) {
    const params = build();
    await this.#call(method, params);
    return undefined;
  }

  /** Internal: applies a PinStatus; returns whether anything changed. */
  [INTERNAL](status) {
    const before = JSON.stringify(this.#status);
    this.#status = { ...status };
    return JSON.stringify(this.#status) !== before;
  }
}

/** The application on a card (SCWS.Token). */
export class Token {
  #reader;
  #data;
  #pins;
  #attached = true;

  constructor(key, reader, data) {
    if (key !== INTERNAL) throw callerError();
    this.#reader = reader;
    this.#data = { ...data };
    this.#pins = (data.pins || []).map((s) => new Pin(INTERNAL, this, s));
  }

  /** The SCWS.Reader holding the card. */
  get reader() {
    return this.#reader;
  }
  get label() {
    return this.#data.label;
  }
  /** The card profile that recognised the card: `piv`, `openpgp`, `yubikey`, `pkcs15` … (cardgate extension). */
  get profile() {
    return this.#data.profile;
  }
  /** The card's applications, each a group of its PINs: `[{id, label, aid}]` (cardgate extension). */
  get applications() {
    return (this.#data.applications ?? []).map((a) => ({ ...a }));
  }
  /** The card's serial number, or null. */
  get serial() {
    return this.#data.serial ?? null;
  }
  /** True when the reader has a pinpad: login(null) / change(null, null) take the PIN there. */
  get protectedAuthPath() {
    return !!this.#data.protectedAuthPath;
  }
  /** The PINs, user PIN first (a copy of the array; the Pin objects are live). */
  get pins() {
    return this.#pins.slice();
  }
  /** False once the card is removed. */
  get attached() {
    return this.#attached;
  }
  /** The Pin with this id, or undefined. */
  getPin(id) {
    return this.#pins.find((p) => p.id === id);
  }

  /** Internal: does `data` describe the same card? */
  sameCard(data) {
    const d = this.#data;
    return (
      d.profile === data.profile &&
      d.label === data.label &&
      (d.serial ?? null) === (data.serial ?? null) &&
      this.#pins.length === (data.pins || []).length &&
      this.#pins.every((p, i) => p.id === data.pins[i].id)
    );
  }

  /** Internal: updates the PIN states; returns the Pins that changed. */
  update(data) {
    this.#data = { ...data };
    const changed = [];
    (data.pins || []).forEach((s, i) => {
      if (this.#pins[i][INTERNAL](s)) changed.push(this.#pins[i]);
    });
    return changed;
  }

  /** Internal: the card went away. */
  detach() {
    this.#attached = false;
  }
}

/** A smart-card reader (SCWS.Reader). */
export class Reader {
  #env;
  #name;
  #token = null;
  #cardPresent = false;
  #atr = null;
  #error = null;

  constructor(key, env, name) {
    if (key !== INTERNAL) throw callerError();
    this.#env = env;
    this.#name = name;
  }

  /** The reader's name as PC/SC reports it. */
  get name() {
    return this.#name;
  }
  /** The SCWS.Token of the card in the reader, or null (no card, or unsupported). */
  get token() {
    return this.#token;
  }
  /** Whether a card is in the reader. */
  get cardPresent() {
    return this.#cardPresent;
  }
  /** The card's ATR in hex, or null. */
  get atr() {
    return this.#atr;
  }
  /** Why a present card has no token (e.g. CARD_NOT_SUPPORTED), or null. */
  get error() {
    return this.#error;
  }
  /** The SCWS environment (connection) this reader belongs to. */
  get environment() {
    return this.#env;
  }

  /**
   * Internal: applies a reader description from the daemon. Returns
   * {token: "same" | "changed", pins: [changed Pin …]}.
   */
  apply(d) {
    const present = !!d.cardPresent;
    this.#cardPresent = present;
    this.#atr = present ? d.atr || null : null;
    this.#error = present && d.error ? SCWSError.fromRpc({ data: d.error }) : null;
    const old = this.#token;
    if (present && d.token && old && old.sameCard(d.token)) {
      return { token: "same", pins: old.update(d.token) };
    }
    if (!old && !(present && d.token)) return { token: "same", pins: [] };
    if (old) old.detach();
    this.#token = present && d.token ? new Token(INTERNAL, this, d.token) : null;
    return { token: "changed", pins: [] };
  }

  /** Internal: the reader went away. */
  detach() {
    if (this.#token) this.#token.detach();
    this.#token = null;
    this.#cardPresent = false;
  }
}

// ------------------------------------------------------------ environment

/** The event every environment event is: `reader`, `pin`, `reason` set where they apply. */
export class SCWSEvent extends Event {
  constructor(type, init = {}) {
    super(type);
    this.reader = init.reader ?? null;
    this.token = init.token ?? (init.reader ? init.reader.token : null);
    this.pin = init.pin ?? null;
    this.reason = init.reason ?? null;
    this.error = init.error ?? null;
    this.detail = init;
  }
}

const EVENTS = [
  "readeradded",
  "readerremoved",
  "readerstatechanged",
  "pinstatechanged",
  "servicechanged",
  "disconnected",
  "reconnected",
];

/**
 * A connection to the daemon (the SCWS environment). Fires `readeradded`,
 * `readerremoved`, `readerstatechanged` (reason `cardInserted`,
 * `cardRemoved`, `tokenChanged`), `pinstatechanged`, `servicechanged`,
 * `disconnected` and `reconnected`; each also has an `on…` property.
 */
export class Environment extends EventTarget {
  #opts;
  #ws = null;
  #nextId = 1;
  #pending = new Map();
  #readers = new Map();
  #pcsc = "down";
  #daemon = null;
  #connected = false;
  #closed = false;
  #everConnected = false;
  #retryTimer = null;
  #retryDelay = 0;
  #refreshing = null;
  #buffered = [];

  constructor(key, opts) {
    if (key !== INTERNAL) throw callerError();
    super();
    this.#opts = opts;
  }

  /** The readers, in the daemon's order (a copy; the Reader objects are live). */
  get readers() {
    return [...this.#readers.values()];
  }
  /** The reader with this name, or undefined. */
  getReader(name) {
    return this.#readers.get(name);
  }
  /** `"up"` or `"down"`: whether the daemon reaches the PC/SC service. */
  get pcsc() {
    return this.#pcsc;
  }
  /** The daemon's `hello` answer: `{protocol, daemon, version, capabilities}`. */
  get daemon() {
    return this.#daemon;
  }
  /** Whether the WebSocket is open (false while reconnecting). */
  get connected() {
    return this.#connected;
  }
  /** The WebSocket URL. */
  get url() {
    return this.#opts.url;
  }

  /**
   * Sends one JSON-RPC request; resolves with its result, rejects with a
   * SCWS.Error. The low-level way to reach any method of docs/protocol.md.
   */
  call(method, params = {}) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(
        new SCWSError(
          "DAEMON_DISCONNECTED",
          this.#closed
            ? "this SCWS environment was closed"
            : "not connected to the cardgate daemon (reconnecting)",
        ),
      );
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, method });
      ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  /** Reads every reader, token and PIN again, firing events for what changed. */
  refresh() {
    if (!this.#refreshing) {
      this.#refreshing = this.call("getReaders", {})
        .then((r) => {
          this.#applyReaders(r, true);
        })
        .finally(() => {
          this.#refreshing = null;
          const buffered = this.#buffered;
          this.#buffered = [];
          for (const note of buffered) this.#notification(note);
        });
    }
    return this.#refreshing;
  }

  /** Closes the connection for good (no reconnection). */
  close() {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    const ws = this.#ws;
    this.#ws = null;
    this.#connected = false;
    if (ws) ws.close(1000, "closed by the page");
    this.#failPending("this SCWS environment was closed");
  }

  // ---- connection

  /** Internal: opens the socket, says hello, reads the readers. */
  async open(initial) {
    const ws = await openSocket(this.#opts.url, this.#opts.connectTimeout);
    if (this.#closed) {
      ws.close(1000);
      return;
    }
    this.#ws = ws;
    ws.onmessage = (ev) => this.#message(ev.data);
    ws.onclose = () => this.#lost(ws);
    ws.onerror = () => {};
    try {
      this.#daemon = await this.call("hello", { protocol: PROTOCOL_VERSION, client: `scws.js/${VERSION}` });
      const readers = await this.call("getReaders", {});
      this.#connected = true;
      this.#everConnected = true;
      this.#applyReaders(readers, !initial);
      const buffered = this.#buffered;
      this.#buffered = [];
      for (const note of buffered) this.#notification(note);
    } catch (e) {
      ws.onclose = null;
      ws.close();
      this.#ws = null;
      throw e;
    }
  }

  #lost(ws) {
    if (ws !== this.#ws) return;
    this.#ws = null;
    const was = this.#connected;
    this.#connected = false;
    this.#failPending("the connection to the cardgate daemon was lost");
    if (was) this.#fire("disconnected", {});
    if (!this.#closed && this.#everConnected && this.#opts.reconnect) this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    const o = this.#opts;
    this.#retryDelay = this.#retryDelay
      ? Math.min(this.#retryDelay * 2, o.maxReconnectDelay)
      : o.minReconnectDelay;
    const delay = this.#retryDelay * (0.8 + Math.random() * 0.4);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(async () => {
      if (this.#closed) return;
      try {
        await this.open(false);
        if (this.#closed) return;
        this.#retryDelay = 0;
        this.#fire("reconnected", {});
      } catch {
        if (!this.#closed && !this.#ws) this.#scheduleReconnect();
      }
    }, delay);
  }

  #failPending(message) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(new SCWSError("DAEMON_DISCONNECTED", message));
  }

  #message(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (m && m.id !== undefined && m.id !== null && this.#pending.has(m.id)) {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        if (m.error) p.reject(SCWSError.fromRpc(m.error));
        else p.resolve(m.result);
      } else if (m && typeof m.method === "string" && m.id === undefined) {
        if (this.#refreshing || !this.#connected) this.#buffered.push(m);
        else this.#notification(m);
      }
    }
  }

  // ---- state

  #fire(type, init) {
    const ev = new SCWSEvent(type, init);
    this.dispatchEvent(ev);
  }

  #reader(name, fire) {
    let r = this.#readers.get(name);
    if (!r) {
      r = new Reader(INTERNAL, this, name);
      this.#readers.set(name, r);
      if (fire) this.#fire("readeradded", { reader: r });
    }
    return r;
  }

  #applyReader(d, fire, reason) {
    const r = this.#reader(d.name, fire);
    const wasPresent = r.cardPresent;
    const out = r.apply(d);
    if (!fire) return;
    if (out.token === "changed" || wasPresent !== r.cardPresent) {
      const why =
        reason ||
        (wasPresent && !r.cardPresent ? "cardRemoved" : !wasPresent && r.cardPresent ? "cardInserted" : "tokenChanged");
      this.#fire("readerstatechanged", { reader: r, reason: why });
    }
    for (const pin of out.pins) this.#fire("pinstatechanged", { reader: r, pin });
  }

  #applyReaders(result, fire) {
    const pcsc = result.pcsc === "up" ? "up" : "down";
    const pcscChanged = pcsc !== this.#pcsc;
    this.#pcsc = pcsc;
    const seen = new Set();
    for (const d of result.readers || []) {
      seen.add(d.name);
      this.#applyReader(d, fire);
    }
    for (const [name, r] of [...this.#readers]) {
      if (!seen.has(name)) {
        this.#readers.delete(name);
        r.detach();
        if (fire) this.#fire("readerremoved", { reader: r });
      }
    }
    if (fire && pcscChanged) this.#fire("servicechanged", { reason: pcsc });
  }

  #notification({ method, params }) {
    const p = params || {};
    switch (method) {
      case "readerAdded":
        this.#reader(p.reader, true);
        break;
      case "readerRemoved": {
        const r = this.#readers.get(p.reader);
        if (r) {
          this.#readers.delete(p.reader);
          r.detach();
          this.#fire("readerremoved", { reader: r });
        }
        break;
      }
      case "cardInserted":
        this.#applyReader(
          { name: p.reader, cardPresent: true, atr: p.atr, token: p.token, error: p.error },
          true,
          "cardInserted",
        );
        break;
      case "cardRemoved":
        this.#applyReader({ name: p.reader, cardPresent: false }, true, "cardRemoved");
        break;
      case "pinStateChanged": {
        const r = this.#readers.get(p.reader);
        const pin = r && r.token && r.token.getPin(p.pin);
        if (pin && p.status && pin[INTERNAL](p.status)) {
          this.#fire("pinstatechanged", { reader: r, pin });
        }
        break;
      }
      case "serviceChanged": {
        const pcsc = p.pcsc === "up" ? "up" : "down";
        if (pcsc === "down") {
          for (const [name, r] of [...this.#readers]) {
            this.#readers.delete(name);
            r.detach();
            this.#fire("readerremoved", { reader: r });
          }
        }
        if (pcsc !== this.#pcsc) {
          this.#pcsc = pcsc;
          this.#fire("servicechanged", { reason: pcsc });
        }
        if (pcsc === "up") this.refresh().catch(() => {});
        break;
      }
      default:
        break; // a newer daemon's notification: ignored
    }
  }
}

// `onreaderadded = fn` … : one handler per event, like the DOM's on… properties.
for (const type of EVENTS) {
  Object.defineProperty(Environment.prototype, `on${type}`, {
    configurable: true,
    enumerable: false,
    get() {
      return handlerSlot(this)[type] ?? null;
    },
    set(fn) {
      const slots = handlerSlot(this);
      if (slots[type]) this.removeEventListener(type, slots[type]);
      slots[type] = typeof fn === "function" ? fn : null;
      if (slots[type]) this.addEventListener(type, slots[type]);
    },
  });
}

const HANDLERS = new WeakMap();
function handlerSlot(target) {
  let s = HANDLERS.get(target);
  if (!s) HANDLERS.set(target, (s = {}));
  return s;
}

function openSocket(url, timeoutMs) {
  return new Promise((resolve, reject) => {
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      reject(new SCWSError("DAEMON_UNREACHABLE", `cannot open ${url}: ${e.message}`));
      return;
    }
    const timer = setTimeout(() => {
      ws.onopen = ws.onerror = ws.onclose = null;
      ws.close();
      reject(new SCWSError("DAEMON_UNREACHABLE", `the cardgate daemon did not answer at ${url}`));
    }, timeoutMs);
    ws.onopen = () => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      resolve(ws);
    };
    ws.onerror = ws.onclose = () => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      reject(
        new SCWSError(
          "DAEMON_UNREACHABLE",
          `the cardgate daemon is not running or not reachable at ${url} (start it with \`cardgate serve\`)`,
        ),
      );
    };
  });
}

/**
 * Connects to the daemon. Resolves with the SCWS environment once the
 * readers, tokens and PINs are known; rejects with a SCWS.Error
 * (`DAEMON_UNREACHABLE`, `PROTOCOL_UNSUPPORTED` …).
 */
export async function connect(options = {}) {
  const o = options || {};
  const port = o.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalidArgument("port must be an integer 1..65535");
  }
  const host = o.host ?? DEFAULT_HOST;
  const hostPart = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  const env = new Environment(INTERNAL, {
    url: `ws://${hostPart}:${port}/ws`,
    reconnect: o.reconnect !== false,
    minReconnectDelay: o.minReconnectDelay ?? 250,
    maxReconnectDelay: o.maxReconnectDelay ?? 5000,
    connectTimeout: o.connectTimeout ?? 10000,
  });
  await env.open(true);
  lastEnvironment = env;
  return env;
}

/** The SCWS namespace: `SCWS.connect`, `SCWS.Pin`, `SCWS.Error` … */
const SCWS = Object.freeze({
  connect,
  Environment,
  Reader,
  Token,
  Pin,
  CredentialState,
  CredentialValue,
  Error: SCWSError,
  Event: SCWSEvent,
  DEFAULT_PORT,
  DEFAULT_HOST,
  PROTOCOL_VERSION,
  VERSION,
});

if (globalThis.SCWS === undefined) globalThis.SCWS = SCWS;

export { SCWSError as Error };
export default SCWS;
