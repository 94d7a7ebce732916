"""spritediff benchmarks (`python3 build.py bench`): speed and memory of the diffusion core, in sections:

- reference: exact, fast and unoptimised modes against the reference implementation itself on the same weights
  (`benchmarks.reference_bench`; where the reference environment is set up);
- roofline: achieved FLOP/s of the UNet and the VAE against this core's large-GEMM peak (`benchmarks.roofline`);
- mini: spritediff-mini end to end per animation (the demo);
- grid: the table below.

Grid models: the tiny fixture model, and random weights in the real SD1.5 / Animate Anyone layout at a quarter of
the channels (UNets 80/160/320/320 with the same depth, 8 heads and motion modules; VAE and CLIP image
encoder at a quarter width, same depth). Every measurement runs in a fresh process, so its peak RSS is its
own. Reported: seconds per denoising step (median over steps and repeats), end-to-end seconds per frame,
peak RSS (and peak CUDA memory on a GPU), for 256 and 512 px and 8 to 64 frames at a fixed context window;
the gain of each exact speedup against the unoptimised path (the reference implementation's order of work),
the memory switches, and the approximate modes, all in the same run.

    python -m benchmarks.bench [--quick] [--only SECTION ...] [--out out/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "moore-tiny"
WINDOW, OVERLAP = 16, 4


# ---------------------------------------------------------------- one measurement (child process)
def sd15_layout_pipeline(unet_channels=(80, 160, 320, 320), vae_channels=(32, 64, 128, 128),
                         cross_attention_dim=192, unet_norm_groups=16, clip_hidden=256, clip_layers=24,
                         device=None, dtype=None):
    """Random weights in the SD1.5 Animate Anyone layout (same depth, 8 heads, motion modules) at the given
    channel widths. The default is a quarter of the channels everywhere (80 channels: 16 groups of 5;
    SD1.5 has 32 groups of 10)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from spritediff_core.models.denoising_unet import build_denoising_unet
    from spritediff_core.pipeline import SpriteSheetPipeline
    from spritediff_core.weights import DEFAULT_NOISE_SCHEDULER_KWARGS, DEFAULT_UNET_ADDITIONAL_KWARGS

    torch.manual_seed(0)
    unet_config = {
        "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": list(unet_channels), "attention_head_dim": 8,
        "cross_attention_dim": cross_attention_dim, "norm_num_groups": unet_norm_groups,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    }
    reference = UNet2DConditionModel.from_config(unet_config)
    reference.conv_norm_out, reference.conv_out = None, torch.nn.Identity()
    denoising = build_denoising_unet(unet_config, DEFAULT_UNET_ADDITIONAL_KWARGS)
    pose_guider = ControlNetConditioningEmbedding(unet_channels[0], 3, (16, 32, 96, 256))
    vae = AutoencoderKL(block_out_channels=tuple(vae_channels), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=32, scaling_factor=0.18215)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=clip_hidden, intermediate_size=4 * clip_hidden, num_attention_heads=4,
        num_hidden_layers=clip_layers, patch_size=14, image_size=224, projection_dim=cross_attention_dim))
    return SpriteSheetPipeline(vae, clip, reference, denoising, pose_guider,
                               DDIMScheduler(**DEFAULT_NOISE_SCHEDULER_KWARGS), device=device, dtype=dtype)


def measure(model: str, size: int, frames: int, steps: int, mode: str, repeats: int) -> dict:
    import torch
    from PIL import Image

    from spritediff_core.pipeline import SpriteSheetPipeline
    from spritediff_core.settings import RuntimeSettings

    modes = {
        "optimised": RuntimeSettings(),
        "unoptimised": RuntimeSettings.unoptimised(),
        "exact-attention-only": RuntimeSettings(decode_chunk_size=1),  # cached K/V + no discarded attention
        "batched-decode-only": RuntimeSettings(exact_speedups=False, decode_chunk_size=4),
        "sequential-guidance": RuntimeSettings(sequential_guidance=True),
        "attention-chunks": RuntimeSettings(attention_chunk_size=4),
        "all-low-memory": RuntimeSettings(sequential_guidance=True, attention_chunk_size=4, decode_chunk_size=1),
        "dpm++": RuntimeSettings(solver="dpm++"),
        "reuse-every-2": RuntimeSettings(reuse_prediction_every=2),
    }
    if model == "tiny":
        pipe = SpriteSheetPipeline.from_pretrained(TINY / "pretrained_weights")
    else:
        pipe = sd15_layout_pipeline()
    reference = Image.open(TINY / "inputs" / "ref.png")
    poses = [Image.open(TINY / "inputs" / f"pose_{i % 4:02d}.png") for i in range(frames)]
    step_times, totals = [], []
    for _ in range(repeats):
        stamps = []
        started = time.perf_counter()

        def on_step(_pipe, _index, _t, values, stamps=stamps):
            if pipe.device.type == "cuda":
                torch.cuda.synchronize()  # timing only; the pipeline itself never waits per step
            stamps.append(time.perf_counter())
            return values

        pipe(reference, poses, size, size, num_inference_steps=steps, seed=0, context_frames=WINDOW,
             context_overlap=OVERLAP, loop_mode="reference", output_type="pil", callback_on_step_end=on_step,
             options=modes[mode], show_progress=False)
        totals.append(time.perf_counter() - started)
        step_times += [b - a for a, b in zip(stamps, stamps[1:])]
    result = {
        "model": model, "size": size, "frames": frames, "steps": steps, "mode": mode, "repeats": repeats,
        "seconds_per_step": statistics.median(step_times) if step_times else None,
        "seconds_per_frame": statistics.median(totals) / frames,
        "seconds_total": statistics.median(totals),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": str(pipe.device),
    }
    if pipe.device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# ---------------------------------------------------------------- the plan (parent process)
