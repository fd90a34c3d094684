// The admin page's identity providers, group mappings and tool policy: list, add, edit, delete.
//
// Everything goes through the same API routes as any other client (an admin session with a
// second factor), so the page adds no permission of its own. A refusal is shown from its
// problem document: the detail and, for a validation error, each field's message.
import { api, el, notice } from "./common.js";

const $ = (id) => document.getElementById(id);
const data = (x) => (Array.isArray(x) ? x : x?.data || []);

// Starting points for the protocol configuration; the server validates whatever is sent.
const TEMPLATES = {
  oidc: {
    issuer: "https://login.example.eu/realms/staff",
    client_id: "obsigen",
    client_secret: "env:OIDC_CLIENT_SECRET",
    scopes: ["openid", "email", "profile"],
    groups_claim: "groups",
  },
  saml: {
    idp_metadata_xml: "<md:EntityDescriptor …>",
    pinned_certificates_sha256: [],
    groups_attribute: "groups",
    email_attribute: "email",
  },
};

const state = { idps: [], editing: null, source: null, bound: false };

function cell(text) {
  return el("td", {}, text == null ? "" : String(text));
}

// The problem's detail, then one line per invalid field ("rules.0.tools: …").
function showProblem(box, error) {
  const lines = (error.problem?.errors || []).map((e) => {
    const where = (e.loc || []).filter((part) => part !== "body").join(".");
    return el("li", {}, where ? `${where}: ${e.msg}` : e.msg);
  });
  const parts = [el("span", {}, error.message)];
  if (lines.length) parts.push(el("ul", {}, ...lines));
  box.replaceChildren(...parts);
  box.hidden = false;
}

function clearProblem(box) {
  box.replaceChildren();
  box.hidden = true;
}

// A button that deletes on its second press: no modal dialog, and keyboard users get the same.
function deleteButton(label, run) {
  const button = el("button", { type: "button", class: "ghost danger" }, `Delete ${label}`);
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = `Confirm: delete ${label}`;
      armed = setTimeout(() => {
        armed = null;
        button.textContent = `Delete ${label}`;
      }, 6000);
      return;
    }
    clearTimeout(armed);
    button.disabled = true;
    try {
      await run();
    } catch (error) {
      notice(error.message, "error");
      button.disabled = false;
    }
  });
  return button;
}

// --- identity providers ----------------------------------------------------------------------

function idpRow(idp) {
  const edit = el("button", { type: "button", class: "ghost" }, `Edit ${idp.display_name}`);
  edit.addEventListener("click", () => editIdp(idp));
  const remove = deleteButton(idp.display_name, async () => {
    await api(`/api/v1/idps/${encodeURIComponent(idp.id)}`, { method: "DELETE" });
    notice(`Identity provider ${idp.display_name} deleted.`, "success");
    if (state.editing === idp.id) resetIdpForm();
    await loadFederation();
  });
  const switches = [idp.enabled ? "enabled" : "disabled", idp.jit_provisioning && "JIT", idp.trust_idp_mfa && "trusts IdP MFA"];
  return el(
    "tr",
    { "data-id": idp.id },
    el("td", {}, el("strong", {}, idp.display_name), el("br"), el("code", {}, idp.slug)),
    cell(idp.protocol.toUpperCase()),
    cell(idp.domains.join(", ")),
    cell(switches.filter(Boolean).join(", ")),
    el("td", { class: "row" }, edit, remove),
  );
}

function fillTemplate() {
  const form = $("idp-form");
  form.elements.config.value = JSON.stringify(TEMPLATES[form.elements.protocol.value], null, 2);
}

function resetIdpForm() {
  const form = $("idp-form");
  form.reset();
  state.editing = null;
  form.elements.slug.disabled = false;
  form.elements.protocol.disabled = false;
  fillTemplate();
  $("idp-form-title").textContent = "Add an identity provider";
  $("idp-submit").textContent = "Add identity provider";
  $("idp-cancel").hidden = true;
  clearProblem($("idp-error"));
}

function editIdp(idp) {
  const form = $("idp-form");
  state.editing = idp.id;
  form.elements.slug.value = idp.slug;
  form.elements.slug.disabled = true;
  form.elements.protocol.value = idp.protocol;
  form.elements.protocol.disabled = true;
  form.elements.display_name.value = idp.display_name;
  form.elements.domains.value = idp.domains.join(", ");
  form.elements.default_role.value = idp.default_role || "";
  form.elements.enabled.checked = idp.enabled;
  form.elements.jit_provisioning.checked = idp.jit_provisioning;
  form.elements.trust_idp_mfa.checked = idp.trust_idp_mfa;
  form.elements.config.value = JSON.stringify(idp.config, null, 2);
  $("idp-form-title").textContent = `Edit ${idp.display_name}`;
  $("idp-submit").textContent = "Save changes";
  $("idp-cancel").hidden = false;
  clearProblem($("idp-error"));
  form.elements.display_name.focus();
}

