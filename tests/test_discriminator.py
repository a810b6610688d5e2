"""VideoDiscriminator: logit shapes, what each attention mode can see, gradients to the generator."""

import pytest
import torch

from aad1lib.models import CausalWanTransformer3DModel, ChunkLayout
from aad1lib.models.discriminator import VideoDiscriminator

LAYOUT = ChunkLayout(frames_per_chunk=2, context_frames=1)


def _disc(config, **kwargs):
    teacher = CausalWanTransformer3DModel(**config)
    return VideoDiscriminator.from_teacher(teacher, chunk_layout=LAYOUT, **kwargs).eval()


def _inputs(frames=7):
    return torch.randn(2, 3, frames, 16, 16), torch.tensor([300.0, 700.0]), torch.randn(2, 5, 32)


@pytest.mark.parametrize("attention", ["bidirectional", "causal"])
@pytest.mark.parametrize("logit, shape", [("video", (2,)), ("frame", (2, 7))])
def test_logit_shapes(tiny_wan_config, attention, logit, shape):
    disc = _disc(tiny_wan_config, attention=attention, logit=logit)
    with torch.no_grad():
        assert disc(*_inputs()).shape == shape


def test_bidirectional_frame_logit_depends_on_the_last_frame_and_causal_does_not(tiny_wan_config):
    x, t, text = _inputs()
    x_edit = x.clone()
    x_edit[:, :, -1] = torch.randn_like(x_edit[:, :, -1])
    for attention, should_change in [("bidirectional", True), ("causal", False)]:
        disc = _disc(tiny_wan_config, attention=attention, logit="frame")
        with torch.no_grad():
            a, b = disc(x, t, text), disc(x_edit, t, text)
        # frame 0's logit reads only frame-0 tokens: it changes only through attention to the future
        assert (not torch.equal(a[:, 0], b[:, 0])) == should_change, attention
        assert not torch.equal(a[:, -1], b[:, -1])


def test_discriminator_gradient_reaches_the_generator(tiny_wan_config):
    generator = CausalWanTransformer3DModel(**tiny_wan_config)
    disc = _disc(tiny_wan_config, train_backbone=False)
    x, t, text = _inputs()
    fake = generator(x, t, text, chunk_layout=LAYOUT).sample
    disc(fake, t, text).sum().backward()
    grads = [p.grad for p in generator.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in disc.backbone.parameters())  # frozen backbone
    assert all(p.grad is not None for p in disc.mlp.parameters())


def test_discriminator_is_initialised_from_teacher_and_drops_blocks_after_last_tap(tiny_wan_config):
    teacher = CausalWanTransformer3DModel(**tiny_wan_config)
    disc = VideoDiscriminator.from_teacher(teacher, tap_fractions=(0.5, 0.75))
    assert disc.tap_blocks == (1, 2)
    assert len(disc.backbone.blocks) == 3
    for name, p in disc.backbone.blocks.named_parameters():
        assert torch.equal(p, teacher.blocks.get_parameter(name))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(attention="sideways"), "attention"),
        (dict(logit="pixel"), "logit"),
        (dict(attention="causal", chunk_layout=None), "chunk_layout"),
        (dict(tap_fractions=(0.0,)), "tap_fractions"),
    ],
)
def test_unknown_modes_are_rejected(tiny_wan_config, kwargs, message):
    teacher = CausalWanTransformer3DModel(**tiny_wan_config)
    with pytest.raises(ValueError, match=message):
        VideoDiscriminator.from_teacher(teacher, **kwargs)
