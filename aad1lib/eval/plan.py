"""What a finished run's model does at evaluation: the teacher's whole-clip sampler or a causal student's
few-step chunks, and the method label of its table row (read from the run's finished.json)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ExperimentConfig
from ..flow import student_sigmas
from ..run_folder import RunFolder
from ..runs import run_summary

CAUSAL_STAGES = ("stage1", "stage2", "stage3")


@dataclass
class GenerationPlan:
    """How a run's model samples: the bidirectional teacher (whole clip) or a causal student (chunks)."""

    kind: str  # "teacher" | "causal"
    method: str  # table label
    sigmas: list[float] | None = None  # causal: few-step levels incl. the terminal 0
    teacher_steps: int | None = None
    guidance_scale: float | None = None

    @property
    def steps_per_chunk(self) -> int | None:
        return None if self.sigmas is None else len(self.sigmas) - 1


def generation_plan(cfg: ExperimentConfig, run: RunFolder) -> GenerationPlan:
    """Read from the run's finished.json what the model was trained to do, and name it for the table."""
    stage, summary = run.info["stage"], run_summary(run)
    if stage == "teacher":
        s = cfg.sampling
        cfg_text = " × CFG" if s.guidance_scale != 1.0 else ""
        return GenerationPlan("teacher", f"Teacher ({s.teacher_steps} steps{cfg_text})", None, s.teacher_steps,
                              s.guidance_scale)  # fmt: skip
    if stage == "stage1":  # the Stage I student on all of its target levels
        sigmas = student_sigmas(torch.tensor(summary["target_sigmas"]), len(summary["target_sigmas"]))
        return GenerationPlan("causal", f"Stage I ({len(sigmas) - 1}-step)", sigmas.tolist())
    if stage == "stage2":
        steps = summary.get("student_steps", len(summary["sigmas"]) - 1)
        if steps == 1:
            method = "AAD-1 Stage II (DMD, 1-step)"
        elif summary.get("rollout") == "teacher_forced":
            method = f"CausVid-style ({steps}-step)"
        else:
            method = f"Self-Forcing-style ({steps}-step)"
        return GenerationPlan("causal", method, list(summary["sigmas"]))
    if stage == "stage3":
        ablations = []
        if summary.get("disc_attention", "bidirectional") != "bidirectional":
            ablations.append(f"{summary['disc_attention']} D")
        if summary.get("disc_logit", "video") != "video":
            ablations.append(f"{summary['disc_logit']} logits")
        if summary.get("init_stage") == "stage1":
            ablations.append("no DMD warm-up")
        method = "AAD-1 (Stage III)" + (f", {', '.join(ablations)}" if ablations else "")
        return GenerationPlan("causal", method, list(summary["sigmas"]))
    raise ValueError(f"{run.path} is a {stage!r} run; can evaluate {['teacher', *CAUSAL_STAGES]}")
