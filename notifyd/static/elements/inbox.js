// <notifyd-inbox>: the full list of notifications, with filters, sort, infinite scroll, actions and live updates.

import { NotifydElement, define, field, h, messageOf, select, titleCase } from "./base.js";
import { PRIORITIES, PRIORITY_LABEL, newer, notificationView } from "./item.js";

/** @typedef {import("../notifyd-client.js").Notification} Notification */
/** @typedef {import("../notifyd-client.js").NotifydClient} NotifydClient */
/** @typedef {import("../notifyd-client.js").ListQuery} ListQuery */

/** @typedef {"inbox" | "archived"} View */
/** @type {[View, string][]} */
const VIEWS = [["inbox", "Inbox"], ["archived", "Archive"]];

/** The full list: filters, sort, infinite scroll, actions, live updates; the Inbox and the Archive as tabs. */
export class NotifydInbox extends NotifydElement {
  static css = `
:host { display: block; background: var(--_bg); border: 1px solid var(--_line); border-radius: var(--_radius); overflow: hidden; }
.bar { display: flex; flex-wrap: wrap; gap: .75em 1em; align-items: flex-end; padding: .9em 1em; border-bottom: 1px solid var(--_line); }
.bar .spacer { flex: 1; }
.feed { display: block; }
.item:focus-visible { outline-offset: -2px; }
.more { display: flex; justify-content: center; padding: .8em; }
.bar .status { align-self: center; }
.tabs { display: flex; gap: .25em; padding: .5em 1em 0; border-bottom: 1px solid var(--_line); }
.tabs button { border: 0; border-bottom: 2px solid transparent; background: transparent; color: inherit; padding: .5em .8em; }
.tabs button[aria-selected=true] { border-bottom-color: currentColor; font-weight: 600; }
`;

