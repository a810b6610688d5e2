"""Text encoders and latent codecs: one interface each, the cluster paths exercised on tiny random checkpoints.

Nothing is downloaded: the umT5 encoder, its tokenizer and the Wan VAE are built from random init,
saved with ``save_pretrained`` and loaded back through the same code the cluster presets use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from standins import build_wan_vae, save_tiny_umt5

from aad1lib.models.codec import IdentityCodec, WanVAECodec, build_codec
from aad1lib.models.text import TinyTextEncoder, UMT5TextEncoder, build_text_encoder

REPO = Path(__file__).resolve().parents[1]

# ---- tiny text encoder -----------------------------------------------------------------------------------


def test_tiny_text_encoder_is_deterministic_and_order_sensitive():
    enc = TinyTextEncoder(dim=64, max_length=32, seed=0)
    emb, mask = enc.encode(["a red car drives past", "a red car drives past", "past drives car red a"])
    assert emb.shape == (3, 32, 64) and mask.shape == (3, 32) and mask.dtype == torch.bool
    assert (enc.dim, enc.max_length) == (64, 32)
    assert mask.sum(1).tolist() == [5, 5, 5]
    assert torch.equal(emb[0], emb[1])
    again, _ = TinyTextEncoder(dim=64, max_length=32, seed=0).encode(["a red car drives past"])
    assert torch.equal(again[0], emb[0])
    assert not torch.allclose(emb[0, :5], emb[2, :5], atol=1e-3)  # same words, different order
    other_seed, _ = TinyTextEncoder(dim=64, max_length=32, seed=1).encode(["a red car drives past"])
    assert not torch.allclose(other_seed[0], emb[0])
    # tokenizer: case and punctuation do not matter, unknown words still map to a bucket
    ids, _ = enc.tokenize(["A red-car, DRIVES past!", "a red car drives past"])
    assert torch.equal(ids[0], ids[1])
    assert not emb.requires_grad and sum(p.numel() for p in enc.parameters()) == 0


def test_tiny_text_encoder_is_identical_across_processes():
    script = (
        "import json, torch; from aad1lib.models.text import TinyTextEncoder;"
        "e, m = TinyTextEncoder(dim=32, max_length=8, seed=3).encode(['zebra crossing at dawn']);"
        "print(json.dumps(e.tolist()))"
    )
    env = {"PYTHONHASHSEED": "12345", "PATH": "", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout
    theirs = torch.tensor(json.loads(out))
    ours, _ = TinyTextEncoder(dim=32, max_length=8, seed=3).encode(["zebra crossing at dawn"])
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)


def test_empty_prompt_gives_all_padding():
    enc = TinyTextEncoder(dim=32, max_length=8)
    emb, mask = enc.encode(["", "one two three four five six seven eight nine ten"])
    assert not mask[0].any() and torch.all(emb[0] == 0)
    assert mask[1].all()  # truncated to max_length
    assert torch.isfinite(emb).all()


def test_tiny_text_encoder_zeroes_padding_and_moves_dtype():
    enc = TinyTextEncoder(dim=32, max_length=8).to(torch.float64)
    emb, mask = enc.encode(["two words"])
    assert emb.dtype == torch.float64
    assert mask[0].tolist() == [True, True] + [False] * 6
    assert torch.all(emb[0, 2:] == 0) and emb[0, :2].abs().sum() > 0


def test_build_text_encoder_rejects_unknown_kind():
    assert isinstance(build_text_encoder("tiny", dim=16, max_length=4), TinyTextEncoder)
    with pytest.raises(ValueError, match="'tiny', 'umt5'"):
        build_text_encoder("clip")


# ---- umT5 from a local folder ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["pipeline", "flat"])
def test_umt5_encoder_loads_from_local_tiny_checkpoint(tmp_path, layout):
    path, model, tokenizer = save_tiny_umt5(tmp_path, layout)
    enc = UMT5TextEncoder.from_pretrained(path, max_length=16)
    prompts = ["a cat runs over the red car", "  ocean   waves &amp; sunset", ""]
    emb, mask = enc.encode(prompts)
    assert emb.shape == (3, 16, 32) and mask.shape == (3, 16) and (enc.dim, enc.max_length) == (32, 16)
    # 7 words + </s>; cleaned to "ocean waves & sunset" (& = "▁" + <unk>) + </s>; "" is just </s>
    assert mask.sum(1).tolist() == [8, 6, 1]
    assert torch.all(emb[~mask] == 0) and torch.all(emb[mask].abs().sum(-1) > 0)
    assert not any(p.requires_grad for p in enc.parameters())

    # same numbers as calling the model directly, the way diffusers' WanPipeline does
    tokens = tokenizer(
        ["a cat runs over the red car", "ocean waves & sunset", ""], padding="max_length", max_length=16,
        truncation=True, return_tensors="pt",
    )  # fmt: skip
    with torch.no_grad():
        direct = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
    torch.testing.assert_close(emb, direct * tokens.attention_mask[..., None])


def test_umt5_encoder_truncates_to_max_length(tmp_path):
    path, _, _ = save_tiny_umt5(tmp_path, "pipeline")
    enc = build_text_encoder("umt5", path=path, max_length=4)
    emb, mask = enc.encode(["a cat runs over the red car"])
    assert emb.shape == (1, 4, 32) and mask.all()


def test_missing_text_encoder_path_raises_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        UMT5TextEncoder.from_pretrained(tmp_path / "does-not-exist")
    (tmp_path / "tokenizer").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        UMT5TextEncoder.from_pretrained(tmp_path)
    path, _, _ = save_tiny_umt5(tmp_path / "no_tokenizer", "pipeline")
    for f in (path / "tokenizer").iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        UMT5TextEncoder.from_pretrained(path)


# ---- codecs ----------------------------------------------------------------------------------------------


def test_identity_codec_roundtrip():
    codec = build_codec("identity")
    assert isinstance(codec, IdentityCodec)
    video = torch.rand(2, 3, 6, 8, 8) * 2 - 1  # any frame count in pixel space
    assert codec.latent_shape(6, 8, 8) == (3, 6, 8, 8)
    latents = codec.encode(video)
    assert latents.shape == (2, 3, 6, 8, 8)
    assert torch.equal(codec.decode(latents), video)
    codec.check_num_frames(7)
    with pytest.raises(ValueError, match="unknown codec kind 'vqgan'"):
        build_codec("vqgan")


LATENTS_MEAN = [0.1, -0.2, 0.3, 0.0]
LATENTS_STD = [1.5, 0.5, 2.0, 1.0]


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory) -> Path:
    """Random AutoencoderKLWan with Wan's factors (4x time, 8x space) and z_dim 4, saved as ``root/vae``."""
    vae = build_wan_vae(z_dim=4, latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD)
    root = tmp_path_factory.mktemp("wan")
    vae.save_pretrained(root / "vae")
    return root


