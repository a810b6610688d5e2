"""Does the I2V teacher do image-to-video? Its samples against the held-out clips and the copy baseline.

The copy baseline repeats the given first frame: a teacher that has learned nothing about motion but keeps the
first frame scores it. A teacher that does I2V beats it at every generated frame and changes from frame to
frame about as much as the data does (more is flicker, less is a still image). Pixels in [-1, 1].
"""

from __future__ import annotations

import torch

from .. import flow


def psnr_per_frame(video: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, on [0, 1] pixels) of ``video`` vs ``reference`` ``[B, 3, F, H, W]``, per clip and frame ``[B, F]``."""
    mse = ((video.float() - reference.float()) / 2.0).square().mean(dim=(1, 3, 4)).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


def frame_change(video: torch.Tensor) -> torch.Tensor:
    """Mean absolute frame-to-frame change (on [0, 1] pixels) per clip ``[B]`` of ``video`` ``[B, 3, F, H, W]``."""
    return (video[:, :, 1:].float() - video[:, :, :-1].float()).abs().mean(dim=(1, 2, 3, 4)) / 2.0


def copy_first_frame(video: torch.Tensor) -> torch.Tensor:
    """The copy baseline ``[B, 3, F, H, W]``: the first frame repeated."""
    return video[:, :, :1].expand_as(video)


def teacher_fidelity(real: torch.Tensor, samples: torch.Tensor, context_frames: int = 1) -> dict:
    """Per generated frame (index >= ``context_frames``): mean PSNR of the samples and of the copy baseline vs the
    held-out clips ``real``; frame-to-frame change of samples and data; whether the teacher beats the baseline
    at every generated frame and keeps its change within ±30 % of the data's (the demo's acceptance bar)."""
    if real.shape != samples.shape:
        raise ValueError(f"real {tuple(real.shape)} and samples {tuple(samples.shape)} must match")
    gen = slice(context_frames, None)
    teacher = psnr_per_frame(samples[:, :, gen], real[:, :, gen]).mean(0)  # [F_gen]
    copy = psnr_per_frame(copy_first_frame(real)[:, :, gen], real[:, :, gen]).mean(0)
    change, data_change = frame_change(samples).mean().item(), frame_change(real).mean().item()
    ratio = change / max(data_change, 1e-12)
    return {
        "psnr_teacher": teacher.tolist(),
        "psnr_copy": copy.tolist(),
        "psnr_teacher_mean": teacher.mean().item(),
        "psnr_copy_mean": copy.mean().item(),
        "frame_change": change,
        "frame_change_data": data_change,
        "frame_change_ratio": ratio,
        "beats_copy_every_frame": bool((teacher > copy).all()),
        "change_within_30pct": bool(abs(ratio - 1.0) <= 0.3),
    }


@torch.no_grad()
def one_pass_psnr(model, codec, real: torch.Tensor, text: torch.Tensor, condition: dict, sigmas: list[float],
                  context_frames: int = 1, seed: int = 0) -> dict[float, list[float]]:  # fmt: skip
    """PSNR per generated frame of the model's x0 estimate in ONE forward pass from the held-out clips ``real``
    ``[B, 3, F, H, W]`` noised to each σ (context frames clean), same noise for every σ.

    At σ near 1 this is the model's conditional mean. A sample adds the model's uncertainty to it (an exact sampler's
    expected squared error is twice the mean's), so on frames where this estimate does not beat the copy baseline,
    no sampler of this model will (docs/design.md §12)."""
    x0 = codec.encode(real)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0)
    gen = slice(context_frames, None)
    out = {}
    for value in sigmas:
        sigma = torch.full((x0.shape[0], x0.shape[2]), float(value)).to(x0)  # [B, F]
        sigma[:, :context_frames] = 0.0
        x_t = flow.add_noise(x0, noise, sigma)
        v = model(x_t, flow.sigma_to_timestep(sigma), text, return_dict=False, **condition)[0]
        estimate = codec.decode(flow.x0_from_velocity(x_t, v, sigma)).clamp(-1, 1)
        out[float(value)] = psnr_per_frame(estimate[:, :, gen], real[:, :, gen]).mean(0).tolist()
    return out


def format_fidelity(result: dict) -> str:
    """A few lines for a log or a notebook: PSNR per generated frame, teacher vs copy, and the frame change."""
    frames = " ".join(f"{t:5.1f}/{c:4.1f}" for t, c in zip(result["psnr_teacher"], result["psnr_copy"], strict=True))
    return (
        f"PSNR per generated frame, teacher/copy (dB): {frames}\n"
        f"mean {result['psnr_teacher_mean']:.2f} vs copy {result['psnr_copy_mean']:.2f} dB; beats copy at every "
        f"frame: {result['beats_copy_every_frame']}\n"
        f"frame-to-frame change {result['frame_change']:.4f} vs data {result['frame_change_data']:.4f} "
        f"(ratio {result['frame_change_ratio']:.2f}; within ±30 %: {result['change_within_30pct']})"
    )
