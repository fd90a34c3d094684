import { el, initTheme, saveTokens, session } from "./common.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const params = new URLSearchParams(location.search);

function target() {
  const next = params.get("next") || "";
  // Only our own pages: an open redirect would make the login page a phishing helper.
  return /^\/ui\/[a-z]*(#[a-z-]*)?$/.test(next) ? next : "/ui/chat";
}

async function discover() {
  const tenant = form.tenant.value.trim();
  const email = form.email.value.trim();
  const list = document.getElementById("sso-list");
  list.replaceChildren();
  document.getElementById("sso-title").hidden = true;
  if (!tenant || !email.includes("@")) return;
  const query = new URLSearchParams({ tenant, email });
  const response = await fetch(`/auth/sso/discover?${query}`);
  if (!response.ok) return;
  const { data } = await response.json();
  for (const idp of data) {
    // The IdP sends the browser back through /ui/sso/complete, which then opens this page.
    const where = new URLSearchParams({ [idp.protocol === "saml" ? "relay_state" : "return_to"]: target() });
    list.append(el("li", {}, el("a", { class: "button ghost", href: `${idp.login_url}?${where}` }, `Sign in with ${idp.display_name}`)));
  }
  document.getElementById("sso-title").hidden = data.length === 0;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  const body = {
    tenant: form.tenant.value.trim(),
    email: form.email.value.trim(),
    password: form.password.value,
  };
  if (form.totp.value.trim()) body.totp = form.totp.value.trim();
  const button = document.getElementById("login-submit");
  button.disabled = true;
  try {
    const response = await fetch("/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const result = await response.json().catch(() => ({}));
    if (!response.ok) {
      const slug = String(result.type || "").split("/").pop();
      error.textContent =
        slug === "second-factor-required"
          ? "Enter the code from your authenticator app."
          : result.detail || "Sign-in failed.";
      error.hidden = false;
      (slug === "second-factor-required" ? form.totp : form.password).focus();
      return;
    }
    saveTokens(result);
    location.assign(target());
  } finally {
    button.disabled = false;
  }
});

form.email.addEventListener("change", discover);
form.tenant.addEventListener("change", discover);

initTheme();
document.getElementById("login-expired").hidden = params.get("expired") !== "1";
if (session() && params.get("expired") !== "1") location.assign(target());
form.tenant.focus();
