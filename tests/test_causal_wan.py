"""CausalWanTransformer3DModel: stock equivalence, block causality, per-frame timesteps, streaming KV cache."""

import pytest
import torch
from diffusers import WanTransformer3DModel
from standins import STREAMING_LAYOUTS

from aad1lib.models import CausalWanTransformer3DModel, ChunkLayout


def _inputs(batch=2, frames=7, size=16, text_dim=32):
    x = torch.randn(batch, 3, frames, size, size)
    t = torch.rand(batch) * 1000
    text = torch.randn(batch, 5, text_dim)
    return x, t, text


@pytest.fixture
def model(tiny_wan_config):
    return CausalWanTransformer3DModel(**tiny_wan_config).eval()


def test_stock_checkpoint_loads_into_subclass_with_identical_outputs(tiny_wan_config, tmp_path):
    stock = WanTransformer3DModel(**tiny_wan_config).eval()
    stock.save_pretrained(tmp_path)
    causal = CausalWanTransformer3DModel.from_pretrained(tmp_path).eval()
    x, t, text = _inputs()
    with torch.no_grad():
        assert torch.equal(stock(x, t, text).sample, causal(x, t, text).sample)


def test_subclass_checkpoint_loads_into_stock_class(model, tmp_path):
    model.save_pretrained(tmp_path)
    stock = WanTransformer3DModel.from_pretrained(tmp_path).eval()
    assert stock.state_dict().keys() == model.state_dict().keys()
    x, t, text = _inputs()
    with torch.no_grad():
        assert torch.equal(stock(x, t, text).sample, model(x, t, text).sample)


def test_checkpoint_of_another_architecture_is_refused_by_name(tmp_path):
    from diffusers import UNet2DModel

    UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        layers_per_block=1,
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="UNet2DModel"):
        CausalWanTransformer3DModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        CausalWanTransformer3DModel.from_pretrained(tmp_path / "missing")


def test_constant_per_frame_timesteps_reproduce_scalar_timestep(model):
    x, t, text = _inputs()
    with torch.no_grad():
        scalar = model(x, t, text).sample
        per_frame = model(x, t[:, None].expand(-1, x.shape[2]), text).sample
    torch.testing.assert_close(per_frame, scalar, atol=1e-6, rtol=1e-5)


def test_per_frame_timesteps_change_only_the_frames_they_touch_in_a_causal_model(model):
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1)
    x, t, text = _inputs()
    tf = t[:, None].repeat(1, 7)
    tf2 = tf.clone()
    tf2[:, 5:] = 10.0  # last chunk at a different noise level
    with torch.no_grad():
        a = model(x, tf, text, chunk_layout=layout).sample
        b = model(x, tf2, text, chunk_layout=layout).sample
    assert torch.equal(a[:, :, :5], b[:, :, :5])
    assert not torch.allclose(a[:, :, 5:], b[:, :, 5:])


@pytest.mark.parametrize(
    "layout",
    [
        ChunkLayout(frames_per_chunk=2, context_frames=1),
        ChunkLayout(frames_per_chunk=2, context_frames=1, sink_frames=1, window_frames=3),
        ChunkLayout(frames_per_chunk=1, context_frames=1, sink_frames=1, window_frames=2),
        ChunkLayout(frames_per_chunk=3, context_frames=0, sink_frames=1, window_frames=4),
    ],
    ids=["no-window", "sink+window", "frame-chunks+window", "t2v-sink-in-chunk"],
)
def test_changing_a_later_chunk_leaves_earlier_chunks_bit_identical(model, layout):
    frames = layout.context_frames + 3 * layout.frames_per_chunk
    x, _, text = _inputs(frames=frames)
    t = torch.rand(2, frames) * 1000
    x_edit = x.clone()
    last = frames - layout.frames_per_chunk
    x_edit[:, :, last:] = torch.randn_like(x_edit[:, :, last:])
    with torch.no_grad():
        a = model(x, t, text, chunk_layout=layout).sample
        b = model(x_edit, t, text, chunk_layout=layout).sample
    assert torch.equal(a[:, :, :last], b[:, :, :last])
    assert not torch.allclose(a[:, :, last:], b[:, :, last:])


