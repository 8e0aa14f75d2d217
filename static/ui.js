// The conversation log: user and assistant bubbles, keyed by the protocol's item ids.
//
// Each bubble is <li class="msg msg--user|msg--assistant"> holding a speaker label and a
// <p class="msg__text">; assistant text streams in delta by delta, then is replaced by the
// final transcript (after an interruption: only what was heard).

const NEAR_BOTTOM_PX = 48;

export class Conversation {
  constructor(list, emptyHint) {
    this.list = list;
    this.emptyHint = emptyHint;
    this.byItem = new Map(); // item_id -> bubble
    this.byResponse = new Map(); // response_id -> Set of bubbles
  }

  clear() {
    this.list.replaceChildren();
    this.byItem.clear();
    this.byResponse.clear();
    this.emptyHint.hidden = false;
  }

  #append(node) {
    const scroller = this.list.parentElement;
    const atBottom =
      scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
    this.list.append(node);
    this.emptyHint.hidden = true;
    if (atBottom) this.#scroll();
  }

  #scroll() {
    const scroller = this.list.parentElement;
    scroller.scrollTop = scroller.scrollHeight;
  }

  #bubble(role, itemId) {
    const li = document.createElement("li");
    li.className = `msg msg--${role}`;
    if (itemId) li.dataset.itemId = itemId;
    const who = document.createElement("span");
    who.className = "msg__who";
    who.textContent = role === "user" ? "You" : "Hark";
    const text = document.createElement("p");
    text.className = "msg__text";
    li.append(who, text);
    li.classList.add("msg--pending");
    if (itemId) this.byItem.set(itemId, li);
    this.#append(li);
    return li;
  }

  #setText(li, value, { append = false } = {}) {
    const text = li.querySelector(".msg__text");
    const scroller = this.list.parentElement;
    const atBottom =
      scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
    text.textContent = append ? text.textContent + value : value;
    if (text.textContent !== "") li.classList.remove("msg--pending");
    if (atBottom) this.#scroll();
  }

  #tag(li, label, modifier) {
    if (li.querySelector(`.msg__tag--${modifier}`)) return;
    const tag = document.createElement("span");
    tag.className = `msg__tag msg__tag--${modifier}`;
    tag.textContent = label;
    li.append(tag);
  }

  // A user audio item was announced; its transcript comes later. Keeps the order right.
  userPending(itemId) {
    if (!this.byItem.has(itemId)) this.#bubble("user", itemId);
  }

  userTranscriptDelta(itemId, delta) {
    const li = this.byItem.get(itemId) || this.#bubble("user", itemId);
    this.#setText(li, delta, { append: true });
  }

  userTranscript(itemId, transcript) {
    const li = this.byItem.get(itemId) || this.#bubble("user", itemId);
    const text = (transcript || "").trim();
    if (text) {
      this.#setText(li, text);
    } else {
      this.#setText(li, "");
      this.#tag(li, "not understood", "unclear");
    }
    li.classList.remove("msg--pending");
  }

  userTranscriptFailed(itemId) {
    const li = this.byItem.get(itemId) || this.#bubble("user", itemId);
    li.classList.remove("msg--pending");
    this.#tag(li, "not understood", "unclear");
  }

  // A message the user typed (it has no server item id yet).
  userText(text) {
    const li = this.#bubble("user", null);
    this.#setText(li, text);
  }

  #assistant(responseId, itemId) {
    const key = itemId || `response:${responseId}`;
    let li = this.byItem.get(key);
    if (!li) {
      li = this.#bubble("assistant", key);
      if (responseId) {
        if (!this.byResponse.has(responseId)) this.byResponse.set(responseId, new Set());
        this.byResponse.get(responseId).add(li);
      }
    }
    return li;
  }

  assistantDelta(responseId, itemId, delta) {
    this.#setText(this.#assistant(responseId, itemId), delta || "", { append: true });
  }

  assistantDone(responseId, itemId, transcript) {
    const li = this.#assistant(responseId, itemId);
    if (typeof transcript === "string") this.#setText(li, transcript.trim());
    li.classList.remove("msg--pending");
  }

  // response.done: a cancelled response marks its bubbles as interrupted.
  responseDone(responseId, status) {
    const bubbles = this.byResponse.get(responseId);
    if (!bubbles) return;
    for (const li of bubbles) {
      li.classList.remove("msg--pending");
      if (status === "cancelled") {
        li.classList.add("msg--interrupted");
        this.#tag(li, "interrupted", "interrupted");
      }
    }
  }

  // A one-line note in the log ("Call ended").
  note(text) {
    const li = document.createElement("li");
    li.className = "note";
    li.textContent = text;
    this.#append(li);
  }
}

// The connection state pill and the activity line ("Listening…").
const STATE_LABELS = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  unstable: "Connection unstable…",
  ended: "Call ended",
  failed: "Connection failed",
};

const ACTIVITY_LABELS = {
  "": "",
  ready: "Ready: say something",
  listening: "Listening…",
  thinking: "Thinking…",
  speaking: "Speaking…",
};

export function showState(el, textEl, state) {
  el.dataset.state = state;
  textEl.textContent = STATE_LABELS[state] || state;
}

export function showActivity(el, activity) {
  el.dataset.activity = activity;
  el.textContent = ACTIVITY_LABELS[activity] ?? activity;
}

export function showMeter(el, level) {
  // Speech RMS sits around 0.01-0.3: a square-root scale makes quiet speech visible.
  const percent = Math.round(Math.min(1, Math.sqrt(level * 4)) * 100);
  el.style.setProperty("--level", `${percent}%`);
  el.setAttribute("aria-valuenow", String(percent));
}
