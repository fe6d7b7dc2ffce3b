// Type declarations of cardgate's SCWS JavaScript client, served by the
// daemon at /scws.d.ts next to the module itself (/scws.js).
//
// ```ts
// import SCWS from "http://127.0.0.1:27183/scws.js";
// const env = await SCWS.connect();                 // port 27183 on 127.0.0.1
// const token = env.readers.find((r) => r.token)?.token;
// const pin = token?.pins[0];                       // the user PIN
// try {
//   await pin?.login("123456");
// } catch (e) {
//   if (e instanceof SCWS.Error && e.code === "PIN_INCORRECT") {
//     console.log(`wrong PIN, ${e.remainingTries} tries left`);
//   }
// }
// env.onpinstatechanged = (ev) => console.log(ev.pin?.id, ev.pin?.remainingTries);
// ```
//
// Every method returns a Promise and rejects with a `SCWS.Error` whose
// `code` is one of the stable codes of docs/errors.md (or of
// `ClientErrorCode`). PIN objects are kept up to date by the daemon's
// notifications: no polling is needed. The wire protocol underneath is
// described in docs/protocol.md.

/** The daemon's default port. */
export declare const DEFAULT_PORT: 27183;
/** The default host, the IPv4 loopback address. */
export declare const DEFAULT_HOST: "127.0.0.1";
/** The wire protocol version this client speaks. */
export declare const PROTOCOL_VERSION: 1;
/** The client's version. */
export declare const VERSION: string;

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** The daemon's port. Default 27183. */
  port?: number;
  /** `127.0.0.1` (default), `localhost` or `::1`. */
  host?: string;
  /**
   * Reconnect when the connection is lost (daemon restarted), with
   * exponential backoff, then refresh every reader, token and PIN and fire
   * events for what changed. Default true.
   */
  reconnect?: boolean;
  /** First reconnection delay in ms (default 250); doubles up to `maxReconnectDelay`. */
  minReconnectDelay?: number;
  /** Longest reconnection delay in ms (default 5000). */
  maxReconnectDelay?: number;
  /** How long to wait for the WebSocket to open, in ms (default 10000). */
  connectTimeout?: number;
}

/**
 * Connects to the daemon at `ws://host:port/ws`. Resolves once readers,
 * tokens and PINs are known. Rejects with a {@link SCWSError} whose code is
 * `DAEMON_UNREACHABLE` (daemon not running: suggest `cardgate serve`) or
 * `PROTOCOL_UNSUPPORTED`.
 */
export declare function connect(options?: ConnectOptions): Promise<Environment>;

/** Codes the client itself produces (the daemon's codes are in docs/errors.md). */
export type ClientErrorCode =
  /** The first connection failed: the daemon is not running or not reachable. */
  | "DAEMON_UNREACHABLE"
  /** The connection was lost (or closed) before the call was answered. */
  | "DAEMON_DISCONNECTED"
  /** A method was called with an argument of the wrong type. */
  | "INVALID_ARGUMENT";

