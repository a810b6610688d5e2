"""Tiny stand-ins of the real inputs of the Wan presets, written by the real libraries' own savers.

- :func:`write_wan_t2v_standin`: a folder laid out like ``Wan2.1-T2V-1.3B-Diffusers`` (``model_index.json``,
  ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), saved by diffusers'
  ``WanPipeline.save_pretrained`` from random tiny components: the same classes, file names and configs as the
  real checkpoint, only the sizes differ. ``diffusers.WanPipeline.from_pretrained`` loads it and samples.
- :func:`write_wan_i2v_standin`: the same for ``Wan2.1-I2V-14B-480P-Diffusers`` (adds ``image_encoder/``,
  ``image_processor/``; a 36-channel transformer with image cross-attention), saved by
  ``WanImageToVideoPipeline.save_pretrained``; ``diffusers.WanImageToVideoPipeline.from_pretrained`` samples it.
- :func:`write_video_folder`: mp4 clips of a photograph panned smoothly over time plus the ``file,caption`` CSV
  that ``data.kind: video_folder`` reads.
- :func:`write_wan_preset`: a YAML with the structure of ``experiments/configs/wan2.1-1.3b.yaml`` pointing at
  both, at a size a CPU trains in seconds.
- :func:`torchrun` / :func:`run_stages_cli`: the stage trainers as a cluster starts them
  (``python -m torch.distributed.run ... -m aad1lib.train <stage>``).

Nothing is downloaded. Plain functions: tests import them; the session fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

# ---- the stand-in's sizes (the real 1.3B values in the comments) ---------------------------------------------
UMT5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8)  # 4096, …
WAN_TRANSFORMER = dict(
    patch_size=(1, 2, 2),  # as Wan 2.1
    num_attention_heads=2,  # 12
    attention_head_dim=16,  # 128
    in_channels=16,  # as Wan 2.1 (the VAE's z_dim)
    out_channels=16,
    text_dim=UMT5["d_model"],  # 4096 = umT5-XXL's d_model
    freq_dim=32,  # 256
    ffn_dim=64,  # 8960
    num_layers=4,  # 30
)
WAN_VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)  # 96, 16, [1, 2, 4, 4], 2
# Wan2.1-T2V-1.3B-Diffusers/scheduler/scheduler_config.json
WAN_SCHEDULER = dict(
    num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
    solver_order=2, predict_x0=True, solver_type="bh2", lower_order_final=True,
)  # fmt: skip

# ---- tokenizer ------------------------------------------------------------------------------------------------
WORDS = "a cat dog runs jumps over the red blue car video of sunset ocean waves slowly".split()
EXTRA_WORDS = "camera pans across photograph scene moving left right up down bright dark clouds water".split()


def train_spiece_model(words: list[str] = WORDS + EXTRA_WORDS, seed: int = 0) -> bytes:
    """A sentencepiece unigram model (T5's special ids: <pad>=0, </s>=1, <unk>=2, no <s>) trained on random
    sentences of ``words``: every word becomes one piece ("▁cat"), plus single letters for unseen words."""
    import sentencepiece as spm

    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(400)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, model_type="unigram", vocab_size=len(words) + 40,
        hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", num_threads=1, minloglevel=2,
    )  # fmt: skip
    return model.getvalue()


def build_umt5_tokenizer(folder: Path):
    """Write ``spiece.model`` into ``folder`` and load it with ``T5Tokenizer.from_pretrained`` (the converter
    path: ``T5Tokenizer(vocab_file=...)`` silently builds a 4-token vocab in transformers 5.x)."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    proto = train_spiece_model()
    (folder / "spiece.model").write_bytes(proto)
    tokenizer = T5Tokenizer.from_pretrained(folder, extra_ids=0)
    pieces = spm.SentencePieceProcessor(model_proto=proto).get_piece_size()
    if len(tokenizer) != pieces:
        raise RuntimeError(f"tokenizer loaded {len(tokenizer)} tokens, the sentencepiece model has {pieces}")
    return tokenizer


def build_umt5_encoder(vocab_size: int, seed: int = 0):
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return UMT5EncoderModel(UMT5Config(vocab_size=vocab_size, **UMT5)).eval()


def save_tiny_umt5(root: Path, layout: str = "pipeline") -> tuple[Path, object, object]:
    """A random 2-layer umT5 encoder and its sentencepiece tokenizer, saved like Wan's pipeline folder
    (``layout="pipeline"``: ``root/text_encoder`` + ``root/tokenizer``) or both in ``root`` (``"flat"``)."""
    root = Path(root)
    model_dir = root / "text_encoder" if layout == "pipeline" else root
    tokenizer_dir = root / "tokenizer" if layout == "pipeline" else root
    tokenizer = build_umt5_tokenizer(tokenizer_dir)
    tokenizer.save_pretrained(tokenizer_dir)  # + tokenizer.json, tokenizer_config.json beside spiece.model
    model = build_umt5_encoder(len(tokenizer))
    model.save_pretrained(model_dir)
    return root, model, tokenizer


# ---- Wan 2.1 T2V pipeline folder ------------------------------------------------------------------------------
def build_wan_vae(seed: int = 0, **overrides):
    from diffusers import AutoencoderKLWan

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoencoderKLWan(**{**WAN_VAE, **overrides}).eval()


def write_wan_t2v_standin(root: Path, seed: int = 0) -> Path:
    """A random tiny ``Wan2.1-T2V-1.3B-Diffusers`` written by ``diffusers.WanPipeline.save_pretrained``.

    Sizes: :data:`WAN_TRANSFORMER` (~70k parameters), :data:`WAN_VAE` (~0.2M), :data:`UMT5` (2 layers, d_model 32)
    with a ~60-piece sentencepiece vocabulary; the scheduler is UniPC with flow sigmas as Wan ships. ~3 MB.
    """
    from diffusers import UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    root = Path(root)
    tokenizer = build_umt5_tokenizer(root / "_spiece")
    text_encoder = build_umt5_encoder(len(tokenizer), seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        transformer = WanTransformer3DModel(**WAN_TRANSFORMER).eval()
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
                       vae=build_wan_vae(seed + 2), scheduler=UniPCMultistepScheduler(**WAN_SCHEDULER))  # fmt: skip
    pipe.save_pretrained(root)
    (root / "tokenizer" / "spiece.model").write_bytes((root / "_spiece" / "spiece.model").read_bytes())  # as Wan
    for f in (root / "_spiece").iterdir():
        f.unlink()
    (root / "_spiece").rmdir()
    return root


def check_wan_t2v_standin(root: Path) -> np.ndarray:
    """Load ``root`` with ``diffusers.WanPipeline.from_pretrained`` and sample 2 steps of a 5×32×32 clip:
    proof that the folder is a real Wan pipeline. Returns the frames ``[5, 32, 32, 3]`` in [0, 1]."""
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(root, local_files_only=True)
    out = pipe(prompt="a red car drives over the bridge", negative_prompt="", height=32, width=32, num_frames=5,
               num_inference_steps=2, guidance_scale=3.0, max_sequence_length=16, output_type="np",
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    return out.frames[0]


# ---- Wan 2.1 I2V pipeline folder ------------------------------------------------------------------------------
# Wan2.1-I2V-14B-480P-Diffusers/image_encoder/config.json is CLIP ViT-H/14: hidden 1280, 32 layers, 16 heads,
# image 224, patch 14 -> 257 tokens (the pipeline takes hidden_states[-2]). Stand-in: 32×32 images, patch 8 -> 17.
CLIP_VISION = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                   patch_size=8, projection_dim=16)  # fmt: skip
# Wan2.1-I2V-14B-480P-Diffusers/transformer/config.json: in_channels 36 = 16 noisy latents + 4 mask channels (the
# VAE's temporal factor) + 16 first-frame latents; image_dim = CLIP's hidden size; added_kv_proj_dim = inner dim.
WAN_I2V_TRANSFORMER = dict(
    WAN_TRANSFORMER,
    in_channels=16 + 4 + 16,
    image_dim=CLIP_VISION["hidden_size"],  # 1280
    added_kv_proj_dim=WAN_TRANSFORMER["num_attention_heads"] * WAN_TRANSFORMER["attention_head_dim"],  # 5120
)
# Wan2.1-I2V-14B-480P-Diffusers/image_processor/preprocessor_config.json at the stand-in's image size (224 there)
CLIP_IMAGE_PROCESSOR = dict(
    do_resize=True, size={"shortest_edge": CLIP_VISION["image_size"]}, resample=3, do_center_crop=True,
    crop_size={"height": CLIP_VISION["image_size"], "width": CLIP_VISION["image_size"]}, do_rescale=True,
    rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True,
    image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
)  # fmt: skip
# Wan2.1-I2V-14B-480P-Diffusers/scheduler/scheduler_config.json: UniPC, flow_shift 3.0 (as the T2V folder)
WAN_I2V_SCHEDULER = dict(WAN_SCHEDULER)


def write_wan_i2v_standin(root: Path, seed: int = 0) -> Path:
    """A random tiny ``Wan2.1-I2V-14B-480P-Diffusers`` written by ``diffusers.WanImageToVideoPipeline.save_pretrained``.

    The T2V stand-in's umT5, tokenizer, VAE and transformer sizes, plus what Wan 2.1 I2V adds: the transformer
    takes 36 input channels and attends to CLIP image tokens (:data:`WAN_I2V_TRANSFORMER`), ``image_encoder/`` is
    a 2-layer ``CLIPVisionModel`` of 32×32 images (:data:`CLIP_VISION`, 17 tokens of width 24) and
    ``image_processor/`` its ``CLIPImageProcessor`` (:data:`CLIP_IMAGE_PROCESSOR`). ~1.5 MB.

    Wan's cross-attention splits the context as ``[image tokens, 512 text tokens]`` (diffusers'
    ``WanAttnProcessor`` hard-codes 512): prompts must be encoded at ``max_length=512``, as the pipeline does.
    """
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    root = Path(root)
    tokenizer = build_umt5_tokenizer(root / "_spiece")
    text_encoder = build_umt5_encoder(len(tokenizer), seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        transformer = WanTransformer3DModel(**WAN_I2V_TRANSFORMER).eval()
        torch.manual_seed(seed + 3)
        image_encoder = CLIPVisionModel(CLIPVisionConfig(**CLIP_VISION)).eval()
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=build_wan_vae(seed + 2),
        scheduler=UniPCMultistepScheduler(**WAN_I2V_SCHEDULER), image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(**CLIP_IMAGE_PROCESSOR), transformer=transformer,
    )  # fmt: skip
    pipe.save_pretrained(root)
    # transformers 5.x names the class it fell back to (CLIPImageProcessorPil without torchvision); the real folder
    # says CLIPImageProcessor, which loads the torchvision backend where it is installed and the PIL one otherwise
    index = json.loads((root / "model_index.json").read_text())
    index["image_processor"] = ["transformers", "CLIPImageProcessor"]
    (root / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    (root / "tokenizer" / "spiece.model").write_bytes((root / "_spiece" / "spiece.model").read_bytes())  # as Wan
    for f in (root / "_spiece").iterdir():
        f.unlink()
    (root / "_spiece").rmdir()
    return root


def standin_image(size: int = 32, index: int = 0):
    """A ``size``×``size`` RGB ``PIL.Image`` cut from a photograph (the I2V first frame)."""
    from PIL import Image

    return Image.fromarray(panned_clip(index, 1, size, size)[0])


def check_wan_i2v_standin(root: Path) -> np.ndarray:
    """Load ``root`` with ``diffusers.WanImageToVideoPipeline.from_pretrained`` and sample 2 steps of a 5×32×32
    clip from a 32×32 image: proof that the folder is a real Wan I2V pipeline. Returns ``[5, 32, 32, 3]`` in [0, 1]."""
    from diffusers import WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline.from_pretrained(root, local_files_only=True)
    out = pipe(image=standin_image(32), prompt="a red car drives over the bridge", negative_prompt="", height=32,
               width=32, num_frames=5, num_inference_steps=2, guidance_scale=3.0, output_type="np",
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    return out.frames[0]


# ---- video folder ---------------------------------------------------------------------------------------------
CAPTIONS = [
    "the camera pans right across a photograph",
    "the camera pans left across a photograph",
    "the camera moves down over a bright scene",
    "the camera moves up over a dark scene",
    "a slow pan across red and blue water",
    "a cat in a photograph, the camera moving right",
    "clouds over the ocean, the camera moving left",
    "a red car video, the camera panning slowly",
]


def _photo(index: int) -> np.ndarray:
    import skimage.data

    name = ("astronaut", "chelsea", "coffee", "rocket")[index % 4]
    return np.ascontiguousarray(getattr(skimage.data, name)()[:, :, :3])


def panned_clip(index: int, frames: int, height: int, width: int, speed: float = 2.0) -> np.ndarray:
    """uint8 ``[frames, height, width, 3]``: a window of twice the clip's size sliding over a photograph at
    ``speed`` output pixels per frame, in a direction that depends on ``index``; frames are downscaled 2× so the
    motion is smooth (sub-pixel) rather than a hard shift."""
    import cv2

    photo = _photo(index)
    angle = 2 * np.pi * index / 8
    dy, dx = speed * 2 * np.sin(angle), speed * 2 * np.cos(angle)  # in photo pixels per frame
    win_h, win_w = 2 * height, 2 * width
    cy = (photo.shape[0] - win_h) / 2 - dy * (frames - 1) / 2
    cx = (photo.shape[1] - win_w) / 2 - dx * (frames - 1) / 2
    out = np.empty((frames, height, width, 3), np.uint8)
    for f in range(frames):
        y, x = int(round(cy + dy * f)), int(round(cx + dx * f))
        crop = photo[y : y + win_h, x : x + win_w]
        out[f] = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    return out


def write_video_folder(
    root: Path, num_files: int = 8, frames: int = 9, height: int = 32, width: int = 32, fps: int = 16
) -> tuple[Path, Path]:
    """``num_files`` mp4s (H.264, written with imageio) of :func:`panned_clip` in ``root/clips/`` and
    ``root/captions.csv`` (``file,caption``, paths relative to the clip folder). Returns (folder, csv)."""
    import imageio.v2 as imageio

    folder = Path(root) / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(num_files):
        name = f"clip_{i:03d}.mp4"
        imageio.mimwrite(folder / name, panned_clip(i, frames, height, width), fps=fps, codec="libx264",
                         quality=9, macro_block_size=1, ffmpeg_log_level="error")  # fmt: skip
        rows.append((name, CAPTIONS[i % len(CAPTIONS)] + ("" if i < len(CAPTIONS) else f" ({i})")))
    captions = Path(root) / "captions.csv"
    with captions.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "caption"])
        writer.writerows(rows)
    return folder, captions


# ---- preset ---------------------------------------------------------------------------------------------------
def wan_preset_dict(standin_root: Path, video_root: Path, captions_csv: Path) -> dict:
    """experiments/configs/wan2.1-1.3b.yaml's structure at the stand-in's size: 9 frames at 32×32 -> 3 latent
    frames of 4×4 (2×2 tokens each) = 1 context frame + 1 chunk of 2; 3 of the folder's files held out for test;
    every stage 1-3 steps, batch 2."""
    wan = str(standin_root)
    t = WAN_TRANSFORMER
    return {
        "name": "wan-standin",
        "seed": 0,
        "data": {"kind": "video_folder", "num_frames": 9, "height": 32, "width": 32, "fps": 16,
                 "root": str(video_root), "captions_csv": str(captions_csv), "on_error": "skip",
                 "test_clips": 3},  # held-out FILES of the folder (the rest train)
        "model": {"pretrained": wan, "patch_size": list(t["patch_size"]),
                  "num_attention_heads": t["num_attention_heads"], "attention_head_dim": t["attention_head_dim"],
                  "ffn_dim": t["ffn_dim"], "num_layers": t["num_layers"], "freq_dim": t["freq_dim"],
                  "text_dim": t["text_dim"], "in_channels": t["in_channels"]},
        "text": {"kind": "umt5", "path": wan, "dim": UMT5["d_model"], "max_length": 16},
        "codec": {"kind": "wan_vae", "path": wan},
        "chunking": {"frames_per_chunk": 2, "context_frames": 1, "sink_frames": 1, "window_frames": 3},
        "sampling": {"shift": 8.0, "teacher_steps": 2, "teacher_sampler": "unipc", "guidance_scale": 5.0},
        "train": {"batch_size": 2, "mixed_precision": "bf16", "log_every": 1, "sample_every": 100,
                  "checkpoint_every": 100, "ema_decay": None, "parallel": "fsdp2", "gradient_checkpointing": True,
                  "tracker": "none"},
        "teacher": {"steps": 0, "num_samples": 2},
        "stage1": {"steps": 2, "lr": 2.0e-6, "ode_pairs": 4, "ode_steps": 4, "target_steps": 4, "shard_size": 4,
                   "num_samples": 2},
        "stage2": {"steps": 2, "student_steps": 1, "critic_steps": 1, "guidance_scale": 3.0, "lr_generator": 2.0e-6,
                   "lr_critic": 4.0e-7, "eval_every": 1, "patience": 3, "num_val_clips": 2, "num_samples": 2},
        "stage3": {"steps": 2, "lam": 20.0, "r1_sigma": 0.01, "d_steps": 1, "lr_generator": 2.0e-6,
                   "lr_discriminator": 2.0e-6, "num_samples": 2},
    }  # fmt: skip


def write_wan_preset(path: Path, standin_root: Path, video_root: Path, captions_csv: Path, **overrides) -> Path:
    """Write :func:`wan_preset_dict` to ``path``; ``overrides`` are dotted keys with ``__`` for the dot
    (``train__mixed_precision="no"``) or plain section dicts (``stage3={"steps": 3}``, merged)."""
    preset = wan_preset_dict(standin_root, video_root, captions_csv)
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        target = preset
        for part in parents:
            target = target.setdefault(part, {})
        if isinstance(value, dict) and isinstance(target.get(leaf), dict):
            target[leaf].update(value)
        else:
            target[leaf] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(preset, sort_keys=False))
    return path


