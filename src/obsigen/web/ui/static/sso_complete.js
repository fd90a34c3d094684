// The end of a single sign-on: the server redirected here with a one-time code in the URL
// fragment (never sent to a server, never in a Referer). The code is traded once for the
// session's tokens; the exchange also needs the HttpOnly cookie set with the redirect, so a
// code copied out of another browser's address bar signs nobody in here.
import { clearSession, initTheme, saveTokens } from "./common.js";

const status = document.getElementById("sso-status");
const error = document.getElementById("sso-error");

function target(next) {
  // Only our own pages, as on the login page: no open redirect.
  return typeof next === "string" && /^\/ui\/[a-z]*(#[a-z-]*)?$/.test(next) ? next : "/ui/chat";
}

function sentence(text) {
  const trimmed = String(text).trim();
  return trimmed.charAt(0).toUpperCase() + trimmed.slice(1) + (/[.!?]$/.test(trimmed) ? "" : ".");
}

function fail(message) {
  status.textContent = "Single sign-on did not complete.";
  error.textContent = sentence(message);
  error.hidden = false;
  document.getElementById("sso-retry").hidden = false;
  document.body.dataset.ready = "true";
}

async function complete() {
  const params = new URLSearchParams(location.hash.slice(1));
  // Out of the address bar and the history now: the code is spent below, whatever happens.
  history.replaceState(null, "", location.pathname);
  const code = params.get("code");
  const tenant = params.get("tenant");
  if (!code || !tenant) {
    fail("This page finishes a single sign-on started from the sign-in page.");
    return;
  }
  let response;
  try {
    response = await fetch("/auth/sso/exchange", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ code, tenant }),
    });
  } catch {
    fail("The server could not be reached");
    return;
  }
  const result = await response.json().catch(() => ({}));
  if (!response.ok) {
    fail(result.detail || "The sign-in could not be completed");
    return;
  }
  clearSession();
  saveTokens(result);
  location.replace(target(result.return_to));
}

initTheme();
complete();