/** The daemon's stable error codes (docs/errors.md) and the protocol's. */
export type DaemonErrorCode =
  | "PIN_INCORRECT"
  | "PIN_BLOCKED"
  | "SO_PIN_INCORRECT"
  | "SO_PIN_BLOCKED"
  | "PIN_LENGTH_INVALID"
  | "PIN_FORMAT_INVALID"
  | "PIN_NOT_INITIALIZED"
  | "PIN_TO_BE_CHANGED"
  | "SO_LOGIN_REQUIRED"
  | "PIN_NOT_FOUND"
  | "CARD_NOT_SUPPORTED"
  | "OPERATION_NOT_SUPPORTED"
  | "CARD_ABSENT"
  | "CARD_REMOVED"
  | "READER_NOT_FOUND"
  | "NO_PCSC_SERVICE"
  | "CARD_BUSY"
  | "CARD_ERROR"
  | "READER_ERROR"
  | "TIMEOUT"
  | "PROTOCOL_UNSUPPORTED"
  | "PARSE_ERROR"
  | "INVALID_REQUEST"
  | "METHOD_NOT_FOUND"
  | "INVALID_PARAMS"
  | "LAST_TRY_PROTECTED"
  | "TEMPORARILY_LOCKED"
  | "SITE_LOCKED"
  | "RATE_LIMITED"
  | "BATCH_TOO_LARGE"
  | "CONSTRAINT_VIOLATION"
  | "CREDENTIAL_HANDLE_INVALID"
  | "PIN_ENTRY_CANCELLED"
  | "PIN_ENTRY_TIMEOUT"
  | "PIN_DIALOG_UNAVAILABLE"
  | "PIN_MISMATCH"
  | "ORIGIN_NOT_ALLOWED"
  | "HOST_NOT_ALLOWED"
  | "TOO_MANY_CONNECTIONS"
  | "INTERNAL_ERROR";

export type ErrorCode = DaemonErrorCode | ClientErrorCode;

/**
 * Every failure of the client (`SCWS.Error`). Branch on `code`, never on
 * `message` (which is for people and never contains a PIN).
 */
export declare class SCWSError extends globalThis.Error {
  constructor(code: string, message?: string, data?: Record<string, unknown>);
  readonly name: "SCWS.Error";
  /** Stable string code, e.g. `"PIN_INCORRECT"`. */
  readonly code: ErrorCode | (string & {});
  /**
   * Everything the daemon sent with the error: `code`, `message`, and where
   * they apply `remainingTries`, `minLength`/`maxLength`, `reader`, `pin`,
   * `operation`, `atr`, `sw`, `supported`.
   */
  readonly data: {
    code: string;
    message?: string;
    /** The card's count after the operation; absent when the card did not say. */
    remainingTries?: number;
    /** A wrong value: how many more this site may send before it is locked. */
    attemptsBeforeLock?: number;
    /** A wrong value: what it did to the site's lockout (absent: an ordinary failure). */
    lockout?: "ONE_MORE_LOCKS" | "LOCKED_FOR" | "LOCKED_UNTIL_UNLOCKED";
    /** `LOCKED_FOR`: seconds the site is now locked. */
    lockedFor?: number;
    /** `TEMPORARILY_LOCKED`: seconds until the site may try again. */
    retryAfter?: number;
    [key: string]: unknown;
  };
  /**
   * Tries left of the PIN concerned (for `SO_PIN_INCORRECT`: of the PUK /
   * admin PIN / reset code), when known; 0 for the `…_BLOCKED` codes.
   */
  readonly remainingTries?: number;
  /** The JSON-RPC error code (-32000 …) when the error came from the daemon. */
  readonly rpcCode?: number;
  /** Builds the error of a JSON-RPC error object `{code, message, data}`. */
  static fromRpc(error: { code?: number; message?: string; data?: unknown }): SCWSError;
}
export { SCWSError as Error };

/** The state object of the {@link CredentialState} constructor. */
export interface CredentialStateInit {
  /** The PIN's remaining tries ({@link Pin.remainingTries}). */
  pinTriesLeft?: number | null;
  bioFingerprint?: {
    triesLeft?: number;
    /** 10 booleans: enrolled fingers, 0 = left little finger … 9 = right little finger. */
    fingers?: boolean[];
  };
  bioFacial?: { triesLeft?: number };
}

/**
 * The credential state a PIN dialog displays (`SCWS.CredentialState`), see
 * {@link Pin.requestCredential} and {@link Pin.initSubmissionsState}.
 */
