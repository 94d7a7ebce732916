"""The core reproduces the reference implementation's outputs and intermediate tensors (moore-tiny)."""

from __future__ import annotations

import pytest
import torch
from conftest import MOORE_TINY

from spritediff_core.context_windows import context_windows

TOLERANCE = 1e-4


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def generate(pipe, reference_image, pose_images, run_settings, run_name, output_type):
    window = run_settings["runs"][run_name]
    return pipe(
        reference_image, pose_images, run_settings["width"], run_settings["height"],
        num_inference_steps=run_settings["num_inference_steps"], guidance_scale=run_settings["guidance_scale"],
        seed=run_settings["seed"], context_frames=window["context_frames"],
        context_overlap=window["context_overlap"], loop_mode="reference", output_type=output_type,
    )


@pytest.mark.parametrize("run_name, trace_name", [("video.pt", "trace"), ("video_ctx.pt", "trace_ctx")])
def test_final_latents_and_frames_match_reference(pipe, reference_image, pose_images, run_settings,
                                                  run_name, trace_name, request):
    expected_trace = request.getfixturevalue(trace_name)
    latents = generate(pipe, reference_image, pose_images, run_settings, run_name, "latent")
    assert max_diff(latents, expected_trace["latents_after_step"][-1]) < TOLERANCE

    frames = generate(pipe, reference_image, pose_images, run_settings, run_name, "pt")
    expected = torch.load(MOORE_TINY / "expected" / run_name)  # (1, 3, L, H, W)
    assert max_diff(frames, expected[0].transpose(0, 1)) < TOLERANCE


def test_every_step_matches_reference(pipe, reference_image, pose_images, run_settings, trace):
    seen = []

    def record(_pipe, index, timestep, values):
        seen.append((int(timestep), values["latents"].clone()))
        return values

    pipe(reference_image, pose_images, 64, 64, num_inference_steps=3, guidance_scale=3.5, seed=1234,
         loop_mode="reference", output_type="latent", callback_on_step_end=record)
    assert [t for t, _ in seen] == [int(t) for t in trace["step_t"]]
    for (_, latents), expected in zip(seen, trace["latents_after_step"]):
        assert max_diff(latents, expected) < TOLERANCE


def test_reference_encoding_matches(pipe, reference_image, trace):
    encoded = pipe.encode_reference(reference_image, 64, 64)
    assert max_diff(encoded.clip_pixel_values, trace["clip_pixel_values"]) == 0.0
    assert max_diff(encoded.image_embeds, trace["clip_image_embeds"]) < 1e-5
    unscaled = encoded.latents / pipe.vae.config.scaling_factor
    assert max_diff(unscaled, trace["ref_latent_mean_unscaled"]) < 1e-5
    # The ReferenceNet's input is those latents, duplicated for the two guidance halves by the reference.
    assert max_diff(encoded.latents, trace["ref_unet_in"][1:]) < 1e-5


def test_pose_features_match(pipe, pose_images, trace):
    features = pipe.encode_poses(pose_images, 64, 64)
    assert max_diff(features, trace["pose_fea"]) < 1e-5
    assert max_diff(features.repeat(2, 1, 1, 1, 1), trace["unet_pose_in"][0]) < 1e-5


def test_initial_noise_follows_seed_rule(pipe, trace, run_settings):
    noise = pipe.initial_latents(4, 64, 64, seed=run_settings["seed"])
    assert torch.equal(noise, trace["init_latents"])
    assert torch.equal(noise, torch.randn((1, 4, 4, 8, 8), generator=torch.manual_seed(run_settings["seed"])))


def test_first_unet_output_matches(pipe, reference_image, pose_images, trace):
    encoded = pipe.encode_reference(reference_image, 64, 64)
    features = pipe.encode_poses(pose_images, 64, 64)
    with pipe._bank.active():
        pipe.record_reference(encoded.latents, encoded.image_embeds)
        prediction = pipe.predict(trace["unet_in"][0][1:], trace["unet_t"][0], encoded.image_embeds, features,
                                  guidance=True)
    assert max_diff(prediction, trace["unet_out"][0]) < TOLERANCE


def test_context_windows_match_reference_calls(trace_ctx):
    windows = context_windows(4, 3, 1, loop=True)
    assert windows == [[0, 1, 2], [2, 3, 0]]
    # The reference's first two UNet calls took exactly these frames of the initial latents.
    for window, unet_in in zip(windows, trace_ctx["unet_in"][:2]):
        assert torch.equal(unet_in[1:], trace_ctx["init_latents"][:, :, window])
