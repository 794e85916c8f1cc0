// notifyd-elements.js: a drop-in notification center for notifyd, as custom elements (an ES module, no
// dependencies). One script and one tag give a bell with a dropdown, toasts and the unread count in the title:
//
//   <script type="module" src="https://notifyd.example.com/static/notifyd-elements.js"></script>
//   <notifyd-bell token="…end-user JWT…" inbox-href="/notifications"></notifyd-bell>
//
// Elements: <notifyd-bell>, <notifyd-toasts>, <notifyd-inbox>, <notifyd-preferences>, <notifyd-push-toggle>.
//
// Configuration, per element, first match wins:
//   • the `client` property: a NotifydClient of your own;
//   • the `token` attribute (and `server`, notifyd's origin, default the origin this module came from):
//     elements with the same server and token share one client;
//   • configure(optionsOrClient), exported: the default client of every element without the two above,
//     e.g. configure({ token: () => fetch("/my-notifyd-token").then((r) => r.text()) }) for fresh tokens.
//     Elements created before configure() wait for it.
// Bell attributes: inbox-href (a "See all" link), toasts="off" (no toasts), title-count="off" (leave the
// page title alone; by default it reads "(3) Title" while 3 are unread). Inbox attribute: page-size (20).
//
// Theming: CSS custom properties, set on the elements or any ancestor (they inherit into the shadow roots):
//   --notifyd-font     font family                 (default: system-ui, sans-serif)
//   --notifyd-fg       text colour                 (#1f2328)
//   --notifyd-bg       surface colour              (#ffffff)
//   --notifyd-muted    secondary text and borders  (#656d76)
//   --notifyd-accent   buttons, links, focus ring  (#2f5fd0)
//   --notifyd-danger   badge, critical, delete     (#cf222e)
//   --notifyd-unread   unread marker               (#2f5fd0)
//   --notifyd-radius   corner radius               (10px)
//   --notifyd-shadow   dropdown and toast shadow   (0 10px 30px rgb(0 0 0 / .16))
//   --notifyd-z        z-index of dropdown, toasts (1000)
//   --notifyd-toasts-inset  where the toasts stack: the CSS `inset` (top right bottom left) of
//                      <notifyd-toasts>, e.g. "auto auto 16px 16px" for bottom left  (auto 16px 16px auto)
// Finer control with ::part(...): bell: button, badge, panel, list, mark-all, see-all, empty; items (bell and
// inbox): item (plus "unread", "action-required"), meta, priority, title, body, action-required-label,
// actions, action, action-taken, mark-read, delete; toasts: toast, title, body, close; inbox: toolbar,
// control, status, list, load-more, empty; preferences: form, section, grid, save, status; push toggle:
// push-state, push-button.
//
// Each element is its own module in elements/ (base.js is what they share); this file loads them all, and a
// page may import one alone, e.g. elements/inbox.js. Loaded twice, the first definition of a tag stays.
//
// Safety: every string from the server is set as text (textContent), never parsed as HTML, and a
// notification's URL is used only when it is http(s) (relative URLs resolve against the page).

export { configure } from "./elements/base.js";
export { NotifydToasts } from "./elements/toasts.js";
export { NotifydBell } from "./elements/bell.js";
export { NotifydInbox } from "./elements/inbox.js";
export { NotifydPushToggle } from "./elements/push-toggle.js";
export { NotifydPreferences } from "./elements/preferences.js";
