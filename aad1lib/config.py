"""Typed configuration: one dataclass per part and per stage; presets are YAML in experiments/configs/.

A preset file holds the shared parts (data, model, text, codec, chunking, sampling, train) and one
section per stage. Loading is strict: an unknown key, a value of the wrong type, a choice outside its
allowed values or an impossible combination raises :class:`ConfigError` naming the key, before any
work starts. Overrides use dotted keys (``{"teacher.steps": 10}``), as notebooks pass them.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .chunking import ChunkLayout
from .paths import ROOT
from .pretrained import pretrained_size_conflicts

CONFIG_DIR = ROOT / "experiments" / "configs"


class ConfigError(ValueError):
    """A preset or override that cannot be used; the message names the key."""


# ---- shared parts --------------------------------------------------------------------------------
@dataclass
class DataConfig:
    kind: Literal["synthetic", "real_clips", "video_folder"] = "synthetic"
    num_frames: int = 9  # pixel frames per clip (the codec maps them to latent frames)
    height: int = 32
    width: int = 32
    fps: int = 8  # frame rate of the clips; video_folder files are resampled to it by timestamp
    train_clips: int = 256  # synthetic: train set size (video_folder: every file not held out)
    test_clips: int = 16  # synthetic: test set size; video_folder: number of held-out test FILES (chosen by seed)
    root: str | None = None  # video_folder: folder of mp4s
    captions_csv: str | None = None  # video_folder: CSV with columns file,caption
    on_error: Literal["raise", "skip"] = "raise"  # video_folder: corrupt/short files
    seed: int = 0  # synthetic clips and the video_folder split; fixed apart from the training seed, so seeds vary
    #                training, not the data
    background_blur: float = 0.0  # synthetic: Gaussian σ (px) of the background photograph; 0 = sharp
    speeds: Literal["continuous", "worded"] = "continuous"  # synthetic: worded = the caption fixes each speed
    # synthetic: camera motions drawn per clip, and the inclusive range of digits per clip (a simpler task)
    camera_modes: list[Literal["static", "pan", "zoom"]] = field(
        default_factory=lambda: ["static", "pan", "zoom"])  # fmt: skip
    num_sprites: tuple[int, int] = (1, 2)


@dataclass
class ModelConfig:
    """The Wan transformer shared by teacher, student, critic and discriminator backbone."""

    pretrained: str | None = None  # local diffusers Wan folder (relative: to the repository root); None = build
    patch_size: tuple[int, int, int] = (1, 4, 4)
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    ffn_dim: int = 512
    num_layers: int = 4
    freq_dim: int = 64
    text_dim: int = 64
    in_channels: int = 3  # latent channels (the model's output); wan_i2v feeds condition channels besides them
    rope_max_seq_len: int = 1024
    # How the first frame conditions the clip (docs/design.md §8): context_frame = its latent enters clean at
    # timestep 0 and is written into the KV cache first (T2V-initialised AR models); wan_i2v = Wan 2.1 I2V's
    # [noisy latents, mask, first-frame latents] channel concatenation (+ CLIP image tokens when image_dim is set)
    i2v: Literal["context_frame", "wan_i2v"] = "context_frame"
    # context_frame only: frames after the first are modelled as their difference r to it, the network predicts
    # r0 (docs/design.md §9); its output layer starts at 0, so an untrained model samples copies of the first frame
    # instead of noise. A lever for small CPU teachers; the Wan presets keep Wan's velocity prediction
    residual_to_first_frame: bool = False

    def wan_kwargs(self, condition_channels: int = 0) -> dict[str, Any]:
        return dict(
            patch_size=tuple(self.patch_size),
            num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim,
            in_channels=self.in_channels + condition_channels,
            out_channels=self.in_channels,
            text_dim=self.text_dim,
            freq_dim=self.freq_dim,
            ffn_dim=self.ffn_dim,
            num_layers=self.num_layers,
            rope_max_seq_len=self.rope_max_seq_len,
        )


@dataclass
class TextConfig:
    kind: Literal["tiny", "umt5"] = "tiny"
    path: str | None = None  # umt5: local Wan folder (text_encoder/ + tokenizer/)
    dim: int = 64  # tiny encoder width (must equal model.text_dim)
    max_length: int = 24
    seed: int = 0  # tiny encoder's random embedding; NOT the training seed (a Stage III seed must see the
    #                same prompt embeddings the teacher and student were trained with)


@dataclass
class CodecConfig:
    kind: Literal["identity", "wan_vae"] = "identity"
    path: str | None = None  # wan_vae: local Wan folder (vae/)


@dataclass
class ChunkConfig:
    """Generator chunking in LATENT frames (paper: 3 per chunk, sink + sliding window)."""

    frames_per_chunk: int = 2
    context_frames: int = 1  # the I2V first frame, clean
    sink_frames: int = 1
    window_frames: int | None = None  # None = attend to the whole history


@dataclass
class SamplingConfig:
    shift: float = 3.0  # flow-matching time shift (Wan: 5.0 at 480p)
    teacher_steps: int = 20  # teacher sampler steps (paper's Wan reference: 50 steps × CFG = 100 NFE)
    teacher_sampler: Literal["euler", "unipc"] = "euler"
    guidance_scale: float = 3.0


@dataclass
class TrainConfig:
    """Settings of the shared training loop."""

    batch_size: int = 8
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    grad_clip: float = 1.0
    ema_decay: float | None = None  # None = no EMA
    log_every: int = 10
    sample_every: int = 200
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    tracker: Literal["tensorboard", "wandb", "mlflow", "none"] = "tensorboard"
    num_workers: int = 0
    parallel: Literal["ddp", "fsdp2"] = "ddp"  # multi-process: DDP, or torch FSDP2 (fully_shard per block)
    gradient_checkpointing: bool = False  # recompute block activations in backward (GPU presets)


# ---- stages --------------------------------------------------------------------------------------
@dataclass
class TeacherConfig:
    """Stage 0: the bidirectional I2V teacher (trained on CPU presets, loaded for Wan presets)."""

    steps: int = 1000
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    # after warm-up: constant, or cosine decay to 0 over `steps` (diffusers' schedules; the demo teacher's
    # 1200 constant-lr steps left 4x4-patch colour blocks around moving sprites)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    caption_dropout: float = 0.1  # so classifier-free guidance works
    num_samples: int = 4  # test first frames sampled for the notebook


@dataclass
class Stage1Config:
    """Stage I: causal init by Diffusion Forcing + ODE regression on teacher trajectories."""

    steps: int = 500
    lr: float = 2e-4
    warmup_steps: int = 20
    ode_pairs: int = 256  # teacher trajectories (one per training clip's first frame + caption)
    ode_steps: int = 24  # teacher sampler steps per trajectory (paper recipe: 48, shift 8)
    target_steps: int = 4  # student's few-step list: states kept at evenly spaced ODE steps
    shard_size: int = 64  # trajectories per file on disk
    num_samples: int = 4


@dataclass
class Stage2Config:
    """Stage II: Self-Forcing rollout + DMD (also the 4-step CausVid / Self-Forcing baselines)."""

    steps: int = 100  # generator updates (paper: ~100, early stopping)
    student_steps: int = 1  # denoising steps per chunk: 1 = AAD-1, 4 = baselines
    rollout: Literal["self", "teacher_forced"] = "self"  # self = Self-Forcing; teacher_forced = CausVid-style
    guidance_scale: float = 3.0  # CFG of the real score (teacher)
    critic_steps: int = 5  # fake-score critic updates per generator update
    lr_generator: float = 2e-5
    lr_critic: float = 4e-5
    beta1: float = 0.0  # Adam β1 = 0 (DMD2 / Self-Forcing)
    beta2: float = 0.999
    t_min: float = 0.02  # DMD noise-level range (before the shift)
    t_max: float = 0.98
    eval_every: int = 10  # generator steps between validation evaluations
    patience: int = 5  # evaluations without improvement before early stopping (0 = never stop early)
    # the weights Stage II hands on: "best" = lowest validation loss (our early stopping), "last" = the final update
    # (a fixed-length warm-up; the validation loss then only reports). The paper early-stops on an unnamed signal
    keep: Literal["best", "last"] = "best"
    num_val_clips: int = 8
    num_samples: int = 4


@dataclass
class Stage3Config:
    """Stage III: asymmetric adversarial distillation (causal 1-step generator, bidirectional video-level D)."""

    steps: int = 200  # generator updates (paper: 200)
    lam: float = 20.0  # λ of approximate R1 (reals) + R2 (fakes); the paper's value. See losses.approximate_r1
    r1_sigma: float = 0.01  # σ of the finite-difference perturbation (divided by σ: λ refers to that convention)
    disc_attention: Literal["bidirectional", "causal"] = "bidirectional"
    disc_logit: Literal["video", "frame"] = "video"
    disc_taps: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0])  # query heads after these depths
    disc_queries: int = 4
    train_disc_backbone: bool = True  # False = frozen backbone, heads only
    disc_pretrained: str | None = None  # D's backbone: a local Wan checkpoint (Wan presets: the T2V model, as the
    #                                     paper) or None = the teacher's weights (CPU presets)
    disc_condition: bool = True  # a backbone with Wan I2V's condition channels (an I2V teacher) sees the image
    #                              condition; False = it sees zeros there (no first-frame hint)
    d_steps: int = 1  # discriminator updates per generator update
    d_warmup_steps: int = 0  # discriminator-only updates before the generator starts (they count toward steps)
    # G also waits for held-out d_pair_acc >= this, in (0.5, 1] (None = off), or for d_warmup_max_steps (then warns)
    d_warmup_accuracy: float | None = None
    d_warmup_max_steps: int | None = None  # cap of the accuracy warm-up (required with it); counts toward steps
    disc_eval_every: int = 10  # steps between held-out D evaluations (d_acc, d_pair_acc, d_gap_heldout); step 0 too
    disc_eval_clips: int = 8  # held-out test clips (and their fakes) D is evaluated on; at most the test split's
    lr_generator: float = 1e-5
    lr_discriminator: float = 1e-5
    beta1: float = 0.0
    beta2: float = 0.99
    real_source: Literal["data", "teacher"] = "data"  # teacher = Stage I's ODE endpoints (teacher samples)
    t_min: float = 0.0  # noise range of the discriminator's inputs (before the shift); same t for a real/fake pair
    t_max: float = 1.0
    saturation_gap: float = 15.0  # stop if mean D(real) - D(fake) stays above this ...
    saturation_steps: int = 50  # ... for this many consecutive updates (0 = never)
    num_samples: int = 4


@dataclass
class ExperimentConfig:
    name: str = "custom"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    text: TextConfig = field(default_factory=TextConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    chunking: ChunkConfig = field(default_factory=ChunkConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    stage3: Stage3Config = field(default_factory=Stage3Config)

    def validate(self) -> ExperimentConfig:
        """Reject impossible combinations, naming the keys involved."""
        d, m, c = self.data, self.model, self.chunking
        if self.text.kind == "tiny" and self.text.dim != m.text_dim:
            raise ConfigError(f"text.dim ({self.text.dim}) must equal model.text_dim ({m.text_dim})")
        if self.codec.kind == "identity" and m.in_channels != 3:
            raise ConfigError(
                f"codec.kind=identity works in pixel space: model.in_channels must be 3, got {m.in_channels}"
            )
        if d.kind == "video_folder" and not (d.root and d.captions_csv):
            raise ConfigError("data.kind=video_folder needs data.root and data.captions_csv")
        if d.kind == "video_folder" and d.test_clips < 1:
            raise ConfigError(f"data.kind=video_folder holds out data.test_clips files: need >= 1, got {d.test_clips}")
        if m.i2v == "wan_i2v" and c.context_frames:
            raise ConfigError(
                f"model.i2v=wan_i2v conditions through channels and generates the first frame: chunking.context_frames "
                f"must be 0, got {c.context_frames}"
            )
        if m.residual_to_first_frame and (m.i2v != "context_frame" or not c.context_frames):
            raise ConfigError(
                "model.residual_to_first_frame models frames as differences to the clean first frame: it needs "
                f"model.i2v=context_frame and chunking.context_frames >= 1, got {m.i2v} and {c.context_frames}"
            )
        if self.codec.kind == "wan_vae" and (d.num_frames - 1) % 4:
            raise ConfigError(f"codec.kind=wan_vae needs data.num_frames = 1 + 4k, got {d.num_frames}")
        factor = self.spatial_factor
        _, p_h, p_w = m.patch_size
        if d.height % (factor * p_h) or d.width % (factor * p_w):
            raise ConfigError(
                f"data.height×width = {d.height}×{d.width} must be divisible by codec factor × model.patch_size "
                f"({factor}×{p_h}, {factor}×{p_w})"
            )
        try:
            self.chunk_layout().check_num_frames(self.latent_frames)
        except ValueError as err:
            raise ConfigError(f"chunking vs data.num_frames ({self.latent_frames} latent frames): {err}") from err
        for key, value in [("teacher.caption_dropout", self.teacher.caption_dropout)]:
            if not 0 <= value < 1:
                raise ConfigError(f"{key} must lie in [0, 1), got {value}")
        s1, s2 = self.stage1, self.stage2
        if not 1 <= s1.target_steps <= s1.ode_steps:
            raise ConfigError(
                f"stage1.target_steps ({s1.target_steps}) must lie in 1..stage1.ode_steps ({s1.ode_steps})"
            )
        if not 1 <= s2.student_steps <= s1.target_steps:
            raise ConfigError(
                f"stage2.student_steps ({s2.student_steps}) must lie in 1..stage1.target_steps ({s1.target_steps}): "
                "the student samples on Stage I's target timesteps"
            )
        if not 0 <= s2.t_min < s2.t_max <= 1:
            raise ConfigError(f"need 0 <= stage2.t_min < stage2.t_max <= 1, got {s2.t_min}, {s2.t_max}")
        if s2.critic_steps < 1:
            raise ConfigError(f"stage2.critic_steps must be >= 1, got {s2.critic_steps}")
        s3 = self.stage3
        if s3.lam < 0:
            raise ConfigError(f"stage3.lam (λ of R1/R2) must be >= 0, got {s3.lam}")
        if s3.r1_sigma <= 0:
            raise ConfigError(f"stage3.r1_sigma must be > 0, got {s3.r1_sigma}")
        if not 0 <= s3.t_min < s3.t_max <= 1:
            raise ConfigError(f"need 0 <= stage3.t_min < stage3.t_max <= 1, got {s3.t_min}, {s3.t_max}")
        if s3.d_steps < 1:
            raise ConfigError(f"stage3.d_steps must be >= 1, got {s3.d_steps}")
        if s3.d_warmup_steps < 0:
            raise ConfigError(f"stage3.d_warmup_steps must be >= 0, got {s3.d_warmup_steps}")
        if s3.disc_eval_every < 1 or s3.disc_eval_clips < 1:
            raise ConfigError(
                f"stage3.disc_eval_every and stage3.disc_eval_clips must be >= 1, got {s3.disc_eval_every}, "
                f"{s3.disc_eval_clips}"
            )
        if s3.d_warmup_accuracy is not None:
            if not 0.5 < s3.d_warmup_accuracy <= 1:
                raise ConfigError(
                    f"stage3.d_warmup_accuracy must lie in (0.5, 1] (held-out pair accuracy; 0.5 = chance), got "
                    f"{s3.d_warmup_accuracy}"
                )
            if s3.d_warmup_max_steps is None or s3.d_warmup_max_steps < s3.d_warmup_steps:
                raise ConfigError(
                    f"stage3.d_warmup_accuracy needs stage3.d_warmup_max_steps >= stage3.d_warmup_steps "
                    f"({s3.d_warmup_steps}): the step at which the generator starts anyway; got {s3.d_warmup_max_steps}"
                )
        if not s3.disc_taps or not all(0 < f <= 1 for f in s3.disc_taps):
            raise ConfigError(f"stage3.disc_taps must be fractions of depth in (0, 1], got {s3.disc_taps}")
        if self.train.parallel == "fsdp2" and self.train.ema_decay is not None:
            raise ConfigError("train.ema_decay is not supported with train.parallel=fsdp2 (use ddp, or set it to null)")
        check_pretrained_sizes(self)  # model.* / text.dim vs model.pretrained's config.json, when the path exists
        return self

    # ---- latent geometry: what the codec makes of a clip (one place for the VAE's factors) ----
    @property
    def temporal_factor(self) -> int:
        """Pixel frames per latent frame after the first (Wan VAE: 4; pixel space: 1)."""
        return 4 if self.codec.kind == "wan_vae" else 1

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent pixel along height and width (Wan VAE: 8; pixel space: 1)."""
        return 8 if self.codec.kind == "wan_vae" else 1

    @property
    def condition_channels(self) -> int:
        """Wan 2.1 I2V's extra input channels: the first-frame mask (one per pixel frame of a latent frame) and the
        latents of [first frame, zeros...]; 0 for context_frame conditioning."""
        return self.temporal_factor + self.model.in_channels if self.model.i2v == "wan_i2v" else 0

    def wan_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the preset's Wan transformer (input channels include the condition's)."""
        return self.model.wan_kwargs(self.condition_channels)

    @property
    def latent_frames(self) -> int:
        return 1 + (self.data.num_frames - 1) // self.temporal_factor

    def chunk_layout(self) -> ChunkLayout:
        c = self.chunking
        return ChunkLayout(c.frames_per_chunk, c.context_frames, c.sink_frames, c.window_frames)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_pretrained_sizes(cfg: ExperimentConfig, missing_ok: bool = True) -> None:
    """Raise :class:`ConfigError` naming both values when the preset's sizes contradict its checkpoints
    (:func:`aad1lib.pretrained.pretrained_size_conflicts`), or when a checkpoint's config cannot be read."""
    try:
        problems = pretrained_size_conflicts(cfg, missing_ok=missing_ok)
    except ValueError as err:  # an unreadable config.json
        raise ConfigError(str(err)) from err
    if problems:
        raise ConfigError(
            "the preset contradicts its checkpoint (fix the preset's sizes or the path):\n  " + "\n  ".join(problems)
        )