def test_bidirectional_mode_lets_early_frames_see_later_ones(model):
    x, t, text = _inputs()
    x_edit = x.clone()
    x_edit[:, :, -1] += 1.0
    with torch.no_grad():
        a, b = model(x, t, text).sample, model(x_edit, t, text).sample
    assert not torch.allclose(a[:, :, 0], b[:, :, 0])


def _stream(model, layout, x, t, text):
    """Feed the clip chunk by chunk through the KV cache (each chunk written as it is computed)."""
    cache = model.new_kv_cache(layout)
    outs, offset, sizes = [], 0, []
    if layout.context_frames:
        sizes.append(layout.context_frames)
    sizes += [layout.frames_per_chunk] * layout.num_chunks(x.shape[2])
    memory = []
    for size in sizes:
        sl = slice(offset, offset + size)
        out = model(
            x[:, :, sl], t[:, sl], text, chunk_layout=layout, kv_cache=cache, frame_offset=offset, update_cache=True
        ).sample
        outs.append(out)
        memory.append(cache.nbytes())
        offset += size
    return torch.cat(outs, dim=2), cache, memory


@pytest.mark.parametrize("layout", STREAMING_LAYOUTS.values(), ids=STREAMING_LAYOUTS.keys())
def test_streaming_matches_block_causal_forward(model, layout):
    frames = layout.context_frames + 5 * layout.frames_per_chunk
    x, _, text = _inputs(frames=frames)
    t = torch.rand(2, frames) * 1000
    with torch.no_grad():
        full = model(x, t, text, chunk_layout=layout).sample
        streamed, cache, memory = _stream(model, layout, x, t, text)
    assert (streamed - full).abs().max() <= 1e-5
    if layout.window_frames is not None:
        # eviction happened: the cache holds the sink and the window, not the whole clip
        assert len(cache.cached_frames) <= layout.window_frames < frames
        assert set(range(layout.sink_frames)) <= set(cache.cached_frames)
        full_window = next(i for i, m in enumerate(memory) if m == max(memory))
        assert all(m == memory[full_window] for m in memory[full_window:]), memory


def test_streaming_with_window_drops_the_oldest_chunk_first(model):
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1, sink_frames=1, window_frames=5)
    x, _, text = _inputs(frames=9)
    t = torch.zeros(2, 9)
    with torch.no_grad():
        _, cache, _ = _stream(model, layout, x, t, text)
    assert cache.cached_frames == [0, 5, 6, 7, 8]


def test_training_rollout_keeps_gradients_through_current_chunk_only(model):
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1)
    x, t, text = _inputs(frames=5)
    cache = model.new_kv_cache(layout, detach=True)
    first = x[:, :, :3].clone().requires_grad_(True)
    model(first[:, :, :1], t, text, chunk_layout=layout, kv_cache=cache, update_cache=True)
    model(first[:, :, 1:3], t, text, chunk_layout=layout, kv_cache=cache, frame_offset=1, update_cache=True)
    assert all(segments and not any(k.requires_grad for k in segments) for segments in cache.keys)
    current = x[:, :, 3:5].clone().requires_grad_(True)
    out = model(current, t, text, chunk_layout=layout, kv_cache=cache, frame_offset=3).sample
    out.square().mean().backward()
    assert current.grad is not None and current.grad.abs().sum() > 0
    assert first.grad is None  # the cached context is a constant
    assert next(model.parameters()).grad is not None


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, t, c: m(x[0], t, c), "B, C, F, H, W"),
        (lambda m, x, t, c: m(x[:, :2], t, c), "channels"),
        (lambda m, x, t, c: m(x[..., :15], t, c), "patch_size"),
        (lambda m, x, t, c: m(x, t[:1], c), "timestep"),
        (lambda m, x, t, c: m(x, t, c[..., :8]), "text_dim"),
        (lambda m, x, t, c: m(x, t, c, chunk_layout=ChunkLayout(frames_per_chunk=4, context_frames=1)), "chunks"),
        (
            lambda m, x, t, c: m(
                x[:, :, :2],
                t,
                c,
                chunk_layout=ChunkLayout(2, 1),
                kv_cache=m.new_kv_cache(ChunkLayout(2, 1)),
                frame_offset=1,
            ),
            "in order",
        ),
    ],
    ids=["not-5d", "channels", "patch", "timestep", "text-dim", "frames-vs-chunks", "out-of-order-stream"],
)
def test_bad_input_raises_clear_error_before_computing(model, call, message):
    x, t, text = _inputs()
    with pytest.raises(ValueError, match=message):
        call(model, x, t, text)


