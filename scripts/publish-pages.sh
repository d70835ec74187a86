#!/usr/bin/env bash
# Publishes to the gh-pages branch, which holds the documentation site at its root and the
# classic Helm chart repository under charts/. Each kind of publication keeps the other's files.
#
#   scripts/publish-pages.sh docs SITE_DIR          the built MkDocs site replaces the root,
#                                                   charts/ is kept
#   scripts/publish-pages.sh chart CHART_TGZ URL    the packaged chart is added under charts/ and
#                                                   charts/index.yaml is regenerated for URL with
#                                                   --merge, so earlier versions stay installable
#
# Needs git (and helm on PATH for `chart`). Commits as github-actions[bot] and pushes to the
# remote PT_PAGES_REMOTE (default: origin); the branch is created when it does not exist yet.
set -euo pipefail
usage() { sed -n '2,13s/^# \{0,1\}//p' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
kind=$1; shift
remote=${PT_PAGES_REMOTE:-origin}
branch=gh-pages

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME="github-actions[bot]" GIT_COMMITTER_NAME="github-actions[bot]"
export GIT_AUTHOR_EMAIL="41898282+github-actions[bot]@users.noreply.github.com"
export GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL

# A worktree of this repository, so the credentials the checkout configured apply to the push.
pages=$work/pages
if git fetch -q --depth 1 "$remote" "refs/heads/$branch" 2>/dev/null; then
  git worktree add -q --detach "$pages" FETCH_HEAD
else
  git worktree add -q --detach "$pages" HEAD
  git -C "$pages" checkout -q --orphan "pages-$$"
  git -C "$pages" rm -rq --cached . >/dev/null 2>&1 || true
  git -C "$pages" clean -fdxq
fi
trap 'git worktree remove --force "$pages" >/dev/null 2>&1 || true; git branch -D "pages-$$" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
touch "$pages/.nojekyll"   # serve files and folders starting with "_" as they are

case "$kind" in
  docs)
    [[ $# -eq 1 && -d $1 ]] || usage
    site=$(cd "$1" && pwd)
    # Everything at the root is the site's, except the chart repository and git's own files.
    find "$pages" -mindepth 1 -maxdepth 1 ! -name .git ! -name charts ! -name .nojekyll -exec rm -rf {} +
    (cd "$site" && tar -cf - --exclude=./charts .) | tar -C "$pages" -xf -
    message="docs: site from $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    ;;
  chart)
    [[ $# -eq 2 && -f $1 ]] || usage
    tgz=$1 repo_url=$2
    mkdir -p "$pages/charts"
    cp "$tgz" "$pages/charts/"
    merge=()
    [[ -f $pages/charts/index.yaml ]] && merge=(--merge "$pages/charts/index.yaml")
    # Index only the new package and merge it into the existing index, so entries of earlier
    # versions (and their creation dates and digests) stay exactly as they were.
    stage=$work/stage
    mkdir -p "$stage"
    cp "$tgz" "$stage/"
    helm repo index "$stage" --url "$repo_url" "${merge[@]}"
    cp "$stage/index.yaml" "$pages/charts/index.yaml"
    message="chart: $(basename "$tgz")"
    ;;
  *) usage ;;
esac

git -C "$pages" add -A
if git -C "$pages" diff --cached --quiet; then
  echo "publish-pages: nothing changed"
  exit 0
fi
git -C "$pages" commit -q -m "$message"
git -C "$pages" push -q "$remote" "HEAD:refs/heads/$branch"
echo "publish-pages: $message"
