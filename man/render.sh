#!/usr/bin/env bash
# Render every man/NAME.SECTION.md to roff (OUTDIR/NAME.SECTION) with go-md2man,
# then lint each page with `mandoc -T lint -W warning`; any warning fails the run.
#
#   man/render.sh build/man
#
# Needs the Debian packages go-md2man and mandoc (apt-get install go-md2man mandoc).
#
# Title line: go-md2man copies the `% ` line into .TH verbatim, so sources write
#   % REPOFS-LS 1 2026-11-23 "repofs 0.1.0" "repofs Manual"
# A pandoc-style line `% REPOFS-LS(1) repofs 0.1.0 | repofs Manual` is accepted too
# and rewritten to that form (date: $SOURCE_DATE_EPOCH, else today).
#
# go-md2man 2.0.2 (Debian 12) writes inline code as \fB\fC and starts every section
# with a .PP; mandoc warns about both. The output is normalised the way later
# go-md2man releases write it: inline code in bold, no .PP right after .SH/.SS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-}
if [ -z "$out" ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
for tool in go-md2man mandoc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$0: $tool not found (apt-get install go-md2man mandoc)" >&2
    exit 2
  fi
done
mkdir -p "$out"

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  today=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)
else
  today=$(date -u +%F)
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

status=0
count=0
for src in "$here"/*.md; do
  [ -e "$src" ] || continue
  page=$(basename "$src" .md)            # e.g. repofs-format.5
  case "${page##*.}" in
    [1-9]) ;;
    *) echo "$0: $src: not named NAME.SECTION.md, skipped" >&2; continue ;;
  esac
  if ! head -n 1 "$src" | grep -q '^% '; then
    echo "$0: $src: the first line must be the title line ('% NAME SECTION DATE ...')" >&2
    status=1
    continue
  fi
  sed -E "1s/^% ([^ (]+)\(([0-9][a-z]*)\) (.*[^ ]) *\| *(.*[^ ]) *$/% \1 \2 $today \"\3\" \"\4\"/" \
    "$src" > "$tmp/$page.md"
  go-md2man -in "$tmp/$page.md" -out "$tmp/$page.raw"
  sed -e 's/\\fB\\fC/\\fB/g' "$tmp/$page.raw" |
    awk '/^\.S[HS]( |$)/ { print; after = 1; next }
         after && /^$/    { print; next }
         after && /^\.PP$/ { after = 0; next }
         { after = 0; print }' > "$out/$page"
  if ! lint=$(mandoc -T lint -W warning "$out/$page" 2>&1) || [ -n "$lint" ]; then
    printf '%s\n' "$lint" >&2
    status=1
  fi
  count=$((count + 1))
done

if [ "$count" -eq 0 ]; then
  echo "$0: no pages rendered" >&2
  exit 1
fi
[ "$status" -eq 0 ] && echo "rendered $count pages into $out, mandoc lint clean"
exit "$status"
