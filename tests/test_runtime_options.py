"""Speed and memory switches: the exact ones keep the reference outputs (fixture) within 1e-4; the
approximate ones run end to end and are labelled as changing the output."""

from __future__ import annotations

import pytest
import torch
from conftest import MOORE_TINY, TINY_WEIGHTS

from spritediff_core import InvalidInputError, SpriteSheetPipeline
from spritediff_core.models.winograd_convolution import winograd_available
from spritediff_core.settings import RuntimeSettings

EXPECTED = {"video.pt": (24, 4), "video_ctx.pt": (3, 1)}


def frames(pipe, reference_image, pose_images, run_name, options, output_type="pt"):
    context, overlap = EXPECTED[run_name]
    return pipe(reference_image, pose_images, 64, 64, num_inference_steps=3, guidance_scale=3.5, seed=1234,
                context_frames=context, context_overlap=overlap, loop_mode="reference", output_type=output_type,
                options=options)


EXACT = {
    "default": RuntimeSettings(),
    "unoptimised": RuntimeSettings.unoptimised(),
    "sequential guidance": RuntimeSettings(sequential_guidance=True),
    "attention chunks": RuntimeSettings(attention_chunk_size=3),
    "decode one by one": RuntimeSettings(decode_chunk_size=1),
    "everything for memory": RuntimeSettings(sequential_guidance=True, attention_chunk_size=2, decode_chunk_size=1),
}


@pytest.mark.parametrize("run_name", list(EXPECTED))
@pytest.mark.parametrize("label", list(EXACT))
def test_exact_options_reproduce_the_reference(pipe, reference_image, pose_images, run_name, label):
    expected = torch.load(MOORE_TINY / "expected" / run_name)[0].transpose(0, 1)
    result = frames(pipe, reference_image, pose_images, run_name, EXACT[label])
    assert (result - expected).abs().max() < 1e-4


@pytest.mark.parametrize("switch", ["cpu offload", "vae tiling"])
def test_model_memory_switches_keep_the_output(reference_image, pose_images, switch):
    pipe = SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS, device="cpu", dtype="fp32")
    if switch == "cpu offload":
        pipe.enable_model_cpu_offload("cpu")  # on a GPU machine: "cuda"; here the hooks run on the CPU
        assert all(hasattr(m, "_hf_hook") for m in (pipe.vae, pipe.denoising_unet, pipe.reference_unet))
    else:
        pipe.enable_vae_tiling()
        assert pipe.vae.use_tiling
    expected = torch.load(MOORE_TINY / "expected" / "video.pt")[0].transpose(0, 1)
    assert (frames(pipe, reference_image, pose_images, "video.pt", None) - expected).abs().max() < 1e-4


def test_model_cpu_offload_chains_the_models_in_run_order_and_sends_all_back(reference_image, pose_images):
    """Traced through accelerate's hooks (a CPU has no second device to watch): every model's hook sends
    back the model that ran before it, the denoising UNet leaves before the VAE decodes, and after the call
    every model has been sent back since it last ran."""
    pipe = SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS, device="cpu", dtype="fp32")
    pipe.enable_model_cpu_offload("cpu")
    names = {id(pipe.image_encoder): "image_encoder", id(pipe.vae): "vae", id(pipe.pose_guider): "pose_guider",
             id(pipe.reference_unet): "reference_unet", id(pipe.denoising_unet): "denoising_unet"}
    events = []
    for model in (pipe.image_encoder, pipe.vae, pipe.pose_guider, pipe.reference_unet, pipe.denoising_unet):
        hook, name = model._hf_hook, names[id(model)]
        run, send_back = hook.pre_forward, hook.init_hook
        hook.pre_forward = lambda module, *a, _run=run, _name=name, **k: (events.append(("run", _name)),
                                                                          _run(module, *a, **k))[1]
        hook.init_hook = lambda module, _send=send_back, _name=name: (events.append(("back", _name)), _send(module))[1]
    frames(pipe, reference_image, pose_images, "video.pt", None)

    first_runs = list(dict.fromkeys(name for kind, name in events if kind == "run"))
    assert first_runs == ["image_encoder", "vae", "pose_guider", "reference_unet", "denoising_unet"]
    chain = [(names[id(h.model)], names[id(h.model._hf_hook.prev_module_hook.model)] if
              h.model._hf_hook.prev_module_hook else None) for h in pipe._offload_hooks]
    assert chain == list(zip(first_runs, [None] + first_runs[:-1]))
    decode = max(i for i, event in enumerate(events) if event == ("run", "vae"))
    last_denoise = max(i for i, event in enumerate(events) if event == ("run", "denoising_unet"))
    assert ("back", "denoising_unet") in events[last_denoise:decode]
    for name in first_runs:
        last_run = max(i for i, event in enumerate(events) if event == ("run", name))
        assert ("back", name) in events[last_run:], f"{name} stays on the device after the call"


