"""Every Markdown table the kit commits renders as a table: a header, a separator row, and the same
number of cells on every row (a table without its ``|---|`` row shows as plain text)."""
import subprocess

import pytest

from conftest import ROOT

MARKDOWN = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def _tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, rows) of each run of lines starting with '|' outside code fences."""
    tables, rows, start, fenced = [], [], 0, False
    for number, line in enumerate(text.splitlines() + [""], start=1):
        fenced ^= line.lstrip().startswith("```")
        if line.startswith("|") and not fenced:
            start = start if rows else number
            rows.append(line)
        elif rows:
            tables.append((start, rows))
            rows = []
    return tables


def _is_separator(row: str) -> bool:
    return set(row.replace(" ", "")) <= set("|-:")


def _cells(row: str) -> int:
    return len(row.rstrip().removeprefix("|").removesuffix("|").split("|"))


@pytest.mark.parametrize("path", MARKDOWN)
def test_every_markdown_table_has_a_separator_row_and_even_rows(path):
    for start, rows in _tables((ROOT / path).read_text()):
        where = f"{path}:{start}"
        assert len(rows) >= 2 and _is_separator(rows[1]), f"{where}: no |---| row"
        assert {_cells(r) for r in rows} == {_cells(rows[0])}, f"{where}: rows of different widths"


def test_the_table_reader_finds_a_table_that_lacks_its_separator():
    text = "text\n\n| a | b |\n| 1 | 2 |\n\n```\n| not | a table |\n```\n| x |\n|---|\n"
    tables = _tables(text)
    assert [(s, len(r)) for s, r in tables] == [(3, 2), (9, 2)]
    assert not _is_separator(tables[0][1][1]) and _is_separator(tables[1][1][1])
