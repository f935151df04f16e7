#!/usr/bin/env bash
# System packages the test suite needs besides Python ones (called by `make test`, hence by `.ci/run`):
# - Debian's chromium + fonts-wqy-zenhei: the browser test of `coalqa serve`'s page (Playwright's own browser
#   download does not work on these machines; the page is Chinese, so a CJK font);
# - golang-go: the Ollama Modelfile test runs the exported TEMPLATE through Go's text/template (what Ollama uses).
# Installs them with apt-get when run as root; otherwise prints the command and goes on (the browser test then
# fails with the same advice, the Go test is skipped).
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
fc-list 2>/dev/null | grep -i "wenquanyi zen hei" >/dev/null || missing+=(fonts-wqy-zenhei)  # not grep -q: with pipefail, fc-list would die of SIGPIPE
command -v go >/dev/null || missing+=(golang-go)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages for the tests: ${missing[*]}"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "warning: system packages for the tests are missing: ${missing[*]}" >&2
  echo "  install them with: sudo apt-get install -y ${missing[*]}" >&2
  echo "  (without chromium/fonts-wqy-zenhei the browser test fails; without golang-go the Go template test is skipped)" >&2
fi
