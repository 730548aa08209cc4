import json

import pytest
import torch

from jepa_kit import bench


def test_bench_json_rows(capsys):
    assert bench.main(["--preset", "tiny", "--batch", "8", "--steps", "2", "--rounds", "1", "--warmup", "0",
                       "--latency-steps", "1", "--eval-queries", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in rows] == ["two_pass_fp32", "packed_fp32", "static_fp32", "eval_entity_mrr"]
    for r in rows:
        assert {"mode", "device", "batch", "items_per_s", "tokens_per_s", "step_ms", "peak_mem_mb", "mfu"} <= set(r)
        assert r["items_per_s"] > 0 and r["device"] == "cpu" and r["mfu"] is None
    train_rows = rows[:3]
    assert all(r["batch"] == 8 and r["tokens_per_s"] > 0 and r["peak_mem_mb"] > 0 and r["step_ms"] > 0
               for r in train_rows)
    # the fixed-shape layout feeds 2L + k = 13 tokens per item, the seed's structure 6 + 13 per JEPA item
    static = rows[2]
    assert static["tokens_per_s"] / static["items_per_s"] == pytest.approx(13)
    assert rows[3]["n_entities"] == 80_000 and rows[3]["precision"] == "fp32"


def test_bench_times_the_trainers_step_function(monkeypatch):
    import jepa_kit.step as step_mod

    calls = []
    real = step_mod.train_step

    def spy(*a, **kw):
        calls.append(kw.get("grad_clip"))
        return real(*a, **kw)

    monkeypatch.setattr(step_mod, "train_step", spy)  # the trainer's step (step.TrainerStep) calls it there
    rows = bench.run("cpu", "tiny", (4,), steps=2, warmup=1, modes=["static_fp32"], rounds=1, latency_steps=1,
                     memory=False)
    assert len(calls) == 1 + 2 + 1 and set(calls) == {1.0}  # warmup, timed round, latency step
    assert rows[0]["mode"] == "static_fp32" and rows[0]["items_per_s"] > 0


def test_bench_modes_are_parsed_or_refused():
    assert bench.parse_mode("static_bf16_compile") == ("static", "bf16", "default")
    assert bench.parse_mode("ntp_bf16_cudagraphs") == ("ntp", "bf16", "reduce-overhead")
    assert bench.parse_mode("two_pass_fp32") == ("two_pass", "fp32", None)
    for bad in ("packed_bf16_compile", "static_fp16", "static", "fast_bf16"):
        with pytest.raises(ValueError, match="not understood"):
            bench.parse_mode(bad)


def test_bench_table_states_the_ratio_and_failures():
    rows = [{"mode": "two_pass_fp32", "device": "cpu", "batch": 256, "items_per_s": 10.0, "tokens_per_s": 100.0,
             "step_ms": 25.0, "peak_mem_mb": 1.0, "mfu": None},
            {"mode": "packed_fp32", "device": "cpu", "batch": 256, "items_per_s": 18.0, "tokens_per_s": 150.0,
             "step_ms": 14.0, "peak_mem_mb": 1.0, "mfu": None},
            {"mode": "static_bf16_compile", "device": "cpu", "batch": 256, "items_per_s": None, "tokens_per_s": None,
             "step_ms": None, "peak_mem_mb": None, "mfu": None, "error": "BackendCompilerFailed: boom"}]
    lines = bench.format_table(rows).splitlines()
    assert "1.80x" in lines[2]
    assert "failed: BackendCompilerFailed: boom" in lines[3]


def test_bench_times_the_concept_objective():
    rows = bench.run("cpu", "tiny", (8,), steps=2, warmup=1, modes=["concept_fp32"], rounds=1, latency_steps=1,
                     memory=False)
    assert rows[0]["mode"] == "concept_fp32" and rows[0]["items_per_s"] > 0 and "error" not in rows[0]
    # four patches of 2 tokens per item enter the recognition block
    assert rows[0]["tokens_per_s"] / rows[0]["items_per_s"] == pytest.approx(8)
    assert bench.parse_mode("concept_bf16_compile") == ("concept", "bf16", "default")


def test_eagerattn_modes_build_the_written_out_attention_and_time_it(tmp_path):
    """``_eagerattn``: the same mode with attention as matmul + softmax (inductor can fuse it for the
    fixed-shape rows of 5-13 tokens); the bench must build that model, not silently the SDPA one."""
    assert bench.parse_mode("static_bf16_compile_eagerattn") == ("static", "bf16", "default")
    assert bench.attn_of("static_bf16_compile_eagerattn") == "eager" and bench.attn_of("static_bf16_compile") == "sdpa"
    with pytest.raises(ValueError, match="not to concept"):
        bench.parse_mode("concept_bf16_compile_eagerattn")
    vocab = bench.paper_vocab()
    runner = bench._Runner("static_fp32_eagerattn", torch.device("cpu"), vocab, "tiny", 1, 1.0, 0)
    assert runner.model.gpt2.config._attn_implementation == "eager"
    rows = bench.bench_training_steps(["static_fp32", "static_fp32_eagerattn"], "cpu", "tiny", 8, 1, 1, 1, 1)
    assert [r["mode"] for r in rows] == ["static_fp32", "static_fp32_eagerattn"] and all(r["items_per_s"] > 0 for r in rows)


def test_reuse_modes_compile_with_inductor_defaults(monkeypatch):
    """``_reuse``: a compiled mode under Inductor's defaults (buffer reuse and in-place buffers on,
    before the fix of issue 12's NaN), so that the bench times the fix's cost side by side;
    compiled modes only."""
    assert bench.parse_mode("ntp_bf16_compile_reuse") == ("ntp", "bf16", "default")
    assert bench.parse_mode("static_bf16_compile_eagerattn_reuse") == ("static", "bf16", "default")
    assert bench.attn_of("static_bf16_compile_eagerattn_reuse") == "eager"
    for bad in ("static_bf16_reuse", "two_pass_fp32_reuse", "static_bf16_reuse_compile"):
        with pytest.raises(ValueError):
            bench.parse_mode(bad)
    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: calls.append(kw["options"]) or module)
    for mode in ("static_fp32_compile", "static_fp32_compile_reuse"):
        bench._Runner(mode, torch.device("cpu"), bench.paper_vocab(), "tiny", 1, 1.0, 0)
    assert [c["inplace_buffers"] for c in calls] == [False, True]
    assert "allow_buffer_reuse" not in calls[0] and calls[1]["allow_buffer_reuse"] is True


