"""Attention capture and the HOLA loss on tiny random UNets."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers.models.attention_processor import AttnProcessor2_0  # noqa: E402

from annotate_anyone.daring.attention import (  # noqa: E402
    AttentionStore,
    CapturingAttnProcessor,
    capture_layer_names,
    install_capture,
)
from annotate_anyone.daring.hola import hola_loss  # noqa: E402
from annotate_anyone.daring.tiny_pipelines import tiny_unet  # noqa: E402

IMAGE = (128, 192)  # latent 16x24, capture map 8x12


def _inputs(unet, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = unet.config
    x = torch.randn(batch, 4, IMAGE[0] // 8, IMAGE[1] // 8, generator=g)
    ctx = torch.randn(batch, 77, cfg.cross_attention_dim, generator=g)
    kwargs = {"encoder_hidden_states": ctx}
    if cfg.addition_embed_type == "text_time":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, generator=g),
            "time_ids": torch.tensor([[128.0, 192.0, 0.0, 0.0, 128.0, 192.0]] * batch),
        }
    return x, torch.tensor([10, 700][:batch]), kwargs


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def unet(request):
    kind = request.param
    cross = 32 if kind == "sd15" else 64
    return tiny_unet(kind, cross, 32, seed=3, channels=(16, 32, 32))


def test_capture_keeps_output_identical(unet):
    x, t, kw = _inputs(unet)
    unet.set_attn_processor(AttnProcessor2_0())
    with torch.no_grad():
        stock = unet(x, t, **kw).sample
    store = AttentionStore()
    install_capture(unet, CapturingAttnProcessor(store))
    store.arm(AttentionStore.map_size(IMAGE))
    with torch.no_grad():
        captured = unet(x, t, **kw).sample
    maps = store.collect()
    store.disarm()
    assert torch.equal(stock, captured)
    expected_layers = 3 if unet.config.addition_embed_type is None else 6
    assert len(maps) == expected_layers
    for m in maps:
        assert m.shape[0] == 2 and m.shape[2] == 8 * 12 and m.shape[3] == 77
        assert torch.allclose(m.sum(-1), torch.ones(()), atol=1e-5)


def test_only_the_h16_level_is_captured(unet):
    names = capture_layer_names(unet, IMAGE)
    assert names and all(n.endswith("attn2.processor") for n in names)
    assert {".".join(n.split(".")[:2]) for n in names} == {"down_blocks.1", "up_blocks.1"}


def test_nothing_recorded_when_not_armed(unet):
    store = AttentionStore()
    install_capture(unet, CapturingAttnProcessor(store))
    x, t, kw = _inputs(unet)
    with torch.no_grad():
        unet(x, t, **kw)
    assert store.maps == []


def test_hola_zero_when_attention_equals_masks():
    masks = torch.zeros(1, 21, 4, 4)
    masks[0, 3, :2] = 1.0
    masks[0, 20] = 1.0
    maps = torch.zeros(1, 2, 16, 77)
    maps[0, :, :, 5:7] = masks[0, 3].flatten()[None, :, None]
    maps[0, :, :, 1:3] = 1.0
    terms = hola_loss([maps, maps.clone()], masks, [[(3, 5, 7), (20, 1, 3)]])
    assert float(terms.loss) == pytest.approx(0.0, abs=1e-7)


def test_hola_value_by_hand():
    masks = torch.zeros(2, 21, 2, 2)
    masks[0, 4] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    maps = torch.zeros(2, 1, 4, 77)
    maps[0, 0, :, 10] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    maps[0, 0, :, 11] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # token 10: (0.25 + 0.25)/4; token 11: 0; mean map (0.75, 0.25, 0, 0): (0.0625 + 0.0625)/4;
    # one mean over the 2 token maps and the mean map together (see test_daring_hola.py)
    expected = (0.125 + 0.0 + 0.03125) / 3
    terms = hola_loss([maps], masks, [[(4, 10, 12)], []])
    assert float(terms.loss) == pytest.approx(expected)
    assert terms.active.tolist() == [True, False] and terms.samples == 1


def test_hola_gradient_reaches_cross_attention_and_survives_checkpointing(unet):
    store = AttentionStore()
    install_capture(unet, CapturingAttnProcessor(store))
    x, t, kw = _inputs(unet)
    masks = torch.rand(2, 21, 8, 12)
    spans = [[(3, 2, 4), (20, 1, 2)], [(6, 5, 9)]]

    def grads(checkpointing):
        unet.zero_grad(set_to_none=True)
        unet.train()
        if checkpointing:
            unet.enable_gradient_checkpointing()
        store.arm((8, 12))
        unet(x, t, **kw)
        loss = hola_loss(store.collect(), masks, spans).loss
        loss.backward()
        store.disarm()
        unet.disable_gradient_checkpointing()
        return {n: p.grad.clone() for n, p in unet.named_parameters() if p.grad is not None}

    plain = grads(False)
    captured_level = [n for n in plain if "attn2.to_q" in n or "attn2.to_k" in n]
    assert captured_level and all(plain[n].abs().sum() > 0 for n in captured_level)
    assert "conv_out.weight" not in plain  # HOLA reaches only what feeds the captured maps
    ckpt = grads(True)
    assert plain.keys() == ckpt.keys()
    assert all(torch.allclose(plain[n], ckpt[n], atol=1e-6) for n in plain)
