// fleetpy dashboard: renders the view fleetd sends over server-sent events (/events).
// No framework, no build step. Rows carry data-* attributes for tests and scripts.
"use strict";

let state = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function td(field, ...children) { return el("td", { "data-field": field }, ...children); }
function short(id) { return (id || "").slice(0, 8); }
function unitLink(name) { return el("a", { href: "#unit/" + encodeURIComponent(name) }, name); }
function empty(tbody, cols, text) {
  tbody.append(el("tr", {}, el("td", { colspan: cols, class: "empty" }, text)));
}

function fill(id, rows, cols, none) {
  const tbody = document.querySelector("#" + id + " tbody");
  tbody.replaceChildren();
  if (!rows.length) empty(tbody, cols, none);
  for (const r of rows) tbody.append(r);
}

function machineRows(s) {
  return s.machines.map(m => el("tr", { "data-machine": m.id },
    td("id", el("span", { class: "mono", title: m.id }, short(m.id)),
       m.leader ? el("span", { class: "leader" }, " engine leader") : ""),
    td("ip", m.ip),
    td("metadata", ...Object.entries(m.metadata).map(([k, v]) => el("span", { class: "tag" }, k + "=" + v))),
    td("state", el("span", { class: "state-" + m.state }, m.state)),
    td("units", ...m.units.map(u => el("span", { class: "tag active-" + (u.active || "none") }, unitLink(u.name))))));
}

function unitRows(s) {
  const rows = [];
  for (const u of s.units) {
    const places = u.placements.length ? u.placements : [null];
    for (const p of places) {
      rows.push(el("tr", { "data-unit": u.name, "data-machine": p ? p.machine : "" },
        td("name", unitLink(u.name)),
        td("desired", u.desired),
        td("state", p ? p.state : "inactive"),
        td("machine", p ? el("span", { class: "mono", title: p.machine }, short(p.machine) + "/" + p.ip)
                        : (u.waiting ? "waiting" : "-")),
        td("active", el("span", { class: "active-" + (p ? p.active : "") }, p ? p.active || "-" : "-")),
        td("sub", p ? p.sub || "-" : "-"),
        td("hash", el("span", { class: "mono", title: u.hash }, u.hash.slice(0, 7)))));
    }
  }
  return rows;
}

function renderCluster(s) {
  fill("machines", machineRows(s), 5, "no machines");
  fill("units", unitRows(s), 7, "no units");
  fill("waiting", s.waiting.map(w => el("tr", { "data-unit": w.name },
    td("name", unitLink(w.name)), td("reason", w.reason))), 2, "nothing waits");
  fill("placements", s.placements.map(p => el("tr", { "data-unit": p.unit },
    td("at", new Date(p.at * 1000).toLocaleTimeString()), td("unit", unitLink(p.unit)),
    td("machine", el("span", { class: "mono", title: p.machine }, short(p.machine))),
    td("action", p.action))), 4, "none yet");
  document.getElementById("machine-count").textContent = "(" + s.machines.length + ")";
  document.getElementById("unit-count").textContent = "(" + s.units.length + ")";
  document.getElementById("waiting-count").textContent = "(" + s.waiting.length + ")";
  const here = s.machines.find(m => m.id === s.this_machine);
  document.getElementById("served-by").textContent =
    "served by " + short(s.this_machine) + (here ? " (" + here.ip + ")" : "");
}

function renderUnit(s, name) {
  const u = s.units.find(x => x.name === name);
  document.getElementById("unit-name").textContent = name;
  const dl = document.getElementById("unit-status");
  dl.replaceChildren();
  const facts = u ? [["desired", u.desired], ["hash", u.hash],
                     ["waiting", u.waiting || "no"]] : [["unit", "not in the cluster"]];
  for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", { "data-field": k }, v));
  fill("unit-placements", (u ? u.placements : []).map(p => el("tr", { "data-machine": p.machine },
    td("machine", el("span", { class: "mono" }, p.machine)), td("ip", p.ip), td("state", p.state),
    td("load", p.load), td("active", el("span", { class: "active-" + p.active }, p.active)),
    td("sub", p.sub), td("hash", el("span", { class: "mono" }, p.hash.slice(0, 7))))), 7, "not scheduled");
}

let journalTimer = null;
async function loadJournal(name) {
  try {
    const r = await fetch("/api/journal/" + encodeURIComponent(name));
    const j = await r.json();
    if (currentUnit() !== name) return;
    document.getElementById("journal-where").textContent = j.error ? "" : j.message || ("on " + short(j.machine));
    document.getElementById("journal").textContent = j.error ? j.error.message : (j.here ? j.lines : "");
  } catch (e) {
    document.getElementById("journal").textContent = "cannot load the journal: " + e;
  }
}

function currentUnit() {
  const h = location.hash;
  return h.startsWith("#unit/") ? decodeURIComponent(h.slice(6)) : null;
}

function render() {
  const name = currentUnit();
  document.getElementById("cluster").hidden = name !== null;
  document.getElementById("unit").hidden = name === null;
  if (!state) return;
  if (name === null) renderCluster(state); else renderUnit(state, name);
}

function route() {
  clearInterval(journalTimer);
  const name = currentUnit();
  if (name !== null) {
    document.getElementById("journal").textContent = "";
    loadJournal(name);
    journalTimer = setInterval(() => loadJournal(name), 3000);
  }
  render();
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/events");
  events.onopen = () => { live.textContent = "live"; live.classList.remove("off"); };
  events.onerror = () => { live.textContent = "reconnecting"; live.classList.add("off"); };
  events.onmessage = (m) => {
    state = JSON.parse(m.data);
    document.body.dataset.version = String((+document.body.dataset.version || 0) + 1);
    render();
  };
}

window.addEventListener("hashchange", route);
route();
connect();
