// Shared by every page: the session's tokens, API calls with refresh, theme, small DOM helpers.
//
// Tokens live in sessionStorage: sent only as an Authorization header, never as a cookie, so a
// cross-site page cannot make the browser send them (no CSRF), and they end with the tab.
// Script injection is what could read them; the CSP (script-src 'self', no inline) and
// server-sanitised Markdown are the controls against that.

const KEY = "obsigen.session";

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function saveTokens(tokens) {
  const previous = session() || {};
  sessionStorage.setItem(
    KEY,
    JSON.stringify({
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token || previous.refresh_token || null,
      mfa: Boolean(tokens.mfa),
      session_expires_at: tokens.session_expires_at,
    }),
  );
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.slug = String(this.problem.type || "").split("/").pop();
  }
}

export function toLogin(expired) {
  clearSession();
  const next = encodeURIComponent(location.pathname + location.hash);
  location.assign(`/ui/login?next=${next}${expired ? "&expired=1" : ""}`);
}

let refreshing = null;

async function refresh() {
  const current = session();
  if (!current || !current.refresh_token) return false;
  refreshing =
    refreshing ||
    fetch("/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: current.refresh_token }),
    })
      .then(async (r) => {
        if (!r.ok) return false;
        saveTokens(await r.json());
        return true;
      })
      .catch(() => false)
      .finally(() => {
        refreshing = null;
      });
  return refreshing;
}

// fetch with the bearer token; one refresh and retry on 401, then back to the login page.
export async function rawFetch(path, options = {}, retried = false) {
  const current = session();
  if (!current) {
    toLogin(false);
    throw new ApiError(401, { detail: "not signed in" });
  }
  const headers = new Headers(options.headers || {});
  headers.set("Authorization", `Bearer ${current.access_token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !retried) {
    if (await refresh()) return rawFetch(path, options, true);
    toLogin(true);
    throw new ApiError(401, { detail: "your session expired" });
  }
  return response;
}

export async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { detail: `HTTP ${response.status}` };
  }
}

export async function api(path, { method = "GET", body, query } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== "" && v != null) params.set(k, v);
    if ([...params].length) url += `?${params}`;
  }
  const options = { method };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const response = await rawFetch(url, options);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  return response.json();
}

// Build elements without ever parsing strings as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function notice(message, kind = "info") {
  const box = document.getElementById("notice");
  if (!box) return;
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = !message;
}

export function show(id, on = true) {
  document.getElementById(id).hidden = !on;
}

export function downloadBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name, class: "visually-hidden" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function initTheme() {
  const button = document.getElementById("theme-toggle");
  const stored = localStorage.getItem("obsigen.theme");
  const prefersDark = matchMedia("(prefers-color-scheme: dark)").matches;
  const apply = (theme) => {
    document.documentElement.dataset.theme = theme;
    if (button) {
      button.setAttribute("aria-pressed", String(theme === "dark"));
      button.textContent = theme === "dark" ? "Light theme" : "Dark theme";
    }
  };
  apply(stored || (prefersDark ? "dark" : "light"));
  button?.addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem("obsigen.theme", next);
    apply(next);
  });
}

// Who is signed in; shows the Admin link to those whose role has administrative permissions.
export async function initShell() {
  initTheme();
  if (document.body.dataset.page === "login") return null;
  if (!session()) {
    toLogin(false);
    return null;
  }
  document.getElementById("logout")?.addEventListener("click", async () => {
    try {
      await rawFetch("/auth/logout", { method: "POST" });
    } finally {
      clearSession();
      location.assign("/ui/login");
    }
  });
  const me = await api("/auth/me");
  const who = document.getElementById("whoami");
  if (who) who.textContent = me.roles.join(", ");
  const adminish = ["tenant:approvals:decide", "tenant:audit:read", "tenant:users:read"];
  if (me.permissions.some((p) => adminish.includes(p))) show("nav-admin");
  return me;
}

export { initTheme };

// Runs a page's main(); a 401 has already sent the browser to the login page, anything else is
// shown rather than left as an uncaught rejection.
export function start(main) {
  main().catch((error) => {
    if (error instanceof ApiError && error.status === 401) return;
    notice(error.message || String(error), "error");
  });
}
