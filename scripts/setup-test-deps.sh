#!/usr/bin/env bash
# Installs what the tests need beyond Rust: the wasm target, OpenSSH's sshd, and a Python
# virtualenv with the official clients the emulators are checked against.
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

venv="$cache/venv"
want="aliyun-python-sdk-core==2.16.1 aliyun-python-sdk-ecs python-jenkins"
want="$want alibabacloud-tea-openapi==0.4.6"  # ECS emulator: signature V3 client
want="$want alibabacloud-credentials==1.0.12"  # credentials chain: the official precedence
stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: creating python venv in $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check $want
  echo "$want" > "$stamp"
fi
echo "ECSP_PYTHON=$venv/bin/python"
echo "ECSP_SSHD=/usr/sbin/sshd"
