"""The fenced code blocks of the documentation's pages, for the tests that check them
(test_docs_snippets.py, test_prometheus.py). Blocks may be indented (inside list items): the
fence's indentation is removed from every line of the block."""

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"

# The pages an operator reads (mkdocs.yml's "Operate" section): every block in them is checked.
OPERATOR_PAGES = ("deployment.md", "compatibility.md", "configuration.md", "policy.md",
                  "metrics.md", "troubleshooting.md", "upgrade.md", "security.md")

FENCE = re.compile(r"^( *)```(\S*)\s*$")


@dataclass
class Block:
    page: str
    line: int       # 1-based line of the opening fence
    lang: str       # "" for a bare fence
    text: str
    section: str    # the last "## " heading above the block

    def where(self):
        return f"docs/{self.page}:{self.line}"


def blocks(page):
    """Every fenced block of docs/<page>, in order."""
    out = []
    lines = (DOCS / page).read_text().splitlines()
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        m = FENCE.match(line)
        if not m:
            i += 1
            continue
        indent, lang = len(m.group(1)), m.group(2)
        body = []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{{indent}}}```\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"docs/{page}:{len(lines)}: unclosed fence")
        out.append(Block(page, i - len(body), lang, "\n".join(body) + "\n", section))
        i += 1
    return out


def operator_blocks(lang=None):
    found = [b for page in OPERATOR_PAGES for b in blocks(page)]
    return [b for b in found if lang is None or b.lang == lang]
