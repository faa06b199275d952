// fleetpy dashboard: renders the view fleetd sends over server-sent events (/events):
// the whole view on connecting, then patches of the rows that changed.
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

function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }

// A table whose rows belong to keyed items (a machine, a unit: a unit has one row per
// machine it is on), kept in key order; a patch replaces, adds or removes only its items' rows.
class Keyed {
  constructor(id, cols, none, key, rows, changed) {
    Object.assign(this, { id, cols, none, key, rows, changed, items: new Map(), trs: new Map(), keys: [] });
  }
  get tbody() { return document.querySelector("#" + this.id + " tbody"); }
  reset(list) {
    if (this.changed) for (const x of list) this.changed(null, x);
    this.items = new Map(list.map(x => [x[this.key], x]));
    this.keys = [...this.items.keys()].sort(cmp);
    this.trs = new Map(this.keys.map(k => [k, this.rows(this.items.get(k))]));
    fill(this.id, this.keys.flatMap(k => this.trs.get(k)), this.cols, this.none);
  }
  where(k) {  // index of k in the sorted keys, or of where it would go
    let lo = 0, hi = this.keys.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (cmp(this.keys[mid], k) < 0) lo = mid + 1; else hi = mid; }
    return lo;
  }
  patch(set, del) {
    const tbody = this.tbody;
    if (!this.keys.length && (set || []).length) tbody.replaceChildren();
    for (const k of del || []) {
      if (!this.items.has(k)) continue;
      if (this.changed) this.changed(this.items.get(k), null);
      this.items.delete(k);
      for (const tr of this.trs.get(k)) tr.remove();
      this.trs.delete(k);
      this.keys.splice(this.where(k), 1);
    }
    for (const x of set || []) {
      const k = x[this.key], trs = this.rows(x), old = this.trs.get(k);
      if (this.changed) this.changed(this.items.get(k) || null, x);
      if (old) {
        old[0].before(...trs);
        for (const tr of old) tr.remove();
      } else {
        const i = this.where(k);
        const next = i < this.keys.length ? this.trs.get(this.keys[i])[0] : null;
        for (const tr of trs) tbody.insertBefore(tr, next);
        this.keys.splice(i, 0, k);
      }
      this.items.set(k, x);
      this.trs.set(k, trs);
    }
    if (!this.keys.length) fill(this.id, [], this.cols, this.none);
  }
}

// The units on each machine (for the machines table), from the units' placements: a
// machine's row is drawn again when one of its units changes, never sent again.
const onMachine = new Map();  // machine id -> Map(unit name -> active state)
const touched = new Set();  // machines whose units changed in this update
function placed(before, after) {
  for (const p of before ? before.placements : []) {
    const on = onMachine.get(p.machine);
    if (on) on.delete(before.name);
    touched.add(p.machine);
  }
  for (const p of after ? after.placements : []) {
    if (!onMachine.has(p.machine)) onMachine.set(p.machine, new Map());
    onMachine.get(p.machine).set(after.name, p.active);
    touched.add(p.machine);
  }
}

function machineRows(m) {
  const units = [...(onMachine.get(m.id) || new Map())].sort((a, b) => cmp(a[0], b[0]));
  return [el("tr", { "data-machine": m.id },
    td("id", el("span", { class: "mono", title: m.id }, short(m.id)),
       m.leader ? el("span", { class: "leader" }, " engine leader") : ""),
    td("ip", m.ip),
    td("metadata", ...Object.entries(m.metadata).map(([k, v]) => el("span", { class: "tag" }, k + "=" + v))),
    td("state", el("span", { class: "state-" + m.state }, m.state)),
    td("units", ...units.map(([name, active]) => el("span", { class: "tag active-" + (active || "none") },
                                                     unitLink(name)))))];
}

function unitRows(u) {
  const places = u.placements.length ? u.placements : [null];
  return places.map(p => el("tr", { "data-unit": u.name, "data-machine": p ? p.machine : "" },
    td("name", unitLink(u.name)),
    td("desired", u.desired),
    td("state", p ? p.state : "inactive"),
    td("machine", p ? el("span", { class: "mono", title: p.machine }, short(p.machine) + "/" + p.ip)
                    : (u.waiting ? "waiting" : "-")),
    td("active", el("span", { class: "active-" + (p ? p.active : "") }, p ? p.active || "-" : "-")),
    td("sub", p ? p.sub || "-" : "-"),
    td("hash", el("span", { class: "mono", title: u.hash }, u.hash.slice(0, 7)))));
}

const tables = {
  machines: new Keyed("machines", 5, "no machines", "id", machineRows),
  units: new Keyed("units", 7, "no units", "name", unitRows, placed),
  waiting: new Keyed("waiting", 2, "nothing waits", "name", w => [el("tr", { "data-unit": w.name },
    td("name", unitLink(w.name)), td("reason", w.reason))]),
};

