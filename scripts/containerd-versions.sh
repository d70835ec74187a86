#!/usr/bin/env bash
# Fetches the containerd releases clusters run (1.7, 2.1) from Debian's archive as .deb files
# and unpacks them into a cache, next to bookworm's containerd 1.6 and without installing them.
#
#   scripts/containerd-versions.sh [fetch] [SERIES...]   fetch (default: 1.7 2.1), print each bin dir
#   scripts/containerd-versions.sh path SERIES           the bin dir of SERIES, fetched if missing
#   scripts/containerd-versions.sh list                  the series, suites and pinned versions
#
# SERIES is 1.6 (the system's /usr/bin), 1.7 (Debian trixie) or 2.1 (Debian sid). A bin dir
# holds containerd, containerd-shim-runc-v2 and ctr; its VERSION file names the Debian package
# version it came from. The packages depend only on libc and runc, so they run on bookworm.
#
# apt runs with a configuration of its own in a temporary directory: its own sources list, made
# from the machine's Debian mirror (the URIs of the entry for its own codename in
# /etc/apt/sources.list.d/ or /etc/apt/sources.list), and its own state, cache and lists, so the
# system's apt is never touched. No root needed. Environment:
#   PT_CONTAINERD_CACHE   the cache (default: ${XDG_CACHE_HOME:-~/.cache}/pulltrace/containerd)
set -euo pipefail

# series -> Debian suite and the upstream version pinned for it. When the suite has moved on,
# the newest package of the same series is taken instead, and its VERSION file says which.
declare -A suite=([1.7]=trixie [2.1]=sid)
declare -A pinned=([1.7]=1.7.24 [2.1]=2.1.9)
all_series=(1.7 2.1)

cache=${PT_CONTAINERD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pulltrace/containerd}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "containerd-versions: $*" >&2; exit 1; }