def test_stepgraph_modes_are_fixed_shape_cuda_modes():
    """``_stepgraph``: the whole step as one CUDA graph (runtime.GraphedStep). Parsed for the
    fixed-shape structures; on a CPU the mode fails with a clear error in its row, the others run.
    That it trains as the plain step is checked on a GPU (benchmarks/gpu_probe.py --only stepgraph)."""
    assert bench.parse_mode("ntp_bf16_compile_stepgraph") == ("ntp", "bf16", "default")
    assert bench.parse_mode("static_bf16_stepgraph") == ("static", "bf16", None)
    assert bench.parse_mode("static_bf16_compile_eagerattn_reuse_stepgraph") == ("static", "bf16", "default")
    assert bench.attn_of("static_bf16_compile_eagerattn_reuse_stepgraph") == "eager"
    for bad in ("packed_bf16_stepgraph", "two_pass_fp32_stepgraph", "static_bf16_cudagraphs_stepgraph",
                "static_bf16_stepgraph_compile"):
        with pytest.raises(ValueError):
            bench.parse_mode(bad)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        bench._Runner("ntp_fp32_stepgraph", torch.device("cpu"), bench.paper_vocab(), "tiny", 1, 1.0, 0)
    rows = bench.bench_training_steps(["ntp_fp32", "ntp_fp32_stepgraph"], "cpu", "tiny", 8, 1, 1, 1, 1, memory=False)
    assert rows[0]["items_per_s"] > 0 and rows[1]["items_per_s"] is None and "CUDA" in rows[1]["error"]


def test_maskattn_and_blockattn_modes_choose_how_sdpa_gets_the_causal_blocks():
    """``_maskattn`` (ntp only): the step before is_causal, timed beside the kit's step. ``_blockattn``
    (static only): F and R one is_causal call each. The runners' models are set so; both time."""
    assert bench.parse_mode("ntp_bf16_compile_maskattn_reuse_stepgraph") == ("ntp", "bf16", "default")
    assert bench.parse_mode("static_bf16_compile_blockattn_stepgraph") == ("static", "bf16", "default")
    assert bench.sdpa_suffix_of("ntp_bf16_compile_maskattn_stepgraph") == "_maskattn"
    assert bench.sdpa_suffix_of("static_bf16_blockattn") == "_blockattn"
    assert bench.sdpa_suffix_of("ntp_bf16_compile") is None and bench.attn_of("ntp_bf16_compile_maskattn") == "sdpa"
    for bad in ("static_bf16_compile_maskattn", "concept_bf16_maskattn", "ntp_bf16_compile_eagerattn_maskattn",
                "ntp_bf16_blockattn", "static_bf16_eagerattn_blockattn", "two_pass_fp32_blockattn"):
        with pytest.raises(ValueError):
            bench.parse_mode(bad)
    modes = ("ntp_fp32", "ntp_fp32_maskattn", "static_fp32", "static_fp32_blockattn")
    runners = {m: bench._Runner(m, torch.device("cpu"), bench.paper_vocab(), "tiny", 1, 1.0, 0) for m in modes}
    assert [(r.model.causal_sdpa, r.model.causal_sdpa_blocks) for r in runners.values()] == [
        (True, False), (False, False), (True, False), (True, True)]
    rows = bench.bench_training_steps(list(modes), "cpu", "tiny", 8, 1, 1, 1, 1, memory=False)
    assert all(r["items_per_s"] > 0 for r in rows), rows