def test_window_smaller_than_sink_is_rejected():
    with pytest.raises(ValueError, match="window_frames"):
        ChunkLayout(frames_per_chunk=2, sink_frames=3, window_frames=2)


def test_flex_attention_backend_matches_sdpa_block_causal_forward(model, tiny_wan_config):
    """The GPU path (sparse BlockMask, no dense [S, S] mask) computes the same block-causal attention.

    Forward only: flex attention has no backward on CPU.
    """
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1, sink_frames=1, window_frames=3)
    x, _, text = _inputs(frames=7)
    t = torch.rand(2, 7) * 1000
    with torch.no_grad():
        sdpa = model(x, t, text, chunk_layout=layout).sample
        model.set_attention_backend("flex")
        flex = model(x, t, text, chunk_layout=layout).sample
    # the backend is per model: another model still trains with the default (flex has no CPU backward)
    other = CausalWanTransformer3DModel(**tiny_wan_config)
    assert all(b.attn1.processor._attention_backend is None for b in other.blocks)
    x_grad = x.clone().requires_grad_(True)
    other(x_grad, t, text, chunk_layout=layout).sample.sum().backward()
    assert x_grad.grad is not None
    assert (flex - sdpa).abs().max() <= 1e-5


def _rollout_grads(model, layout, x, t, text):
    """Stream ``x`` chunk by chunk keeping every chunk's graph, backward once; returns the gradients."""
    model.zero_grad(set_to_none=True)
    cache = model.new_kv_cache(layout, detach=True)
    outs, offset = [], 0
    for size in [layout.context_frames] + [layout.frames_per_chunk] * ((x.shape[2] - 1) // layout.frames_per_chunk):
        chunk = x[:, :, offset : offset + size]
        outs.append(model(chunk, t, text, chunk_layout=layout, kv_cache=cache, frame_offset=offset).sample)
        with torch.no_grad():
            model(chunk, t, text, chunk_layout=layout, kv_cache=cache, frame_offset=offset, update_cache=True)
        offset += size
    torch.cat(outs, dim=2).square().mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_recomputes_each_chunk_with_its_own_attention_state(model):
    # The processors' state has moved on to later chunks when backward recomputes chunk 1: the recompute must
    # see chunk 1's cache and mask again, or its gradients differ.
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1, sink_frames=1, window_frames=3)
    x, t, text = _inputs(frames=7)
    model.train()
    plain = _rollout_grads(model, layout, x, t, text)
    model.enable_gradient_checkpointing()
    checkpointed = _rollout_grads(model, layout, x, t, text)
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    # and the block-causal (whole clip) forward under checkpointing equals the plain one
    with torch.no_grad():
        full = model(x, t, text, chunk_layout=layout).sample
    model.disable_gradient_checkpointing()
    with torch.no_grad():
        assert torch.equal(model(x, t, text, chunk_layout=layout).sample, full)


def test_cached_segments_are_shared_by_later_chunks_not_copied(model):
    # Each chunk's attention reads the cache's own tensors (views), so graphs of later chunks hold no copies.
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1, sink_frames=1, window_frames=5)
    x, t, text = _inputs(frames=9)
    cache = model.new_kv_cache(layout)
    pointers = []
    with torch.no_grad():
        for offset, size in [(0, 1), (1, 2), (3, 2), (5, 2), (7, 2)]:
            model(x[:, :, offset : offset + size], t, text, chunk_layout=layout, kv_cache=cache, frame_offset=offset,
                  update_cache=True)  # fmt: skip
            first_frames = [int(f[0]) for f in cache.segment_frames]
            pointers.append(
                {f: k.untyped_storage().data_ptr() for f, k in zip(first_frames, cache.keys[0], strict=True)}
            )
    assert len({p[0] for p in pointers}) == 1  # the sink (context) segment: one storage from first to last write
    assert pointers[2][3] == pointers[3][3]  # frames 3-4, still cached one write later, not re-copied
    assert pointers[3][5] == pointers[4][5]
    assert cache.cached_frames == [0, 5, 6, 7, 8]