export declare class CredentialState {
  constructor(state?: CredentialStateInit, error?: string | null);
  /** The state object given to the constructor. */
  state: CredentialStateInit;
  /** PIN tries left to display, or null to display none. */
  remainingTries: number | null;
  /** Fingerprint tries left, or null. */
  fingerprintRemainingTries: number | null;
  /** 10 booleans (enrolled fingers), or null. */
  fingerprintFingers: boolean[] | null;
  /** Facial tries left, or null. */
  facialRemainingTries: number | null;
  /** An error message to display, or null. */
  error: string | null;
  /** The same as {@link CredentialState.remainingTries}. */
  readonly pinTriesLeft: number | null;
}

/** The argument of the {@link CredentialValue} constructor. */
export interface CredentialValueInit {
  /** `"pin"`; `"finger"` and `"facial"` are refused by the daemon (OPERATION_NOT_SUPPORTED). */
  type: "pin" | "finger" | "facial";
  /** For `"finger"`: the finger index, 0 (left little finger) … 9 (right little finger). */
  subtype?: number;
  /** The credential value: an ArrayBuffer (a typed array or a string, taken as UTF-8, also work). */
  data: ArrayBuffer | ArrayBufferView | string;
}

/**
 * A credential value for {@link Pin.login}, {@link Pin.change} and
 * {@link Pin.init} (`SCWS.CredentialValue`). Sent to the daemon as
 * `{type: "pin", data: "<base64>"}`.
 */
export declare class CredentialValue {
  /** Throws a {@link SCWSError} `INVALID_ARGUMENT` for a malformed value. */
  constructor(value: CredentialValueInit);
  /** The credential: `data` is always an ArrayBuffer (a copy). */
  readonly value: { type: "pin" | "finger" | "facial"; subtype?: number; data: ArrayBuffer };
  /** A `"pin"` credential from a string (UTF-8). */
  static fromPin(pin: string): CredentialValue;
  /** The wire form `{type, data: base64, subtype?}`. */
  toJSON(): { type: string; data: string; subtype?: number };
}

/**
 * A PIN value: a string, a {@link CredentialValue}, or `false` (PIN entry
 * in the daemon's own dialog: `PIN_DIALOG_UNAVAILABLE` when the machine has
 * none) / `null` (on the reader's pinpad, see {@link Token.protectedAuthPath};
 * `OPERATION_NOT_SUPPORTED` on a reader without one).
 */
export type PinValue = string | CredentialValue | false | null | undefined;

/** {@link Pin.credentialProperties}. */
export interface CredentialProperties {
  /** The PIN's label. */
  pinLabel: string;
  /** Supported verification methods of the slot: no biometry with cardgate. */
  methods: {
    facialBio: boolean;
    fingerBio: boolean;
    fingerBioIsOneToManySupported?: boolean;
  };
}

/** A PIN format constraint, as in the SCWS specification. */
export type Constraint =
  | { type: "minLength"; minLength: number }
  | { type: "exactLength"; length: number }
  | { type: "minMaxLength"; minLength: number; maxLength: number }
  | { type: "numeric" }
  | { type: "minDigits"; count: number }
  | { type: "minUpperCase"; count: number }
  | { type: "minSpecial"; count: number }
  | { type: "minLowerCase"; count: number }
  | { type: "newOldDifferent" }
  | { type: "newOldDissimilar"; threshold: number }
  | { type: "maxIdenticalSequence"; count: number }
  | { type: "maxIncDecSequence"; count: number }
  | { type: string; [key: string]: unknown };

/** The daemon's PinStatus object (docs/protocol.md), as {@link Pin.status} returns it. */
export interface PinStatus {
  id: string;
  /** The card application the PIN belongs to (`piv`, `openpgp`, `esteid` …). */
  application: string;
  label: string;
  initialized: boolean;
  toBeChanged: boolean;
  blocked: boolean;
  tryCountLow: boolean;
  lastTry: boolean;
  remainingTries?: number;
  maxTries: number;
  validated: boolean;
  soValidated: boolean;
  minLength: number;
  maxLength: number;
  numeric: boolean;
}

/** Extra options of {@link Pin.login} (cardgate extension). */
export interface LoginOptions {
  /** OpenPGP: `"resetCode"` logs in with the reset code instead of the admin PIN (with `so`). */
  soPath?: "default" | "resetCode";
}

