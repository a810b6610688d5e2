"""Does a trained teacher do image-to-video? PSNR per generated frame vs held-out clips and vs copying the first
frame, and the frame-to-frame change vs the data's, at one or more CFG scales / sampler step counts.

    python benchmarks/teacher_fidelity.py --run experiments/runs/teacher-demo-... --guidance 1 3 --clips 16

Writes ``fidelity.json`` and ``strips-cfg<g>.png`` (data vs teacher rows, same first frame and caption) into
``--out`` (default: the run's ``samples/fidelity``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel

from aad1lib.builders import build_dataset, build_latent_codec, build_text, build_wan, collate, load_run_model
from aad1lib.conditioning import I2VConditioner
from aad1lib.config import ExperimentConfig, from_run_config
from aad1lib.data import plot_strips
from aad1lib.eval.teacher_fidelity import format_fidelity, one_pass_psnr, teacher_fidelity
from aad1lib.run_folder import RunFolder
from aad1lib.train.fsdp import load_state
from aad1lib.train.teacher import sample_teacher


def checkpoint_ema(cfg: ExperimentConfig, run: RunFolder, step: int) -> torch.nn.Module:
    """The teacher's EMA weights at checkpoint ``step`` of ``run`` (the weights a run finishing there would export)."""
    model = build_wan(cfg)
    ema = EMAModel(model.parameters())  # the loop's EMA class: its own state-dict format
    ema.load_state_dict(load_state(run.checkpoint_dir(step) / "ema.pt")["teacher"])
    ema.copy_to(model.parameters())
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished teacher run folder")
    parser.add_argument("--guidance", type=float, nargs="+", default=None, help="CFG scales (default: the preset's)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the preset's)")
    parser.add_argument("--sampler", choices=["euler", "unipc"], default=None, help="default: the preset's")
    parser.add_argument("--clips", type=int, default=16, help="held-out test clips")
    parser.add_argument("--checkpoint", type=int, default=None,
                        help="score the EMA weights of checkpoint step-N instead of the finished model (a run in "
                             "progress)")  # fmt: skip
    parser.add_argument("--one-pass", type=float, nargs="*", default=[0.95, 0.4, 0.1], metavar="SIGMA",
                        help="also score the model's one-pass x0 estimate from the true clip noised to each σ (0.95: "
                             "its conditional mean), with each clip's caption and with the next clip's (how much the "
                             "caption moves it); --one-pass with no σ: skip")  # fmt: skip
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    run = RunFolder.open(args.run)
    cfg = from_run_config(run.config).validate()  # the run's own resolved config
    out = Path(args.out) if args.out else run.samples_dir / "fidelity"
    out.mkdir(parents=True, exist_ok=True)
    model = (load_run_model(run) if args.checkpoint is None else checkpoint_ema(cfg, run, args.checkpoint)).eval()
    codec, text_encoder = build_latent_codec(cfg), build_text(cfg)
    test = build_dataset(cfg, "test")
    batch = collate([test[i] for i in range(min(args.clips, len(test)))])
    results = {}
    for guidance in args.guidance or [cfg.sampling.guidance_scale]:
        steps, sampler = args.steps or cfg.sampling.teacher_steps, args.sampler or cfg.sampling.teacher_sampler
        sampling = replace(cfg.sampling, guidance_scale=guidance, teacher_steps=steps, teacher_sampler=sampler)
        c = replace(cfg, sampling=sampling)
        samples = sample_teacher(c, model, text_encoder, codec, batch, conditioner=I2VConditioner(c, codec))
        result = teacher_fidelity(batch["video"], samples, cfg.chunking.context_frames)
        results[f"cfg{guidance:g}"] = dict(result, guidance_scale=guidance, steps=sampling.teacher_steps,
                                           sampler=sampling.teacher_sampler)  # fmt: skip
        print(f"--- CFG {guidance:g}, {steps} {sampler} steps, {len(samples)} clips\n{format_fidelity(result)}")
        rows = {}
        for i in range(min(4, len(samples))):
            rows[f"data {i}"], rows[f"teacher {i}"] = batch["video"][i], samples[i]
        plot_strips(rows, title=f"held-out clips vs teacher, CFG {guidance:g}").savefig(
            out / f"strips-cfg{guidance:g}.png", dpi=80, bbox_inches="tight"
        )
    if args.one_pass:  # the conditional caption, no CFG: the model's own estimate
        condition = I2VConditioner(cfg, codec)(batch["first_frame"])
        prompts = batch["prompt"]
        for key, captions in (("one_pass", prompts), ("one_pass_other_caption", prompts[1:] + prompts[:1])):
            text = text_encoder.encode(captions)[0]
            estimates = one_pass_psnr(model, codec, batch["video"], text, condition, args.one_pass,
                                      cfg.chunking.context_frames, cfg.seed)  # fmt: skip
            results[key] = {f"{k:g}": v for k, v in estimates.items()}
        copy = results and next(iter(results.values()))["psnr_copy"]
        print("--- one forward pass from the true clip noised to σ, PSNR per generated frame (dB): its caption / the "
              "next clip's")  # fmt: skip
        for sigma, own in results["one_pass"].items():
            other = results["one_pass_other_caption"][sigma]
            pairs = zip(own, other, strict=True)
            print(f"σ = {float(sigma):4.2f}: " + " ".join(f"{p:5.1f}/{q:4.1f}" for p, q in pairs))
        if copy:
            print("copy:     " + " ".join(f"{p:10.1f}" for p in copy))
    (out / "fidelity.json").write_text(json.dumps(dict(run=str(run.path), clips=len(batch["video"]), **results)))
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
