"""How close the denoising UNet and the VAE come to this CPU's limit.

Achieved FLOP/s = the operations torch counts for a piece of work (`torch.utils.flop_counter`: matmuls,
convolutions, attention) over its measured time, on one thread, against the machine's practical peak: the best
FLOP/s a large matrix product reaches in the same precision on the same thread. Model: the reference bench's (the
UNets at a fifth of SD1.5's width, 64/128/256/256 channels, cross-attention 768, a real-size VAE), at 256x256
and 8 frames, guidance on.

- UNet step: one denoising step of both guidance halves over every frame, measured as the difference between a
  3-step and a 1-step call (so the ReferenceNet, CLIP and pose guider, which run once, drop out).
- VAE: decoding one frame.

    python -m benchmarks.roofline   (one JSON line; run each precision in a fresh process)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

SIZE, FRAMES = 256, 8
UNET_CHANNELS = (64, 128, 256, 256)  # SD1.5's (320, 640, 1280, 1280) / 5
VAE_CHANNELS = (128, 256, 512, 512)  # SD1.5's own


def gemm_peak_gflops(dtype, size: int = 2048, repeats: int = 5) -> float:
    """The best GFLOP/s of a size^3 matrix product in `dtype`: the practical peak of this core."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def _winograd_flops(input_shape, weight_shape, bias_shape, padding, stride=None, *, out_shape) -> int:
    """NNPACK's Winograd convolution counted as the direct convolution it replaces: the model's work, so that
    doing it in fewer multiplications shows as a higher rate (which may pass the GEMM peak)."""
    from torch.utils.flop_counter import conv_flop_count

    return conv_flop_count(list(input_shape), list(weight_shape), list(out_shape), transposed=False)


def _counted(function) -> tuple[float, float]:
    """(FLOPs, best seconds of two timed runs) of `function`, counted in a separate untimed run."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    function()  # warm-up: oneDNN primitives, allocator
    counter = FlopCounterMode(display=False,
                              custom_mapping={torch.ops.aten._nnpack_spatial_convolution: _winograd_flops})
    with counter:
        function()
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return float(counter.get_total_flops()), min(seconds)


def measure(dtype_name: str) -> dict:
    import torch
    from PIL import Image

    from benchmarks.bench import sd15_layout_pipeline
    from spritediff_core.settings import RuntimeSettings

    torch.set_num_threads(1)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    pipe = sd15_layout_pipeline(UNET_CHANNELS, VAE_CHANNELS, cross_attention_dim=768, unet_norm_groups=32,
                                clip_hidden=64, clip_layers=2, device="cpu", dtype=dtype)
    reference = Image.new("RGB", (SIZE, SIZE), (150, 110, 80))
    poses = [Image.new("RGB", (SIZE, SIZE))] * FRAMES

    def call(steps: int):
        return pipe(reference, poses, SIZE, SIZE, num_inference_steps=steps, guidance_scale=3.5, seed=0,
                    loop_mode="reference", output_type="latent", show_progress=False, options=RuntimeSettings())

    flops_3, seconds_3 = _counted(lambda: call(3))
    flops_1, seconds_1 = _counted(lambda: call(1))
    latent = torch.randn(1, 4, SIZE // 8, SIZE // 8, dtype=dtype)
    with torch.inference_mode():
        vae_flops, vae_seconds = _counted(lambda: pipe.vae.decode(latent))
    peak = gemm_peak_gflops(dtype)
    unet_flops, unet_seconds = (flops_3 - flops_1) / 2, (seconds_3 - seconds_1) / 2

    def part(flops: float, seconds: float) -> dict:
        achieved = flops / seconds / 1e9
        return {"gflop": round(flops / 1e9, 1), "seconds": round(seconds, 3), "gflops": round(achieved, 1),
                "share_of_peak": round(achieved / peak, 3)}

    return {"dtype": dtype_name, "size": SIZE, "frames": FRAMES, "unet_channels": list(UNET_CHANNELS),
            "vae_channels": list(VAE_CHANNELS), "threads": 1, "gemm_peak_gflops": round(peak, 1),
            "unet_step": part(unet_flops, unet_seconds), "vae_decode_frame": part(vae_flops, vae_seconds)}


def table(results: list[dict]) -> str:
    lines = ["| precision | part | GFLOP | seconds | GFLOP/s | large-GEMM peak GFLOP/s | share of peak |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for name, key in (("UNet step (both guidance halves, all frames)", "unet_step"),
                          ("VAE decode, one frame", "vae_decode_frame")):
            p = r[key]
            lines.append(f"| {r['dtype']} | {name} | {p['gflop']} | {p['seconds']} | {p['gflops']} | "
                         f"{r['gemm_peak_gflops']} | {p['share_of_peak']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.roofline")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.dtype)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
