// Types of notifyd-client.js, the headless browser client of notifyd (an ES module, no dependencies).
//
//   import { NotifydClient } from "https://notifyd.example.com/static/notifyd-client.js";
//   const client = new NotifydClient({ token: () => fetchMyNotifydToken() });
//   client.addEventListener("notification", (e) => console.log(e.detail.notification));
//   client.connect();

export type Priority = "critical" | "high" | "normal" | "low";
export type Channel = "in_app" | "push" | "email";
export type Frequency = "instant" | "daily" | "weekly" | "never";

/** An action button a notification offers (its `data.actions`). */
export interface NotificationAction {
  action: string;
  label?: string;
  /** "primary" | "danger" | ...: a hint for styling. */
  style?: string;
  url?: string;
}

/** A notification as the REST list and the live events carry it. Text fields are text, never HTML. */
export interface Notification {
  id: string;
  /** Per-user change sequence: a changed notification comes again with a higher seq. */
  seq: number;
  type: string;
  priority: Priority;
  title: string;
  body: string;
  data: { actions?: NotificationAction[]; action_url?: string; url?: string; [key: string]: unknown };
  read_at: string | null;
  /** When the user first saw it (the bell, the inbox); null: unseen. */
  seen_at?: string | null;
  /** When the user archived it (it shows in the Archive view); null: in the inbox. */
  archived_at?: string | null;
  /** Hidden from the inbox until then, when it comes back as new; null: not snoozed. */
  snoozed_until?: string | null;
  created_at: string;
  group_key: string | null;
  group_count: number;
  action_taken: string | null;
  action_taken_at: string | null;
  expires_at: string | null;
  /** Set on a live event when the notification was deleted (in another tab, say). */
  deleted_at?: string | null;
  delivery_status?: Record<string, string>;
}

export interface SensitiveFields {
  id: string;
  data: Record<string, unknown>;
  template_vars: Record<string, unknown>;
}

export interface NotificationPage {
  items: Notification[];
  unread_count: number;
  next_cursor: string | null;
  has_more: boolean;
}

export interface ListQuery {
  type?: string;
  priority?: Priority;
  is_read?: boolean;
  /** Default "inbox" (neither archived nor snoozed); "archived" is the Archive view. */
  state?: "inbox" | "unseen" | "unread" | "read" | "archived" | "snoozed" | "all";
  sort?: "newest" | "oldest" | "priority";
  /** 1..100, default 20. */
  limit?: number;
  cursor?: string | null;
}

export interface UnreadCount { count: number; by_type: Record<string, number> }
/** The badge: every notification of the inbox with a seq up to seen_seq is seen; unseen_count are neither seen nor read. */
export interface SeenState { seen_seq: number; unseen_count: number }
export interface SeenResult extends SeenState { updated_count: number }
export interface ArchiveResult { id: string; archived_at: string | null }
export interface SnoozeResult { id: string; snoozed_until: string }
/** A `notification` frame (WebSocket; SSE's data with `?compact=1`): live frames carry the user's unread
 * count as the server read it for this frame; frames a resume replays do not. */
export interface NotificationMessage {
  type: "notification";
  data: Notification;
  unread_count?: number;
  unread_by_type?: Record<string, number>;
  /** The badge (notifications of the inbox neither seen nor read), on live frames. */
  unseen_count?: number;
}
export interface ReadResult { id: string; read_at: string }
export interface ReadAllResult { updated_count: number }
export interface ActionResult { id: string; action: string; action_taken_at: string; action_id: string; result: "recorded" }

