#!/usr/bin/env bash
# Installs what the tests need beyond Rust: the wasm target, OpenSSH's sshd, etcd, a Python
# virtualenv with the official clients the emulators are checked against plus componentize-py
# and pytest (Python policies), and componentize-js with jco and a TOML parser from npm
# (JavaScript policies), and cargo-deb (the Debian package test), each pinned, outside the clone.
# Idempotent; prints the environment the tests read.
set -euo pipefail
cache="${ECSP_CACHE:-$HOME/.cache/ecs-provisioner}"
mkdir -p "$cache"

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then
  echo "setup: installing openssh-server" >&2
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq openssh-server openssh-client >/dev/null
fi

# High availability: the tests start a real etcd on loopback ports (Debian's etcd-server).
if ! command -v etcd >/dev/null; then
  echo "setup: installing etcd-server" >&2
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq etcd-server >/dev/null
fi

# The console's browser test: headless Chromium driven through chromedriver, from Debian.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "setup: installing chromium and chromium-driver" >&2
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

venv="$cache/venv"
want="aliyun-python-sdk-core==2.16.1 aliyun-python-sdk-ecs python-jenkins"
want="$want alibabacloud-tea-openapi==0.4.6"  # ECS emulator: signature V3 client
want="$want alibabacloud-credentials==1.0.12"  # credentials chain: the official precedence
want="$want componentize-py==0.25.1 pytest==9.2.0"  # Python policies: build and unit tests
stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: creating python venv in $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check $want
  echo "$want" > "$stamp"
fi

# JavaScript policies: esbuild bundles a policy into one module (componentize-js resolves no
# packages), componentize-js builds the component, jco generates the SDK's TypeScript types,
# smol-toml lets the SDK's native test harness read fixture files. Installed by exact version
# from a package.json written here, so the clone never gets these.
node_dir="$cache/node"
node_want='{"private":true,"dependencies":{"@bytecodealliance/componentize-js":"0.23.0","@bytecodealliance/jco":"1.35.0","smol-toml":"1.9.1","esbuild":"0.28.2"}}'
node_stamp="$node_dir/.installed"
if [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$node_want" ]; then
  command -v npm >/dev/null || { echo "setup: npm (Node.js 20 or later) is needed for JavaScript policies" >&2; exit 1; }
  echo "setup: installing componentize-js in $node_dir" >&2
  mkdir -p "$node_dir"
  echo "$node_want" > "$node_dir/package.json"
  (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error >&2)
  echo "$node_want" > "$node_stamp"
fi

# The Debian package test (host/tests/package.rs) builds the package with cargo-deb, pinned.
deb_want="3.8.0"
if ! cargo deb --version 2>/dev/null | grep -qF "$deb_want"; then
  echo "setup: installing cargo-deb $deb_want" >&2
  cargo install --locked --quiet cargo-deb --version "$deb_want" >&2
fi

echo "ECSP_PYTHON=$venv/bin/python"
echo "ECSP_COMPONENTIZE_PY=$venv/bin/componentize-py"
echo "ECSP_NODE_MODULES=$node_dir/node_modules"
echo "ECSP_SSHD=/usr/sbin/sshd"
echo "ECSP_ETCD=$(command -v etcd)"
echo "ECSP_CHROMIUM=$(command -v chromium)"
echo "ECSP_CHROMEDRIVER=$(command -v chromedriver)"
