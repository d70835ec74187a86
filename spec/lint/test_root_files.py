"""The files every open-source project has at its root: the licence, how to contribute, how
to report a vulnerability and the changelog, consistent with the chart's version (which is the
image's tag and the release's)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def chart_field(name):
    return yaml.safe_load((ROOT / "chart/pulltrace/Chart.yaml").read_text())[name]


def test_license_is_apache_2():
    # The image's `licenses` label says Apache-2.0; the text is Debian's copy.
    assert (ROOT / "LICENSE").read_text() == Path("/usr/share/common-licenses/Apache-2.0").read_text()


def test_changelog_versions_are_the_charts():
    # Keep a Changelog: Unreleased first, then the released versions.
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in changelog
    versions = re.findall(r"^## \[([^\]]+)\]", changelog, re.M)
    assert versions[0] == "Unreleased", versions
    for v in versions[1:]:
        assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", v), v
    # The chart's appVersion (the image's tag) is a released version of the changelog.
    assert chart_field("appVersion") in versions[1:]


def test_security_policy_and_contributing():
    security = (ROOT / "SECURITY.md").read_text()
    assert "## Supported versions" in security and "## Reporting a vulnerability" in security
    major_minor = ".".join(chart_field("appVersion").split(".")[:2])
    assert f"({major_minor}.x)" in security, "SECURITY.md's supported series is not the chart's"
    # The docs site's contributing page is CONTRIBUTING.md itself.
    assert '--8<-- "CONTRIBUTING.md"' in (ROOT / "docs/contributing.md").read_text()