export interface QuietWindow { start: string; end: string; days: number[] }
/** The channels a user switches (and an org admin may lock); in-app is always on. */
export type LockableChannel = "push" | "email" | "sms" | "webhook" | "chat";
interface QuietHours {
  quiet_hours_start: string | null;
  quiet_hours_end: string | null;
  /** ISO weekdays 1 (Monday) .. 7 a window starts on. */
  quiet_hours_days: number[];
  quiet_hours_windows: QuietWindow[];
  /** Channels the org admin locked: show them, disabled. */
  locked: LockableChannel[];
  customized: boolean;
  updated_at: string | null;
}
export interface PreferenceItem extends QuietHours {
  notification_type: string;
  push_enabled: boolean;
  email_enabled: boolean;
  in_app_enabled: boolean;
  /** SMS a sender asks for. */
  sms_enabled: boolean;
  /** To the webhook endpoints of the user and of their org. */
  webhook_enabled: boolean;
  /** To the chat connections (Slack, Teams, Discord) of the user and of their org. */
  chat_enabled: boolean;
  digest_frequency: Frequency;
  digest_time: string;
  digest_day: number;
}
export interface GlobalPreferences extends QuietHours {
  all_push_enabled: boolean;
  all_email_enabled: boolean;
  all_sms_enabled: boolean;
  all_webhook_enabled: boolean;
  all_chat_enabled: boolean;
  default_digest_frequency: Frequency;
  default_digest_time: string;
  default_digest_day: number;
  /** IANA time zone of the user (digests and quiet hours are in it). */
  timezone: string;
}
/** A topic the user follows and whether it is muted (PUT /api/v1/topics/{topic} changes it). */
export interface TopicMute { topic: string; muted: boolean }
export interface Preferences { items: PreferenceItem[]; global: GlobalPreferences; topics: TopicMute[] }
export type PreferenceChanges = Partial<Omit<PreferenceItem, "notification_type" | "locked" | "customized" | "updated_at">>;
export type GlobalChanges = Partial<Omit<GlobalPreferences, "locked" | "customized" | "updated_at">>;

export interface PushDevice {
  id: string;
  kind: "webpush" | "fcm";
  is_active: boolean;
  device_info: Record<string, unknown>;
  created_at: string;
  last_used_at: string | null;
  failure_count: number;
  deactivated_reason: string | null;
  /** Web Push: scheme://host[:port] of the endpoint, never more. */
  endpoint_origin: string | null;
}

/** Where Web Push stands in this browser, for a permission flow. */
export type PushState =
  | "unsupported"   // no service worker / PushManager (or not a secure context)
  | "not-configured" // the server has no VAPID key
  | "denied"        // the user blocked notifications for this site
  | "prompt"        // not asked yet
  | "subscribed"    // this browser receives pushes (with the server's current VAPID key)
  | "unsubscribed"; // permission granted but no subscription here

/** "open": connected and caught up (live); "connecting" and "reconnecting" include the resume replay. */
export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "paused" | "closed";
export type Transport = "websocket" | "sse";

export interface NotifydClientOptions {
  /** notifyd's origin, e.g. "https://notifyd.example.com"; default: the origin this module was loaded from. */
  baseUrl?: string;
  /** An end-user JWT, or a function returning a fresh one (called again on expiry and on 401). */
  token: string | (() => string | Promise<string>);
  /** "auto" (default): WebSocket, falling back to Server-Sent Events where the WebSocket cannot open. */
  transport?: "auto" | Transport;
  /** Milliseconds between pings; default 25000. A missing pong within one interval reconnects. */
  heartbeatInterval?: number;
  /** Reconnection backoff in milliseconds: min(max, initial × 2^attempt) with full jitter. Defaults 500 / 30000. */
  backoff?: { initial?: number; max?: number };
  /** Milliseconds a hidden tab stays connected before pausing (default 60000); false: never pause. */
  pauseWhenHidden?: number | false;
  /** Path of notifyd's service worker, default "/notifyd-sw.js" (must be on the page's origin). */
  serviceWorkerUrl?: string;
}

export interface NotificationEventDetail {
  notification: Notification;
  /** True the first time this client sees this id, for one created since the client connected (a toast is
   *  due); false for a change of a known one, or a replayed change of an older one (read elsewhere, say). */
  isNew: boolean;
  /** True while catching up after a reconnect (the `resume` replay). */
  replay: boolean;
}
export interface ReadStatusDetail { notification_id: string; read_at: string; unread_count: number }
export interface StateDetail { state: ConnectionState; transport: Transport | null }
export interface ErrorDetail { code: string; message: string; status?: number }

