#!/usr/bin/env bash
# Checks the nightly units with `systemd-analyze verify` and the timer's
# schedule with `systemd-analyze calendar`. The units name the installed
# binary (/usr/local/bin/labelgen); here a copy of them points at
# $LABELGEN_BIN instead, so a machine without that install can check them.
# Usage: scripts/cron/verify.sh
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
labelgen="$(realpath "${LABELGEN_BIN:-$CARGO_TARGET_DIR/release/labelgen}")"
command -v systemd-analyze > /dev/null || { echo "systemd-analyze not found: not verified" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp labelgen-nightly.timer "$tmp/"
sed "s|/usr/local/bin/labelgen|$labelgen|" labelgen-nightly.service > "$tmp/labelgen-nightly.service"
systemd-analyze --version | head -1
echo "+ systemd-analyze verify labelgen-nightly.service labelgen-nightly.timer (ExecStart=$labelgen)"
# verify exits 0 on unknown keys and unparsable values (it only logs them),
# so any message counts as a finding.
findings="$(systemd-analyze verify "$tmp/labelgen-nightly.service" "$tmp/labelgen-nightly.timer" 2>&1)" || true
if [ -n "$findings" ]; then
    echo "$findings" >&2
    exit 1
fi
echo "verify: no findings"
schedule="$(sed -n 's/^OnCalendar=//p' labelgen-nightly.timer)"
echo "+ systemd-analyze calendar '$schedule'"
systemd-analyze calendar "$schedule"
# The crontab: one schedule line with six fields before the user and command.
line="$(grep -v '^#' labelgen-nightly.crontab | grep -v '^$')"
[ "$(wc -l <<< "$line")" = 1 ] || { echo "crontab: expected one schedule line" >&2; exit 1; }
read -r m h dom mon dow user _ <<< "$line"
echo "crontab: minute $m hour $h day $dom month $mon weekday $dow user $user"