# The URIs of the machine's Debian archive: the apt sources entry whose suites include the
# system's own codename (not its -updates or -security suites), deb822 or one-line style.
debian_mirror() {
  local codename
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [[ -n $codename ]] || die "no VERSION_CODENAME in /etc/os-release"
  local files=() f
  for f in /etc/apt/sources.list.d/*.sources; do [[ -f $f ]] && files+=("$f"); done
  if [[ ${#files[@]} -gt 0 ]]; then
    awk -v want="$codename" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && uris != "")
          print uris
        types = suites = uris = ""
      }
      FNR == 1 { flush() }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "uris:" { $1 = ""; uris = $0 }
      END { flush() }' "${files[@]}"
  fi
  files=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do [[ -f $f ]] && files+=("$f"); done
  if [[ ${#files[@]} -gt 0 ]]; then
    awk -v want="$codename" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == want) print $i
      }' "${files[@]}"
  fi
}

# Runs apt-get/apt-cache with the private configuration in $work.
papt() { APT_CONFIG="$work/apt.conf" "$@"; }

# Signatures are checked as usual, but not the Release files' Valid-Until: a mirror that
# serves a dated snapshot of the archive would otherwise refuse sid, whose Release is valid
# for a week only.
make_apt_config() {
  local uris
  uris=$(debian_mirror | tr -s ' \n' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
  [[ -n ${uris// /} ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d/}"
  mkdir -p "$work/etc/preferences.d" "$work/etc/apt.conf.d" "$work/lists/partial" "$work/cache/archives/partial" \
           "$work/debs"
  : >"$work/status"
  local s suites=""
  for s in "$@"; do suites+=" ${suite[$s]}"; done
  cat >"$work/etc/debian.sources" <<EOF
Types: deb
URIs: ${uris% }
Suites:${suites}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$work/apt.conf" <<EOF
Dir::Etc "$work/etc";
Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "$work/etc";
Dir::Etc::preferencesparts "$work/etc/preferences.d";
Dir::Etc::parts "$work/etc/apt.conf.d";
Dir::State "$work";
Dir::State::lists "$work/lists";
Dir::State::status "$work/status";
Dir::Cache "$work/cache";
Dir::Cache::archives "$work/cache/archives";
APT::Architecture "$(dpkg --print-architecture)";
Acquire::Languages "none";
Acquire::Check-Valid-Until "false";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Debug::NoLocking "true";
APT::Sandbox::User "$(id -un)";
EOF
}

# The Debian version to take for a series from its suite: the pinned upstream version when the
# suite has it, else the newest of the same series.
choose_version() {
  local s=$1 versions v
  versions=$(papt apt-cache madison containerd | awk -F'|' -v want="${suite[$s]}" '
    { gsub(/ /, "", $2); if ($3 ~ ("[ /]" want "/")) print $2 }')
  [[ -n $versions ]] || die "Debian ${suite[$s]} has no containerd package"
  while read -r v; do
    [[ $(upstream "$v") == "${pinned[$s]}" ]] && { echo "$v"; return; }
  done <<<"$versions"
  while read -r v; do
    [[ $(upstream "$v") == "$s".* ]] && { echo "$v"; return; }
  done < <(sort -rV <<<"$versions")
  die "Debian ${suite[$s]} has no containerd $s (it has: $(tr '\n' ' ' <<<"$versions"))"
}

# The upstream part of a Debian version: 1:2.1.9+ds1-5 -> 2.1.9.
upstream() { local v=${1#*:}; echo "${v%%[~+-]*}"; }

bin_dir() { echo "$cache/$1/usr/bin"; }

fetched() { [[ -x "$(bin_dir "$1")/containerd" && -f "$cache/$1/VERSION" ]]; }

# Checks that the unpacked daemon runs and is the series it claims to be.
verify() {
  local s=$1 dir=$2 out
  out=$("$dir/usr/bin/containerd" --version 2>&1) ||
    die "$dir/usr/bin/containerd does not run: $out"
  [[ $out == *" v$s."* || $out == *" $s."* ]] ||
    die "$dir/usr/bin/containerd is not $s: $out"
  "$dir/usr/bin/ctr" --version >/dev/null 2>&1 || die "$dir/usr/bin/ctr does not run"
  echo "containerd-versions: $s: $out" >&2
}

fetch() {
  local need=() s
  for s in "$@"; do fetched "$s" || need+=("$s"); done
  if [[ ${#need[@]} -gt 0 ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/pt-containerd-apt.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    make_apt_config "${need[@]}"
    papt apt-get -q update >"$work/update.log" 2>&1 ||
      die "apt-get update (private configuration) failed: $(tail -5 "$work/update.log")"
    for s in "${need[@]}"; do
      local v deb tmp
      v=$(choose_version "$s")
      (cd "$work/debs" && papt apt-get -q download "containerd=$v" >"$work/download.log" 2>&1) ||
        die "apt-get download containerd=$v failed: $(tail -5 "$work/download.log")"
      deb=$(ls "$work/debs"/containerd_*.deb)
      mkdir -p "$cache"
      tmp=$(mktemp -d "$cache/.unpack.XXXXXX")
      dpkg-deb -x "$deb" "$tmp"
      echo "$v" >"$tmp/VERSION"
      verify "$s" "$tmp"
      rm -rf "${cache:?}/$s"
      mv "$tmp" "$cache/$s"
      rm -f "$deb"
      [[ $(upstream "$v") == "${pinned[$s]}" ]] ||
        echo "containerd-versions: $s: Debian ${suite[$s]} moved on from ${pinned[$s]}; took $v" >&2
    done
  fi
  for s in "$@"; do bin_dir "$s"; done
}

check_series() {
  [[ $1 == 1.6 || -n ${suite[$1]:-} ]] || die "unknown series '$1' (known: 1.6 ${all_series[*]})"
}

# One fetch at a time per cache (tests and a developer may call this together).
locked() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  "$@"
}

cmd=${1:-fetch}
case "$cmd" in
  -h|--help) usage; exit 0 ;;
  list)
    echo "1.6 bookworm $(dpkg-query -W -f='${Version}' containerd 2>/dev/null || echo '(not installed)') /usr/bin"
    for s in "${all_series[@]}"; do echo "$s ${suite[$s]} ${pinned[$s]} $(bin_dir "$s")"; done ;;
  path)
    [[ $# -eq 2 ]] || { usage >&2; exit 2; }
    check_series "$2"
    if [[ $2 == 1.6 ]]; then echo /usr/bin; else locked fetch "$2"; fi ;;
  fetch|[0-9]*)
    if [[ $# -gt 0 && $1 == fetch ]]; then shift; fi
    [[ $# -eq 0 ]] && set -- "${all_series[@]}"
    series=()
    for s in "$@"; do check_series "$s"; [[ $s == 1.6 ]] || series+=("$s"); done
    [[ ${#series[@]} -eq 0 ]] || locked fetch "${series[@]}" ;;
  *) echo "containerd-versions: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
esac
