#!/usr/bin/env python3
"""Checks docs/configuration.md against the configuration tables, as the daemons' --help prints
them: every variable of a daemon is in that daemon's section of the page with its type and
range (the "type" column, as --help prints it between brackets) and its default (or
"(required)", or no value when it has none), and the page documents no variable the daemon
does not have. The settings table of docs/policy.md (setting | variable | default | ...) is
checked too: each variable exists and its default is the server's.

usage: check_config_docs.py DOCS SERVER_BINARY AGENT_BINARY
"""
import os
import re
import subprocess
import sys

NAME = r"[A-Z][A-Z0-9_]*(?:<key>)?"


def from_help(binary):
    """{name: (("default", value) | ("required", None) | ("none", None), type)} from --help."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(rf"^  ({NAME})\s+(.*)$", line)
        if not m:
            continue
        name, text = m.groups()
        t = re.search(r"\[([^\[\]]*)\](?: \((?:default [^()]+|required)\))?$", text)
        if not t:
            raise SystemExit(f"{binary} --help: no [type] for {name}")
        d = re.search(r"\(default ([^()]+)\)$", text)
        if d:
            found[name] = (("default", d.group(1)), t.group(1))
        elif text.endswith("(required)"):
            found[name] = (("required", None), t.group(1))
        else:
            found[name] = (("none", None), t.group(1))
    if not found:
        raise SystemExit(f"{binary} --help lists no variable")
    return found


def from_docs(path):
    """{"agent"|"server": {name: (default cell, type cell)}} from the page's tables, whose
    header row names the columns (| variable | type | default | meaning |)."""
    docs = {"agent": {}, "server": {}}
    section = None
    columns = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                title = line[3:].strip().lower()
                section = title if title in docs else None
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if section is None or not line.startswith("|") or len(cells) < 3:
                continue
            if cells[0] == "variable":
                columns = cells
                for want in ("type", "default"):
                    if want not in columns:
                        raise SystemExit(f"{path}: a table in '{section}' has no {want} column")
                continue
            for name in re.findall(rf"`({NAME})`", cells[0]):
                if name in docs[section]:
                    raise SystemExit(f"{path}: {name} is documented twice in '{section}'")
                docs[section][name] = (cells[columns.index("default")],
                                       cells[columns.index("type")])
    return docs


def check(daemon, table, documented, problems):
    for name, ((kind, value), vtype) in table.items():
        cell, type_cell = documented.get(name, (None, None))
        if cell is None:
            problems.append(f"{daemon}: {name} is not documented in docs/configuration.md")
            continue
        if type_cell != vtype:
            problems.append(f"{daemon}: {name} is {vtype}, its type is documented as {type_cell}")
        if kind == "default" and f"`{value}`" != cell:
            problems.append(f"{daemon}: {name} defaults to {value}, documented as {cell}")
        elif kind == "required" and cell != "(required)":
            problems.append(f"{daemon}: {name} is required, documented as {cell}")
        elif kind == "none" and "`" in cell:
            problems.append(f"{daemon}: {name} has no default, documented as {cell}")
    for name in documented:
        if name not in table:
            problems.append(f"{daemon}: docs/configuration.md documents {name}, which "
                            f"pulltrace-{daemon} does not have")


def check_policy_settings(path, table, problems):
    """The rows of docs/policy.md whose second cell is a variable: its default must match."""
    rows = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.startswith("|") or len(cells) < 3:
                continue
            m = re.fullmatch(rf"`({NAME})`", cells[1])
            if not m:
                continue
            rows += 1
            name = m.group(1)
            if name not in table:
                problems.append(f"policy.md: {name} is not a pulltrace-server variable")
            elif table[name][0][0] == "default" and \
                    not cells[2].startswith(f"`{table[name][0][1]}`"):
                problems.append(f"policy.md: {name} defaults to {table[name][0][1]}, "
                                f"documented as {cells[2]}")
    if rows == 0:
        problems.append(f"{path}: no settings table found")


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    docs_path, server, agent = sys.argv[1:]
    docs = from_docs(docs_path)
    problems = []
    server_table = from_help(server)
    check("server", server_table, docs["server"], problems)
    check_policy_settings(os.path.join(os.path.dirname(docs_path), "policy.md"), server_table,
                          problems)
    check("agent", from_help(agent), docs["agent"], problems)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"ok: {len(docs['server'])} server and {len(docs['agent'])} agent variables documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
