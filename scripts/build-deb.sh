#!/usr/bin/env bash
# Builds the Debian package of ecs-provisioner with cargo-deb and prints the .deb's path.
#   scripts/build-deb.sh [PROFILE]   PROFILE: release (default), or dev for a quick test package
# ECSP_DEB_PREBUILT=1 packs the binary already built for PROFILE instead of building it (the
# package test does so with the binary cargo built for it). Needs cargo-deb
# (scripts/setup-test-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
case "$profile" in
  dev|debug) profile=dev; out="$target/debug" ;;
  *) out="$target/$profile" ;;
esac

if [ "${ECSP_DEB_PREBUILT:-}" != 1 ]; then
  cargo build --quiet --locked --profile "$profile" -p ecs-provisioner --bin ecs-provisioner
fi
# Completions and the man page come from the binary's own command line (clap).
assets="$out/deb-assets"
mkdir -p "$assets"
exe="$out/ecs-provisioner"
"$exe" manpage > "$assets/ecs-provisioner.1"
"$exe" completions bash > "$assets/ecs-provisioner.bash"
"$exe" completions zsh > "$assets/_ecs-provisioner"
"$exe" completions fish > "$assets/ecs-provisioner.fish"

args=(--no-build --profile "$profile" -p ecs-provisioner --output "$target/debian/")
# A test package: no time spent stripping or compressing hard.
[ "$profile" = release ] || args+=(--no-strip --fast)
cargo deb "${args[@]}" 2>/dev/null | tail -n 1
