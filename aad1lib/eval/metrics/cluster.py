"""The published VBench backbones, loaded from LOCAL files only (no hub is reachable from here).

- DINO ViT-B/16 (Subject Consistency, I2V Subject) and CLIP ViT-B/32 (Background Consistency) via
  transformers: ``load_dino(dir)`` / ``load_clip(dir)`` read a folder written by ``save_pretrained``
  (model + image processor). Tested with tiny random models of the same classes.
- Aesthetic Quality: CLIP ViT-L/14 (a ``CLIPVisionModelWithProjection`` folder, e.g. converted
  openai/clip-vit-large-patch14) + the LAION aesthetic linear head (``sa_0_4_vit_l_14_linear.pth``, a
  ``Linear(768, 1)`` state dict): ``load_aesthetic(clip_dir, head_path)``. Tested with tiny random weights.
- RAFT (Dynamic Degree) via torchvision, MUSIQ (Imaging Quality) via pyiqa, DreamSim (I2V Background)
  via dreamsim: thin wrappers that raise a clear ImportError naming the missing package. None of the
  three packages is installed here, so these paths are untested on this machine.

Known preprocessing differences from VBench: the transformers processors resize to the model's square
input (VBench's DINO transform resizes the short side to 224 without a crop); MUSIQ frames are only
shrunk when the longer side exceeds 512 px (VBench's default ``longer`` mode), as in VBench. Aesthetic
Quality uses VBench's own ``clip_transform`` (below), but runs CLIP in fp32 (``clip.load`` on a GPU is fp16).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from . import vbench
from .backbones import to_uint8_images

# OpenAI CLIP's pixel mean / std (VBench's clip_transform)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _local_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: no local weights at {path} (no model hub is reachable; copy them there)")
    return path


class TransformersFeatures:
    """A transformers vision model as a FeatureExtractor: frames [N, 3, H, W] in [-1, 1] -> [N, D].

    ``output="cls"`` takes the final-layer CLS token (what DINO's hub model returns), ``"image_embeds"``
    the projected CLIP image embedding (what ``clip.encode_image`` returns).
    """

    def __init__(self, model, processor, name: str, output: str = "cls", batch_size: int = 32):
        if output not in ("cls", "image_embeds"):
            raise ValueError(f"output must be 'cls' or 'image_embeds', got {output!r}")
        self.model, self.processor, self.name = model.eval(), processor, name
        self.output, self.batch_size = output, batch_size

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        feats = []
        for start in range(0, frames.shape[0], self.batch_size):
            images = list(to_uint8_images(frames[start : start + self.batch_size]))
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            out = self.model(pixel_values=pixels)
            feats.append(out.image_embeds if self.output == "image_embeds" else out.last_hidden_state[:, 0])
        return torch.cat(feats).float().cpu()


def load_dino(local_dir: str | Path, name: str = "DINO", device: str | torch.device = "cpu") -> TransformersFeatures:
    """DINO (``ViTModel``, e.g. facebook/dino-vitb16, or ``Dinov2Model``) + its image processor from a local dir."""
    from transformers import AutoConfig, AutoImageProcessor, Dinov2Model, ViTModel

    path = _local_dir(local_dir, "DINO")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if config.model_type == "dinov2":
        model = Dinov2Model.from_pretrained(path, local_files_only=True)
    else:
        model = ViTModel.from_pretrained(path, add_pooling_layer=False, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    return TransformersFeatures(model.to(device), processor, name, output="cls")


def load_clip(local_dir: str | Path, name: str = "CLIP", device: str | torch.device = "cpu") -> TransformersFeatures:
    """CLIP image tower (``CLIPVisionModelWithProjection``, e.g. openai/clip-vit-base-patch32) from a local dir."""
    from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

    path = _local_dir(local_dir, "CLIP")
    model = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    return TransformersFeatures(model.to(device), processor, name, output="image_embeds")


class RAFTFlow:
    """torchvision RAFT as a FlowEstimator: frames [3, H, W] in [-1, 1] (RAFT's own input range) -> [2, H, W]."""

    name = "RAFT"

    def __init__(self, model, iters: int = 20):  # VBench runs RAFT with iters=20
        self.model, self.iters = model.eval(), iters

    @torch.inference_mode()
    def __call__(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        h, w = frame_a.shape[-2:]
        pad_h, pad_w = -h % 8, -w % 8  # RAFT needs sides divisible by 8 (VBench's InputPadder)
        pair = torch.stack([frame_a, frame_b]).float().to(device)
        pair = F.pad(pair, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode="replicate")
        flow = self.model(pair[:1], pair[1:], num_flow_updates=self.iters)[-1][0]
        return flow[:, pad_h // 2 : pad_h // 2 + h, pad_w // 2 : pad_w // 2 + w].cpu()


def load_raft(weights_path: str | Path, device: str | torch.device = "cpu", small: bool = False) -> RAFTFlow:
    """RAFT from a local torchvision-format state dict (VBench's raft-things.pth uses the original repo's keys)."""
    try:
        from torchvision.models.optical_flow import raft_large, raft_small
    except ImportError as err:
        raise ImportError("Dynamic Degree (RAFT) needs the 'torchvision' package; the offline default is "
                          "OpenCVFlow('DIS')") from err  # fmt: skip
    path = _local_dir(weights_path, "RAFT")
    model = (raft_small if small else raft_large)(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return RAFTFlow(model.to(device))


def clip_transform(images: torch.Tensor, n_px: int = 224) -> torch.Tensor:
    """VBench's ``clip_transform(n_px)`` on uint8 frames [N, 3, H, W]: torchvision ``Resize(n_px, BICUBIC,
    antialias=False)`` (short side to ``n_px``, long side ``int(n_px * long / short)``, rounded back to uint8),
    ``CenterCrop(n_px)``, /255, CLIP's normalisation. -> float [N, 3, n_px, n_px]."""
    x = images.float()
    h, w = x.shape[-2:]
    size = (n_px, int(n_px * w / h)) if h <= w else (int(n_px * h / w), n_px)
    if (h, w) != size:  # torchvision returns an image already at the size untouched
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=False)
        x = x.clamp(0, 255).round()  # torchvision's uint8 output of a bicubic resize
    top, left = int(round((size[0] - n_px) / 2.0)), int(round((size[1] - n_px) / 2.0))
    x = x[..., top : top + n_px, left : left + n_px] / 255.0
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


class LAIONAesthetic:
    """VBench's Aesthetic Quality as a QualityScorer: frames [N, 3, H, W] in [-1, 1] -> per-frame LAION
    aesthetic score / 10 [N] (:func:`.vbench.aesthetic_scores`); a video's score is the mean over its frames.

    ``clip``: a ``CLIPVisionModelWithProjection`` (ViT-L/14 for VBench); ``head``: the LAION ``nn.Linear(D, 1)``.
    Frames go through VBench's :func:`clip_transform` at the model's ``image_size`` (224 for ViT-L/14).
    """

    name = "LAION"

    def __init__(self, clip, head: torch.nn.Linear, batch_size: int = 32):  # VBench's batch size
        self.clip, self.head, self.batch_size = clip.eval(), head.eval(), batch_size

    @torch.inference_mode()
    def image_embeds(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [N, 3, H, W] in [-1, 1] -> CLIP image embeddings [N, D] (``clip.encode_image``), fp32 on CPU."""
        device, n_px = next(self.clip.parameters()).device, self.clip.config.image_size
        feats = []
        for start in range(0, frames.shape[0], self.batch_size):
            images = torch.from_numpy(to_uint8_images(frames[start : start + self.batch_size])).permute(0, 3, 1, 2)
            pixels = clip_transform(images, n_px).to(device)
            feats.append(self.clip(pixel_values=pixels).image_embeds.float().cpu())
        return torch.cat(feats)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        weight, bias = self.head.weight.detach().cpu(), self.head.bias.detach().cpu()
        return vbench.aesthetic_scores(self.image_embeds(frames), weight, bias)


def load_aesthetic(clip_dir: str | Path, head_path: str | Path, device: str | torch.device = "cpu") -> LAIONAesthetic:
    """Aesthetic Quality's networks from local files: the CLIP ViT-L/14 image tower (a folder that
    ``CLIPVisionModelWithProjection.from_pretrained`` reads) and the LAION head (``sa_0_4_vit_l_14_linear.pth``,
    read with ``weights_only=True``, or the same ``weight`` / ``bias`` as ``.safetensors``)."""
    from safetensors.torch import load_file
    from transformers import CLIPVisionModelWithProjection

    clip_path, head_file = _local_dir(clip_dir, "CLIP ViT-L/14"), _local_dir(head_path, "LAION aesthetic head")
    clip = CLIPVisionModelWithProjection.from_pretrained(clip_path, local_files_only=True)
    if head_file.suffix == ".safetensors":
        state = load_file(str(head_file))
    else:
        state = torch.load(head_file, map_location="cpu", weights_only=True)
    dim = clip.config.projection_dim
    if set(state) != {"weight", "bias"} or tuple(state["weight"].shape) != (1, dim):
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        raise ValueError(f"{head_file}: expected the LAION head, a Linear({dim}, 1) state dict (weight [1, {dim}], "
                         f"bias [1]) matching the CLIP projection_dim, got {shapes}")  # fmt: skip
    head = torch.nn.Linear(dim, 1)
    head.load_state_dict(state)
    return LAIONAesthetic(clip.to(device), head.to(device))


class MUSIQQuality:
    """pyiqa's MUSIQ as a QualityScorer: frames [N, 3, H, W] -> MUSIQ / 100, as VBench's Imaging Quality."""

    name = "MUSIQ"

    def __init__(self, model):
        self.model = model.eval()

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        images = frames.float().clamp(-1, 1).add(1).div(2)
        h, w = images.shape[-2:]
        if max(h, w) > 512:  # VBench's default 'longer' preprocessing
            scale = 512.0 / max(h, w)
            images = F.interpolate(images, size=(int(scale * h), int(scale * w)), mode="bilinear")
        return torch.cat([self.model(image[None].to(device)).flatten() for image in images]).float().cpu() / 100.0


def load_musiq(weights_path: str | Path, device: str | torch.device = "cpu") -> MUSIQQuality:
    """MUSIQ (SPAQ checkpoint, musiq_spaq_ckpt-358bb6af.pth, as VBench) from a local file via pyiqa."""
    try:
        from pyiqa.archs.musiq_arch import MUSIQ
    except ImportError as err:
        raise ImportError("Imaging Quality (MUSIQ) needs the 'pyiqa' package (not installed here); the offline "
                          "default is SharpNoiseQuality") from err  # fmt: skip
    path = _local_dir(weights_path, "MUSIQ")
    return MUSIQQuality(MUSIQ(pretrained_model_path=str(path)).to(device))


class DreamSimFeatures:
    """DreamSim embeddings as a FeatureExtractor (I2V Background): frames resized to 224, in [0, 1]."""

    name = "DreamSim"

    def __init__(self, model):
        self.model = model

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        images = frames.float().clamp(-1, 1).add(1).div(2)
        images = F.interpolate(images, size=(224, 224), mode="bicubic").clamp(0, 1)
        return torch.cat([self.model.embed(image[None]) for image in images]).float().cpu()


def load_dreamsim(cache_dir: str | Path, device: str | torch.device = "cpu") -> DreamSimFeatures:
    """DreamSim (as ``vbench2_beta_i2v/i2v_background.py``) with its checkpoints already in ``cache_dir``."""
    try:
        from dreamsim import dreamsim
    except ImportError as err:
        raise ImportError("I2V Background (DreamSim) needs the 'dreamsim' package (not installed here); the "
                          "offline default uses ColorHistFeatures") from err  # fmt: skip
    path = _local_dir(cache_dir, "DreamSim")
    model, _ = dreamsim(pretrained=True, cache_dir=str(path), device=str(device))
    return DreamSimFeatures(model)
