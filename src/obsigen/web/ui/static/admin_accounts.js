// Admin sections for accounts and tenant settings: users (create, deactivate, reactivate, grant
// and revoke roles), API keys (list, create, revoke), retention periods and the data map.
//
// Imported by admin.js and loaded on its own: its sections carry data-accounts-needs (not
// admin.js's data-needs) and show only when the caller's role has that permission; every API
// route checks again. Secrets (a generated password, a TOTP URI, a new key) are shown once in
// a box the admin closes, and never stored by the page.
import { ApiError, api, el, notice, session, show } from "./common.js";

const $ = (id) => document.getElementById(id);
const state = { me: null, roles: [], keysRevoked: false };
const PERIODS = ["conversations_days", "files_days", "artifacts_days", "audit_days"];
const SOURCES = { default: "the operator's default", tenant: "chosen here", operator: "set by the operator" };

const can = (permission) => Boolean(state.me?.permissions.includes(permission));
const cell = (text) => el("td", {}, text == null ? "" : String(text));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");

function failure(id, error) {
  const box = $(id);
  box.textContent = error ? error.message : "";
  box.hidden = !error;
}

// A role's permissions within the caller's own: only those can be handed out (the API refuses
// the rest; the page just does not offer them).
function grantable(role) {
  return role.permissions.every((p) => state.me.permissions.includes(p));
}

function fillSelect(select, roles, preferred) {
  select.replaceChildren(...roles.map((r) => el("option", { value: r.name }, r.builtin ? r.name : `${r.name} (custom)`)));
  if (roles.some((r) => r.name === preferred)) select.value = preferred;
}

async function loadRoles() {
  state.roles = (await api("/api/v1/roles")).filter(grantable);
  fillSelect($("user-role"), state.roles, "member");
  // A key can never prove a second factor, so no role needing one can be a key's.
  fillSelect($("apikey-role"), state.roles.filter((r) => !r.mfa_required), "member");
}

// --- users -----------------------------------------------------------------------------------

function roleControls(user) {
  const chips = user.roles.map((binding) => {
    const label = binding.scope === "tenant" ? binding.role : `${binding.role} (${binding.scope})`;
    if (!can("tenant:roles:manage")) return el("span", { class: "chip" }, label);
    const revoke = el("button", { type: "button", class: "ghost small", "aria-label": `Revoke ${binding.role} from ${user.email}` }, "×");
    revoke.addEventListener("click", () =>
      act(`${binding.role} revoked from ${user.email}`, () =>
        api(`/api/v1/users/${encodeURIComponent(user.id)}/roles/${encodeURIComponent(binding.role)}`, {
          method: "DELETE",
          query: { scope: binding.scope },
        }),
      ),
    );
    return el("span", { class: "chip" }, label, revoke);
  });
  const parts = [el("div", { class: "row" }, ...chips)];
  if (can("tenant:roles:manage")) {
    const id = `grant-${user.id}`;
    const select = el("select", { id, class: "inline" });
    fillSelect(select, state.roles.filter((r) => !user.roles.some((b) => b.role === r.name)), "");
    const grant = el("button", { type: "button", class: "ghost" }, `Grant role to ${user.email}`);
    grant.addEventListener("click", () =>
      act(`${select.value} granted to ${user.email}`, () =>
        api(`/api/v1/users/${encodeURIComponent(user.id)}/roles`, { method: "POST", body: { role: select.value, scope: "tenant" } }),
      ),
    );
    grant.disabled = select.options.length === 0;
    parts.push(el("div", { class: "row" }, el("label", { for: id, class: "visually-hidden" }, `Role to grant to ${user.email}`), select, grant));
  }
  return el("td", {}, ...parts);
}

