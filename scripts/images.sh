#!/usr/bin/env bash
# Builds Pulltrace's container image from the root Dockerfile without a Docker engine.
#
#   scripts/images.sh build --output DIR [--cache DIR] [--tag TAG]
#   scripts/images.sh --help
#
# Writes DIR/pulltrace.tar, an OCI archive holding one image tagged TAG (default: the
# chart's appVersion); read it with `skopeo copy oci-archive:DIR/pulltrace.tar ...`.
# How: the Debian base images the Dockerfile names (debian:bookworm, debian:bookworm-slim,
# debian:trixie) are made by mmdebstrap from this machine's own Debian mirror (read from
# its apt sources) and committed under those names in a buildah storage of the script's
# own; then `buildah bud --isolation chroot --pull-never` runs the Dockerfile. The build
# context is the working tree's files as git sees them (tracked and untracked, not ignored),
# so it needs a git checkout.
#   --cache DIR   base tarballs, buildah's storage and built images (default: build-images/
#                 at the top of the repository). A built image is kept under a hash of the
#                 files the build sees (.dockerignore's paths do not count), so a rerun on the
#                 same sources only copies it. Remove DIR to start over (new base images).
#   --tag TAG     the image's tag in the archive (default: the chart's appVersion).
# Installs buildah, mmdebstrap, skopeo and uidmap when missing. Needs root, or sudo.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '2,20s/^# \{0,1\}//p' "$0"; }
die() { echo "images.sh: $*" >&2; exit 1; }

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ ${1:-} == build ]] || { echo "images.sh: unknown command '${1:-}'" >&2; usage >&2; exit 2; }
shift
output="" cache="$root/build-images" tag=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --output) output=${2:?--output needs a directory}; shift 2 ;;
    --cache) cache=${2:?--cache needs a directory}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "images.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ -n $output ]] || { echo "images.sh: --output DIR is required" >&2; usage >&2; exit 2; }

if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "run as root (mmdebstrap and buildah build as root)"
  exec sudo "$0" build --output "$output" --cache "$cache" ${tag:+--tag "$tag"}
fi

"$root/scripts/install-deps.sh" images >/dev/null

app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$root/chart/pulltrace/Chart.yaml")
[[ -n $app_version ]] || die "no appVersion in chart/pulltrace/Chart.yaml"
tag=${tag:-$app_version}
name=localhost/pulltrace:$tag

mkdir -p "$cache" "$output"
cache=$(cd "$cache" && pwd)
output=$(cd "$output" && pwd)
# One build at a time per cache (the storage and the tarballs are shared).
exec 9>"$cache/.lock"
flock 9
# buildah's and mmdebstrap's temporary files too (buildah defaults to /var/tmp).
export TMPDIR="$cache/tmp"
mkdir -p "$TMPDIR"

# The source tree's identity: the tree object of HEAD, or, when the working tree differs,
# the tree git would record for it (tracked and untracked files, ignored ones left out),
# written through a scratch index so that the repository's own index is untouched.
work_index=$(mktemp)
cp "$(git -C "$root" rev-parse --path-format=absolute --git-path index)" "$work_index"
GIT_INDEX_FILE=$work_index git -C "$root" add -A
tree=$(GIT_INDEX_FILE=$work_index git -C "$root" write-tree)
rm -f "$work_index"
revision=$(git -C "$root" rev-parse HEAD)
[[ $tree == "$(git -C "$root" rev-parse 'HEAD^{tree}')" ]] || revision+=-dirty
# The cache key: every file of that tree the build can see (the plain paths .dockerignore
# leaves out, e.g. the tests, the docs and this script, do not count) and the tag. A later
# commit that changes none of them reuses the image, whose revision label then names the
# first commit with these exact sources.
# A `!` exception could bring back a file under such a path: then every file counts.
ignored=""
if [[ -r $root/.dockerignore ]] && ! grep -q '^[[:space:]]*!' "$root/.dockerignore"; then
  ignored=$(sed -n 's#^/\{0,1\}\([A-Za-z0-9._/-]*[A-Za-z0-9._-]\)/\{0,1\}$#\1#p' "$root/.dockerignore")
fi
key=$({ git -C "$root" ls-tree -r "$tree" |
          awk -F '\t' -v ignore="$ignored" '
            BEGIN { n = split(ignore, paths, "\n") }
            { for (i = 1; i <= n; i++)
                if ($2 == paths[i] || index($2, paths[i] "/") == 1) next
              print }'
        echo "$tag"; } | sha256sum | cut -c1-32)

