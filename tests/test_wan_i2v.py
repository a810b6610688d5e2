"""Wan 2.1 I2V: our teacher sampler equals diffusers' Wan pipelines on the stand-in folders, and the I2V condition
streams through the KV cache exactly as the block-causal forward sees it.

Peers: ``diffusers.WanImageToVideoPipeline`` (tests/standins.py :func:`write_wan_i2v_standin`) and
``diffusers.WanPipeline`` (:func:`write_wan_t2v_standin`), both loaded from the folder their ``save_pretrained``
wrote, sampled with the folder's UniPC scheduler and ``output_type="latent"``.
"""

import json

import numpy as np
import pytest
import torch
from standins import STREAMING_LAYOUTS, WAN_I2V_TRANSFORMER, check_wan_i2v_standin, standin_image, write_wan_i2v_standin

from aad1lib.models import CausalWanTransformer3DModel
from aad1lib.models.codec import IdentityCodec, WanVAECodec
from aad1lib.models.i2v import CLIPImageEncoder, wan_i2v_condition
from aad1lib.models.text import UMT5TextEncoder
from aad1lib.sampling import sample_i2v

PROMPT = "a red car drives over the bridge"
NEGATIVE = "dark clouds"  # not empty, so a swapped CFG branch shows
SIZE, PIXEL_FRAMES, STEPS, GUIDANCE = 32, 5, 3, 5.0
TOLERANCE = 1e-4  # float32; the pipeline runs the CFG branches as 2 batches of 1, we run one batch of 2


@pytest.fixture(scope="module")
def wan_i2v_standin(tmp_path_factory):
    """A tiny random ``Wan2.1-I2V-14B-480P-Diffusers`` folder written by WanImageToVideoPipeline.save_pretrained."""
    return write_wan_i2v_standin(tmp_path_factory.mktemp("wan2.1-i2v-standin"))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def test_standin_is_a_wan_i2v_folder_that_diffusers_and_our_loaders_read(wan_i2v_standin):
    root = wan_i2v_standin
    index = json.loads((root / "model_index.json").read_text())
    assert index["_class_name"] == "WanImageToVideoPipeline"
    assert index["image_encoder"] == ["transformers", "CLIPVisionModel"]
    assert index["image_processor"] == ["transformers", "CLIPImageProcessor"]
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"] and index["transformer_2"] == [None, None]
    for file in ("image_encoder/config.json", "image_encoder/model.safetensors",
                 "image_processor/preprocessor_config.json", "transformer/diffusion_pytorch_model.safetensors",
                 "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "tokenizer/spiece.model",
                 "scheduler/scheduler_config.json"):  # fmt: skip
        assert (root / file).is_file(), file

    frames = check_wan_i2v_standin(root)  # diffusers' own WanImageToVideoPipeline: load + 2 sampling steps
    assert frames.shape == (PIXEL_FRAMES, SIZE, SIZE, 3) and np.isfinite(frames).all()

    model = CausalWanTransformer3DModel.from_pretrained(root, subfolder="transformer")
    assert {k: model.config[k] for k in WAN_I2V_TRANSFORMER} == {**WAN_I2V_TRANSFORMER, "patch_size": [1, 2, 2]}
    assert model.config.in_channels == 16 + 4 + 16  # noisy latents + mask (temporal factor 4) + first-frame latents


def _flow_shift(root) -> float:
    return json.loads((root / "scheduler" / "scheduler_config.json").read_text())["flow_shift"]


def _text(root, prompts):
    encoder = UMT5TextEncoder.from_pretrained(root, max_length=512)  # Wan's I2V attention needs exactly 512
    return encoder.encode(prompts)[0]


