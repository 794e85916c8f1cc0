// notifyd-client.js: the headless browser client of notifyd (an ES module, no dependencies).
// Types and documentation: notifyd-client.d.ts, next to this file.
//
// The live connection (WebSocket, or Server-Sent Events where a WebSocket cannot open) always resumes
// from the last seq it saw, so a reconnect - after a network drop, a notifyd restart, a token refresh
// or a hidden tab - replays exactly what was missed; a Map of id -> highest seq drops what was seen.

/** @typedef {import("./notifyd-client.d.ts").Notification} Notification */
/** @typedef {import("./notifyd-client.d.ts").NotificationMessage} NotificationMessage */
/** @typedef {import("./notifyd-client.d.ts").NotifydClientOptions} NotifydClientOptions */
/** @typedef {import("./notifyd-client.d.ts").ConnectionState} ConnectionState */
/** @typedef {import("./notifyd-client.d.ts").Transport} Transport */
/** @typedef {import("./notifyd-client.d.ts").NotifydEventMap} NotifydEventMap */
/** @typedef {{query?: Record<string, unknown>, body?: unknown, auth?: boolean}} RequestOptions */
/** @typedef {{transport: Transport, close(): void, send(message: object): void}} Connection */

const API = "/api/v1/notifications";
const CLOSE_AUTH_FAILED = 4001;
const CLOSE_TRY_AGAIN_LATER = 1013;
const NETWORK_ERROR = "NETWORK_ERROR"; // a NotifydError with status 0: no answer from notifyd
// A token is refreshed this long before it expires (or halfway through its life, if that is later).
const REFRESH_MARGIN_MS = 30_000;
// WebSocket failures (with REST working) before "auto" falls back to Server-Sent Events.
const WS_FAILURES_BEFORE_SSE = 2;

/** A REST call that failed: the server's {"error": {"code", "message"}} and the HTTP status. */
export class NotifydError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.name = "NotifydError";
    this.status = status;
    this.code = code;
  }
}

/**
 * The claims of a JWT, decoded without verification (only to read `exp` and `sub`).
 * @param {string} token
 * @returns {{exp?: number, sub?: string}}
 */
function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return {};
  }
}

export class NotifydClient extends EventTarget {
  /** @type {ConnectionState} */ #state = "idle";
  /** @type {Transport | null} */ #transport = null;
  #lastSeq = 0;
  #unreadCount = 0;
  #unseenCount = 0;
  /** The server told the seen watermark (the user marked something seen): unread counts no longer say unseen. */
  #watermarkKnown = false;
  /** @type {Record<string, number>} */ #byType = {};
  /** @type {string | null} */ #userId = null;
  /** @type {NotifydClientOptions["token"]} */ #tokenSource;
  /** @type {string | null} */ #token = null;
  /** @type {Promise<string> | null} */ #tokenFetch = null;
  /** id -> highest seq seen: a notification is emitted only for a higher seq. */
  /** @type {Map<string, number>} */ #seen = new Map();

  #wanted = false; // connect() was called and close() was not
  /** created_at (ms) of the newest notification when the client started: older ones are not "new". */
  /** @type {number | null} */ #since = null;
  #replaying = false; // between (re)connecting and `resumed`
  #opened = false; // a connection was open once: later ones are "reconnecting"
  #attempt = 0; // backoff exponent, reset once a connection resumed
  #wsFailures = 0; // WebSocket failures in a row while REST worked
  #authRetried = false; // a 4001 was answered with a fresh token and no connection worked since
  #sseOnly; // "auto" switched to SSE for good, or transport "sse"
  /** @type {Connection | null} */ #conn = null;
  #timers = { retry: 0, ping: 0, refresh: 0, hide: 0 };
  #options;
  #backoff;
  #awaitingPong = false;

