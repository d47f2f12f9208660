// Egaki: never drop what someone types while a new chat is still starting.
//
// Chainlit 2.12's composer silently ignores Enter while the chat is not ready
// (useChatData().disabled: socket not connected yet, or on_chat_start running), and
// until the first message appears it shows the welcome screen's composer, which is
// replaced (losing its text) when the greeting arrives. This script, loaded through
// `custom_js` in .chainlit/config.toml, keeps the text across that swap, holds an
// early Enter with a visible "starting" note, and sends it as soon as the composer can.
// It only acts before the first user message of a new chat; after that Chainlit's own
// busy state (the stop button) is visible and left alone.
(() => {
  "use strict";
  const ja = (navigator.language || "").toLowerCase().startsWith("ja");
  const NOTE_WAIT = ja ? "準備中です…" : "Starting…";
  const NOTE_HELD = ja
    ? "準備中です… 準備ができしだい、このメッセージを送ります。"
    : "Starting… your message will be sent as soon as Egaki is ready.";
  const root = document.documentElement;
  root.dataset.egakiComposer = "on";

  let draft = ""; // what was last typed into the composer, not yet sent
  let pending = false; // Enter was pressed before the composer could send
  let lastInput = null;

  const input = () => document.getElementById("chat-input");
  const sendButton = () => document.getElementById("chat-submit");
  const started = () => !!document.querySelector('[data-step-type="user_message"]');
  const canSend = () => {
    const b = sendButton();
    return !!b && !b.disabled;
  };
  // A held message goes once the greeting is there (so it lands below it), or, should
  // the greeting never come, 3 s after the composer could first send.
  const greeted = () => !!document.querySelector('[data-step-type="assistant_message"]');
  let sendableSince = 0;
  const mayRelease = () => {
    if (!canSend()) {
      sendableSince = 0;
      return false;
    }
    sendableSince = sendableSince || Date.now();
    return greeted() || Date.now() - sendableSince > 3000;
  };
  const setValue = (el, text) => {
    const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set;
    setter.call(el, text);
    el.dispatchEvent(new Event("input", { bubbles: true })); // React's onChange
  };

  const note = () => {
    let el = document.getElementById("egaki-pending");
    const composer = document.getElementById("message-composer");
    if (!composer) return null;
    if (!el) {
      el = document.createElement("div");
      el.hidden = true;
      el.id = "egaki-pending";
      el.setAttribute("role", "status");
      el.setAttribute("aria-live", "polite");
      el.style.cssText =
        "font-size:0.85rem;opacity:0.8;padding:0 1rem 0.4rem;text-align:left;width:100%";
    }
    if (el.nextElementSibling !== composer) composer.before(el);
    return el;
  };
  // Writes only what changed: the MutationObserver below must not re-trigger itself.
  const showNote = (on) => {
    const state = on ? (pending ? "held" : "waiting") : "false";
    if (root.dataset.egakiPending !== state) root.dataset.egakiPending = state;
    const el = on ? note() : document.getElementById("egaki-pending");
    if (!el) return;
    const text = on ? (pending ? NOTE_HELD : NOTE_WAIT) : "";
    if (el.textContent !== text) el.textContent = text;
    if (el.hidden !== !on) el.hidden = !on;
  };

  // Track the draft; Enter and the send button clear it once the text really goes.
  document.addEventListener(
    "input",
    (e) => {
      if (e.target && e.target.id === "chat-input") draft = e.target.value;
    },
    true
  );
  document.addEventListener(
    "click",
    (e) => {
      const b = e.target && e.target.closest && e.target.closest("#chat-submit");
      if (b && !b.disabled) {
        draft = "";
        pending = false;
        showNote(false);
      }
    },
    true
  );
  // Capture phase on window: runs before React's listeners on its root element.
  window.addEventListener(
    "keydown",
    (e) => {
      if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.keyCode === 229) return;
      const el = e.target;
      if (!el || el.id !== "chat-input") return;
      if ((canSend() && greeted()) || started()) {
        if (el.value.trim()) draft = ""; // Chainlit sends it now
        pending = false;
        showNote(false);
        return;
      }
      if (!el.value.trim()) return;
      e.preventDefault();
      e.stopPropagation(); // Chainlit would drop it: hold it instead
      draft = el.value;
      pending = true;
      showNote(true);
    },
    true
  );

  const tick = () => {
    const el = input();
    if (el && el !== lastInput) {
      // A new composer (the welcome screen's was replaced): bring the text along.
      lastInput = el;
      if (draft && !el.value) setValue(el, draft);
    }
    if (!started() && draft && el && !canSend()) showNote(true);
    if (pending && el && mayRelease()) {
      pending = false;
      showNote(false);
      if (el.value !== draft) setValue(el, draft);
      draft = "";
      sendButton().click();
    } else if (!pending && (started() || canSend())) {
      showNote(false);
    }
  };
  new MutationObserver(tick).observe(root, {
    subtree: true,
    childList: true,
    attributes: true,
    attributeFilter: ["disabled"],
  });
  setInterval(tick, 200);
  window.egakiComposerReady = true; // for tests: the Enter guard is in place
})();