def _max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def test_teacher_sampler_reproduces_diffusers_wan_image_to_video_pipeline(wan_i2v_standin):
    """Same image, prompts, noise, scheduler, steps and guidance -> the same latents as the pipeline.

    Intended difference: the pipeline takes a PIL image and converts it itself (``video_processor.preprocess``
    to [-1, 1] for the VAE; ``CLIPImageProcessor`` on the uint8 image for CLIP), our API takes the first frame as a
    tensor in [-1, 1]. The image is already at the target size (32×32 = the CLIP stand-in's image size, so neither
    resizes) and our tensor is the pipeline's own ``video_processor.preprocess`` output: equality is tested from
    that point on. The intermediate inputs (text, image tokens, condition) are checked on the way so a failure
    names the first one that differs.
    """
    from diffusers import WanImageToVideoPipeline

    root = wan_i2v_standin
    pipe = WanImageToVideoPipeline.from_pretrained(root, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = standin_image(SIZE)
    first_frame = pipe.video_processor.preprocess(image, height=SIZE, width=SIZE).float()  # [1, 3, H, W] in [-1, 1]
    codec = WanVAECodec.from_pretrained(root)
    noise = torch.randn(
        1, 16, *codec.latent_shape(PIXEL_FRAMES, SIZE, SIZE)[1:], generator=torch.Generator().manual_seed(0)
    )

    # ours: the library's encoders and condition
    text, uncond = _text(root, [PROMPT, NEGATIVE]).chunk(2)
    image_tokens = CLIPImageEncoder.from_pretrained(root).encode(first_frame)
    condition = wan_i2v_condition(codec, first_frame, PIXEL_FRAMES)
    model = CausalWanTransformer3DModel.from_pretrained(root, subfolder="transformer").eval()

    # the pipeline's own intermediates
    with torch.no_grad():
        pipe_text, pipe_uncond = pipe.encode_prompt(PROMPT, NEGATIVE, max_sequence_length=512)
        pipe_tokens = pipe.encode_image(image)
        _, pipe_condition = pipe.prepare_latents(
            first_frame, 1, 16, SIZE, SIZE, PIXEL_FRAMES, torch.float32, torch.device("cpu"), None, noise.clone()
        )
    diffs = {
        "text": _max_diff(text, pipe_text),
        "uncond_text": _max_diff(uncond, pipe_uncond),
        "image_tokens": _max_diff(image_tokens, pipe_tokens),
        "condition": _max_diff(condition, pipe_condition),
    }
    print("max |ours - pipeline| of the inputs:", diffs)
    assert image_tokens.shape == pipe_tokens.shape and condition.shape == pipe_condition.shape
    for name, diff in diffs.items():
        assert diff <= 1e-5, f"{name} differs from the pipeline's by {diff}"

    expected = pipe(
        image=image, prompt=PROMPT, negative_prompt=NEGATIVE, height=SIZE, width=SIZE, num_frames=PIXEL_FRAMES,
        num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=noise.clone(), output_type="latent",
    ).frames  # fmt: skip
    ours = sample_i2v(
        model, None, text, num_frames=noise.shape[2], steps=STEPS, shift=_flow_shift(root), uncond_text=uncond,
        guidance_scale=GUIDANCE, sampler="unipc", noise=noise.clone(),
        condition={"condition": condition, "encoder_hidden_states_image": image_tokens},
    )  # fmt: skip
    diff = _max_diff(ours, expected)
    print(f"I2V: max |ours - WanImageToVideoPipeline| = {diff:.3g} (latents of scale {expected.abs().max():.3g})")
    assert ours.shape == expected.shape == noise.shape
    assert diff <= TOLERANCE
    assert _max_diff(ours, noise) > 0.1  # it sampled


@pytest.mark.parametrize("size", [(32, 32), (64, 48)], ids=["at-clip-size", "resized-and-cropped"])
def test_clip_image_encoder_matches_the_pipelines_encode_image(wan_i2v_standin, size):
    """``CLIPImageEncoder.encode(first frame in [-1, 1])`` = ``WanImageToVideoPipeline.encode_image(PIL image)``,
    also when the folder's ``CLIPImageProcessor`` resizes and crops (64×48 -> 32×32). Our input is the pipeline's
    own ``video_processor.preprocess`` of the image (the tensor its VAE encodes)."""
    from diffusers import WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline.from_pretrained(wan_i2v_standin, local_files_only=True)
    height, width = size
    image = standin_image(64).resize((width, height))
    first_frame = pipe.video_processor.preprocess(image, height=height, width=width).float()
    with torch.no_grad():
        expected = pipe.encode_image(image)
    ours = CLIPImageEncoder.from_pretrained(wan_i2v_standin).encode(first_frame)
    assert ours.shape == expected.shape == (1, 17, 24)  # (32 / 8)² patches + the class token, CLIP hidden 24
    print(f"image tokens {size}: max |ours - pipeline| = {_max_diff(ours, expected):.3g}")
    assert _max_diff(ours, expected) <= 1e-5


def test_teacher_sampler_reproduces_diffusers_wan_pipeline_t2v(wan_standin):
    """T2V: no context frames, no condition -> the same latents as ``WanPipeline`` from the same noise."""
    from diffusers import WanPipeline

    root = wan_standin
    pipe = WanPipeline.from_pretrained(root, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(1, 16, 2, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(1))
    text, uncond = _text(root, [PROMPT, NEGATIVE]).chunk(2)
    model = CausalWanTransformer3DModel.from_pretrained(root, subfolder="transformer").eval()

    expected = pipe(
        prompt=PROMPT, negative_prompt=NEGATIVE, height=SIZE, width=SIZE, num_frames=PIXEL_FRAMES,
        num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=noise.clone(), output_type="latent",
    ).frames  # fmt: skip
    ours = sample_i2v(
        model, None, text, num_frames=noise.shape[2], steps=STEPS, shift=_flow_shift(root), uncond_text=uncond,
        guidance_scale=GUIDANCE, sampler="unipc", noise=noise.clone(),
    )  # fmt: skip
    diff = _max_diff(ours, expected)
    print(f"T2V: max |ours - WanPipeline| = {diff:.3g} (latents of scale {expected.abs().max():.3g})")
    assert ours.shape == expected.shape == noise.shape
    assert diff <= TOLERANCE
    assert _max_diff(ours, noise) > 0.1


# ---- streaming with the I2V condition --------------------------------------------------------------------------
C, TF = 3, 1  # pixel space: IdentityCodec's channels and temporal factor


@pytest.fixture
def i2v_model(tiny_wan_config, request):
    """A tiny random Wan I2V transformer: in_channels = C noisy + TF mask + C first-frame channels; with
    ``request.param`` True it also attends to image tokens (then the text context must be 512 tokens, as in Wan)."""
    config = dict(tiny_wan_config, in_channels=2 * C + TF, out_channels=C)
    if request.param:
        config.update(image_dim=8, added_kv_proj_dim=config["num_attention_heads"] * config["attention_head_dim"])
    return CausalWanTransformer3DModel(**config).eval()


def _stream(model, layout, x, t, text, cond):
    """Feed the clip chunk by chunk through the KV cache, each call given the WHOLE clip's condition."""
    cache = model.new_kv_cache(layout)
    sizes = [layout.context_frames] if layout.context_frames else []
    sizes += [layout.frames_per_chunk] * layout.num_chunks(x.shape[2])
    outs, offset = [], 0
    for size in sizes:
        sl = slice(offset, offset + size)
        kwargs = dict(chunk_layout=layout, kv_cache=cache, frame_offset=offset, update_cache=True, **cond)
        outs.append(model(x[:, :, sl], t[:, sl], text, **kwargs).sample)
        offset += size
    return torch.cat(outs, dim=2)


@pytest.mark.parametrize("i2v_model", [False, True], ids=["no-image-tokens", "image-tokens"], indirect=True)
@pytest.mark.parametrize("layout", STREAMING_LAYOUTS.values(), ids=STREAMING_LAYOUTS.keys())
def test_streaming_with_wan_i2v_condition_matches_block_causal_forward(i2v_model, layout):
    """Chunk by chunk with the KV cache, each call slicing the whole clip's condition at its frame offset, equals
    the block-causal forward of the clip. The condition is random (a ``[B, TF + C, F, H, W]`` tensor like
    :func:`wan_i2v_condition`'s, but different in every frame), so a slice taken at the wrong frames shows in every
    chunk; wan_i2v_condition's own layout is checked against the pipeline above and in pixel space below."""
    model = i2v_model
    frames = layout.context_frames + 5 * layout.frames_per_chunk
    x = torch.randn(2, C, frames, 16, 16)
    t = torch.rand(2, frames) * 1000
    condition = torch.randn(2, TF + C, frames, 16, 16)
    cond = {"condition": condition}
    text_len = 5
    if model.config.image_dim is not None:
        cond["encoder_hidden_states_image"] = torch.randn(2, 7, model.config.image_dim)
        text_len = 512  # diffusers' WanAttnProcessor splits [image tokens, 512 text tokens]
    text = torch.randn(2, text_len, model.config.text_dim)
    with torch.no_grad():
        full = model(x, t, text, chunk_layout=layout, **cond).sample
        streamed = _stream(model, layout, x, t, text, cond)
        # the condition reaches the output: another condition changes it, none is refused by name
        other = model(x, t, text, chunk_layout=layout, **{**cond, "condition": torch.randn_like(condition)}).sample
        with pytest.raises(ValueError, match="channels"):
            model(x, t, text, chunk_layout=layout, **{k: v for k, v in cond.items() if k != "condition"})
    assert streamed.shape == full.shape == x.shape
    assert (streamed - full).abs().max() <= 1e-5
    assert not torch.allclose(other, full)


def test_wan_i2v_condition_in_pixel_space_is_the_mask_then_the_first_frame_then_black():
    """IdentityCodec (temporal factor 1): one mask channel, 1 on frame 0 only; then the frame itself, then zeros."""
    first = torch.rand(2, 3, 16, 16) * 2 - 1
    condition = wan_i2v_condition(IdentityCodec(), first, 4)
    assert condition.shape == (2, TF + C, 4, 16, 16)
    assert torch.equal(condition[:, 0, 0], torch.ones(2, 16, 16))
    assert torch.equal(condition[:, 0, 1:], torch.zeros(2, 3, 16, 16))
    assert torch.equal(condition[:, 1:, 0], first)
    assert torch.equal(condition[:, 1:, 1:], torch.zeros(2, 3, 3, 16, 16))


def test_wan_i2v_shaped_preset_trains_stages_one_to_three(wan_i2v_standin, wan_standin, wan_video_folder, tmp_path):
    """A Wan2.1-I2V-shaped preset (36-channel transformer, CLIP image encoder, Wan VAE, umT5, mp4 folder) through
    teacher -> Stage I -> II -> III: the image encoder runs on every first frame, the condition goes everywhere;
    D's backbone comes from the T2V checkpoint (stage3.disc_pretrained), as in the paper."""
    import math
    import time

    from standins import write_wan_preset

    from aad1lib.config import load_preset
    from aad1lib.ode_pairs import ODEPairsDataset
    from aad1lib.train.stage1 import train_stage1
    from aad1lib.train.stage2 import train_stage2
    from aad1lib.train.stage3 import train_stage3
    from aad1lib.train.teacher import train_teacher

    folder, csv = wan_video_folder
    preset = write_wan_preset(
        tmp_path / "wan-i2v.yaml", wan_i2v_standin, folder, csv, name="wan-i2v-standin",
        model={"i2v": "wan_i2v"}, text={"max_length": 512},  # Wan I2V splits image/text tokens at 512
        chunking={"context_frames": 0, "frames_per_chunk": 1, "window_frames": 2},  # 3 latent frames, 3 chunks
        stage3={"disc_pretrained": str(wan_standin)},
    )  # fmt: skip
    cfg = load_preset(preset)
    assert cfg.wan_kwargs()["in_channels"] == 36 and cfg.latent_frames == 3
    root, seconds = tmp_path / "runs", {}
    tic = time.time()
    teacher = train_teacher(cfg, run_name="i2v", runs_root=root)
    runs = [teacher]
    for stage, train in (("stage1", train_stage1), ("stage2", train_stage2), ("stage3", train_stage3)):
        tic = time.time()
        runs.append(train(cfg, runs[-1].run, run_name="i2v", runs_root=root))
        seconds[stage] = time.time() - tic
    pair = ODEPairsDataset(runs[1].run.path / "ode_pairs")[0]
    assert pair["condition"].shape[:2] == (20, 3)  # 4 mask + 16 latent channels, 3 latent frames
    assert pair["encoder_hidden_states_image"].shape == (17, 24)  # CLIP tokens (stand-in: 16 patches + class)
    for result in runs[1:]:
        assert result.run.finished and result.model.config.in_channels == 36
        assert all(math.isfinite(v) for m in result.run.read_metrics() for v in m.values())
    from safetensors.torch import load_file

    disc = load_file(runs[3].run.latest_checkpoint() / "discriminator.safetensors")
    assert disc["backbone.patch_embedding.weight"].shape[1] == 16  # the T2V backbone: latents only, no condition
    print("Wan-I2V-shaped preset, one process, wall seconds per stage:", {k: round(v, 1) for k, v in seconds.items()})


def test_speed_benchmark_times_the_image_encoder_once_per_clip(wan_i2v_standin, wan_video_folder, tmp_path):
    from standins import write_wan_preset

    from aad1lib.config import load_preset
    from aad1lib.eval.speed import speed_benchmark
    from aad1lib.models import CausalWanTransformer3DModel, CLIPImageEncoder

    folder, csv = wan_video_folder
    preset = write_wan_preset(tmp_path / "i2v.yaml", wan_i2v_standin, folder, csv, name="wan-i2v-standin",
                              model={"i2v": "wan_i2v"}, text={"max_length": 512},
                              chunking={"context_frames": 0, "frames_per_chunk": 1, "window_frames": 2})  # fmt: skip
    cfg = load_preset(preset)
    model = CausalWanTransformer3DModel.from_pretrained(wan_i2v_standin, subfolder="transformer").eval()
    encoder = CLIPImageEncoder.from_pretrained(wan_i2v_standin)
    result = speed_benchmark(cfg, {"AAD-1": (model, "causal", 1), "teacher": (model, "teacher", 2)}, lengths=(1,),
                             repeats=2, image_encoder=encoder)  # fmt: skip
    for row in result["rows"]:
        clip_ms = row["per_chunk_ms"] * row["chunks"]
        assert 0 < row["image_encoder_ms"] < clip_ms, row  # inside the clip's time, once
        print(f"{row['name']}: image encoder {row['image_encoder_ms']:.1f} ms of {clip_ms:.1f} ms per clip")
