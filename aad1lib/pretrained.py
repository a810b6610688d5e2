"""Check a preset's sizes against the local checkpoints it names (``model.pretrained``, umT5 ``text.path``).

With ``model.pretrained`` set, the transformer is built from the checkpoint's ``config.json``: the preset's
``model.*`` sizes are not used to build it, but the memory planner and the shape checks still read them. A preset
that contradicts its checkpoint is therefore an error naming both values, e.g.::

    model.num_layers = 30 in the preset but the checkpoint /models/Wan/transformer/config.json has num_layers = 40

Checkpoint folders are resolved as the builders do: a transformer folder (``config.json``) or a Wan root with a
``transformer/`` subfolder (:func:`aad1lib.builders.build_wan`); a umT5 folder or a Wan root with a
``text_encoder/`` subfolder (:class:`aad1lib.models.text.UMT5TextEncoder`). A path that does not exist on this
machine (a cluster path such as ``/models/...`` on a laptop) is skipped unless ``missing_ok=False``.

This module reads files and lists conflicts; it imports nothing from the package, so :mod:`aad1lib.config`
(which raises them as a ``ConfigError`` in :func:`aad1lib.config.check_pretrained_sizes`) can use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Wan transformer config keys the preset's model.* sizes must agree with (config.json name -> preset key)
WAN_KEYS = {
    "patch_size": "model.patch_size",
    "num_attention_heads": "model.num_attention_heads",
    "attention_head_dim": "model.attention_head_dim",
    "ffn_dim": "model.ffn_dim",
    "num_layers": "model.num_layers",
    "freq_dim": "model.freq_dim",
    "text_dim": "model.text_dim",
    "in_channels": "model.in_channels",
    "out_channels": "model.in_channels",  # the preset has one channel count: out_channels = in_channels
    "rope_max_seq_len": "model.rope_max_seq_len",
}


def wan_config_file(pretrained: str | Path) -> Path:
    """``config.json`` of a transformer folder, else of the ``transformer/`` subfolder of a Wan root."""
    root = Path(pretrained).expanduser()
    return root / "config.json" if (root / "config.json").exists() else root / "transformer" / "config.json"


def text_encoder_config_file(path: str | Path) -> Path:
    """``config.json`` of the ``text_encoder/`` subfolder of a Wan root, else of the folder itself."""
    root = Path(path).expanduser()
    folder = root / "text_encoder" if (root / "text_encoder").is_dir() else root
    return folder / "config.json"


def read_checkpoint_config(file: Path) -> dict[str, Any]:
    """A checkpoint's ``config.json``; ``ValueError`` naming the file when it cannot be read or parsed."""
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the checkpoint config {file}: {err}") from err


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def pretrained_size_conflicts(cfg: Any, missing_ok: bool = True) -> list[str]:
    """One message per preset size that contradicts the checkpoint it names (empty: they agree). ``cfg``: an
    ``ExperimentConfig``, or a partial config with ``model`` (and ``text``) as the memory planner passes."""
    problems = []
    text = getattr(cfg, "text", None)  # the planner also takes partial configs
    if getattr(cfg.model, "pretrained", None):
        file = wan_config_file(cfg.model.pretrained)
        if file.exists():
            saved = read_checkpoint_config(file)
            # the full config's constructor arguments include Wan I2V's condition channels
            preset = cfg.wan_kwargs() if hasattr(cfg, "wan_kwargs") else cfg.model.wan_kwargs()
            for key, preset_key in WAN_KEYS.items():
                if saved.get(key) is None:  # absent (older diffusers) or null (out_channels = in_channels)
                    continue
                ours = _plain(preset[key])
                if _plain(saved[key]) != ours:
                    alias = f" (= {key})" if preset_key.split(".")[-1] != key else ""
                    problems.append(
                        f"{preset_key}{alias} = {ours} in the preset but the checkpoint {file} has {key} = {saved[key]}"
                    )
        elif not missing_ok:
            problems.append(f"model.pretrained = {cfg.model.pretrained}: no {file} (nor a config.json in the folder)")
    if text is not None and text.kind == "umt5" and text.path:
        file = text_encoder_config_file(text.path)
        if file.exists():
            d_model = read_checkpoint_config(file).get("d_model")
            for preset_key, ours in [("text.dim", text.dim), ("model.text_dim", cfg.model.text_dim)]:
                if d_model is not None and ours != d_model:
                    problems.append(
                        f"{preset_key} = {ours} in the preset but the text encoder {file} has d_model = {d_model}"
                    )
        elif not missing_ok:
            problems.append(f"text.path = {text.path}: no {file}")
    return problems
