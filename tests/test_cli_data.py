import json
import subprocess
import sys

from jepa_kit.cli import main


def test_generate_then_check(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "generate", "--preset", "tiny", "--out", str(out), "--seed", "1"]) == 0
    assert {p.name for p in out.glob("*.json")} >= {"vocab.json", "train.json", "valid.json"}
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2400 train + 600 atomic" in text and "each shared by 10..10 entities" in text and "leakage         none" in text
    assert main(["data", "check", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["entities"] == 600 and summary["leakage_problems"] == []


def test_check_fails_on_leak(tmp_path, capsys):
    out = tmp_path / "d"
    main(["data", "generate", "--preset", "tiny", "--out", str(out)])
    train = json.loads((out / "train.json").read_text())
    valid = json.loads((out / "valid.json").read_text())
    leaked = dict(valid["test"][3], type="atomic")  # a held-out reverse fact slipped into training
    (out / "train.json").write_text(json.dumps(train + [leaked]))
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 1
    text = capsys.readouterr().out
    assert "LEAK: valid.json test item 3 appears in train.json" in text


def test_check_fails_on_bad_data_via_module(tmp_path):
    (tmp_path / "vocab.json").write_text("{")
    r = subprocess.run([sys.executable, "-m", "jepa_kit", "data", "check", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "vocab.json: not valid JSON" in r.stderr


def test_real_fixture_checks(osu_dir, capsys):
    assert main(["data", "check", str(osu_dir)]) == 0
    assert "16015 tokens" in capsys.readouterr().out


def test_generate_never_replaces_data_silently_and_never_writes_into_a_run(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "generate", "--preset", "tiny", "--out", str(out)]) == 0
    before = (out / "train.json").read_bytes()
    capsys.readouterr()
    assert main(["data", "generate", "--preset", "tiny", "--out", str(out), "--seed", "3"]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert (out / "train.json").read_bytes() == before  # untouched
    assert main(["data", "generate", "--preset", "tiny", "--out", str(out), "--seed", "3", "--force"]) == 0
    assert (out / "train.json").read_bytes() != before
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    capsys.readouterr()
    assert main(["data", "generate", "--preset", "tiny", "--out", str(run), "--force"]) == 2
    assert "training run directory" in capsys.readouterr().err
    assert not (run / "train.json").exists()
