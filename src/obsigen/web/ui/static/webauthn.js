// Security keys in the browser (WebAuthn): register one, and step a session up with it.
//
// The server sends its options as JSON with binary fields in base64url (py_webauthn) and takes
// the authenticator's answer back in the same shape. Browsers that have
// PublicKeyCredential.parse{Creation,Request}OptionsFromJSON and PublicKeyCredential#toJSON
// do the conversion themselves; for the others this module decodes and encodes base64url
// itself, so the feature does not depend on those newer methods.
import { api, el } from "./common.js";

const $ = (id) => document.getElementById(id);

export function base64urlToBuffer(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

export function bufferToBase64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function webauthnAvailable() {
  return Boolean(window.PublicKeyCredential && navigator.credentials?.create && navigator.credentials?.get);
}

const descriptors = (list) => (list || []).map((c) => ({ ...c, id: base64urlToBuffer(c.id) }));

function creationOptions(json) {
  if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: base64urlToBuffer(json.challenge),
    user: { ...json.user, id: base64urlToBuffer(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

function requestOptions(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return { ...json, challenge: base64urlToBuffer(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
}

function credentialJSON(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const r = credential.response;
  const response = { clientDataJSON: bufferToBase64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bufferToBase64url(r.attestationObject);
    response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
  } else {
    response.authenticatorData = bufferToBase64url(r.authenticatorData);
    response.signature = bufferToBase64url(r.signature);
    response.userHandle = r.userHandle ? bufferToBase64url(r.userHandle) : null;
  }
  return {
    id: credential.id,
    rawId: bufferToBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || null,
    clientExtensionResults: credential.getClientExtensionResults(),
    response,
  };
}

// A cancelled or timed-out ceremony is a DOMException with a technical message: say it plainly.
function plain(error) {
  if (error instanceof DOMException && ["NotAllowedError", "AbortError"].includes(error.name)) {
    return new Error("The security key did not answer (cancelled or timed out).");
  }
  return error;
}

// The stepped-up token pair, from the security key the user touches now.
export async function securityKeyStepUp() {
  const options = await api("/auth/mfa/webauthn/options", { method: "POST" });
  let credential;
  try {
    credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
  } catch (error) {
    throw plain(error);
  }
  return api("/auth/mfa/webauthn/verify", { method: "POST", body: { credential: credentialJSON(credential) } });
}

async function registerSecurityKey(name) {
  const options = await api("/auth/mfa/webauthn/register/options", { method: "POST" });
  let credential;
  try {
    credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
  } catch (error) {
    throw plain(error);
  }
  return api("/auth/mfa/webauthn/register", { method: "POST", body: { credential: credentialJSON(credential), name } });
}

// The "Your security keys" card: registering a key also proves it, so the session is stepped
// up with it and onTokens gets the new tokens.
export function initSecurityKeys(onTokens) {
  const form = $("keys-form");
  if (!form) return;
  const status = $("keys-status");
  const problem = $("keys-error");
  if (!webauthnAvailable()) {
    status.textContent = "This browser cannot use security keys.";
    form.querySelector("button").disabled = true;
    return;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    const name = form.elements.name.value.trim() || "security key";
    status.textContent = "Touch your security key…";
    try {
      const tokens = await registerSecurityKey(name);
      status.replaceChildren(el("span", {}, `Security key “${name}” registered.`));
      form.reset();
      await onTokens(tokens);
    } catch (error) {
      status.textContent = "";
      // A second factor already exists: only a session that proved it may add another.
      if (error.slug === "mfa-required") $("stepup").hidden = false;
      problem.textContent =
        error.slug === "mfa-required" ? "Confirm it is you with your current second factor first (above), then add the key." : error.message;
      problem.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}