def attention_inputs(pipe):
    """Record the inputs of one reader layer's to_q and to_k (rows and tokens per call)."""
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    attn = dict(pipe.denoising_unet.named_modules())[name]
    seen = {"to_q": [], "to_k": []}
    handles = [getattr(attn, p).register_forward_pre_hook(lambda _m, a, p=p: seen[p].append(tuple(a[0].shape[:2])))
               for p in seen]
    return seen, handles


def test_reference_keys_are_projected_once_and_not_for_the_unconditional_half(pipe, reference_image,
                                                                              pose_images):
    seen, handles = attention_inputs(pipe)
    try:
        frames(pipe, reference_image, pose_images, "video.pt", RuntimeSettings(), "latent")
        exact = {k: list(v) for k, v in seen.items()}
        for calls in seen.values():
            calls.clear()
        frames(pipe, reference_image, pose_images, "video.pt", RuntimeSettings.unoptimised(), "latent")
        reference_way = {k: list(v) for k, v in seen.items()}
    finally:
        for handle in handles:
            handle.remove()
    tokens = 64  # 8 x 8 latent
    # Exact: the reference tokens (1 row) projected once in the whole generation; per step, queries for
    # 4 unconditional + 4 conditional rows, i.e. each row once.
    assert exact["to_k"].count((1, tokens)) == 1
    assert sum(rows for rows, _ in exact["to_q"]) == 3 * 8
    # The reference implementation: per step, 8 rows of [own + reference] keys, and the unconditional
    # rows again.
    assert reference_way["to_k"].count((8, 2 * tokens)) == 3
    assert sum(rows for rows, _ in reference_way["to_q"]) == 3 * 12


def test_dpm_solver_is_an_approximate_mode_that_runs(pipe, reference_image, pose_images):
    ddim = frames(pipe, reference_image, pose_images, "video.pt", RuntimeSettings())
    fast = frames(pipe, reference_image, pose_images, "video.pt", RuntimeSettings(solver="dpm++"))
    assert fast.shape == ddim.shape and torch.isfinite(fast).all()
    assert (fast - ddim).abs().max() > 1e-3  # it changes the output: off by default


def test_prediction_reuse_skips_unet_calls(pipe, reference_image, pose_images):
    calls = []
    handle = pipe.denoising_unet.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        result = pipe(reference_image, pose_images, 64, 64, num_inference_steps=4, seed=1, output_type="pt",
                      options=RuntimeSettings(reuse_prediction_every=2))
    finally:
        handle.remove()
    assert len(calls) == 2 and torch.isfinite(result).all()


@pytest.mark.parametrize("kwargs", [dict(decode_chunk_size=-1), dict(attention_chunk_size=-1), dict(solver="euler"),
                                    dict(reuse_prediction_every=0)])
def test_bad_options_are_clear_errors(kwargs):
    with pytest.raises(InvalidInputError):
        RuntimeSettings(**kwargs)


def test_pose_features_in_chunks_are_the_same(pipe, pose_images, trace):
    whole = pipe.encode_poses(pose_images, 64, 64)
    chunked = pipe.encode_poses(pose_images, 64, 64, chunk=3)
    assert torch.equal(whole, chunked) or (whole - chunked).abs().max() < 1e-6
    assert (chunked - trace["pose_fea"]).abs().max() < 1e-5


def test_the_image_token_cross_attention_skips_queries_and_keys(pipe, reference_image, pose_images):
    """The image embedding is one token: with the exact speedups no cross-attention projects queries or keys
    (the output is to_out(to_v(token)) for every query); the unoptimised path does, as the reference."""
    cross = [module for unet in (pipe.reference_unet, pipe.denoising_unet)
             for name, module in unet.named_modules() if name.endswith(".attn2") and ".motion_modules." not in name]
    assert cross
    calls = {"q": 0, "v": 0}
    handles = [m.to_q.register_forward_pre_hook(lambda *_: calls.__setitem__("q", calls["q"] + 1)) for m in cross]
    handles += [m.to_v.register_forward_pre_hook(lambda *_: calls.__setitem__("v", calls["v"] + 1)) for m in cross]
    try:
        frames(pipe, reference_image, pose_images, "video.pt", RuntimeSettings())
        assert calls["q"] == 0 and calls["v"] > 0
        frames(pipe, reference_image, pose_images, "video.pt", RuntimeSettings.unoptimised())
        assert calls["q"] > 0
    finally:
        for handle in handles:
            handle.remove()


def test_fast_mode_is_half_precision_where_the_hardware_does_it(monkeypatch):
    from spritediff_core import devices

    assert RuntimeSettings.fast().dtype == "fast"
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert devices.resolve_dtype("fast", cuda) == torch.float16
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: True)
    assert devices.resolve_dtype("fast", cpu) == torch.bfloat16
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: False)
    assert devices.resolve_dtype("fast", cpu) == torch.float32  # no faster half precision on such a CPU