/**
 * A PIN that protects smart-card contents (`SCWS.Pin`). Obtained from
 * {@link Token.pins}; its properties follow the card without polling.
 */
export declare class Pin {
  /** Not constructible: PIN objects come from {@link Token.pins}. */
  private constructor();
  /** The SCWS.Token this PIN belongs to. */
  readonly token: Token;
  /** The PIN label ("PIN", "PUK", "User PIN", "Admin PIN" …); may be undefined. */
  readonly label: string | undefined;
  /** Whether the PIN has been initialized (has a value). */
  readonly initialized: boolean;
  /** Whether the PIN must be changed before use. */
  readonly toBeChanged: boolean;
  /** Whether the PIN is blocked (no tries left): unblock with SO login + {@link Pin.init}. */
  readonly blocked: boolean;
  /** Whether the try counter is below its maximum (a wrong attempt was made). */
  readonly tryCountLow: boolean;
  /** Whether only one attempt remains. */
  readonly lastTry: boolean;
  /** Remaining tries, or undefined when the card does not tell (e.g. a PIV PUK). */
  readonly remainingTries: number | undefined;
  /** Whether the PIN has been verified (access to private objects granted). */
  readonly validated: boolean;
  /** A CredentialState with the current tries, for a PIN dialog. */
  readonly initSubmissionsState: CredentialState;
  /** `{pinLabel, methods: {facialBio: false, fingerBio: false, fingerBioIsOneToManySupported: false}}`. */
  readonly credentialProperties: CredentialProperties;

  /** The PIN object's id: PIV `"pin"`, `"puk"`; OpenPGP `"user"`, `"admin"` (cardgate extension). */
  readonly id: string;
  /** The try counter's maximum (cardgate extension). */
  readonly maxTries: number;
  /** The id of the card application this PIN belongs to: `"piv"`, `"openpgp"`, `"esteid"` … (cardgate extension). */
  readonly application: string;
  /** The security officer is logged in and {@link Pin.init} may be called (cardgate extension). */
  readonly soValidated: boolean;
  /** Shortest value the card accepts, in bytes (cardgate extension). */
  readonly minLength: number;
  /** Longest value the card accepts, in bytes (cardgate extension). */
  readonly maxLength: number;
  /** The card accepts digits only (cardgate extension). */
  readonly numeric: boolean;
  /** A copy of the last PinStatus received from the daemon (cardgate extension). */
  readonly status: PinStatus;
  /** False once the card was removed: the object then refers to no card and its methods reject with `CARD_REMOVED`. */
  readonly attached: boolean;

