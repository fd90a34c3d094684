#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those that are missing.
set -euo pipefail

packages=(mariadb-server mariadb-client redis-server runsc bubblewrap python3-seccomp python3-numpy python3-pandas python3-matplotlib softhsm2 xmlsec1 nodejs libreoffice-impress-nogui chromium)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The OpenID provider the OIDC tests sign in with (pinned by its package-lock.json).
oidc_provider="$(dirname "$0")/../tests/integration/federation/oidc_provider"
if [[ ! -d "$oidc_provider/node_modules" ]]; then
  npm ci --no-audit --no-fund --prefix "$oidc_provider"
fi