def test_fast_mode_frames_stay_close_to_float32(reference_image, pose_images):
    """On this machine's CPU fast mode is bfloat16 where it has AVX-512 BF16 or AMX, else float32 (identical)."""
    import math

    from spritediff_core.devices import cpu_has_fast_bfloat16

    settings = dict(num_inference_steps=3, guidance_scale=3.5, seed=1234, output_type="pt", show_progress=False)
    exact = SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS, device="cpu")(reference_image, pose_images, 64, 64,
                                                                            **settings)
    fast_pipe = SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS, device="cpu", dtype=RuntimeSettings.fast().dtype)
    assert fast_pipe.dtype == (torch.bfloat16 if cpu_has_fast_bfloat16() else torch.float32)
    fast = fast_pipe(reference_image, pose_images, 64, 64, **settings).float()
    mse = ((fast - exact) ** 2).mean().item()
    assert mse == 0 or 10 * math.log10(1 / mse) > 30


@pytest.mark.parametrize("channels, out_channels, height, width", [(8, 8, 5, 7), (16, 4, 1, 1), (4, 12, 6, 3)])
def test_sub_pixel_upsampling_equals_upsample_then_convolve(channels, out_channels, height, width):
    from diffusers.models.upsampling import Upsample2D

    from spritediff_core.models.sub_pixel_upsampling import SubPixelUpsample2D

    torch.manual_seed(0)
    original = Upsample2D(channels, use_conv=True, out_channels=out_channels)
    swapped = SubPixelUpsample2D(original)
    assert swapped.state_dict().keys() == original.state_dict().keys()
    sample = torch.randn(2, channels, height, width)
    with torch.no_grad():
        expected = original(sample)
        assert (swapped(sample) - expected).abs().max() < 1e-5
        # weights changed after the swap (loading, training) are used: the phases come from them at each call
        swapped.conv.weight.mul_(-2)
        assert (swapped(sample) - original(sample)).abs().max() < 1e-5
        swapped.sub_pixel = False  # off: diffusers' own computation
        assert torch.equal(swapped(sample), original(sample))


def _count_calls(patch, owner, name: str) -> list:
    calls = []
    original = getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(kwargs.get("mode"))
        return original(*args, **kwargs)

    patch.setattr(owner, name, counting)
    return calls


def test_cpu_convolutions_are_winograd_where_nnpack_runs_else_the_vae_upsamples_by_phases(pipe, reference_image,
                                                                                          pose_images):
    """Exact mode on the CPU: the 3x3 convolutions go through NNPACK's Winograd kernels where it runs here;
    without it the VAE upsamples by phases (no full-size nearest copy). The unoptimised path keeps torch's own
    convolutions and diffusers' nearest-then-convolve."""
    from spritediff_core import pipeline as pipeline_module
    from spritediff_core.models.sub_pixel_upsampling import SubPixelUpsample2D
    from spritediff_core.models.winograd_convolution import WinogradConv2d

    layers = [m for m in pipe.vae.decoder.modules() if isinstance(m, SubPixelUpsample2D)]
    assert layers and len(layers) == len(pipe.vae.config.block_out_channels) - 1
    assert all(isinstance(layer.conv, WinogradConv2d) for layer in layers)
    # the encoder's rounding would reach every step through the reference latents
    assert not any(isinstance(m, WinogradConv2d) for m in pipe.vae.encoder.modules())
    with pytest.MonkeyPatch.context() as patch:
        nearest = _count_calls(patch, torch.nn.functional, "interpolate")
        winograd = _count_calls(patch, torch, "_nnpack_spatial_convolution")

        def vae_decode_calls(options) -> tuple[int, int]:  # a call's minus its denoising's (the UNets upsample too)
            nearest.clear(), winograd.clear()
            frames(pipe, reference_image, pose_images, "video.pt", options, "latent")
            denoising = nearest.count("nearest"), len(winograd)
            nearest.clear(), winograd.clear()
            frames(pipe, reference_image, pose_images, "video.pt", options)
            return nearest.count("nearest") - denoising[0], len(winograd) - denoising[1]

        nearest_calls, winograd_calls = vae_decode_calls(RuntimeSettings())
        if winograd_available():
            assert winograd_calls > 0 and nearest_calls >= len(layers)
        else:
            assert (winograd_calls, nearest_calls) == (0, 0)
        nearest_calls, winograd_calls = vae_decode_calls(RuntimeSettings.unoptimised())
        assert nearest_calls >= len(layers) and winograd_calls == 0
        patch.setattr(pipeline_module, "winograd_available", lambda: False)  # a CPU or torch build without NNPACK
        assert vae_decode_calls(RuntimeSettings()) == (0, 0)