  /**
   * Verifies the PIN, or with `so` the security officer's credential (PIV
   * PUK — held by the daemon for at most 60 s for {@link Pin.init};
   * OpenPGP admin PIN). Resolves with undefined.
   *
   * Errors: `PIN_INCORRECT` (with `remainingTries`), `PIN_BLOCKED`,
   * `SO_PIN_INCORRECT`, `SO_PIN_BLOCKED`, `PIN_LENGTH_INVALID` /
   * `PIN_FORMAT_INVALID` (no try spent), `PIN_TO_BE_CHANGED`,
   * `OPERATION_NOT_SUPPORTED` (`value` false or null), `CARD_REMOVED` …
   */
  login(value: PinValue, so?: boolean, options?: LoginOptions): Promise<void>;
  /** Changes the user PIN. Errors as for {@link Pin.login}. */
  change(oldValue: PinValue, newValue: PinValue): Promise<void>;
  /**
   * Sets a new PIN value, unblocking it; needs `login(soValue, true)` first,
   * else `SO_LOGIN_REQUIRED`. A wrong PUK / admin PIN gives `SO_PIN_INCORRECT`.
   */
  init(newValue: PinValue): Promise<void>;
  /** Ends the verified state of the PIN (and of its SO login). */
  logout(): Promise<void>;
  /** The PIN format constraints (for a change). */
  getConstraints(): Promise<Constraint[]>;
  /**
   * One boolean per constraint of {@link Pin.getConstraints}, same order:
   * whether `newPin` fulfils it. `oldPin` is only used by `newOldDifferent`
   * and `newOldDissimilar`. Never touches the card.
   */
  checkConstraints(oldPin: PinValue, newPin: PinValue): Promise<boolean[]>;
  /** Reads the PIN's status from the card again (no try spent); resolves with this Pin. */
  refresh(): Promise<Pin>;
  /**
   * Shows the daemon's own PIN dialog (pinentry) with these texts. Resolves to
   * a CredentialValue whose `data` is an opaque one-time handle (the PIN stays
   * in the daemon), usable once with `login()` on the same connection within
   * 60 s; `undefined` if the user cancels. Rejects with `PIN_DIALOG_UNAVAILABLE`,
   * `PIN_ENTRY_TIMEOUT`. Callable on `SCWS.Pin.prototype` after `SCWS.connect()`.
   * On a Pin of a token the dialog shows the card's own label and tries (read
   * when it opens); a count in `credentialState` is never shown as the card's,
   * and its `error` is shown as the page's message. The handle counts like a
   * value typed into the page: never for a last try (`LAST_TRY_PROTECTED`),
   * and a wrong one counts towards the site's lockout.
   */
  requestCredential(
    credentialProperties: CredentialProperties,
    credentialState?: CredentialState,
    readerName?: string,
    cardLabel?: string,
  ): Promise<CredentialValue | undefined>;
}

/** The application on a card (`SCWS.Token`). */
export declare class Token {
  private constructor();
  /** The reader holding the card. */
  readonly reader: Reader;
  /** The token's label, e.g. "PIV card", "OpenPGP card D276…". */
  readonly label: string;
  /** The PINs, the user PIN first (a new array each time; the Pin objects are the same). */
  readonly pins: Pin[];
  /** Whether the reader has a pinpad: `login(null)` / `change(null, null)` take the PIN there. */
  readonly protectedAuthPath: boolean;
  /** The card profile that recognised the card: `"piv"`, `"openpgp"`, `"yubikey"`, `"pkcs15"` … (cardgate extension). */
  readonly profile: string;
  /** The card's applications, each a group of its PINs (a YubiKey: PIV and OpenPGP) (cardgate extension). */
  readonly applications: { id: string; label: string; aid: string }[];
  /** The card's serial number, or null (cardgate extension). */
  readonly serial: string | null;
  /** False once the card was removed. */
  readonly attached: boolean;
  /** The PIN with this id, or undefined. */
  getPin(id: string): Pin | undefined;
}

/** A smart-card reader (`SCWS.Reader`). */
export declare class Reader {
  private constructor();
  /** The reader's name, as PC/SC reports it. */
  readonly name: string;
  /** The token of the card in the reader; null without a card or for an unsupported card. */
  readonly token: Token | null;
  /** Whether a card is present. */
  readonly cardPresent: boolean;
  /** The card's ATR in hex, or null. */
  readonly atr: string | null;
  /** Why a present card has no token (e.g. `CARD_NOT_SUPPORTED`), or null. */
  readonly error: SCWSError | null;
  /** The environment this reader belongs to. */
  readonly environment: Environment;
}

/** Why a `readerstatechanged` event fired. */
export type ReaderChange = "cardInserted" | "cardRemoved" | "tokenChanged";

/** Every event of an {@link Environment}. */
export declare class SCWSEvent extends Event {
  /** The reader concerned (readeradded/removed/statechanged, pinstatechanged). */
  readonly reader: Reader | null;
  /** The reader's token when the event fired. */
  readonly token: Token | null;
  /** The PIN whose state changed (pinstatechanged). */
  readonly pin: Pin | null;
  /**
   * readerstatechanged: a {@link ReaderChange}; servicechanged: `"up"` or
   * `"down"`.
   */
  readonly reason: string | null;
  /** The initialisation object (all of the above). */
  readonly detail: Record<string, unknown>;
}