  /** @param {NotifydClientOptions} options */
  constructor(options) {
    super();
    this.#options = { transport: "auto", heartbeatInterval: 25_000, pauseWhenHidden: 60_000, ...options };
    this.baseUrl = (options.baseUrl ?? new URL(import.meta.url).origin).replace(/\/+$/, "");
    this.serviceWorkerUrl = options.serviceWorkerUrl ?? "/notifyd-sw.js";
    this.#backoff = { initial: 500, max: 30_000, ...options.backoff };
    this.#tokenSource = options.token;
    this.#sseOnly = this.#options.transport === "sse";
  }

  get state() { return this.#state; }
  get transport() { return this.#transport; }
  get lastSeq() { return this.#lastSeq; }
  get unreadCount() { return this.#unreadCount; }
  get unseenCount() { return this.#unseenCount; }
  get userId() { return this.#userId; }

  /**
   * addEventListener that returns its own remover.
   * @template {keyof NotifydEventMap} K
   * @param {K} type
   * @param {(event: NotifydEventMap[K]) => void} listener
   */
  on(type, listener) {
    const handler = /** @type {EventListener} */ (listener);
    this.addEventListener(type, handler);
    return () => this.removeEventListener(type, handler);
  }

  /** @template {keyof NotifydEventMap} K @param {K} type @param {NotifydEventMap[K]["detail"]} detail */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {ConnectionState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", { state, transport: this.#transport });
  }

  // -- tokens ----------------------------------------------------------------------------

  /** The current token; a function source is asked again when `fresh` or when the token expired. */
  async #getToken(fresh = false) {
    const source = this.#tokenSource;
    if (typeof source === "string") return source;
    const expired = this.#token && (claims(this.#token).exp ?? Infinity) * 1000 <= Date.now();
    if (this.#token && !fresh && !expired) return this.#token;
    // Concurrent callers share one call of the token function.
    this.#tokenFetch ??= Promise.resolve()
      .then(source)
      .then((token) => (this.#token = token))
      .finally(() => (this.#tokenFetch = null));
    return this.#tokenFetch;
  }

  /**
   * Replaces the token (or token function); a live connection moves to it without losing events.
   * @param {NotifydClientOptions["token"]} token
   */
  setToken(token) {
    this.#tokenSource = token;
    this.#token = null;
    if (this.#conn) this.#reconnectNow();
  }

  // -- REST ------------------------------------------------------------------------------

  /**
   * A JSON call to notifyd: `path` is absolute ("/api/v1/...") or relative to /api/v1/notifications/.
   * Returns the parsed body (null for 204); a 401 is retried once with a fresh token.
   * @param {string} method @param {string} path @param {RequestOptions} [options]
   */
  async request(method, path, { query, body, auth = true } = {}) {
    const url = new URL(path.startsWith("/") ? path : path ? `${API}/${path}` : API, this.baseUrl);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    const send = async (/** @type {boolean} */ fresh) => {
      /** @type {Record<string, string>} */
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (auth) headers.Authorization = `Bearer ${await this.#getToken(fresh)}`;
      try {
        return await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (error) {
        throw new NotifydError(0, NETWORK_ERROR, `notifyd could not be reached: ${/** @type {Error} */ (error).message}`);
      }
    };
    let response = await send(false);
    if (response.status === 401 && auth && typeof this.#tokenSource === "function") response = await send(true);
    if (response.status === 204) return null;
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON (a proxy's error page, say): reported below by status
    }
    if (!response.ok) {
      const error = parsed?.error ?? {};
      throw new NotifydError(response.status, error.code ?? `HTTP_${response.status}`,
        error.message ?? (text || response.statusText));
    }
    return parsed;
  }

  /** @param {import("./notifyd-client.d.ts").ListQuery} [query] */
  async list(query = {}) {
    /** @type {import("./notifyd-client.d.ts").NotificationPage} */
    const page = await this.request("GET", "", { query: { ...query } });
    // A page marks its ids as seen, so the same notification arriving live is not "new". It does not
    // move lastSeq: a page may skip seqs still in flight on the socket (or filtered out).
    for (const notification of page.items) this.#markSeen(notification);
    this.#setUnread(page.unread_count, null);
    return page;
  }

  /** @param {string} id */
  get(id) { return this.request("GET", encodeURIComponent(id)); }
  /** The real values of the fields its template marks sensitive (every other view shows them masked). */
  /** @param {string} id */
  revealSensitive(id) { return this.request("GET", `${encodeURIComponent(id)}/sensitive`); }
  fetchUnreadCount() { return this.request("GET", "unread-count"); }
  /** @param {string} id */
  markRead(id) { return this.request("PATCH", `${encodeURIComponent(id)}/read`); }
  markAllRead() { return this.request("POST", "read-all"); }
  /**
   * Marks notifications seen: the given ids, or everything the inbox shows. Resolves to the badge after it.
   * @param {string[]} [ids]
   */
  async markSeen(ids) {
    /** @type {import("./notifyd-client.d.ts").SeenResult} */
    const seen = await this.request("POST", "seen", { body: ids === undefined ? {} : { ids } });
    this.#setSeen(seen);
    return seen;
  }
  async fetchSeenState() {
    /** @type {import("./notifyd-client.d.ts").SeenState} */
    const seen = await this.request("GET", "seen");
    if (seen.seen_seq > 0) this.#setSeen(seen);
    return seen;
  }
  /** @param {string} id */
  archive(id) { return this.request("POST", `${encodeURIComponent(id)}/archive`); }
  /** @param {string} id */
  unarchive(id) { return this.request("POST", `${encodeURIComponent(id)}/unarchive`); }
  /** @param {string} id @param {Date | string} until */
  snooze(id, until) {
    const at = until instanceof Date ? until.toISOString() : until;
    return this.request("POST", `${encodeURIComponent(id)}/snooze`, { body: { until: at } });
  }
  /** @param {string} id */
  async delete(id) { await this.request("DELETE", encodeURIComponent(id)); }
  /** @param {string} id @param {string} action */
  act(id, action) {
    return this.request("POST", `${encodeURIComponent(id)}/actions/${encodeURIComponent(action)}`);
  }
  preferences() { return this.request("GET", "preferences"); }
  /** @param {string} type @param {import("./notifyd-client.d.ts").PreferenceChanges} changes */
  setPreference(type, changes) { return this.request("PUT", `preferences/${encodeURIComponent(type)}`, { body: changes }); }
  /** @param {import("./notifyd-client.d.ts").GlobalChanges} changes */
  setGlobalPreferences(changes) { return this.request("PUT", "preferences/global", { body: changes }); }

  // Web Push lives in its own module, loaded only by pages that use it.
  async pushState() { return (await import("./notifyd-push.js")).pushState(this); }
  async subscribePush() { return (await import("./notifyd-push.js")).subscribePush(this); }
  async unsubscribePush() { return (await import("./notifyd-push.js")).unsubscribePush(this); }
  async pushDevices() {
    return (await this.request("GET", "push/subscriptions")).items;
  }

  // -- events ----------------------------------------------------------------------------

  /** @param {Notification} notification */
  /** @param {Notification} notification */
  #markSeen(notification) {
    const known = this.#seen.get(notification.id) ?? 0;
    if (notification.seq > known) this.#seen.set(notification.id, notification.seq);
  }

  /** A notification from the live connection: emitted once per (id, higher seq). @param {Notification} notification */
  #receive(notification) {
    this.#lastSeq = Math.max(this.#lastSeq, notification.seq);
    const known = this.#seen.get(notification.id);
    if (known !== undefined && notification.seq <= known) return;
    this.#seen.set(notification.id, notification.seq);
    // A replayed change of a notification older than the client (read in another tab, say) is not new.
    const isNew = known === undefined && Date.parse(notification.created_at) >= (this.#since ?? 0);
    this.#emit("notification", { notification, isNew, replay: this.#replaying });
  }

  /** @param {number} count @param {Record<string, number> | null} byType null: unknown, keep the last */
  #setUnread(count, byType) {
    // Until the user marks anything seen, every unread notification of theirs is unseen.
    if (!this.#watermarkKnown) this.#setUnseen(count);
    if (byType === null && count === this.#unreadCount) return;
    this.#unreadCount = count;
    this.#byType = byType ?? this.#byType;
    this.#emit("unread_count", { count, by_type: this.#byType });
  }

  /** @param {number} count the badge */
  #setUnseen(count) {
    if (count === this.#unseenCount) return;
    this.#unseenCount = count;
    this.#emit("unseen_count", { count });
  }

  /** The seen watermark and the unseen count, from the server. @param {import("./notifyd-client.d.ts").SeenState} seen */
  #setSeen(seen) {
    this.#watermarkKnown = true;
    this.#setUnseen(seen.unseen_count);
    this.#emit("seen", { seen_seq: seen.seen_seq, unseen_count: seen.unseen_count });
  }

  /**
   * One message of either transport, in the WebSocket's shape.
   * @param {Connection} conn
   * @param {any} message parsed JSON, as the server sends it
   */
  #onMessage(conn, message) {
    if (conn !== this.#conn) return;
    this.#awaitingPong = false;
    switch (message.type) {
      case "authenticated":
        this.#userId = message.user_id;
        break;
      case "notification": {
        /** @type {NotificationMessage} */
        const frame = message;
        this.#receive(frame.data);
        // A live frame carries the count (compact=1: no unread_count frame repeats it); a replayed one does not.
        if (frame.unread_count !== undefined) this.#setUnread(frame.unread_count, frame.unread_by_type ?? null);
        if (frame.unseen_count !== undefined) this.#setUnseen(frame.unseen_count);
        break;
      }
      case "seen_updated":
        this.#setSeen(message);
        break;
      case "unread_count":
        this.#setUnread(message.count, message.by_type ?? {});
        break;
      case "read_status_updated":
        this.#emit("read_status", {
          notification_id: message.notification_id, read_at: message.read_at, unread_count: message.unread_count,
        });
        break;
      case "resumed":
        // Caught up: from here on every event is live.
        this.#replaying = false;
        this.#opened = true;
        this.#setState("open");
        this.#attempt = 0;
        this.#wsFailures = 0;
        this.#authRetried = false;
        this.#emit("resumed", { count: message.count });
        break;
      case "error":
        // An expired token is routine: the end of the connection that follows gets a fresh one.
        if (message.code !== "AUTH_FAILED") this.#emit("error", { code: message.code, message: message.message });
        break;
    }
  }

  // -- the live connection ---------------------------------------------------------------

  /** Opens the live connection (idempotent). */
  connect() {
    if (this.#wanted) return;
    this.#wanted = true;
    if (typeof document !== "undefined") document.addEventListener("visibilitychange", this.#onVisibility);
    globalThis.addEventListener?.("online", this.#onOnline);
    this.#open();
    if (typeof document !== "undefined" && document.visibilityState === "hidden") this.#onVisibility();
  }

  /** Closes it for good (no reconnect). */
  close() {
    this.#wanted = false;
    if (typeof document !== "undefined") document.removeEventListener("visibilitychange", this.#onVisibility);
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#drop();
    clearTimeout(this.#timers.hide);
    this.#setState("closed");
  }

  /** Ends the current connection (if any) and every timer of it, without reconnecting. */
  #drop() {
    const conn = this.#conn;
    this.#conn = null;
    clearTimeout(this.#timers.retry);
    clearInterval(this.#timers.ping);
    clearTimeout(this.#timers.refresh);
    conn?.close();
  }

  async #open() {
    this.#drop();
    this.#setState(this.#opened ? "reconnecting" : "connecting");
    // A placeholder, so that a close() or another #open() while awaiting below is noticed.
    /** @type {Connection} */
    const pending = { transport: "websocket", close() {}, send() {} };
    this.#conn = pending;
    let token;
    try {
      if (this.#since === null) {
        // Where the first connection resumes from: everything after the newest notification now is
        // replayed, so nothing falls between this page and the connection.
        const [newest] = (await this.request("GET", "", { query: { limit: 1 } })).items;
        if (newest) {
          this.#lastSeq = Math.max(this.#lastSeq, newest.seq);
          this.#markSeen(newest);
        }
        this.#since = newest ? Date.parse(newest.created_at) : 0;
      }
      token = await this.#getToken();
    } catch (error) {
      if (this.#conn !== pending) return;
      if (error instanceof NotifydError && error.status === 401 && typeof this.#tokenSource === "string") {
        return this.#fail("AUTH_FAILED", "the token was rejected", 401);
      }
      this.#conn = null;
      return this.#retry();
    }
    if (this.#conn !== pending) return;
    this.#userId = claims(token).sub ?? this.#userId;
    this.#replaying = true;
    this.#conn = this.#sseOnly ? this.#openSse(token) : this.#openWebSocket(token);
    this.#transport = this.#conn.transport;
    this.#scheduleRefresh(token);
  }

  /** @param {string} path @param {string} token */
  #url(path, token) {
    const url = new URL(`${API}/${path}`, this.baseUrl);
    url.searchParams.set("token", token);
    url.searchParams.set("after", String(this.#lastSeq));
    // Each notification frame carries the unread count: no separate unread_count frame repeats it.
    url.searchParams.set("compact", "1");
    return url;
  }

  /** @param {string} token @returns {Connection} */
  #openWebSocket(token) {
    const url = this.#url("ws", token);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url);
    let heard = false; // any message: the socket really reached notifyd
    /** @type {Connection} */
    const conn = {
      transport: "websocket",
      close: () => {
        socket.onclose = socket.onmessage = socket.onerror = null;
        socket.close();
      },
      send: (message) => socket.send(JSON.stringify(message)),
    };
    socket.onmessage = (event) => {
      heard = true;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "authenticated") this.#startHeartbeat(conn);
      this.#onMessage(conn, message);
    };
    socket.onclose = (event) => {
      if (conn !== this.#conn) return;
      this.#conn = null;
      clearInterval(this.#timers.ping);
      if (event.code === CLOSE_AUTH_FAILED) return this.#authFailed();
      if (!heard && event.code !== CLOSE_TRY_AGAIN_LATER) return this.#neverOpened("websocket");
      this.#retry();
    };
    return conn;
  }

  /** @param {string} token @returns {Connection} */
  #openSse(token) {
    const source = new EventSource(this.#url("stream", token));
    let opened = false;
    let authFailed = false; // the server's last word was AUTH_FAILED (the token expired)
    /** @type {Connection} */
    const conn = { transport: "sse", close: () => source.close(), send() {} };
    source.onopen = () => (opened = true);
    // With compact=1 every event's data is the WebSocket message (a notification's carries the unread count).
    for (const type of ["notification", "unread_count", "read_status_updated", "seen_updated", "resumed"]) {
      source.addEventListener(type, (event) => this.#onMessage(conn, JSON.parse(event.data)));
    }
    // "error" is both the server's error event (with data) and EventSource's own connection error.
    source.addEventListener("error", (event) => {
      if (event instanceof MessageEvent && event.data) {
        const message = JSON.parse(event.data);
        authFailed = message.code === "AUTH_FAILED";
        return this.#onMessage(conn, message);
      }
      if (conn !== this.#conn) return;
      // Reconnect ourselves rather than let EventSource retry: the URL needs a fresh token and `after`.
      this.#conn = null;
      source.close();
      if (authFailed) return this.#authFailed();
      if (!opened) return this.#neverOpened("sse");
      this.#retry();
    });
    return conn;
  }

  /** A ping every interval; no message at all since the last one means the WebSocket is dead. (An
   *  EventSource cannot be pinged: it notices a broken stream itself.) @param {Connection} conn */
  #startHeartbeat(conn) {
    if (conn !== this.#conn) return;
    this.#awaitingPong = false;
    clearInterval(this.#timers.ping);
    this.#timers.ping = setInterval(() => {
      if (this.#awaitingPong) return this.#reconnectNow();
      this.#awaitingPong = true;
      conn.send({ type: "ping" });
    }, this.#options.heartbeatInterval);
  }

  /** 4001: a token function gives a fresh token and the client reconnects at once (backoff if that fails too). */
  #authFailed() {
    this.#token = null;
    if (typeof this.#tokenSource === "string") return this.#fail("AUTH_FAILED", "the token was rejected");
    if (this.#authRetried) return this.#retry();
    this.#authRetried = true;
    this.#open();
  }

  /**
   * A connection that failed before it opened. A REST call tells why: notifyd unreachable (backoff),
   * the token refused (request() already asked the token function again; a plain token stops here),
   * or notifyd fine - then something between blocks WebSockets, and "auto" moves to SSE.
   * @param {Transport} transport
   */
  async #neverOpened(transport) {
    const probing = { transport, close() {}, send() {} };
    this.#conn = probing;
    let reachable = true;
    try {
      await this.request("GET", "unread-count");
    } catch (error) {
      reachable = error instanceof NotifydError && error.code !== NETWORK_ERROR;
      if (reachable && /** @type {NotifydError} */ (error).status === 401 && typeof this.#tokenSource === "string") {
        if (this.#conn === probing) this.#fail("AUTH_FAILED", "the token was rejected", 401);
        return;
      }
    }
    if (this.#conn !== probing) return;
    this.#conn = null;
    if (transport === "websocket" && this.#options.transport === "auto") {
      this.#wsFailures = reachable ? this.#wsFailures + 1 : 0;
      if (this.#wsFailures >= WS_FAILURES_BEFORE_SSE) {
        this.#sseOnly = true;
        return this.#open();
      }
    }
    this.#retry();
  }

  /**
   * Stops for good with an `error` event (a plain token that was rejected).
   * @param {string} code @param {string} message @param {number} [status]
   */
  #fail(code, message, status) {
    this.#emit("error", { code, message, ...(status ? { status } : {}) });
    this.close();
  }

  /** Reconnects after min(max, initial * 2^attempt) ms with full jitter. */
  #retry() {
    if (!this.#wanted || this.#state === "paused") return;
    this.#setState("reconnecting");
    const delay = Math.random() * Math.min(this.#backoff.max, this.#backoff.initial * 2 ** this.#attempt);
    this.#attempt += 1;
    clearTimeout(this.#timers.retry);
    this.#timers.retry = setTimeout(() => this.#open(), delay);
  }

  #reconnectNow() {
    if (this.#wanted && this.#state !== "paused") this.#open();
  }

  /** Before the token expires, a fresh one and a resumed connection (nothing lost, nothing twice). */
  /** @param {string} token */
  #scheduleRefresh(token) {
    const exp = claims(token).exp;
    if (typeof this.#tokenSource !== "function" || typeof exp !== "number") return;
    const left = exp * 1000 - Date.now();
    // Short-lived tokens (tests, say) are refreshed halfway through instead of at once and forever.
    const delay = Math.max(left - REFRESH_MARGIN_MS, left / 2);
    clearTimeout(this.#timers.refresh);
    this.#timers.refresh = setTimeout(async () => {
      let fresh;
      try {
        fresh = await this.#getToken(true);
      } catch {
        return; // the server closes at expiry; the reconnect asks again
      }
      // The same (or an older) token again: keep this connection until the server ends it.
      if ((claims(fresh).exp ?? 0) > exp) this.#reconnectNow();
    }, Math.max(0, delay));
  }

  // -- page lifecycle --------------------------------------------------------------------

  /** A hidden tab pauses after pauseWhenHidden ms; a visible one resumes at once. */
  #onVisibility = () => {
    const hidden = document.visibilityState === "hidden";
    clearTimeout(this.#timers.hide);
    if (hidden && this.#options.pauseWhenHidden !== false) {
      this.#timers.hide = setTimeout(() => {
        if (!this.#wanted) return;
        this.#drop();
        this.#setState("paused");
      }, this.#options.pauseWhenHidden);
    } else if (!hidden && this.#state === "paused") {
      this.#setState("reconnecting");
      this.#open();
    }
  };

  /** Back online: reconnect now rather than when the backoff says. */
  #onOnline = () => {
    if (this.#wanted && this.#state === "reconnecting" && this.#conn === null) {
      this.#attempt = 0;
      this.#open();
    }
  };
}