# ---- loading -------------------------------------------------------------------------------------
class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false (any case) are booleans, so ``no``, ``off``,
    ``yes``, ``on`` stay strings (``mixed_precision: no`` is the string "no"). Boolean keys accept those words."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# YAML 1.1 spellings of the booleans (what yaml.safe_load, papermill -y or a notebook may have produced)
_BOOL_WORDS = {True: ("true", "yes", "on"), False: ("false", "no", "off")}


def yaml_load(text: str) -> Any:
    """Parse a preset file or a ``--set`` value with :class:`YamlLoader`."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def available_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load a preset by name (``tiny``, ``demo``, ``wan2.1-1.3b``, ``wan2.1-14b``) or YAML path, then apply
    dotted-key overrides and validate."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown preset {str(name_or_path)!r}; allowed: {available_presets()}")
    elif not path.exists():
        raise ConfigError(f"preset file {path} does not exist")
    raw = yaml_load(path.read_text()) or {}
    cfg = from_dict(ExperimentConfig, raw, prefix="")
    for key, value in (overrides or {}).items():
        apply_override(cfg, key, value)
    if cfg.model.pretrained and not Path(cfg.model.pretrained).expanduser().is_absolute():
        cfg.model.pretrained = str(ROOT / cfg.model.pretrained)  # a checkpoint committed with the repository
    return cfg.validate()


def from_run_config(raw: dict[str, Any]) -> ExperimentConfig:
    """The resolved ExperimentConfig a run saved in its config.yaml (``RunFolder.config``), without the stage's
    notebook parameters."""
    return from_dict(ExperimentConfig, {k: v for k, v in raw.items() if k not in ("notebook", "init_from")}, "")


def apply_override(cfg: Any, dotted_key: str, value: Any) -> None:
    """Set ``cfg.a.b = value`` with the same type checks as loading."""
    *parents, leaf = dotted_key.split(".")
    target = cfg
    for i, part in enumerate(parents):
        _check_key(type(target), part, ".".join(parents[:i]))
        target = getattr(target, part)
    _check_key(type(target), leaf, ".".join(parents))
    setattr(target, leaf, _check_type(typing.get_type_hints(type(target))[leaf], value, dotted_key))


def from_dict(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        _check_key(cls, key, prefix.rstrip("."))
        kwargs[key] = _check_type(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _check_key(cls: type, key: str, prefix: str) -> dict[str, dataclasses.Field]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where + key!r}; allowed keys: {sorted(fields)}")
    return fields


def _check_type(hint: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {args}")
    if origin is Literal:
        if isinstance(value, bool) and not any(isinstance(a, bool) for a in args):
            # e.g. train.mixed_precision = False from YAML 1.1 (`no`): map it back to the one word it spelled
            words = [a for a in args if isinstance(a, str) and a.lower() in _BOOL_WORDS[value]]
            if len(words) == 1:
                return words[0]
        if value not in args:
            raise ConfigError(f"{key} = {value!r} is not allowed; allowed values: {list(args)}{_quote_hint(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_check_type(a, v, key) for a, v in zip(args, value, strict=True))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_check_type(args[0], v, key) for v in value]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, str):
            for flag, words in _BOOL_WORDS.items():
                if value.lower() in words:
                    return flag
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}{_quote_hint(value)}")
        return value
    if hint is Any:
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")


def _quote_hint(value: Any) -> str:
    if not isinstance(value, bool):
        return ""
    return f" (YAML 1.1 reads an unquoted {'/'.join(_BOOL_WORDS[value])} as {value}: quote the text)"