export interface EnvironmentEventMap {
  /** A reader was plugged in. */
  readeradded: SCWSEvent;
  /** A reader was unplugged (or the PC/SC service went down). */
  readerremoved: SCWSEvent;
  /** A card was inserted or removed, or the reader's token changed (`reason`). */
  readerstatechanged: SCWSEvent;
  /** A PIN's state changed (tries, validated, blocked …) by any client. */
  pinstatechanged: SCWSEvent;
  /** The daemon lost or regained the PC/SC service (`reason`: "up" / "down"). */
  servicechanged: SCWSEvent;
  /** The connection to the daemon was lost; the client is reconnecting. */
  disconnected: SCWSEvent;
  /** Connected again; readers, tokens and PINs were refreshed (events fired for what changed). */
  reconnected: SCWSEvent;
}

type Handler<K extends keyof EnvironmentEventMap> =
  | ((this: Environment, ev: EnvironmentEventMap[K]) => unknown)
  | null;

/**
 * A connection to the daemon (the SCWS environment), from {@link connect}.
 * An `EventTarget`: `addEventListener("readeradded", …)` or `onreaderadded = …`.
 */
export declare class Environment extends EventTarget {
  private constructor();
  /** The readers now (a new array each time; the Reader objects are the same). */
  readonly readers: Reader[];
  /** `"up"` when the daemon reaches the PC/SC service. */
  readonly pcsc: "up" | "down";
  /** The daemon's `hello` answer. */
  readonly daemon: { protocol: number; daemon: string; version: string; capabilities: string[] } | null;
  /** Whether the connection is open (false while reconnecting). */
  readonly connected: boolean;
  /** The daemon's WebSocket URL. */
  readonly url: string;
  /** The reader with this name, or undefined. */
  getReader(name: string): Reader | undefined;
  /**
   * Any method of docs/protocol.md, by name; resolves with its `result`,
   * rejects with a {@link SCWSError}.
   */
  call(method: string, params?: Record<string, unknown>): Promise<unknown>;
  /** Reads every reader, token and PIN again; fires events for what changed. */
  refresh(): Promise<void>;
  /** Closes the connection for good (no reconnection); pending calls reject. */
  close(): void;

  onreaderadded: Handler<"readeradded">;
  onreaderremoved: Handler<"readerremoved">;
  onreaderstatechanged: Handler<"readerstatechanged">;
  onpinstatechanged: Handler<"pinstatechanged">;
  onservicechanged: Handler<"servicechanged">;
  ondisconnected: Handler<"disconnected">;
  onreconnected: Handler<"reconnected">;

  addEventListener<K extends keyof EnvironmentEventMap>(
    type: K,
    listener: (this: Environment, ev: EnvironmentEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof EnvironmentEventMap>(
    type: K,
    listener: (this: Environment, ev: EnvironmentEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void;
}

/** The `SCWS` namespace: the default export, also set as `globalThis.SCWS` on import. */
export interface SCWSNamespace {
  connect: typeof connect;
  Environment: typeof Environment;
  Reader: typeof Reader;
  Token: typeof Token;
  Pin: typeof Pin;
  CredentialState: typeof CredentialState;
  CredentialValue: typeof CredentialValue;
  Error: typeof SCWSError;
  Event: typeof SCWSEvent;
  DEFAULT_PORT: typeof DEFAULT_PORT;
  DEFAULT_HOST: typeof DEFAULT_HOST;
  PROTOCOL_VERSION: typeof PROTOCOL_VERSION;
  VERSION: string;
}

declare const SCWS: SCWSNamespace;
export default SCWS;

declare global {
  /** Set by importing /scws.js when not already defined. */
  var SCWS: SCWSNamespace;
}