@pytest.mark.skipif(not winograd_available(), reason="NNPACK does not run on this CPU or torch build")
@pytest.mark.parametrize("run_name", list(EXPECTED))
def test_winograd_on_every_layer_reproduces_the_reference(pipe, reference_image, pose_images, run_name):
    """At the fixture's 64x64 most layers are below Winograd's size threshold: lowered to one pixel, every 3x3
    convolution of the UNets, the PoseGuider and the VAE's decoder takes the Winograd path, still within 1e-4
    of the reference's frames."""
    from spritediff_core.models import winograd_convolution

    expected = torch.load(MOORE_TINY / "expected" / run_name)[0].transpose(0, 1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd_convolution, "MINIMUM_PIXELS", 1)
        winograd = _count_calls(patch, torch, "_nnpack_spatial_convolution")
        result = frames(pipe, reference_image, pose_images, run_name, RuntimeSettings())
    swapped = sum(isinstance(m, winograd_convolution.WinogradConv2d) for m in pipe.denoising_unet.modules())
    assert swapped > 0 and len(winograd) > swapped
    assert (result - expected).abs().max() < 1e-4


@pytest.mark.parametrize("shape, out_channels, padding, bias", [
    ((1, 8, 20, 20), 8, 1, True), ((3, 5, 17, 23), 12, 1, False), ((2, 16, 20, 18), 4, 0, True)])
def test_winograd_convolution_equals_torch_and_falls_back_where_it_does_not_apply(shape, out_channels, padding,
                                                                                    bias):
    from spritediff_core.models.winograd_convolution import WinogradConv2d

    torch.manual_seed(0)
    original = torch.nn.Conv2d(shape[1], out_channels, 3, padding=padding, bias=bias)
    swapped = WinogradConv2d(original)
    assert swapped.state_dict().keys() == original.state_dict().keys()
    assert swapped.weight is original.weight  # shared, not copied: loading or training either changes both
    sample = torch.randn(shape)
    with pytest.MonkeyPatch.context() as patch:
        winograd = _count_calls(patch, torch, "_nnpack_spatial_convolution")
        with torch.no_grad():
            expected = original(sample)
            assert torch.equal(swapped(sample), expected) and not winograd  # off until turned on
            swapped.winograd = True
            result = swapped(sample)
            assert (result - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max().item())
            assert len(winograd) == (1 if winograd_available() else 0)
            winograd.clear()
            assert torch.equal(swapped(sample[..., :6, :6]), original(sample[..., :6, :6]))  # too small to gain
            swapped.double()  # the parameters are shared: both layers are float64 now
            assert torch.equal(swapped(sample.double()), original(sample.double())) and not winograd  # float32 only
            swapped.float()
        gradient_wanted = sample.clone().requires_grad_(True)
        swapped(gradient_wanted).sum().backward()  # training: torch's convolution, which has a backward
        assert gradient_wanted.grad is not None and not winograd


@pytest.mark.skipif(not winograd_available(), reason="NNPACK does not run on this CPU or torch build")
@pytest.mark.parametrize("shape", [(1, 8, 37, 21), (2, 6, 16, 40), (1, 4, 9, 50)])
def test_winograd_in_bands_of_rows_equals_one_convolution(shape):
    """Large pictures go to NNPACK in bands of rows (each read with its neighbours), also the VAE's upsampling,
    which never holds the upsampled picture whole: the same result as torch's single convolution."""
    from diffusers.models.upsampling import Upsample2D

    from spritediff_core.models import winograd_convolution
    from spritediff_core.models.sub_pixel_upsampling import SubPixelUpsample2D

    torch.manual_seed(0)
    sample, weight, bias = torch.randn(shape), torch.randn(5, shape[1], 3, 3) * 0.2, torch.randn(5)
    original = Upsample2D(shape[1], use_conv=True, out_channels=5)
    swapped = SubPixelUpsample2D(original)
    swapped.conv = winograd_convolution.WinogradConv2d(swapped.conv)
    swapped.conv.winograd = True
    with pytest.MonkeyPatch.context() as patch, torch.no_grad():
        patch.setattr(winograd_convolution, "BAND_BYTES", 4 * shape[0] * shape[1] * shape[3] * 5)  # 5-row bands
        calls = _count_calls(patch, torch, "_nnpack_spatial_convolution")
        banded = winograd_convolution.convolve_3x3(sample, weight, bias)
        assert len(calls) == -(-shape[2] // 5)
        expected = torch.nn.functional.conv2d(sample, weight, bias, padding=1)
        assert (banded - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max().item())
        calls.clear()
        upsampled, expected = swapped(sample), original(sample)
        assert len(calls) > 1 and upsampled.shape == expected.shape
        assert (upsampled - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max().item())