# ---- chunk layouts every streaming-equality test covers ---------------------------------------------------
def _streaming_layouts() -> dict:
    from aad1lib.chunking import ChunkLayout

    return {
        "no-window": ChunkLayout(frames_per_chunk=2, context_frames=1),
        "sink+window": ChunkLayout(frames_per_chunk=2, context_frames=1, sink_frames=1, window_frames=3),
        "frame-chunks+window": ChunkLayout(frames_per_chunk=1, context_frames=1, sink_frames=1, window_frames=3),
        "t2v-sink-in-chunk": ChunkLayout(frames_per_chunk=3, sink_frames=1, window_frames=4),
    }


STREAMING_LAYOUTS = _streaming_layouts()


# ---- command-line runs ----------------------------------------------------------------------------------------
STAGES = ("teacher", "stage1", "stage2", "stage3")


def torchrun(stage: str, preset: str | Path, run_name: str, runs_root: Path, nproc: int = 1,
             init_from: str | Path | None = None, sets: dict | list | tuple = (), timeout: float = 600):  # fmt: skip
    """``python -m torch.distributed.run --nproc_per_node nproc -m aad1lib.train stage ...``; asserts exit 0
    (message: the tail of stderr) and returns the run folder; past ``timeout`` seconds every process of the run is
    killed and the assertion fails. ``sets``: ``{"key": value}`` or ``["key=value"]``."""
    from aad1lib.config import load_preset
    from aad1lib.processes import run_process_group
    from aad1lib.run_folder import RunFolder
    from aad1lib.train.__main__ import parse_overrides

    pairs = [f"{k}={json.dumps(v)}" for k, v in sets.items()] if isinstance(sets, dict) else list(sets)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "-m", "aad1lib.train",
           stage, "--preset", str(preset), "--run-name", run_name, "--runs-root", str(runs_root)]  # fmt: skip
    if init_from is not None:
        cmd += ["--init-from", str(init_from)]
    for pair in pairs:
        cmd += ["--set", pair]
    # own process group: on a timeout (a collective that never completes) the workers die too, not only torchrun
    returncode, stderr = run_process_group(cmd, timeout, cwd=REPO)
    assert returncode == 0, f"{' '.join(cmd)}\nexit {returncode}\n{stderr[-4000:]}"
    name = load_preset(preset, parse_overrides(pairs)).name
    return RunFolder.open(Path(runs_root) / f"{stage}-{name}-{run_name}")


def run_stages_cli(preset: str | Path, runs_root: Path, nproc: int = 1, extra_sets: dict | list | tuple = (),
                   run_name: str = "cli", timeout: float = 600) -> dict:  # fmt: skip
    """teacher -> Stage I -> Stage II -> Stage III, each a fresh ``torch.distributed.run`` of ``nproc`` processes
    started from the previous stage's run folder; returns ``{stage: RunFolder}``."""
    runs, previous = {}, None
    for stage in STAGES:
        init = previous.path if previous is not None else None
        runs[stage] = previous = torchrun(stage, preset, run_name, runs_root, nproc, init, extra_sets, timeout)
    return runs
