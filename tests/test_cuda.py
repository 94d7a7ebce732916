"""The CUDA path: fp16 by default, the same pictures as the CPU's float32 within fp16 rounding, model CPU
offload that leaves the GPU empty. Skipped where torch sees no CUDA device (CI has none); run on a GPU
machine with `python -m pytest tests/test_cuda.py`."""

from __future__ import annotations

import pytest
import torch
from conftest import MOORE_TINY, TINY_WEIGHTS

from spritediff_core import SpriteSheetPipeline
from spritediff_core.weights import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# fp16 activations through the tiny random model and 3 DDIM steps, against the reference's float32 frames in [0, 1].
FP16_TOLERANCE = 2e-2


def run(pipe, reference_image, pose_images, **overrides):
    settings = dict(num_inference_steps=3, guidance_scale=3.5, seed=1234, loop_mode="reference", output_type="pt")
    settings.update(overrides)
    return pipe(reference_image, pose_images, 64, 64, **settings).float().cpu()


@pytest.fixture(scope="module")
def cuda_pipe():
    return SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS)


def test_cuda_is_chosen_with_fp16_by_default(cuda_pipe):
    assert cuda_pipe.device.type == "cuda"
    assert cuda_pipe.dtype == torch.float16
    assert all(p.dtype == torch.float16 and p.is_cuda for p in cuda_pipe.denoising_unet.parameters())


def test_fp16_on_cuda_matches_the_reference_output(cuda_pipe, reference_image, pose_images):
    expected = torch.load(MOORE_TINY / "expected" / "video.pt")[0].transpose(0, 1)  # (L, 3, H, W)
    frames = run(cuda_pipe, reference_image, pose_images)
    assert torch.isfinite(frames).all()
    assert (frames - expected).abs().max().item() < FP16_TOLERANCE


def test_cpu_offload_on_cuda_gives_the_same_frames_and_frees_the_gpu(reference_image, pose_images):
    plain = SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS)
    expected = run(plain, reference_image, pose_images)
    del plain
    torch.cuda.empty_cache()

    offloaded = SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS, device="cpu", dtype="fp16")
    offloaded.enable_model_cpu_offload("cuda")
    frames = run(offloaded, reference_image, pose_images)
    assert torch.equal(frames, expected)
    assert all(not p.is_cuda for p in offloaded.denoising_unet.parameters())
    assert all(not p.is_cuda for p in offloaded.vae.parameters())


@pytest.mark.skipif(not DEFAULT_MODEL.is_dir(), reason="spritediff-mini is not bundled")
def test_bundled_model_on_cuda_fp16_matches_cpu_fp32(reference_image, pose_images):
    cpu = run(SpriteSheetPipeline.from_pretrained(DEFAULT_MODEL, device="cpu", dtype="fp32"),
              reference_image, pose_images, num_inference_steps=10)
    cuda = run(SpriteSheetPipeline.from_pretrained(DEFAULT_MODEL), reference_image, pose_images,
               num_inference_steps=10)
    assert torch.isfinite(cuda).all()
    assert (cuda - cpu).abs().mean().item() < 0.02
