// The admin page: approvals queue, audit search and export, read-only tenant settings.
import { ApiError, api, downloadBlob, el, initShell, notice, saveTokens, show, start } from "./common.js";
import { loaders as federationLoaders } from "./admin_federation.js";
import { initSecurityKeys, securityKeyStepUp, webauthnAvailable } from "./webauthn.js";
import "./admin_accounts.js";

const $ = (id) => document.getElementById(id);
const audit = { events: [], filters: {}, next: null };

function needsStepUp(error) {
  return error instanceof ApiError && error.slug === "mfa-required";
}

function cell(text) {
  return el("td", {}, text == null ? "" : String(text));
}

async function loadApprovals() {
  const rows = await api("/api/v1/approvals", { query: { status: "pending" } });
  $("approvals-body").replaceChildren(
    ...rows.map((a) => {
      const decide = (verb) => {
        const button = el("button", { type: "button", class: verb === "approve" ? "" : "ghost" }, `${verb === "approve" ? "Approve" : "Deny"} ${a.tool}`);
        button.addEventListener("click", async () => {
          button.disabled = true;
          try {
            const done = await api(`/api/v1/approvals/${encodeURIComponent(a.id)}/${verb}`, { method: "POST" });
            notice(`${a.tool}: ${done.status}${done.result ? ` (result: ${done.result})` : ""}`, "success");
          } catch (error) {
            notice(error.message, "error");
          }
          await loadApprovals();
        });
        return button;
      };
      return el(
        "tr",
        { "data-id": a.id },
        cell(a.tool),
        el("td", {}, el("code", {}, a.arguments)),
        cell(a.rule),
        cell(`${a.requested_by.kind} ${a.requested_by.id}`),
        cell(new Date(a.expires_at).toLocaleString()),
        el("td", { class: "row" }, decide("approve"), decide("deny")),
      );
    }),
  );
  show("approvals-empty", rows.length === 0);
}

function auditRow(e) {
  const target = e.target ? `${e.target.kind} ${e.target.id}` : "";
  return el("tr", {}, cell(e.seq), cell(e.time), cell(e.type), cell(e.outcome), cell(e.actor ? `${e.actor.kind} ${e.actor.id}` : ""), cell(target));
}

async function searchAudit(more = false) {
  $("audit-error").hidden = true;
  const query = { ...audit.filters, limit: 100 };
  if (more && audit.next) query.before_seq = audit.next;
  try {
    const page = await api("/api/v1/audit/events", { query });
    audit.events = more ? audit.events.concat(page.events) : page.events;
    audit.next = page.next_before_seq;
    if (more) $("audit-body").append(...page.events.map(auditRow));
    else $("audit-body").replaceChildren(...page.events.map(auditRow));
    $("audit-count").textContent = `${audit.events.length} event(s) shown`;
    $("audit-more").hidden = !audit.next;
    $("audit-export").disabled = audit.events.length === 0;
  } catch (error) {
    $("audit-error").textContent = error.message;
    $("audit-error").hidden = false;
  }
}

function bindAudit() {
  const form = $("audit-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    const time = (name) => (value(name) ? new Date(value(name)).toISOString() : "");
    audit.filters = { type: value("type"), outcome: value("outcome"), actor_id: value("actor_id"), since: time("since"), until: time("until") };
    searchAudit(false);
  });
  $("audit-more").addEventListener("click", () => searchAudit(true));
  $("audit-export").addEventListener("click", () => {
    const body = JSON.stringify({ filters: audit.filters, exported_at: new Date().toISOString(), events: audit.events }, null, 2);
    downloadBlob(new Blob([body], { type: "application/json" }), "audit-events.json");
  });
}

function list(id, items, text) {
  $(id).replaceChildren(...(items.length ? items.map((i) => el("li", {}, text(i))) : [el("li", { class: "muted" }, "None.")]));
}

const data = (x) => (Array.isArray(x) ? x : x?.data || []);

const loaders = {
  "tenant:approvals:decide": loadApprovals,
  "tenant:audit:read": () => searchAudit(false),
  "tenant:users:read": async () => {
    const [users, roles] = await Promise.all([api("/api/v1/users"), api("/api/v1/roles")]);
    $("users-body").replaceChildren(...data(users).map((u) => el("tr", {}, cell(u.email), cell(u.roles.map((r) => r.role).join(", ")))));
    list("roles-list", data(roles), (r) => `${r.name}${r.builtin ? " (built-in)" : ""}: ${r.permissions.length} permissions${r.mfa_required ? ", needs MFA" : ""}`);
  },
  ...federationLoaders,
};

async function loadAll(me) {
  let stepUp = false;
  for (const section of document.querySelectorAll("section[data-needs]")) {
    const permission = section.dataset.needs;
    section.hidden = !me.permissions.includes(permission);
    if (section.hidden) continue;
    try {
      await loaders[permission](me);
    } catch (error) {
      if (needsStepUp(error)) stepUp = true;
      else notice(error.message, "error");
    }
  }
  show("stepup", stepUp);
  if (stepUp) $("stepup-code").focus();
  document.body.dataset.ready = "true";
}

function bindStepUp(me) {
  const done = async (tokens) => {
    saveTokens(tokens);
    show("stepup", false);
    await loadAll(me);
  };
  const fail = (error) => {
    $("stepup-error").textContent = error.message;
    $("stepup-error").hidden = false;
  };
  $("stepup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await done(await api("/auth/mfa/step-up", { method: "POST", body: { totp: $("stepup-code").value.trim() } }));
    } catch (error) {
      fail(error);
    }
  });
  $("stepup-key").hidden = !webauthnAvailable();
  $("stepup-key").addEventListener("click", () => securityKeyStepUp().then(done, fail));
  initSecurityKeys(done);
}

async function main() {
  const me = await initShell();
  if (!me) return;
  bindAudit();
  bindStepUp(me);
  $("approvals-refresh").addEventListener("click", loadApprovals);
  await loadAll(me);
}

start(main);