built="$cache/built/$key/pulltrace.tar"
if [[ -s $built ]]; then
  echo "images.sh: $name for these sources ($key) is cached"
  cp "$built" "$output/pulltrace.tar"
  echo "images.sh: wrote $output/pulltrace.tar ($name)"
  exit 0
fi

buildah=(buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs)
containers=()
ctx=""
cleanup() {
  local c
  for c in "${containers[@]}"; do "${buildah[@]}" rm "$c" >/dev/null 2>&1 || true; done
  [[ -n $ctx ]] && rm -rf "$ctx"
  return 0
}
trap cleanup EXIT

# The machine's Debian mirror: the first apt source (one-line or deb822 format) that serves
# a release suite (not -security, -updates or -backports).
debian_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    if [[ $f == *.sources ]]; then
      awk 'BEGIN { RS = ""; FS = "\n" }
           { types = uris = suites = ""
             for (i = 1; i <= NF; i++) {
               if ($i ~ /^Types:/) types = $i
               if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
               if ($i ~ /^Suites:/) suites = $i }
             if (types ~ /[ \t]deb([ \t]|$)/ && suites ~ /[ \t][a-z]+([ \t]|$)/ && uris != "") {
               split(uris, u, /[ \t]+/); print u[1]; exit } }' "$f"
    else
      awk '{ sub(/\[[^]]*\]/, ""); $0 = $0 }
           $1 == "deb" && $3 ~ /^[a-z]+$/ { print $2; exit }' "$f"
    fi
  done | head -n1
}

# base NAME SUITE [MMDEBSTRAP_ARGS...]: the image NAME in buildah's storage, from a
# cached minbase tarball of SUITE.
base() {
  local image=$1 suite=$2
  shift 2
  if "${buildah[@]}" inspect --type image "$image" >/dev/null 2>&1; then
    return 0
  fi
  local tar="$cache/base/${image##*/}.tar"
  tar=${tar/:/-}
  if [[ ! -s $tar ]]; then
    local mirror
    mirror=$(debian_mirror)
    [[ -n $mirror ]] || die "no Debian mirror in /etc/apt/sources.list{,.d}"
    echo "images.sh: mmdebstrap $suite -> $tar"
    mkdir -p "$cache/base"
    mmdebstrap --variant=minbase --quiet "$@" "$suite" "$tar.tmp" "$mirror"
    mv "$tar.tmp" "$tar"
  fi
  echo "images.sh: importing $tar as $image"
  local c
  c=$("${buildah[@]}" from scratch)
  containers+=("$c")
  "${buildah[@]}" add --quiet "$c" "$tar" /
  "${buildah[@]}" config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  "${buildah[@]}" commit --quiet --rm "$c" "$image" >/dev/null
  containers=()
}

# Slim as Debian's own -slim images: no manuals, docs (but copyright files) or locales.
slim=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/groff/*'
      --dpkgopt='path-exclude=/usr/share/lintian/*')
base docker.io/library/debian:bookworm bookworm
base docker.io/library/debian:bookworm-slim bookworm "${slim[@]}"
base docker.io/library/debian:trixie trixie

ctx=$(mktemp -d)
git -C "$root" archive "$tree" | tar -x -C "$ctx"
secret=()
# Lets npm trust what this machine trusts (e.g. an HTTPS-inspecting proxy's CA); the
# Dockerfile reads it as a build secret, so it never lands in a layer.
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[[ -s $ca_bundle ]] && secret=(--secret "id=ca-certificates,src=$ca_bundle")

echo "images.sh: building $name (tree $tree, revision $revision)"
t0=$(date +%s)
"${buildah[@]}" bud --isolation chroot --pull-never --layers=false --force-rm "${secret[@]}" \
  --build-arg VERSION="$app_version" --build-arg REVISION="$revision" \
  -t "$name" -f "$ctx/Dockerfile" "$ctx"
mkdir -p "$(dirname "$built")"
rm -f "$built.tmp"
"${buildah[@]}" push --quiet "$name" "oci-archive:$built.tmp:$tag"
mv "$built.tmp" "$built"
# The archive is the cache: keep only the base images in the storage (vfs copies every
# layer in full).
"${buildah[@]}" rmi "$name" >/dev/null
"${buildah[@]}" rmi --prune >/dev/null 2>&1 || true
# Images of older sources: the three newest stay.
find "$cache/built" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn | tail -n +4 |
  cut -d' ' -f2- | xargs -r rm -rf
cp "$built" "$output/pulltrace.tar"
echo "images.sh: wrote $output/pulltrace.tar ($name, built in $(( $(date +%s) - t0 ))s)"
