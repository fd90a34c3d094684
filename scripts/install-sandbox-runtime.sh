#!/usr/bin/env bash
# The Python runtime user code gets in the sandbox: Debian's /usr/bin/python3, bound read-only.
# numpy, pandas, matplotlib, lxml and Pillow come from Debian; python-pptx is not packaged in
# Debian 12, so it (and the two pure-Python libraries it needs at newer versions than Debian
# has) is installed from PyPI, pinned, into /usr/local, which the sandbox sees read-only.
set -euo pipefail

packages=(python3-pip python3-numpy python3-pandas python3-matplotlib python3-lxml python3-pil)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
sudo_cmd=""
[[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! /usr/bin/python3 -c 'import pptx, xlsxwriter' 2>/dev/null; then
  echo "installing python-pptx into the sandbox runtime (/usr/local)"
  $sudo_cmd env PIP_CONSTRAINT= /usr/bin/python3 -m pip install --quiet --break-system-packages \
    --no-deps --no-cache-dir --root-user-action=ignore \
    python-pptx==1.0.2 XlsxWriter==3.2.0 typing_extensions==4.12.2
fi
