"""The README's positive-control table is what the committed runs say."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_table_is_computed_from_the_committed_runs(capsys):
    spec = importlib.util.spec_from_file_location("bc_table", ROOT / "benchmarks" / "binding_controls_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(str(ROOT / "papermill_runs" / "results" / "binding_controls_runs"))
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 12  # the header and 6 settings x 2 seeds
    readme = (ROOT / "README.md").read_text()
    for row in rows:
        assert row in readme, row