def plan(quick: bool) -> list[dict]:
    runs = []
    sizes = (256,) if quick else (256, 512)
    counts = (8, 16) if quick else (8, 16, 32, 64)
    for size in sizes:
        for frames in counts:
            repeats = 1 if quick or size == 512 else 2
            runs.append(dict(model="quarter", size=size, frames=frames, steps=3, mode="optimised", repeats=repeats))
    base = dict(model="quarter", size=256, frames=16, steps=3, repeats=1 if quick else 2)
    for mode in ("unoptimised", "exact-attention-only", "batched-decode-only", "sequential-guidance",
                 "attention-chunks", "all-low-memory", "dpm++", "reuse-every-2"):
        runs.append(dict(base, mode=mode))
    runs.append(dict(base, size=512, frames=16, mode="unoptimised", repeats=1))
    runs.append(dict(model="tiny", size=64, frames=16, steps=3, mode="optimised", repeats=3))
    runs.append(dict(model="tiny", size=64, frames=16, steps=3, mode="unoptimised", repeats=3))
    return runs


# The CPU features that decide which kernels (and which fast precision) run.
RELEVANT_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile",
                  "amx_bf16", "amx_int8", "amx_fp16")


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [flag for flag in RELEVANT_FLAGS if flag in flags]


def machine() -> dict:
    import torch

    from spritediff_core.devices import fast_dtype

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_flags": cpu_flags(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "fast_dtype_cpu": str(fast_dtype(torch.device("cpu"))).removeprefix("torch."),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def table(results: list[dict]) -> str:
    header = "| model | size | frames | mode | s/step | s/frame | peak RSS MB |\n|---|---|---|---|---|---|---|"
    rows = [f"| {r['model']} | {r['size']} | {r['frames']} | {r['mode']} | {r['seconds_per_step']:.3f} | "
            f"{r['seconds_per_frame']:.3f} | {r['peak_rss_mb']:.0f} |" for r in results]
    return "\n".join([header, *rows])


def summarise(results: list[dict]) -> dict:
    def find(**keys):
        return next((r for r in results if all(r[k] == v for k, v in keys.items())), None)

    summary = {}
    for size in sorted({r["size"] for r in results if r["model"] == "quarter"}):
        line = [r for r in results if r["model"] == "quarter" and r["size"] == size and r["mode"] == "optimised"]
        line.sort(key=lambda r: r["frames"])
        if len(line) >= 2:
            summary[f"{size}px_seconds_per_frame_by_frames"] = {r["frames"]: round(r["seconds_per_frame"], 3)
                                                               for r in line}
            summary[f"{size}px_peak_rss_mb_by_frames"] = {r["frames"]: round(r["peak_rss_mb"]) for r in line}
    base = find(model="quarter", size=256, frames=16, mode="unoptimised")
    if base:
        for mode in ("optimised", "exact-attention-only", "batched-decode-only", "sequential-guidance",
                     "attention-chunks", "all-low-memory", "dpm++", "reuse-every-2"):
            run = find(model="quarter", size=256, frames=16, mode=mode)
            if run:
                summary[f"256px_16f_{mode}"] = {
                    "speedup_vs_unoptimised": round(base["seconds_total"] / run["seconds_total"], 2),
                    "step_speedup_vs_unoptimised": round(base["seconds_per_step"] / run["seconds_per_step"], 2),
                    "peak_rss_mb": round(run["peak_rss_mb"]), "unoptimised_peak_rss_mb": round(base["peak_rss_mb"]),
                }
    base512, opt512 = find(model="quarter", size=512, frames=16, mode="unoptimised"), \
        find(model="quarter", size=512, frames=16, mode="optimised")
    if base512 and opt512:
        summary["512px_16f_speedup_vs_unoptimised"] = round(base512["seconds_total"] / opt512["seconds_total"], 2)
    return summary


