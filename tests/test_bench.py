import json

from jepa_kit import bench


def test_bench_json_rows(capsys):
    assert bench.main(["--preset", "tiny", "--batch", "8", "--steps", "1", "--warmup", "0", "--eval-queries", "1",
                       "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in rows] == ["two_pass_fp32", "packed_fp32", "eval_entity_mrr"]
    for r in rows:
        assert {"mode", "device", "batch", "items_per_s", "tokens_per_s", "peak_mem_mb", "mfu"} <= set(r)
        assert r["items_per_s"] > 0 and r["device"] == "cpu" and r["mfu"] is None
    train_rows = rows[:2]
    assert all(r["batch"] == 8 and r["tokens_per_s"] > 0 and r["peak_mem_mb"] > 0 for r in train_rows)
    assert rows[2]["n_entities"] == 80_000


def test_bench_table_states_the_ratio():
    rows = [{"mode": "two_pass_fp32", "device": "cpu", "batch": 256, "items_per_s": 10.0, "tokens_per_s": 100.0,
             "peak_mem_mb": 1.0, "mfu": None},
            {"mode": "packed_fp32", "device": "cpu", "batch": 256, "items_per_s": 18.0, "tokens_per_s": 150.0,
             "peak_mem_mb": 1.0, "mfu": None}]
    table = bench.format_table(rows)
    assert "1.80x" in table.splitlines()[2]
