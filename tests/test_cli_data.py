import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
    assert r.returncode == 2 and "vocab.json: not valid JSON" in r.stderr and "Traceback" not in r.stderr


def test_check_with_a_truncated_cache_parses_again(tmp_path):
    out = tmp_path / "d"
    assert main(["data", "generate", "--preset", "tiny", "--out", str(out)]) == 0
    assert main(["data", "check", str(out)]) == 0
    (cache,) = (out / ".jepa_cache").glob("*.npz")
    with np.load(cache) as z:
        good = dict(z)
    cache.write_bytes(cache.read_bytes()[:1000])
    r = subprocess.run([sys.executable, "-m", "jepa_kit", "data", "check", str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "leakage         none" in r.stdout, r.stderr
    with np.load(cache) as z:  # rewritten whole
        assert z.files == list(good) and all(np.array_equal(z[k], v) for k, v in good.items())


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


def test_cli_errors_are_one_line_with_documented_exit_codes(tmp_path):
    """Usage and input errors exit 2, failures 1, each one line naming the problem, no traceback."""
    data = tmp_path / "d"
    assert main(["data", "generate", "--preset", "tiny", "--out", str(data)]) == 0
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "vocab.json").write_bytes(b'{"<f_0>": 0, "caf\xe9": 1}')

    def run(*argv):
        done = subprocess.run([sys.executable, "-m", "jepa_kit", *argv], capture_output=True, text=True)
        assert "Traceback" not in done.stderr, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("error")]
        assert len(lines) == 1, done.stderr
        return done.returncode, lines[0]

    base = ["train", "--data", str(data), "--preset", "tiny", "--steps", "1", "--progress", "none"]
    rc, line = run(*base, "--out", str(tmp_path / "r1"), "--best_metric", "exact_mach")
    assert rc == 2 and "best_metric must be one of" in line
    rc, line = run(*base, "--out", str(tmp_path / "r2"), "--data", str(tmp_path / "nowhere"))
    assert rc == 2 and "nowhere" in line
    rc, line = run("eval", str(tmp_path / "not_a_run"))
    assert rc == 2 and "not a run directory" in line
    rc, line = run("data", "check", str(tmp_path / "latin1"))
    assert rc == 2 and "vocab.json: not UTF-8" in line
    rc, line = run(*base, "--out", str(tmp_path / "r3"), "--device", "tpu")
    assert rc in (1, 2) and "tpu" in line


def test_generate_then_check_one_token_per_entity(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "generate", "--preset", "tiny_abstract", "--out", str(out), "--seed", "1"]) == 0
    assert "1 token per entity" in capsys.readouterr().out
    train = json.loads((out / "train.json").read_text())
    assert all(len(it["input_text"][0]) == len(it["target_text"][0]) == 1 for it in train)
    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2400 train + 600 atomic" in text and "entities        600 (patch length 1)" in text
    assert "600 tokens, each shared by 1..1 entities" in text and "leakage         none" in text
    assert main(["data", "check", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["entity_tokens"] == 1 and summary["entities"] == 600 and summary["vocab_size"] == 600 + 15
    # the flag on a surface preset gives the same data; --patch-len is its old name
    for flag in ("--entity-tokens", "--patch-len"):
        other = tmp_path / flag
        assert main(["data", "generate", "--preset", "tiny", flag, "1", "--out", str(other), "--seed", "1"]) == 0
        for name in ("vocab.json", "train.json", "valid.json"):
            assert (other / name).read_bytes() == (out / name).read_bytes(), (flag, name)


def test_check_fails_on_leak_in_one_token_data(tmp_path, capsys):
    out = tmp_path / "d"
    main(["data", "generate", "--preset", "tiny_abstract", "--out", str(out)])
    train = json.loads((out / "train.json").read_text())
    valid = json.loads((out / "valid.json").read_text())
    (out / "train.json").write_text(json.dumps(train + [dict(valid["test"][5], type="atomic")]))
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 1
    assert f"LEAK: valid.json test item 5 appears in train.json (item {len(train)}: <" in capsys.readouterr().out


def test_the_papers_abstract_format_checks(tmp_path, capsys):
    src = Path(__file__).parent / "fixtures" / "binding_abstract"
    dst = tmp_path / "abstract"
    dst.mkdir()
    for name in ("vocab.json", "train.json", "valid.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    assert main(["data", "check", str(dst)]) == 0
    text = capsys.readouterr().out
    assert "31 tokens (6 relation pairs, <PRED> appended)" in text and "60 train + 18 atomic" in text
    assert "16 tokens, each shared by 1..1 entities" in text


def test_bad_generator_settings_are_usage_errors(tmp_path, capsys):
    out = str(tmp_path / "d")
    assert main(["data", "generate", "--preset", "tiny_abstract", "--multiplicity", "10", "--out", out]) == 2
    assert "every entity is its own token" in capsys.readouterr().err
    assert main(["data", "generate", "--preset", "huge", "--out", out]) == 2
    assert "unknown data preset 'huge'; choose one of paper, small, mid, tiny, paper_abstract" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["data", "generate", "--preset", "tiny", "--entity-tokens", "3", "--out", out])
    assert e.value.code == 2 and "invalid choice: 3" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_generate_with_the_papers_pairing_structure(tmp_path, capsys):
    """--structure pairing on tiny gives the tiny_paired preset's files, byte for byte."""
    a, b = tmp_path / "flag", tmp_path / "preset"
    assert main(["data", "generate", "--preset", "tiny", "--structure", "pairing", "--out", str(a)]) == 0
    assert main(["data", "generate", "--preset", "tiny_paired", "--out", str(b)]) == 0
    for name in ("vocab.json", "train.json", "valid.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "generator.json").read_text())["params"]["structure"] == "pairing"
    assert main(["data", "check", str(a)]) == 0
    assert "leakage         none" in capsys.readouterr().out
