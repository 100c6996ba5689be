"""The README's "Where things live" table names, for each rule, its one home
(`path:function`): every path must exist and every name be defined in it, so the table
cannot drift from the code unnoticed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Where things live"
HOME = re.compile(r"^(?P<path>[\w/]+\.py)(?::(?P<name>[A-Za-z_][\w.]*))?$")
NAME = re.compile(r"^@?(?P<name>[A-Za-z_][\w.]*)$")


def table_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, "the README has no 'Where things live' section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    assert rows[0] == ["Area", "Rule", "Home"] and set(rows[1][0]) <= {"-", " "}
    return rows[2:]


def homes(cell: str) -> list[tuple[str, str | None]]:
    """(path, name) for each backticked home in a cell; a bare name belongs to the last
    path named before it in the same cell (`a.py:f` / `g` means a.py's f and g)."""
    found: list[tuple[str, str | None]] = []
    path: str | None = None
    for token in re.findall(r"`([^`]+)`", cell):
        home = HOME.match(token)
        if home:
            path = home["path"]
            found.append((path, home["name"]))
            continue
        bare = NAME.match(token)
        if bare and path is not None:
            found.append((path, bare["name"]))
    return found


def defined(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def is_defined(path: Path, dotted: str) -> bool:
    body: list[ast.stmt] = ast.parse(path.read_text(encoding="utf-8")).body
    for part in dotted.split("."):
        node = defined(body).get(part)
        if node is None:
            return False
        body = node.body if isinstance(node, ast.ClassDef) else []
    return True


def test_every_home_in_the_readme_table_exists_in_the_code() -> None:
    rows = table_rows()
    checked: list[str] = []
    missing: list[str] = []
    for area, rule, cell in rows:
        assert area and rule, f"a row without its area or rule: {cell}"
        found = homes(cell)
        assert found, f"'{rule}' names no `path` or `path:function`"
        for path, name in found:
            file = ROOT / path
            checked.append(f"{path}:{name}")
            if not file.is_file():
                missing.append(f"{path} (for '{rule}') does not exist")
            elif name is not None and not is_defined(file, name):
                missing.append(f"{path} defines no {name} (for '{rule}')")
    assert not missing, "\n".join(missing)
    assert len(rows) >= 60 and len(checked) >= 100  # the table, not a stub of it
    areas = {row[0] for row in rows}
    assert areas >= {
        "domain", "lifecycle", "HTTP", "projections", "PII", "routing", "cache",
        "audit/Merkle", "observability",
    }  # fmt: skip


def test_the_checker_refuses_a_missing_name_and_reads_bare_names_against_their_path() -> None:
    cell = "`gateway/errors.py:ERRORS` (`error_kind`), `domain/settlement.py` / `compute_cost`"
    assert homes(cell) == [
        ("gateway/errors.py", "ERRORS"),
        ("gateway/errors.py", "error_kind"),
        ("domain/settlement.py", None),
        ("domain/settlement.py", "compute_cost"),
    ]
    assert is_defined(ROOT / "domain/account.py", "Account.post_charge")
    assert not is_defined(ROOT / "domain/account.py", "Account.no_such_method")
    assert not is_defined(ROOT / "gateway/errors.py", "no_such_table")