function renderPlacements(list) {
  fill("placements", list.map(p => el("tr", { "data-unit": p.unit },
    td("at", new Date(p.at * 1000).toLocaleTimeString()), td("unit", unitLink(p.unit)),
    td("machine", el("span", { class: "mono", title: p.machine }, short(p.machine))),
    td("action", p.action))), 4, "none yet");
}

function renderHeader(s) {
  document.getElementById("machine-count").textContent = "(" + tables.machines.items.size + ")";
  document.getElementById("unit-count").textContent = "(" + tables.units.items.size + ")";
  document.getElementById("waiting-count").textContent = "(" + tables.waiting.items.size + ")";
  const here = tables.machines.items.get(s.this_machine);
  document.getElementById("served-by").textContent =
    "served by " + short(s.this_machine) + (here ? " (" + here.ip + ")" : "");
}

function renderUnit(name) {
  const u = tables.units.items.get(name);
  document.getElementById("unit-name").textContent = name;
  const dl = document.getElementById("unit-status");
  dl.replaceChildren();
  const facts = u ? [["desired", u.desired], ["hash", u.hash],
                     ["waiting", u.waiting || "no"]] : [["unit", "not in the cluster"]];
  for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", { "data-field": k }, v));
  fill("unit-placements", (u ? u.placements : []).map(p => el("tr", { "data-machine": p.machine },
    td("machine", el("a", { class: "mono", title: "its journal",
                            href: "#unit/" + encodeURIComponent(name) + "/" + encodeURIComponent(p.machine) },
                     p.machine)), td("ip", p.ip), td("state", p.state),
    td("load", p.load), td("active", el("span", { class: "active-" + p.active }, p.active)),
    td("sub", p.sub), td("hash", el("span", { class: "mono" }, p.hash.slice(0, 7))))), 7, "not scheduled");
}

let journalTimer = null;
async function loadJournal(name, machine) {
  const where = document.getElementById("journal-where");
  try {
    const r = await fetch("/api/journal/" + encodeURIComponent(name) +
                          (machine ? "?machine=" + encodeURIComponent(machine) : ""));
    const j = await r.json();
    if (currentUnit() !== name || currentMachine() !== machine) return;
    where.textContent = j.error ? "" : j.message || ("on " + short(j.machine));
    document.getElementById("journal").textContent = j.error ? j.error.message : j.lines;
  } catch (e) {
    document.getElementById("journal").textContent = "cannot load the journal: " + e;
  }
}

// #unit/NAME or #unit/NAME/MACHINE (the journal of NAME on MACHINE): both parts encoded.
function hashParts() {
  const h = location.hash;
  return h.startsWith("#unit/") ? h.slice(6).split("/").map(decodeURIComponent) : null;
}
function currentUnit() { const p = hashParts(); return p ? p[0] : null; }
function currentMachine() { const p = hashParts(); return p && p[1] ? p[1] : ""; }

function render() {
  const name = currentUnit();
  document.getElementById("cluster").hidden = name !== null;
  document.getElementById("unit").hidden = name === null;
  if (state && name !== null) renderUnit(name);
}

function route() {
  clearInterval(journalTimer);
  const name = currentUnit(), machine = currentMachine();
  if (name !== null) {
    document.getElementById("journal").textContent = "";
    loadJournal(name, machine);
    journalTimer = setInterval(() => loadJournal(name, machine), 3000);
  }
  render();
}

// The whole view on connecting (and on reconnecting), then patches (fleetpy/dashboard/patch.py).
function onView(s) {
  state = { this_machine: s.this_machine, leader: s.leader };
  onMachine.clear();
  for (const name of ["units", "machines", "waiting"]) tables[name].reset(s[name]);
  touched.clear();
  renderPlacements(s.placements);
  renderHeader(state);
}

function onPatch(p) {
  for (const name of ["units", "machines", "waiting"]) {
    const set = (p.set || {})[name], del = (p.del || {})[name];
    if (set || del) tables[name].patch(set, del);
  }
  for (const m of (p.set || {}).machines || []) touched.delete(m.id);  // drawn already
  const machines = tables.machines;
  tables.machines.patch([...touched].filter(id => machines.items.has(id)).map(id => machines.items.get(id)));
  touched.clear();
  if ("this_machine" in p) state.this_machine = p.this_machine;
  if ("leader" in p) state.leader = p.leader;
  if ("placements" in p) renderPlacements(p.placements);
  renderHeader(state);
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/events");
  events.onopen = () => { live.textContent = "live"; live.classList.remove("off"); };
  events.onerror = () => { live.textContent = "reconnecting"; live.classList.add("off"); };
  const apply = (how) => (m) => {
    if (how === onPatch && !state) return;  // a patch before any view: wait for the view
    how(JSON.parse(m.data));
    const count = (k) => { document.body.dataset[k] = String((+document.body.dataset[k] || 0) + 1); };
    count("version");
    count(how === onView ? "views" : "patches");
    render();
  };
  events.addEventListener("view", apply(onView));
  events.addEventListener("patch", apply(onPatch));
}

window.addEventListener("hashchange", route);
route();
connect();