function statusButton(user) {
  const active = user.status === "active";
  const verb = active ? "Deactivate" : "Reactivate";
  const button = el("button", { type: "button", class: active ? "ghost danger" : "ghost" }, `${verb} ${user.email}`);
  button.hidden = user.id === state.me.id && active;
  button.addEventListener("click", () => {
    if (active && !window.confirm(`Deactivate ${user.email}? Their sessions end and their API keys are revoked now.`)) return;
    act(`${user.email}: ${active ? "deactivated" : "reactivated"}`, () =>
      api(`/api/v1/users/${encodeURIComponent(user.id)}/${active ? "deactivate" : "reactivate"}`, { method: "POST" }),
    );
  });
  return button;
}

async function loadUsers() {
  const users = await api("/api/v1/users", { query: { limit: 500 } });
  $("accounts-body").replaceChildren(
    ...users.map((u) =>
      el("tr", { "data-id": u.id, "data-status": u.status }, cell(u.email), cell(u.status), roleControls(u), el("td", {}, statusButton(u))),
    ),
  );
}

// Runs one change, says how it went, and shows the tables as they now are.
async function act(done, work) {
  failure("accounts-error", null);
  try {
    await work();
    notice(done, "success");
  } catch (error) {
    failure("accounts-error", error);
  }
  await loadUsers().catch((error) => failure("accounts-error", error));
}

function showOnce(boxId, rows) {
  const list = $(`${boxId}-list`);
  list.replaceChildren(...rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, el("code", {}, value))]));
  show(boxId, true);
  $(boxId).focus();
}

function bindUsers() {
  const form = $("user-create-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    failure("accounts-error", null);
    const password = form.elements.password.value;
    try {
      const made = await api("/api/v1/users", {
        method: "POST",
        body: { email: form.elements.email.value.trim(), role: form.elements.role.value, password: password || null },
      });
      form.reset();
      fillSelect($("user-role"), state.roles, "member");
      const rows = [["E-mail", made.email]];
      if (made.initial_password) rows.push(["Generated password", made.initial_password]);
      if (made.otpauth_uri) rows.push(["Authenticator (TOTP) URI", made.otpauth_uri]);
      showOnce("user-created", rows);
      notice(`${made.email} created`, "success");
    } catch (error) {
      failure("accounts-error", error);
    }
    await loadUsers().catch((error) => failure("accounts-error", error));
  });
  $("user-created-done").addEventListener("click", () => {
    $("user-created-list").replaceChildren();
    show("user-created", false);
  });
}

// --- API keys --------------------------------------------------------------------------------