export interface NotifydEventMap {
  /** Once per (id, seq): never twice, whatever the reconnects. Deleted ones come with deleted_at set. */
  notification: CustomEvent<NotificationEventDetail>;
  /** From the live connection, and from list() pages when their count differs (by_type: the last known). */
  unread_count: CustomEvent<UnreadCount>;
  /** The badge changed: notifications of the inbox neither seen nor read. */
  unseen_count: CustomEvent<{ count: number }>;
  /** The seen watermark moved (in this tab or another). */
  seen: CustomEvent<SeenState>;
  read_status: CustomEvent<ReadStatusDetail>;
  state: CustomEvent<StateDetail>;
  /** The catch-up after a reconnect is complete (`count` notifications replayed). */
  resumed: CustomEvent<{ count: number }>;
  error: CustomEvent<ErrorDetail>;
  push: CustomEvent<{ state: PushState }>;
}

/** A REST call that failed: the server's {"error": {"code", "message"}} and the HTTP status; status 0 and
 *  code "NETWORK_ERROR" when notifyd could not be reached. */
export class NotifydError extends Error {
  constructor(status: number, code: string, message: string);
  readonly status: number;
  readonly code: string;
}

export class NotifydClient extends EventTarget {
  constructor(options: NotifydClientOptions);
  readonly baseUrl: string;
  /** The serviceWorkerUrl option (default "/notifyd-sw.js"), for notifyd-push.js. */
  readonly serviceWorkerUrl: string;
  readonly state: ConnectionState;
  readonly transport: Transport | null;
  /** Where a reconnect resumes: the newest seq when first connecting, then the highest seq seen live.
   *  (list() pages mark their ids as seen but do not move it: a page may skip seqs still in flight.) */
  readonly lastSeq: number;
  readonly unreadCount: number;
  /** The badge: notifications of the inbox neither seen nor read (the unread count until anything is marked seen). */
  readonly unseenCount: number;
  /** The user of the token (its `sub`), once known. */
  readonly userId: string | null;

  /** Opens the live connection (idempotent). */
  connect(): void;
  /** Closes it for good (no reconnect). */
  close(): void;
  /** Replaces the token (or token function); a live connection moves to it without losing events. */
  setToken(token: NotifydClientOptions["token"]): void;

  addEventListener<K extends keyof NotifydEventMap>(type: K, listener: (event: NotifydEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof NotifydEventMap>(type: K, listener: (event: NotifydEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
  /** addEventListener that returns its own remover. */
  on<K extends keyof NotifydEventMap>(type: K, listener: (event: NotifydEventMap[K]) => void): () => void;

  /** A JSON call to notifyd with the token (a 401 is retried once with a fresh one): `path` is absolute
   *  ("/api/v1/...") or relative to /api/v1/notifications/ ("push/subscriptions"; "" is the list itself).
   *  Resolves to the parsed body, null for a 204; throws NotifydError. */
  request<T = any>(method: string, path: string,
    options?: { query?: Record<string, string | number | boolean | null | undefined>; body?: unknown; auth?: boolean }): Promise<T>;

  list(query?: ListQuery): Promise<NotificationPage>;
  get(id: string): Promise<Notification>;
  /** The real values of the fields its template marks sensitive (masked in every other view); 404 if none. */
  revealSensitive(id: string): Promise<SensitiveFields>;
  fetchUnreadCount(): Promise<UnreadCount>;
  markRead(id: string): Promise<ReadResult>;
  markAllRead(): Promise<ReadAllResult>;
  /** Marks the given notifications seen, or everything the inbox shows; other tabs get a `seen` event. */
  markSeen(ids?: string[]): Promise<SeenResult>;
  fetchSeenState(): Promise<SeenState>;
  /** Moves it to the Archive view (history and export keep it); other tabs get it again with archived_at. */
  archive(id: string): Promise<ArchiveResult>;
  unarchive(id: string): Promise<ArchiveResult>;
  /** Hides it until `until` (in the future), when it comes back as new. */
  snooze(id: string, until: Date | string): Promise<SnoozeResult>;
  /** Soft delete; other tabs get the notification again with deleted_at set. */
  delete(id: string): Promise<void>;
  act(id: string, action: string): Promise<ActionResult>;

  preferences(): Promise<Preferences>;
  setPreference(type: string, changes: PreferenceChanges): Promise<PreferenceItem>;
  setGlobalPreferences(changes: GlobalChanges): Promise<GlobalPreferences>;

  pushState(): Promise<PushState>;
  /** Asks permission if needed, registers the service worker and subscribes with the server's current VAPID key. */
  subscribePush(): Promise<PushState>;
  unsubscribePush(): Promise<PushState>;
  pushDevices(): Promise<PushDevice[]>;
}