def test_wan_vae_codec_loads_tiny_random_vae_and_roundtrips_shapes(tiny_vae_dir):
    codec = build_codec("wan_vae", path=tiny_vae_dir)
    assert (codec.latent_channels, codec.temporal_factor, codec.spatial_factor) == (4, 4, 8)
    assert codec.latent_shape(5, 32, 32) == (4, 2, 4, 4)
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    latents = codec.encode(video)
    assert latents.shape == (2, *codec.latent_shape(5, 32, 32))
    assert torch.equal(latents, codec.encode(video))  # posterior mode: deterministic
    recon = codec.decode(latents)
    assert recon.shape == video.shape and recon.abs().max() <= 1
    # the VAE folder itself loads as well
    assert WanVAECodec.from_pretrained(tiny_vae_dir / "vae").latent_shape(9, 16, 24) == (4, 3, 2, 3)


def test_wan_vae_codec_normalises_like_wan_pipelines(tiny_vae_dir):
    codec = WanVAECodec.from_pretrained(tiny_vae_dir)
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    latents = codec.encode(video)
    with torch.no_grad():
        raw = codec.vae.encode(video).latent_dist.mode()
        decoded_raw = codec.vae.decode(raw).sample
    mean = torch.tensor(LATENTS_MEAN).view(1, 4, 1, 1, 1)
    std = torch.tensor(LATENTS_STD).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(latents * std + mean, raw)
    torch.testing.assert_close(codec.decode(latents), decoded_raw, rtol=1e-4, atol=1e-5)
    sampled = codec.encode(video, sample=True, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == latents.shape and not torch.equal(sampled, latents)


def test_wan_vae_codec_rejects_frame_count_not_1_plus_4k(tiny_vae_dir):
    codec = WanVAECodec.from_pretrained(tiny_vae_dir)
    codec.vae.encode = lambda *args, **kwargs: pytest.fail("the VAE ran before the frame count was checked")
    with pytest.raises(ValueError, match=r"num_frames=6.*nearest valid: 5 or 9"):
        codec.encode(torch.zeros(1, 3, 6, 32, 32))
    with pytest.raises(ValueError, match="num_frames=6"):
        codec.latent_shape(6, 32, 32)
    with pytest.raises(ValueError, match="spatial_factor=8"):
        codec.latent_shape(5, 30, 32)


def test_missing_vae_path_raises_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        WanVAECodec.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        WanVAECodec.from_pretrained(tmp_path)