async function loadKeys() {
  const listing = await api("/api/v1/api-keys", { query: { include_revoked: state.keysRevoked } });
  const days = $("apikey-days");
  days.max = String(listing.max_days);
  if (Number(days.value) > listing.max_days) days.value = String(listing.max_days);
  $("apikey-days-hint").textContent = `At most ${listing.max_days} days.`;
  $("apikeys-body").replaceChildren(
    ...listing.data.map((k) => {
      const revoke = el("button", { type: "button", class: "ghost danger" }, `Revoke ${k.name}`);
      revoke.hidden = k.state === "revoked";
      revoke.addEventListener("click", async () => {
        if (!window.confirm(`Revoke the API key "${k.name}"? Programs using it stop working now.`)) return;
        failure("apikeys-error", null);
        try {
          await api(`/api/v1/api-keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
          notice(`API key ${k.name} revoked`, "success");
        } catch (error) {
          failure("apikeys-error", error);
        }
        await loadKeys().catch((error) => failure("apikeys-error", error));
      });
      return el("tr", { "data-id": k.id, "data-state": k.state }, cell(k.name), cell(k.roles.join(", ")), cell(k.state), cell(when(k.expires_at)), cell(when(k.last_used_at)), el("td", {}, revoke));
    }),
  );
  show("apikeys-empty", listing.data.length === 0);
}

function bindKeys() {
  const form = $("apikey-create-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    failure("apikeys-error", null);
    try {
      const days = form.elements.days.value;
      const made = await api("/api/v1/api-keys", {
        method: "POST",
        body: { name: form.elements.name.value.trim(), role: form.elements.role.value, expires_in_days: days ? Number(days) : null },
      });
      form.elements.name.value = "";
      showOnce("apikey-created", [["Name", made.name], ["Key", made.key], ["Expires", when(made.expires_at)]]);
      notice(`API key ${made.name} created`, "success");
    } catch (error) {
      failure("apikeys-error", error);
    }
    await loadKeys().catch((error) => failure("apikeys-error", error));
  });
  $("apikey-created-done").addEventListener("click", () => {
    $("apikey-created-list").replaceChildren();
    show("apikey-created", false);
  });
  $("apikeys-revoked").addEventListener("change", (event) => {
    state.keysRevoked = event.target.checked;
    loadKeys().catch((error) => failure("apikeys-error", error));
  });
}

// --- retention and the data map --------------------------------------------------------------

function fillRetention(periods) {
  const editable = can("tenant:retention:manage");
  for (const name of PERIODS) {
    const p = periods[name];
    const input = $(`retention-${name}`);
    input.min = String(p.min);
    input.max = String(p.max);
    input.value = p.tenant_value == null || p.locked ? "" : String(p.tenant_value);
    input.placeholder = `${p.days}`;
    input.disabled = p.locked || !editable;
    input.closest("div").dataset.source = p.source;
    $(`retention-${name}-hint`).textContent = p.locked
      ? `${p.days} days, set by the operator (cannot be changed here).`
      : `Now ${p.days} days (${SOURCES[p.source]}); ${p.min} to ${p.max} allowed. Empty: the default.`;
  }
  show("retention-save", editable);
}

async function loadRetention() {
  fillRetention(await api("/api/v1/retention"));
}

function bindRetention() {
  $("retention-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    failure("retention-error", null);
    const body = {};
    for (const name of PERIODS) {
      const input = $(`retention-${name}`);
      body[name] = input.disabled || input.value === "" ? null : Number(input.value);
    }
    try {
      fillRetention(await api("/api/v1/retention", { method: "PUT", body }));
      notice("Retention periods saved", "success");
    } catch (error) {
      failure("retention-error", error);
    }
  });
}

async function loadDataMap() {
  const map = await api("/api/v1/admin/doctor");
  $("data-map-region").textContent = `Deployment region: ${map.residency_region}`;
  $("data-map-body").replaceChildren(...map.rows.map((r) => el("tr", {}, cell(r.data), cell(r.stored), cell(r.region), cell(r.retention), cell(r.encryption))));
}

// --- loading ---------------------------------------------------------------------------------

const loaders = {
  accounts: async () => {
    await loadRoles();
    await loadUsers();
  },
  "api-keys": async () => {
    if (!state.roles.length) await loadRoles();
    await loadKeys();
  },
  retention: loadRetention,
  "data-map": loadDataMap,
};

async function loadAll() {
  let stepUp = false;
  for (const section of document.querySelectorAll("section[data-accounts-needs]")) {
    section.hidden = !can(section.dataset.accountsNeeds);
    if (section.hidden) continue;
    try {
      await loaders[section.id]();
    } catch (error) {
      if (error instanceof ApiError && error.slug === "mfa-required") stepUp = true;
      else notice(error.message, "error");
    }
  }
  if (stepUp) show("stepup", true);
  document.body.dataset.accountsReady = "true";
}

// admin.js runs the step-up form; when it closes the box after a successful step-up, these
// sections load again with the stronger session.
function reloadAfterStepUp() {
  const box = $("stepup");
  let wasShown = !box.hidden;
  new MutationObserver(() => {
    if (wasShown && box.hidden) loadAll();
    wasShown = !box.hidden;
  }).observe(box, { attributes: true, attributeFilter: ["hidden"] });
}

async function main() {
  if (!session()) return; // admin.js sends the browser to the login page
  state.me = await api("/auth/me");
  bindUsers();
  bindKeys();
  bindRetention();
  reloadAfterStepUp();
  await loadAll();
}

main().catch((error) => {
  if (error instanceof ApiError && error.status === 401) return;
  notice(error.message || String(error), "error");
});
