"""Login sessions: access tokens (JWT), refresh-token rotation, idle and absolute lifetimes."""
