#!/usr/bin/env bash
# What the console's browser test needs (tests/integration/console/): Node.js with npm (also
# what builds the console into the binary), Debian's Chromium, and the test's npm packages
# (playwright-core, which drives Chromium over the DevTools protocol and brings no browser).
# Installs what is missing and prints Chromium's path.
#   BRAID_CHROMIUM=$(scripts/browser-env.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "browser-env: $*" >&2; }
apt_install() {
  [ "$(id -u)" = 0 ] || { log "need $* but not root: install it yourself (apt-get install $*)"; exit 1; }
  log "installing $* from Debian's packages"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } >&2
}

command -v npm >/dev/null || apt_install nodejs npm
chromium=${BRAID_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { apt_install chromium fonts-dejavu-core; chromium=/usr/bin/chromium; }
if [ ! -d console/tests/browser/node_modules/playwright-core ]; then
  log "installing the browser test's npm packages (console/tests/browser)"
  (cd console/tests/browser && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
echo "$chromium"
