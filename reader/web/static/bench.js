// The bench view's page: one card's state, its decoded APDU stream (newest first) and controls.
// Everything arrives pushed by Server-Sent Events (EventSource reconnects by itself); the page
// never polls. Controls post one control line with the run's token from the page's URL.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const match = location.pathname.match(/^\/card\/(\d+)/);
  const index = match ? Number(match[1]) : 0;
  const $ = (id) => document.getElementById(id);
  const APP_NAMES = { ssse: "SSSE (social security)", fin: "Financial (PBOC debit)", psam: "PSAM" };
  let bound = 500;
  let dropped = 0;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function withToken(path) {
    return token ? `${path}?token=${encodeURIComponent(token)}` : path;
  }

  // -- the cards served ------------------------------------------------------------------------------
  $("card-index").textContent = index;
  fetch("/api/cards").then((r) => r.json()).then((cards) => {
    const nav = $("cards");
    for (const card of cards) {
      const a = el("a", card.index === index ? "current" : "", `card ${card.index}`);
      a.href = withToken(`/card/${card.index}`);
      a.title = card.image;
      nav.append(a);
    }
  });
  $("export").href = `/api/card/${index}/export`;

  // -- state -------------------------------------------------------------------------------------------
  function kv(object, app) {
    const table = el("table", "kv");
    const body = el("tbody");
    for (const [key, value] of Object.entries(object)) {
      const tr = el("tr");
      const td = el("td");
      td.dataset.key = key;
      if (app) td.dataset.app = app;
      if (Array.isArray(value)) {
        if (!value.length) td.textContent = "none";
        for (const item of value) {
          td.append(typeof item === "object" && item !== null ? kv(item) : el("div", null, String(item)));
        }
      } else if (value !== null && typeof value === "object") {
        td.append(kv(value, app));
      } else {
        td.textContent = value === null ? "—" : String(value);
      }
      tr.append(el("th", null, key), td);
      body.append(tr);
    }
    table.append(body);
    return table;
  }

  function chip(text, tone, id) {
    const node = el("span", `chip ${tone || ""}`, text);
    if (id) node.id = id;
    return node;
  }

  function renderState(s) {
    const chips = [];
    if (!s.inserted) chips.push(chip("removed", "bad", "chip-power"));
    else if (!s.in_reader) chips.push(chip("waiting for its reader", "warn", "chip-power"));
    else chips.push(chip(s.powered ? `powered, ${s.protocol}` : "in the reader, unpowered", s.powered ? "good" : "", "chip-power"));
    const ssse = s.applications.ssse;
    if (ssse) {
      const lock = ssse.lock;
      chips.push(chip(`SSSE ${ssse.lifecycle}, lock ${lock}`, lock === "none" ? "good" : "bad", "chip-ssse"));
      chips.push(chip(`PIN ${ssse["PIN tries left"]}`, ssse["PIN tries left"].includes("blocked") ? "bad" : "", "chip-pin"));
      chips.push(chip(`deadline ${ssse["activation deadline"]}`, ssse["activation deadline"].includes("passed") ? "warn" : "", "chip-deadline"));
    }
    const fin = s.applications.fin;
    if (fin) chips.push(chip(`financial ${fin.activation}`, fin.activation === "activated" ? "good" : "warn", "chip-fin"));
    if (s.faults.length) chips.push(chip(`${s.faults.length} fault${s.faults.length > 1 ? "s" : ""} armed`, "warn", "chip-faults"));
    $("summary").replaceChildren(...chips);

    const selected = s.selected ? [s.selected.application, s.selected.df, s.selected.ef].filter(Boolean).join(" / ") : "—";
    const card = {
      image: s.image, reader: s.status, ATR: s.atr, protocol: s.protocol || "— (unpowered)",
      selected, date: `${s.date}${s.simulated_date ? " (simulated)" : " (the host's today)"}`,
      issued: s.issued || "—", profile: s.profile, faults: s.faults.length ? s.faults : "none",
    };
    if (s.warning) card.warning = s.warning;
    $("card-table").replaceWith(Object.assign(kv(card, "card"), { id: "card-table" }));
    $("card-table").querySelector('td[data-key="ATR"]').classList.add("hex");

    const apps = [];
    for (const [name, described] of Object.entries(s.applications)) {
      const section = el("div", "application");
      section.id = `app-${name}`;
      section.append(el("h3", null, APP_NAMES[name] || name), kv(described, name));
      apps.push(section);
    }
    $("applications").replaceChildren(...apps);
    $("keypad").hidden = !s.keypad;
    if (s.date && !$("date-input").value) $("date-input").value = s.date;
  }

  // -- the stream ----------------------------------------------------------------------------------------
  function tone(sw) {
    if (sw === "9000" || sw.startsWith("61")) return "ok";
    if (sw.startsWith("62") || sw.startsWith("63") || sw.startsWith("6C")) return "warn";
    return "bad";
  }

  function describeEntry(e) {
    switch (e.kind) {
      case "apdu": return { title: e.title || e.cmd, sw: e.sw, cls: tone(e.sw) };
      case "reset": return { title: `reset: ATR ${e.atr}`, sw: "", cls: "event" };
      case "power-off": return { title: "power off", sw: "", cls: "event" };
      case "control": return { title: `${e.text}: ${e.reply}`, sw: "", cls: "event" };
      case "switch": return { title: `switched to ${e.text}`, sw: "", cls: "event" };
      default: return { title: `${e.dropped} events not shown here (a page shows 1,000 a second at most)`, sw: "", cls: "gap" };
    }
  }

  function row(e) {
    const { title, sw, cls } = describeEntry(e);
    const li = el("li", cls);
    li.dataset.id = e.id;
    li.dataset.kind = e.kind;
    const head = el("div", "entry-head");
    head.append(el("span", "t", e.t), el("span", "ms", e.ms ? `${e.ms} ms` : ""), el("span", "title", title),
      el("span", "sw", sw && e.answer ? e.answer[0].replace(/^SW /, "") : sw));
    head.querySelector(".title").title = title;
    head.querySelector(".sw").title = head.querySelector(".sw").textContent;
    const body = el("div", "entry-body");
    let text = title;
    if (e.kind === "apdu") {
      const lines = [`> ${e.cmd}`, ...(e.detail || []), `< ${e.rsp}`, ...(e.answer || [])];
      for (const line of lines) body.append(el("div", line.startsWith("> ") || line.startsWith("< ") ? "dir" : "", line));
      text = lines.join(" ");
    }
    li.dataset.text = `${text} ${sw}`.toLowerCase();
    li.append(head, body);
    return li;
  }

  function visible(li) {
    const words = $("filter").value.trim().toLowerCase();
    const kind = $("kind").value;
    if (words && !words.split(/\s+/).every((w) => li.dataset.text.includes(w))) return false;
    if (kind === "errors") return li.dataset.kind === "apdu" && (li.classList.contains("bad") || li.classList.contains("warn"));
    if (kind === "events") return li.dataset.kind !== "apdu";
    return true;
  }

  function count() {
    const list = $("stream");
    const shown = [...list.children].filter((li) => !li.hidden).length;
    $("stream-count").textContent = `${shown} shown of ${list.children.length} kept (the newest ${bound})`
      + (dropped ? `; ${dropped} not shown (faster than 1,000 a second)` : "");
  }

  function addEntries(batch) {
    dropped = batch.dropped;
    const list = $("stream");
    const fragment = document.createDocumentFragment();
    for (let i = batch.entries.length - 1; i >= 0; i--) {
      const li = row(batch.entries[i]);
      li.hidden = !visible(li);
      fragment.append(li);
    }
    list.prepend(fragment);
    while (list.children.length > bound) list.lastElementChild.remove();
    count();
  }

  $("stream").addEventListener("click", (event) => {
    const head = event.target.closest(".entry-head");
    if (head) head.parentElement.classList.toggle("open");
  });
  function refilter() {
    for (const li of $("stream").children) li.hidden = !visible(li);
    count();
  }
  $("filter").addEventListener("input", refilter);
  $("kind").addEventListener("change", refilter);

  const source = new EventSource(`/api/card/${index}/events`);
  source.addEventListener("hello", (event) => {
    bound = JSON.parse(event.data).bound;
    $("stream").replaceChildren();  // a (re)connected stream sends everything kept again
    $("link").textContent = "live";
    $("link").className = "badge on";
  });
  source.addEventListener("state", (event) => renderState(JSON.parse(event.data)));
  source.addEventListener("entries", (event) => addEntries(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    $("link").textContent = "reconnecting";
    $("link").className = "badge off";
  });

  // -- controls ----------------------------------------------------------------------------------------
  $("mode").textContent = token ? "controls on" : "view only";
  $("mode").className = token ? "badge on" : "badge off";
  if (!token) {
    $("controls-note").textContent = "View only: open the URL sscard serve printed (with its ?token=) to act on the card.";
    for (const control of $("controls").querySelectorAll("button, input")) control.disabled = true;
  }

  async function send(line, shown) {
    const reply = $("reply");
    reply.className = "reply";
    reply.textContent = `${shown || line} …`;
    try {
      const answer = await fetch(`/api/card/${index}/control`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-bench-token": token },
        body: JSON.stringify({ line }),
      });
      const data = await answer.json();
      const text = data.reply || data.error;
      reply.textContent = `${shown || line}: ${text}`;
      if (!data.ok) reply.className = "reply bad";
    } catch (error) {
      reply.textContent = `${shown || line}: ${error}`;
      reply.className = "reply bad";
    }
  }

  for (const button of $("controls").querySelectorAll("button[data-line]")) {
    button.addEventListener("click", () => send(button.dataset.line));
  }
  $("date-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send(`date ${$("date-input").value}`);
  });
  $("fault-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send(`fault ${$("fault-input").value.trim()}`);
  });
  $("switch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send(`switch ${$("switch-input").value.trim()}`);
  });

  let digits = "";  // the PIN pad's entry: shown as dots, sent once, never echoed back
  function showDigits() { $("keypad-display").textContent = "•".repeat(digits.length); }
  for (const key of $("keypad").querySelectorAll("button[data-key]")) {
    key.addEventListener("click", () => {
      const k = key.dataset.key;
      if (k === "back") digits = digits.slice(0, -1);
      else if (k === "ok") {
        if (digits) send(`keypad ${digits}`, `keypad: ${digits.length} digits`);
        digits = "";
      } else if (digits.length < 12) digits += k;
      showDigits();
    });
  }
})();
