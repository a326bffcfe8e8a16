#!/usr/bin/env bash
# Installs what memdrift needs to build and test, idempotently.
# Adds Debian's bookworm-backports (Go 1.21-1.23), trixie (Go 1.24) and sid
# (Go 1.26, 1.27) suites, derived from the existing debian.sources with only
# the Suites: line changed; trixie and sid are pinned low so that only the Go
# toolchains come from them.
set -euo pipefail

SRC=/etc/apt/sources.list.d/debian.sources
PKGS=(
  make clang llvm libbpf-dev bpftool libelf-dev libdw-dev libcapstone-dev
  libcmocka-dev zlib1g-dev libprotobuf-c-dev protobuf-c-compiler
  libmicrohttpd-dev libjson-c-dev libsystemd-dev libcap-dev pkg-config
  golang-go golang-1.21-go golang-1.22-go golang-1.23-go golang-1.24-go
  golang-1.26-go golang-1.27-go
  openjdk-17-jdk-headless libjna-java golang-github-mattn-go-sqlite3-dev libsqlite3-dev
  gcc libc6-dev musl-tools procps python3 openssl curl
  podman runc debootstrap python3-yaml
  prometheus prometheus-alertmanager
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi

# First stanza of debian.sources with a new Suites: line.
derive_suite() {
  local suite=$1 out=$2
  [ -f "$out" ] && return 0
  [ -f "$SRC" ] || { echo "install-deps: $SRC not found; cannot add $suite" >&2; return 1; }
  awk -v s="$suite" 'BEGIN{RS=""; ORS="\n\n"} NR==1 {
      n=split($0, L, "\n"); out="";
      for (i=1;i<=n;i++) { if (L[i] ~ /^Suites:/) L[i]="Suites: " s; out=out L[i] "\n" }
      printf "%s", out; exit }' "$SRC" > "$out.tmp"
  mv "$out.tmp" "$out"
}
derive_suite bookworm-backports /etc/apt/sources.list.d/memdrift-bookworm-backports.sources
derive_suite trixie /etc/apt/sources.list.d/memdrift-trixie.sources
derive_suite sid /etc/apt/sources.list.d/memdrift-sid.sources
# Everything from trixie and sid at 50 (never chosen over bookworm); only the
# Go toolchains (and their -src) pinned up.
pin_suite() {
  local suite=$1 pkgs=$2 pin=/etc/apt/preferences.d/memdrift-$1
  local want
  want=$(printf 'Package: *\nPin: release n=%s\nPin-Priority: 50\n\nPackage: %s\nPin: release n=%s\nPin-Priority: 500\n' \
    "$suite" "$pkgs" "$suite")
  [ -f "$pin" ] && [ "$(cat "$pin")" = "$(printf '%b' "$want")" ] && return 0
  printf '%b\n' "$want" > "$pin.tmp"
  mv "$pin.tmp" "$pin"
}
pin_suite trixie "golang-1.24-go golang-1.24-src"
pin_suite sid "golang-1.26-go golang-1.26-src golang-1.27-go golang-1.27-src"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# prometheus and alertmanager are for promtool/amtool and the tests' own
# loopback instances: no service is started by their installation.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
