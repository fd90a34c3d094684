"""Short-lived shared state with a TTL: login failure counters, used TOTP steps, WebAuthn and
OIDC challenges. Redis when configured (shared by every server process), else in-process."""