async function submitIdp(event) {
  event.preventDefault();
  const form = $("idp-form");
  const box = $("idp-error");
  clearProblem(box);
  let config;
  try {
    config = JSON.parse(form.elements.config.value);
  } catch (error) {
    showProblem(box, { message: `Protocol configuration: not valid JSON (${error.message})` });
    form.elements.config.focus();
    return;
  }
  const body = {
    display_name: form.elements.display_name.value.trim(),
    domains: form.elements.domains.value.split(/[\s,]+/).filter(Boolean),
    default_role: form.elements.default_role.value.trim() || null,
    enabled: form.elements.enabled.checked,
    jit_provisioning: form.elements.jit_provisioning.checked,
    trust_idp_mfa: form.elements.trust_idp_mfa.checked,
    config,
  };
  const editing = state.editing;
  try {
    let saved;
    if (editing) {
      saved = await api(`/api/v1/idps/${encodeURIComponent(editing)}`, { method: "PATCH", body });
    } else {
      body.slug = form.elements.slug.value.trim();
      body.protocol = form.elements.protocol.value;
      saved = await api("/api/v1/idps", { method: "POST", body });
    }
    notice(`Identity provider ${saved.display_name} ${editing ? "saved" : "added"}.`, "success");
    resetIdpForm();
    await loadFederation();
  } catch (error) {
    showProblem(box, error);
  }
}

// --- group mappings ------------------------------------------------------------------------

function sourceName(source) {
  if (source === "scim") return "SCIM";
  const idp = state.idps.find((i) => `idp:${i.id}` === source);
  return idp ? idp.display_name : source;
}

function mappingRow(m) {
  const label = `${m.group} → ${m.role}`;
  const remove = deleteButton(`mapping ${label}`, async () => {
    await api(`/api/v1/group-mappings/${encodeURIComponent(m.id)}`, { method: "DELETE" });
    notice(`Mapping ${label} deleted.`, "success");
    await loadFederation();
  });
  return el("tr", { "data-id": m.id }, cell(sourceName(m.source)), cell(m.group), cell(m.role), el("td", {}, remove));
}

async function submitMapping(event) {
  event.preventDefault();
  const form = $("mapping-form");
  const box = $("mapping-error");
  clearProblem(box);
  const body = {
    source: form.elements.source.value,
    group: form.elements.group.value.trim(),
    role: form.elements.role.value.trim(),
  };
  try {
    await api("/api/v1/group-mappings", { method: "POST", body });
    notice(`Group ${body.group} now maps to ${body.role}.`, "success");
    form.elements.group.value = "";
    await loadFederation();
  } catch (error) {
    showProblem(box, error);
  }
}

async function loadRoleNames() {
  // Suggestions only: a caller without tenant:users:read still types the role's name.
  try {
    const roles = data(await api("/api/v1/roles"));
    $("role-names").replaceChildren(...roles.map((r) => el("option", { value: r.name })));
  } catch {
    $("role-names").replaceChildren();
  }
}

async function loadFederation() {
  const [idps, mappings] = await Promise.all([api("/api/v1/idps"), api("/api/v1/group-mappings")]);
  state.idps = data(idps);
  $("idps-body").replaceChildren(...state.idps.map(idpRow));
  $("idps-empty").hidden = state.idps.length > 0;
  const rows = data(mappings);
  $("mappings-body").replaceChildren(...rows.map(mappingRow));
  $("mappings-empty").hidden = rows.length > 0;
  const source = $("mapping-source");
  source.replaceChildren(
    ...state.idps.map((i) => el("option", { value: `idp:${i.id}` }, `${i.display_name} (${i.protocol.toUpperCase()})`)),
    el("option", { value: "scim" }, "SCIM groups"),
  );
  // What the admin picked stays picked; otherwise the first IdP (SCIM when there is none).
  if ([...source.options].some((o) => o.value === state.source)) source.value = state.source;
}

// --- tool policy ---------------------------------------------------------------------------

async function loadPolicy(me) {
  const policy = await api("/api/v1/tool-policy");
  const canEdit = Boolean(me?.permissions?.includes("tenant:tool_policy:manage"));
  $("policy-version").textContent = policy.version ? `Version ${policy.version}` : "Built-in policy (version 0)";
  $("policy-doc").value = JSON.stringify(policy.document, null, 2);
  $("policy-doc").readOnly = !canEdit;
  $("policy-save").hidden = !canEdit;
}

async function submitPolicy(event) {
  event.preventDefault();
  const box = $("policy-error");
  clearProblem(box);
  let document_;
  try {
    document_ = JSON.parse($("policy-doc").value);
  } catch (error) {
    showProblem(box, { message: `Not valid JSON (${error.message})` });
    $("policy-doc").focus();
    return;
  }
  try {
    const saved = await api("/api/v1/tool-policy", { method: "PUT", body: document_ });
    notice(`Tool policy saved as version ${saved.version}.`, "success");
    $("policy-version").textContent = `Version ${saved.version}`;
    $("policy-doc").value = JSON.stringify(saved.document, null, 2);
  } catch (error) {
    showProblem(box, error);
    $("policy-doc").focus();
  }
}

function bind() {
  if (state.bound) return;
  state.bound = true;
  $("idp-form").addEventListener("submit", submitIdp);
  $("idp-protocol").addEventListener("change", fillTemplate);
  $("idp-cancel").addEventListener("click", resetIdpForm);
  $("mapping-form").addEventListener("submit", submitMapping);
  $("mapping-source").addEventListener("change", (event) => {
    state.source = event.target.value;
  });
  $("policy-form").addEventListener("submit", submitPolicy);
  fillTemplate();
}

// admin.js runs each loader when the caller's role holds its permission (again after a step-up).
export const loaders = {
  "tenant:federation:manage": async () => {
    bind();
    await Promise.all([loadFederation(), loadRoleNames()]);
  },
  "tenant:tool_policy:read": async (me) => {
    bind();
    await loadPolicy(me);
  },
};
