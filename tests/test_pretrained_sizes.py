"""With model.pretrained set, the preset's model.* sizes and text.dim must describe the checkpoint, not be ignored."""

import json
import re
import runpy

import pytest
import yaml
from diffusers import WanTransformer3DModel

from aad1lib.builders import build_wan
from aad1lib.config import CONFIG_DIR, ConfigError, load_preset
from aad1lib.scale import plan_memory


def _preset(tmp_path, **model):
    """The tiny preset, pointed at ``tmp_path/Wan`` (a Wan root), with some model.* sizes replaced."""
    raw = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    raw["name"] = "tiny-pretrained"
    raw["model"].update(pretrained=str(tmp_path / "Wan"), **model)
    path = tmp_path / f"tiny-pretrained-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_preset_sizes_contradicting_the_checkpoint_are_an_error_naming_both(tmp_path, tiny_wan_config):
    # tiny.yaml says num_layers: 2; the checkpoint has 4 (conftest's TINY_WAN), all other sizes agree
    contradicting, agreeing = _preset(tmp_path), _preset(tmp_path, num_layers=4)
    cfg = load_preset(contradicting)  # a checkpoint path missing on this machine does not break loading
    WanTransformer3DModel(**tiny_wan_config).save_pretrained(tmp_path / "Wan" / "transformer")
    checkpoint = tmp_path / "Wan" / "transformer" / "config.json"
    message = f"model.num_layers = 2 in the preset but the checkpoint {checkpoint} has num_layers = 4"

    with pytest.raises(ConfigError) as err:
        load_preset(contradicting)
    assert message in str(err.value) and "num_attention_heads" not in str(err.value)
    with pytest.raises(ConfigError, match="model.num_layers = 2 in the preset"):
        build_wan(cfg)  # where the model is built
    with pytest.raises(ConfigError, match="model.num_layers = 2 in the preset"):
        plan_memory(cfg, "stage3", num_gpus=8)  # the planner would plan for 2 layers
    script = runpy.run_path(str(CONFIG_DIR.parents[1] / "benchmarks" / "memory_plan.py"), run_name="memory_plan")
    with pytest.raises(SystemExit, match="model.num_layers = 2 in the preset"):
        script["main"](["--preset", str(contradicting), "--gpus", "8"])

    # several contradictions are all named; the transformer folder itself works as model.pretrained too
    with pytest.raises(ConfigError) as err:
        load_preset(agreeing, {"model.pretrained": str(checkpoint.parent), "model.ffn_dim": 96,
                               "model.patch_size": [1, 2, 2]})  # fmt: skip
    assert "model.ffn_dim = 96 in the preset but the checkpoint" in str(err.value)
    assert "model.patch_size = [1, 2, 2] in the preset but the checkpoint" in str(err.value)
    assert "has patch_size = [1, 4, 4]" in str(err.value)

    cfg = load_preset(agreeing)
    assert build_wan(cfg).config.num_layers == 4
    assert plan_memory(cfg, "stage3", num_gpus=8).rows[0].num_params == sum(
        p.numel() for p in build_wan(cfg).parameters()
    )


def test_text_dim_contradicting_the_umt5_encoder_is_an_error(tmp_path):
    raw = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    raw["text"] = dict(kind="umt5", path=str(tmp_path / "Wan"), dim=32, max_length=16)
    preset = tmp_path / "umt5.yaml"
    preset.write_text(yaml.safe_dump(raw))
    assert load_preset(preset).text.kind == "umt5"  # no checkpoint here: nothing to compare with
    (tmp_path / "Wan" / "text_encoder").mkdir(parents=True)
    encoder = tmp_path / "Wan" / "text_encoder" / "config.json"
    encoder.write_text(json.dumps({"d_model": 48, "model_type": "umt5"}))
    message = f"text.dim = 32 in the preset but the text encoder {encoder} has d_model = 48"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_preset(preset)
    encoder.write_text(json.dumps({"d_model": 32, "model_type": "umt5"}))
    assert load_preset(preset).text.dim == 32
