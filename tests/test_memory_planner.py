"""Memory planner: exact parameter counts, FSDP2 sharding, the activation formula, and a measured CPU step."""

import logging
import warnings

import pytest
import torch

from aad1lib.config import load_preset
from aad1lib.models import CausalWanTransformer3DModel
from aad1lib.models.discriminator import VideoDiscriminator
from aad1lib.rollout import stream_generate
from aad1lib.scale import check_plan_on_cpu, measure_peak_memory, plan_memory, saved_tensor_bytes, wan_params
from aad1lib.scale.memory_planner import (
    PUBLISHED_PARAMS,
    GraphForward,
    WanShape,
    discriminator_taps,
    graph_bytes,
    rollout_graphs,
    token_geometry,
)

PRESETS = ["tiny", "demo", "wan2.1-1.3b", "wan2.1-14b"]
MIB = 1024**2


@pytest.fixture(autouse=True)
def _one_thread():
    """Memory does not depend on it, and on a shared 2-core machine one thread is ~10× faster for these sizes."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def stage3_settings(cfg):
    stage3 = getattr(cfg, "stage3", None)
    return tuple(getattr(stage3, "disc_taps", (0.5, 0.75, 1.0))), getattr(stage3, "disc_queries", 4)


@pytest.mark.parametrize("preset", PRESETS)
def test_parameter_count_matches_the_model_built_on_meta(preset):
    cfg = load_preset(preset)
    taps, queries = stage3_settings(cfg)
    with torch.device("meta"):  # the 14B model costs no memory here
        model = CausalWanTransformer3DModel(**cfg.model.wan_kwargs())
        disc = VideoDiscriminator.from_teacher(model, tap_fractions=taps, num_queries=queries)
    assert wan_params(cfg.model) == sum(p.numel() for p in model.parameters())
    rows = {r.name: r for r in plan_memory(cfg, "stage3", num_gpus=8).rows}
    assert rows["generator"].num_params == sum(p.numel() for p in model.parameters())
    assert rows["discriminator"].num_params == sum(p.numel() for p in disc.parameters())
    if preset in PUBLISHED_PARAMS:  # "1.3B" / "14B" are names: the exact counts are 1.42e9 / 14.29e9
        assert wan_params(cfg.model) == pytest.approx(PUBLISHED_PARAMS[preset], rel=0.1)


def test_fsdp2_sharding_divides_sharded_state_by_the_gpu_count():
    cfg = load_preset("wan2.1-14b")
    one, many = (plan_memory(cfg, "stage2", num_gpus=n, batch_per_gpu=1) for n in (1, 16))
    for a, b in zip(one.rows, many.rows, strict=True):
        assert b.params_bytes == pytest.approx(a.params_bytes / 16)
        assert b.grads_bytes == pytest.approx(a.grads_bytes / 16)
        assert b.optimizer_bytes == pytest.approx(a.optimizer_bytes / 16)
        assert b.activation_bytes == pytest.approx(a.activation_bytes)  # activations are per GPU, not sharded
    assert one.buffer_bytes == 0 < many.buffer_bytes  # all-gathered blocks only exist when sharded
    generator = one.rows[0]  # fp32 params + fp32 grads + 2 fp32 AdamW moments = 16 B per parameter
    assert generator.params_bytes + generator.grads_bytes + generator.optimizer_bytes == 16 * generator.num_params
    assert one.rows[2].params_bytes == 2 * one.rows[2].num_params  # frozen bf16 teacher
    assert many.job_bytes == pytest.approx(16 * many.per_gpu_bytes)


@pytest.mark.parametrize("preset", ["demo", "wan2.1-14b"])
@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_gradient_checkpointing_lowers_activations(preset, stage):
    cfg = load_preset(preset)
    plain, ckpt = (plan_memory(cfg, stage, num_gpus=8, grad_checkpointing=g) for g in (False, True))
    assert ckpt.activation_bytes < plain.activation_bytes
    assert ckpt.state_bytes == plain.state_bytes


def test_frozen_discriminator_backbone_keeps_only_the_heads_trainable():
    cfg = load_preset("wan2.1-14b")
    trained, frozen = (plan_memory(cfg, "stage3", 64, frozen_disc_backbone=f).rows[1] for f in (False, True))
    heads = frozen.trained_params
    assert 0 < heads < 0.05 * frozen.num_params
    assert frozen.grads_bytes == pytest.approx(4 * heads / 64) and frozen.optimizer_bytes == pytest.approx(
        8 * heads / 64
    )
    assert trained.grads_bytes > 20 * frozen.grads_bytes
    assert frozen.params_bytes < trained.params_bytes  # the frozen backbone is held in bf16


def test_markdown_has_one_row_per_model_and_the_paper_reference():
    text = plan_memory(load_preset("wan2.1-14b"), "stage3", 64, grad_checkpointing=True).to_markdown()
    for needle in ("| generator |", "| discriminator |", "KV cache", "FSDP2", "total per GPU", "1040 GB"):
        assert needle in text


# ---- the activation formula against autograd's saved tensors --------------------------------------------------
@pytest.fixture(scope="module")
def demo():
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    cfg = load_preset("demo")
    torch.manual_seed(0)
    return cfg, CausalWanTransformer3DModel(**cfg.model.wan_kwargs()).train()


def _inputs(cfg, batch, frames, dtype=torch.float32):
    return (
        torch.randn(batch, 3, frames, cfg.data.height, cfg.data.width, dtype=dtype),
        torch.randn(batch, cfg.text.max_length, cfg.model.text_dim, dtype=dtype),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("per_frame_timestep", [False, True])
def test_block_formula_matches_saved_tensors_of_a_trained_forward(demo, dtype, per_frame_timestep):
    cfg, model = demo
    batch, geo = 2, token_geometry(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = model.to(dtype)  # bf16 everywhere, as FSDP2's param_dtype=bf16 runs it
    x, text = _inputs(cfg, batch, geo.latent_frames, dtype)
    t = torch.full((batch, geo.latent_frames) if per_frame_timestep else (batch,), 500.0)
    try:
        measured, _ = saved_tensor_bytes(
            lambda: model(x, t, text, return_dict=False)[0], exclude=list(model.parameters())
        )
    finally:
        model.float()  # the fixture is shared: never leave it in bf16
    fwd = GraphForward(
        "g",
        WanShape.of(cfg.model),
        geo.clip_tokens,
        batch,
        "params",
        text_tokens=geo.text_tokens,
        per_token_timestep=per_frame_timestep,
    )
    predicted = graph_bytes(fwd, dtype.itemsize, checkpointing=False)
    assert predicted == pytest.approx(measured, rel=0.1)


def test_formula_matches_saved_tensors_of_a_rollout_with_kv_cache(demo):
    cfg, model = demo
    batch, geo = 2, token_geometry(cfg)
    clip, text = _inputs(cfg, batch, geo.latent_frames)
    ctx = cfg.chunking.context_frames
    measured, _ = saved_tensor_bytes(
        lambda: stream_generate(
            model,
            cfg.chunk_layout(),
            text,
            clip[:, :, ctx:],
            torch.tensor([1.0, 0.0]),
            context=clip[:, :, :ctx],
            grad_step=0,
        ),
        exclude=list(model.parameters()),
    )
    graphs = rollout_graphs("generator", WanShape.of(cfg.model), geo, batch)
    assert sum(g.cached_tokens for g in graphs) > 0
    predicted = sum(graph_bytes(g, 4, checkpointing=False) for g in graphs)
    assert predicted == pytest.approx(measured, rel=0.1)


@pytest.mark.parametrize("grad", ["params", "input"])
def test_formula_matches_saved_tensors_of_the_discriminator(demo, grad):
    cfg, model = demo
    batch, geo = 2, token_geometry(cfg)
    taps, queries = stage3_settings(cfg)
    disc = VideoDiscriminator.from_teacher(model, tap_fractions=taps, num_queries=queries)
    x, text = _inputs(cfg, batch, geo.latent_frames)
    if grad == "input":  # the generator's update: frozen weights, gradients flow to the fake clip
        disc.requires_grad_(False)
        x.requires_grad_(True)
    measured, _ = saved_tensor_bytes(
        lambda: disc(x, torch.full((batch,), 500.0), text), exclude=list(disc.parameters())
    )
    num_blocks = len(disc.backbone.blocks)
    fwd = GraphForward(
        "d",
        WanShape.of(cfg.model, num_layers=num_blocks),
        geo.clip_tokens,
        batch,
        grad,
        text_tokens=geo.text_tokens,
        output_used=False,
        head_taps=len(discriminator_taps(cfg.model.num_layers, taps)),
    )
    assert graph_bytes(fwd, 4, checkpointing=False) == pytest.approx(measured, rel=0.1)


# ---- measured on this machine ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["allocator", "rss"])
def test_measurement_sees_a_known_allocation(method):
    def hold_64_mib():
        x = torch.ones(64 * MIB // 4)  # written, so its pages are resident
        y = x * 2
        del x
        return float(y[0])

    measurement, result = measure_peak_memory(hold_64_mib, method)
    assert result == 2.0
    assert measurement.delta_bytes == pytest.approx(128 * MIB, rel=0.15)


@pytest.mark.parametrize(
    ("preset", "batch", "method", "checkpointing"),
    [
        ("tiny", 4, "allocator", False),
        ("demo", 8, "allocator", False),
        ("demo", 8, "rss", False),
        ("demo", 8, "allocator", True),
    ],
)
def test_plan_is_within_2x_of_a_measured_stage3_step_on_cpu(preset, batch, method, checkpointing):
    """One synthetic Stage-III step (rollout with gradients, D on the clip, both AdamW updates) built from scratch
    inside the measurement. The allocator peak is deterministic, so one run; RSS (one step) reads ~6 % more.
    Seen here (predicted / measured): tiny 1.16, demo 1.14 (allocator) / 1.08 (RSS), demo + checkpointing 1.23."""
    check = check_plan_on_cpu(
        load_preset(preset), batch=batch, method=method, steps=1, grad_checkpointing=checkpointing
    )
    assert 0.5 <= check.ratio <= 2.0, check.summary()


def test_memory_plan_script_accepts_a_preset_name_or_path(tmp_path, capsys):
    import json
    import runpy
    import shutil

    from aad1lib.config import CONFIG_DIR

    script = runpy.run_path(str(CONFIG_DIR.parents[1] / "benchmarks" / "memory_plan.py"), run_name="memory_plan")
    preset = tmp_path / "my-14b.yaml"
    shutil.copy(CONFIG_DIR / "wan2.1-14b.yaml", preset)
    numbers = {}
    for spec in (str(preset), "wan2.1-14b"):
        out = tmp_path / f"{len(numbers)}.json"
        script["main"](["--preset", spec, "--gpus", "64", "--stage", "stage3", "--json", str(out)])
        numbers[spec] = json.loads(out.read_text())
        assert "| generator |" in capsys.readouterr().out
    assert numbers[str(preset)] == numbers["wan2.1-14b"]
    with pytest.raises(SystemExit, match="unknown preset 'huge'.*tiny"):
        script["main"](["--preset", "huge"])
    with pytest.raises(SystemExit, match="does not exist"):
        script["main"](["--preset", str(tmp_path / "missing.yaml")])
