#!/usr/bin/env bash
# Checks that a release tag matches the chart and prints the release's facts for GitHub Actions.
#
#   scripts/release-version.sh TAG OWNER
#
# TAG is vX.Y.Z (a pre-release suffix such as -rc.1 is allowed); the chart's `version` and
# `appVersion` in chart/pulltrace/Chart.yaml must both equal X.Y.Z, so the image tag, the chart
# and the binaries carry one version; CHANGELOG.md must have the section `## [X.Y.Z]` (not needed
# for a pre-release). Prints `version=X.Y.Z` and `owner=<owner in lower case>` (GHCR names must
# be lower case). Exits 1 with a message naming the mismatch.
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n '2,10s/^# \{0,1\}//p' "$0" >&2; exit 2; }
tag=$1 owner=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chart=$root/chart/pulltrace/Chart.yaml

if [[ ! $tag =~ ^v([0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?)$ ]]; then
  echo "release-version: tag '$tag' is not vX.Y.Z" >&2
  exit 1
fi
version=${BASH_REMATCH[1]}
field() { sed -n "s/^$1:[[:space:]]*\"\{0,1\}\([^\"[:space:]]*\)\"\{0,1\}[[:space:]]*$/\1/p" "$chart"; }
chart_version=$(field version)
app_version=$(field appVersion)
if [[ $chart_version != "$version" || $app_version != "$version" ]]; then
  echo "release-version: tag $tag wants $version, but $chart has version '$chart_version' and appVersion '$app_version'" >&2
  exit 1
fi
# A release's notes are its CHANGELOG section: the Unreleased entries moved under the version.
if [[ $version != *-* ]] &&
   ! awk -v h="## [$version]" 'index($0, h) == 1 { found = 1 } END { exit !found }' "$root/CHANGELOG.md"; then
  echo "release-version: CHANGELOG.md has no section \"## [$version]\" (move the Unreleased entries under it)" >&2
  exit 1
fi
echo "version=$version"
echo "owner=${owner,,}"
