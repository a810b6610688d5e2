"""Speed benchmark: one table for 1 NFE, 4 NFE and the teacher; pass counts, skipped lengths, honest memory."""

import json
import time

import pytest
import torch

from aad1lib.builders import build_wan
from aad1lib.config import load_preset
from aad1lib.eval.speed import PeakMemory, format_speed_table, speed_benchmark


@pytest.fixture(scope="module")
def tiny():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = load_preset("tiny", {"model.num_layers": 1})
    yield cfg, build_wan(cfg).eval()
    torch.set_num_threads(threads)


def test_speed_benchmark_reports_every_model_and_length_with_the_pass_count_limit(tiny):
    cfg, model = tiny
    models = {"AAD-1": (model, "causal", 1), "4-step": (model, "causal", 4), "teacher": (model, "teacher", 3)}
    result = speed_benchmark(cfg, models, lengths=(1, 2), repeats=1)
    json.dumps(result)  # JSON-ready
    rows = {(r["name"], r["length"]): r for r in result["rows"]}
    assert set(rows) == {(n, k) for n in models for k in (1, 2)} and result["reference"] == "AAD-1"
    chunks = (cfg.latent_frames - cfg.chunking.context_frames) // cfg.chunking.frames_per_chunk
    for length in (1, 2):
        one, four, teacher = rows[("AAD-1", length)], rows[("4-step", length)], rows[("teacher", length)]
        assert one["chunks"] == four["chunks"] == teacher["chunks"] == chunks * length  # same work for all
        assert (one["nfe_per_chunk"], one["passes_per_chunk"]) == (1, 2)
        assert (four["nfe_per_chunk"], four["passes_per_chunk"]) == (4, 5)
        assert four["pass_ratio_to_student"] == 2.5 and one["ratio_to_student"] == 1.0
        assert one["passes_per_clip"] == 1 + 2 * chunks * length  # context write + 2 per chunk
        assert teacher["passes_per_clip"] == 3 * 2  # 3 steps × CFG, whatever the length
        for r in (one, four, teacher):
            assert r["skipped"] is None and r["per_chunk_ms"] > 0 and r["fps"] > 0 and r["first_chunk_ms"] > 0
            assert r["peak_memory_mb"] is not None
    assert rows[("AAD-1", 1)]["growth"] == 1.0
    table = format_speed_table(result)
    assert "pass-count limit 5/2 = 2.50×" in table and "14.33" in table and table.count("| AAD-1 |") == 2


def test_lengths_past_the_rope_table_are_reported_as_skipped(tiny):
    cfg = load_preset("tiny", {"model.num_layers": 1, "model.rope_max_seq_len": 20})
    model = build_wan(cfg).eval()
    result = speed_benchmark(cfg, {"AAD-1": (model, "causal", 1)}, lengths=(1, 4), repeats=1)
    short, long = result["rows"]
    assert short["skipped"] is None and "rope_max_seq_len=20" in long["skipped"] and long["per_chunk_ms"] is None
    assert "skipped: " in format_speed_table(result)


def test_bfloat16_runs_on_cpu_too(tiny):
    cfg = tiny[0]
    model = build_wan(cfg).eval()
    result = speed_benchmark(cfg, {"AAD-1": (model, "causal", 1)}, lengths=(1,), repeats=1, dtypes=("bfloat16",))
    assert result["rows"][0]["dtype"] == "bfloat16" and result["rows"][0]["per_chunk_ms"] > 0


def test_peak_memory_sees_a_short_lived_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64, 2**20 // 4)  # 64 MB, touched
        time.sleep(0.05)
        del block
    assert 48 <= memory.peak_mb < 200