def _child(module: str, *args: str) -> dict:
    """One measurement in a fresh process (its own peak RSS, no warm caches); its last stdout line as JSON."""
    child = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def run_roofline(quick: bool) -> list[dict]:
    """FLOP/s of the UNet and the VAE against the large-GEMM peak, in float32 and in the fast precision."""
    import torch

    from spritediff_core.devices import fast_dtype

    precisions = ["fp32"]
    fast = fast_dtype(torch.device("cpu"))
    if fast != torch.float32 and not quick:
        precisions.append({torch.bfloat16: "bf16", torch.float16: "fp16"}[fast])
    return [_child("benchmarks.roofline", "--dtype", precision) for precision in precisions]


def run_mini() -> dict:
    """spritediff-mini end to end per animation: the demo (armature -> poses -> frames -> atlas) in its own
    process, with the bundled model at its native size and recommended settings, torch's default threads."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="spritediff-bench-demo-") as folder:
        env = dict(os.environ)
        env.setdefault("BLENDER_USER_RESOURCES", str(ROOT / ".blender_user"))
        child = subprocess.run([sys.executable, "-m", "blender_addon.demo", "--out", folder], cwd=ROOT, env=env,
                               capture_output=True, text=True)
        if child.returncode != 0:
            raise RuntimeError(f"the demo failed:\n{child.stderr[-2000:]}")
        summary = json.loads((Path(folder) / "summary.json").read_text())
    rows = [{"animation": row["animation"], "frames": row["frames"], "seconds": row["seconds"],
             "seconds_per_frame": round(row["seconds"] / row["frames"], 3)} for row in summary["animations"]]
    return {"model": summary["model_name"], "size": summary["size"], "steps": summary["steps"],
            "animations": rows, "demo_seconds": summary["seconds"]}


def mini_table(mini: dict) -> str:
    lines = [f"{mini['model']} end to end ({mini['size']}x{mini['size']}, {mini['steps']} steps, poses to atlas):",
             "", "| animation | frames | seconds | s/frame |", "|---|---|---|---|"]
    lines += [f"| {r['animation']} | {r['frames']} | {r['seconds']:.1f} | {r['seconds_per_frame']:.2f} |"
              for r in mini["animations"]]
    return "\n".join(lines)


def run_grid(quick: bool) -> list[dict]:
    results = []
    runs = plan(quick)
    for number, run in enumerate(runs, 1):
        started = time.perf_counter()
        result = _child("benchmarks.bench", "--one", json.dumps(run))
        results.append(result)
        print(f"[{number}/{len(runs)}] {run['model']} {run['size']}px {run['frames']}f {run['mode']}: "
              f"{result['seconds_per_step']:.3f} s/step, {result['seconds_per_frame']:.3f} s/frame, "
              f"{result['peak_rss_mb']:.0f} MB ({time.perf_counter() - started:.0f} s)", flush=True)
    return results


SECTIONS = ("reference", "roofline", "mini", "grid")


def main(argv: list[str] | None = None) -> int:
    from benchmarks import reference_bench, roofline

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench")
    parser.add_argument("--out", default=str(ROOT / "out" / "bench"))
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere, for a smoke run")
    parser.add_argument("--only", action="append", choices=SECTIONS,
                        help="run only this section (repeatable); default: all of them")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one grid measurement as JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return 0
    sections = args.only or list(SECTIONS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": machine()}
    print(f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
          f"flags {' '.join(report['machine']['cpu_flags']) or 'none of note'}", flush=True)
    markdown = [f"Machine: {json.dumps(report['machine'])}"]
    if "reference" in sections:
        print("Against the reference implementation:", flush=True)
        report["reference"] = reference_bench.side_by_side(args.quick, log=lambda line: print(line, flush=True))
        markdown.append(reference_bench.table(report["reference"]))
        print(markdown[-1], flush=True)
    if "roofline" in sections:
        report["roofline"] = run_roofline(args.quick)
        markdown.append("Achieved FLOP/s against this core's large-GEMM peak (1 thread):\n\n"
                        + roofline.table(report["roofline"]))
        print(markdown[-1], flush=True)
    if "mini" in sections:
        report["mini"] = run_mini()
        markdown.append(mini_table(report["mini"]))
        print(markdown[-1], flush=True)
    if "grid" in sections:
        results = run_grid(args.quick)
        report.update(window={"context_frames": WINDOW, "overlap": OVERLAP}, results=results,
                      summary=summarise(results))
        markdown.append(f"{table(results)}\n\nSummary: {json.dumps(report['summary'], indent=1)}")
        print(markdown[-1], flush=True)
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "results.md").write_text("\n\n".join(markdown) + "\n")
    print(f"written: {out / 'results.md'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