  /** @type {Map<string, Notification>} */
  #items = new Map();
  /** @type {Set<string>} */
  #types = new Set();
  /** @type {string | null} */
  #cursor = null;
  #hasMore = false;
  #loading = false;
  /** Live changes that came while a page was loading: applied once it is in. @type {Notification[]} */
  #pending = [];
  /** Bumped on every reset: answers to older requests are dropped. */
  #generation = 0;
  /** @type {{type: HTMLSelectElement, priority: HTMLSelectElement, read: HTMLSelectElement, sort: HTMLSelectElement}} */
  #controls;
  /** @type {HTMLElement} */
  #feed;
  /** @type {HTMLButtonElement} */
  #more;
  /** @type {HTMLElement} */
  #sentinel;
  /** @type {HTMLElement} */
  #status;
  /** @type {View} */
  #shown = "inbox";
  /** @type {HTMLButtonElement[]} */
  #tabs = [];
  #observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) this.#loadMore();
  }, { rootMargin: "300px" });

  get pageSize() {
    const size = Number.parseInt(this.getAttribute("page-size") ?? "", 10);
    return Number.isFinite(size) ? Math.min(100, Math.max(1, size)) : 20;
  }

  /** @param {ShadowRoot} root */
  render(root) {
    const changed = () => this.#reset();
    this.#controls = {
      type: select({ part: "control", name: "type", onchange: changed }, [["", "All types"]]),
      priority: select({ part: "control", name: "priority", onchange: changed },
        [["", "Any priority"], ...PRIORITIES.map((p) => /** @type {[string, string]} */ ([p, PRIORITY_LABEL[p]]))]),
      read: select({ part: "control", name: "read", onchange: changed },
        [["", "All"], ["unread", "Unread"], ["read", "Read"]]),
      sort: select({ part: "control", name: "sort", onchange: changed },
        [["newest", "Newest first"], ["oldest", "Oldest first"], ["priority", "Priority"]]),
    };
    this.#status = h("div", { class: "status", part: "status", role: "status" });
    this.#feed = h("div", { class: "feed", part: "list", role: "feed", "aria-label": "Notifications", "aria-busy": "false" });
    this.#more = h("button", { type: "button", part: "load-more", text: "Load more",
      onclick: () => this.#loadMore() });
    this.#sentinel = h("div", { "aria-hidden": "true" });
    this.#tabs = VIEWS.map(([view, label]) => h("button", {
      type: "button", role: "tab", part: "tab", "data-view": view, "aria-selected": view === this.#shown ? "true" : "false",
      text: label, onclick: () => this.#show(view),
    }));
    root.append(
      h("div", { class: "tabs", part: "tabs", role: "tablist", "aria-label": "Inbox or Archive" }, ...this.#tabs),
      h("div", { class: "bar", part: "toolbar", role: "group", "aria-label": "Filter notifications" },
        field("Type", this.#controls.type), field("Priority", this.#controls.priority),
        field("Show", this.#controls.read), field("Sort", this.#controls.sort),
        h("span", { class: "spacer" }), this.#status),
      this.#feed, h("div", { class: "more", hidden: true }, this.#more), this.#sentinel);
  }

  /** @param {NotifydClient} client */
  attach(client) {
    this.listen("notification", (event) => this.#live(event.detail.notification));
    this.listen("read_status", (event) => {
      const known = this.#items.get(event.detail.notification_id);
      if (known) this.#live({ ...known, read_at: event.detail.read_at });
    });
    this.listen("unread_count", (event) => this.#addTypes(Object.keys(event.detail.by_type ?? {})));
    client.fetchUnreadCount().then((count) => this.#addTypes(Object.keys(count.by_type)), () => {});
    this.#observer.observe(this.#sentinel);
    this.whileAttached(() => this.#observer.disconnect());
    this.#reset();
  }

  /** @param {View} view */
  #show(view) {
    if (view === this.#shown) return;
    this.#shown = view;
    for (const tab of this.#tabs) tab.setAttribute("aria-selected", tab.dataset.view === view ? "true" : "false");
    this.#reset();
  }

  /** @returns {ListQuery} */
  #query() {
    const { type, priority, read, sort } = this.#controls;
    return {
      type: type.value || undefined, priority: /** @type {ListQuery["priority"]} */ (priority.value || undefined),
      is_read: read.value === "" ? undefined : read.value === "read", sort: /** @type {ListQuery["sort"]} */ (sort.value),
    };
  }

  /** @param {Notification} n */
  #matches(n) {
    const q = this.#query();
    const inView = this.#shown === "archived" ? Boolean(n.archived_at) : !n.archived_at && !n.snoozed_until;
    return inView && (!q.type || n.type === q.type) && (!q.priority || n.priority === q.priority)
      && (q.is_read === undefined || q.is_read === Boolean(n.read_at));
  }

  #reset() {
    this.#generation += 1;
    this.#items.clear();
    this.#cursor = null;
    this.#hasMore = true;
    this.#loading = false;
    this.#pending = [];
    this.#feed.replaceChildren();
    this.#loadMore();
  }

  async #loadMore() {
    const client = this.client;
    if (!client || this.#loading || !this.#hasMore) return;
    const generation = this.#generation;
    this.#loading = true;
    this.#feed.setAttribute("aria-busy", "true");
    this.#more.disabled = true;
    try {
      const page = await client.list({ ...this.#query(), state: this.#shown, limit: this.pageSize, cursor: this.#cursor });
      if (generation !== this.#generation) return;
      this.#cursor = page.next_cursor;
      this.#hasMore = page.has_more && Boolean(page.next_cursor);
      this.#status.textContent = "";
      this.#status.classList.remove("error");
      for (const n of page.items) {
        if (this.#items.has(n.id)) continue; // moved by a live change meanwhile: the live copy is newer
        this.#items.set(n.id, n);
        this.#feed.append(this.#view(n));
      }
      this.#addTypes(page.items.map((n) => n.type));
      // Shown is seen: the badge's unseen count drops in every tab.
      const unseen = page.items.filter((n) => !n.seen_at && !n.read_at).map((n) => n.id);
      if (unseen.length > 0) client.markSeen(unseen).catch(() => {});
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#status.textContent = `Could not load notifications: ${messageOf(error)}`;
      this.#status.classList.add("error");
    } finally {
      if (generation === this.#generation) {
        this.#loading = false;
        this.#feed.setAttribute("aria-busy", "false");
        this.#more.disabled = false;
        for (const n of this.#pending.splice(0)) this.#live(n);
        this.#afterChange();
        // Still at the bottom (a short page): observing again reports the sentinel's visibility anew.
        if (this.#hasMore && this.client === client) {
          this.#observer.unobserve(this.#sentinel);
          this.#observer.observe(this.#sentinel);
        }
      }
    }
  }

  /** @param {Notification} n */
  #view(n) {
    return notificationView(n, {
      tag: "article",
      onRead: (x) => this.#run((client) => client.markRead(x.id), () => this.#live({ ...x, read_at: new Date().toISOString() })),
      onDelete: (x) => this.#run((client) => client.delete(x.id), () => this.#live({ ...x, deleted_at: new Date().toISOString() })),
      onOpen: (x) => { if (!x.read_at) this.client?.markRead(x.id).catch(() => {}); },
      onArchive: (x) => x.archived_at
        ? this.#run((client) => client.unarchive(x.id), () => this.#live({ ...x, archived_at: null }))
        : this.#run((client) => client.archive(x.id), () => this.#live({ ...x, archived_at: new Date().toISOString() })),
      onSnooze: (x, until) => {
        this.#run((client) => client.snooze(x.id, until), () => this.#live({ ...x, snoozed_until: until.toISOString() }));
      },
      onAct: (x, action, button) => {
        const buttons = /** @type {HTMLButtonElement[]} */ ([...(button.parentElement?.querySelectorAll("button") ?? [])]);
        for (const b of buttons) b.disabled = true;
        this.#run((client) => client.act(x.id, action),
          () => this.#live({ ...x, action_taken: action, action_taken_at: new Date().toISOString() }),
          () => { for (const b of buttons) b.disabled = false; });
      },
    });
  }

  /**
   * Runs a REST call; on success applies its effect locally (the live event confirms it later).
   * @param {(client: NotifydClient) => Promise<unknown>} call
   * @param {() => void} done
   * @param {() => void} [failed]
   */
  async #run(call, done, failed) {
    const client = this.client;
    if (!client) return;
    try {
      await call(client);
      done();
    } catch (error) {
      failed?.();
      this.#status.textContent = messageOf(error);
      this.#status.classList.add("error");
    }
  }

  /**
   * A live event or a local change: update in place, remove, or add on top.
   * @param {Notification} n
   */
  #live(n) {
    if (this.#loading) {
      this.#pending.push(n);
      return;
    }
    this.#addTypes([n.type]);
    const known = this.#items.get(n.id);
    if (known && !newer(known, n)) return;
    const el = known ? this.#feed.querySelector(`[data-id="${CSS.escape(n.id)}"]`) : null;
    if (n.deleted_at || (known && !this.#matches(n))) {
      this.#items.delete(n.id);
      el?.remove();
    } else if (known) {
      const merged = { ...known, ...n };
      this.#items.set(n.id, merged);
      const focused = el?.contains(this.shadowRoot?.activeElement ?? null);
      const view = this.#view(merged);
      el?.replaceWith(view);
      if (focused) view.focus();
    } else if (this.#matches(n) && this.#place(n)) {
      this.#items.set(n.id, n);
    } else {
      return;
    }
    this.#afterChange();
  }

  /**
   * Puts a notification new to the list where its time sorts it (a new one: on top), if that is within
   * the pages loaded so far; false when a later page will bring it.
   * @param {Notification} n
   */
  #place(n) {
    const sort = this.#controls.sort.value;
    if (sort === "priority") return false;
    const order = sort === "newest" ? -1 : 1;
    const at = Date.parse(n.created_at);
    const articles = [...this.#feed.querySelectorAll("article")];
    const created = (/** @type {HTMLElement} */ article) =>
      Date.parse(this.#items.get(article.dataset.id ?? "")?.created_at ?? "");
    const after = articles.find((article) => order * (created(article) - at) > 0);
    const last = articles.at(-1);
    if (after) after.before(this.#view(n));
    // A tie with the last item loaded may come in the next page as well: that copy is skipped then.
    else if (!this.#hasMore || (last && created(last) === at)) this.#feed.append(this.#view(n));
    else return false;
    return true;
  }

  #afterChange() {
    const articles = [...this.#feed.querySelectorAll("article")];
    articles.forEach((article, i) => {
      article.setAttribute("aria-posinset", String(i + 1));
      article.setAttribute("aria-setsize", this.#hasMore ? "-1" : String(articles.length));
    });
    // The row, not just the button: no gap below the end.
    /** @type {HTMLElement} */ (this.#more.parentElement).hidden = !this.#hasMore;
    const empty = this.#feed.querySelector(".empty");
    if (articles.length === 0 && !this.#loading) {
      const filtered = Object.values(this.#query()).filter(Boolean).length > 1;
      const shown = empty ?? this.#feed.appendChild(h("p", { class: "empty", part: "empty" }));
      shown.textContent = filtered ? "No notifications match these filters." : "No notifications yet.";
    } else {
      empty?.remove();
    }
  }

  /** @param {string[]} types */
  #addTypes(types) {
    const before = this.#types.size;
    for (const t of types) if (t) this.#types.add(t);
    if (this.#types.size === before) return;
    const control = this.#controls.type;
    const value = control.value;
    control.replaceChildren(h("option", { value: "", text: "All types" }),
      ...[...this.#types].sort().map((t) => h("option", { value: t, text: titleCase(t) })));
    control.value = value;
  }
}

define("notifyd-inbox", NotifydInbox);
