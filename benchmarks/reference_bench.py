"""spritediff against the reference implementation itself, on the very same weights and inputs.

The reference side is Moore-AnimateAnyone's `Pose2VideoPipeline`, run by `moore_bench2.py` from the shared
reference bench (`../shared/reference-bench/` beside the checkout, or `SPRITEDIFF_REFERENCE_BENCH`) in its own
environment (`.venv-ref/` in the checkout, or `REF_VENV`; that folder's `setup_reference.sh` makes it). Its
first run writes the random weights it ran (SD1.5's topology at a fraction of the UNet width, a real-size VAE) as
a Moore `pretrained_weights/` folder and its exact inputs as PNG files; every project run loads those.

Every run is a fresh process, one torch thread, alternating reference, exact, fast, unoptimised, so a change in
the machine's load hits every side alike. Timed: the pipeline call; memory: the process's peak RSS up to the
end of the call (loading included). Exactness: the largest absolute difference from the reference's frames;
fast mode's PSNR against the exact frames.

    python -m benchmarks.reference_bench [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The issue's setting: 256x256, 8 frames, 10 steps, guidance 3.5, UNets at a fifth of SD1.5's width.
FULL = dict(W=256, H=256, L=8, STEPS=10, WIDTH_DIV=5, CFG=3.5)
QUICK = dict(W=64, H=64, L=4, STEPS=2, WIDTH_DIV=10, CFG=3.5)
PROJECT_MODES = ("exact", "fast", "unoptimised")


def reference_bench_dir() -> Path:
    return Path(os.environ.get("SPRITEDIFF_REFERENCE_BENCH") or ROOT.parent / "shared" / "reference-bench")


def reference_python() -> Path:
    return Path(os.environ.get("REF_VENV") or ROOT / ".venv-ref") / "bin" / "python"


def missing_reference() -> str | None:
    """Why the reference cannot run here, or None when it can."""
    bench = reference_bench_dir()
    if not (bench / "moore_bench2.py").is_file():
        return f"no reference bench at {bench} (set SPRITEDIFF_REFERENCE_BENCH)"
    if not reference_python().is_file():
        return (f"no reference environment at {reference_python().parent.parent}: "
                f"bash {bench / 'setup_reference.sh'} (or set REF_VENV)")
    return None


# ---------------------------------------------------------------- the project's side (child process)
def project_run(mode: str, weights: str, inputs: str, video_out: str, setting: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from PIL import Image

    from spritediff_core.pipeline import SpriteSheetPipeline
    from spritediff_core.settings import RuntimeSettings

    options = {"exact": RuntimeSettings(), "fast": RuntimeSettings.fast(),
               "unoptimised": RuntimeSettings.unoptimised()}[mode]
    started = time.perf_counter()
    pipe = SpriteSheetPipeline.from_pretrained(weights, device="cpu", dtype=options.dtype)
    load_seconds = time.perf_counter() - started
    reference = Image.open(Path(inputs) / "ref.png").convert("RGB")
    poses = [Image.open(Path(inputs) / f"pose_{i:02d}.png").convert("RGB") for i in range(setting["L"])]
    started = time.perf_counter()
    # loop_mode="reference": the reference's windows (its animations are one-shots), so the maths is the same.
    frames = pipe(reference, poses, setting["W"], setting["H"], num_inference_steps=setting["STEPS"],
                  guidance_scale=setting["CFG"], seed=0, loop_mode="reference", output_type="pt",
                  show_progress=False, options=options)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    # the reference's layout: float32 (1, 3, L, H, W) in [0, 1]
    torch.save(frames.float().transpose(0, 1).unsqueeze(0).contiguous(), video_out)
    return {"mode": mode, "dtype": str(pipe.dtype).removeprefix("torch."), "seconds": round(seconds, 3),
            "peak_rss_MB": peak, "load_seconds": round(load_seconds, 2), "threads": torch.get_num_threads()}


# ---------------------------------------------------------------- the driver
def _run(command: list[str], env: dict, log: Path) -> dict:
    with open(log, "w") as errors:
        child = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command[-2:])} failed (exit {child.returncode}); last lines of {log}:\n"
                           + "\n".join(log.read_text().splitlines()[-15:]))
    return json.loads(child.stdout.strip().splitlines()[-1])


def _video(path: Path):
    import torch

    return torch.load(path, weights_only=True).double()


def _psnr(a, b) -> float | None:
    mse = (a - b).pow(2).mean().item()
    return None if mse == 0 else round(10 * math.log10(1.0 / mse), 2)


def side_by_side(quick: bool = False, repeats: int | None = None, keep: bool = False,
                 log=print) -> dict:
    """Reference, exact, fast and unoptimised runs alternating, `repeats` of each; the summary of them."""
    why = missing_reference()
    if why:
        return {"skipped": why}
    setting = dict(QUICK if quick else FULL)
    repeats = repeats or (1 if quick else 2)
    work = Path(tempfile.mkdtemp(prefix="spritediff-reference-bench-"))
    weights, inputs = work / "pretrained_weights", work / "ref_1" / "inputs"
    bench = reference_bench_dir()
    # INPUTS=varied and REINIT=1: every input pixel and every weight (also the zero-initialised output
    # layers) reaches the output, so the difference check covers all of it; timing is unaffected.
    base_env = dict(os.environ, **{k: str(v) for k, v in setting.items()}, SEED="0", WEIGHT_SEED="0",
                    INPUTS="varied", REINIT="1", THREADS="1", MOORE_DIR=str(bench / "moore"),
                    PYTHONDONTWRITEBYTECODE="1")
    runs: dict[str, list[dict]] = {"reference": [], **{mode: [] for mode in PROJECT_MODES}}
    load_before = os.getloadavg()
    try:
        for index in range(1, repeats + 1):
            env = dict(base_env, RUN_DIR=str(work / f"ref_{index}"), OUT_DIR=str(weights) if index == 1 else "")
            result = _run([str(reference_python()), str(bench / "moore_bench2.py")], env, work / f"ref_{index}.err")
            runs["reference"].append(result)
            log(f"  reference run {index}: {result['seconds']:.1f} s, {result['peak_rss_MB']} MB")
            for mode in PROJECT_MODES:
                request = dict(mode=mode, weights=str(weights), inputs=str(inputs),
                               video_out=str(work / f"{mode}_{index}.pt"), setting=setting)
                result = _run([sys.executable, "-m", "benchmarks.reference_bench", "--project-run",
                               json.dumps(request)], base_env, work / f"{mode}_{index}.err")
                runs[mode].append(result)
                log(f"  {mode} run {index}: {result['seconds']:.1f} s, {result['peak_rss_MB']} MB "
                    f"({result['dtype']})")
        reference_video = _video(work / "ref_1" / "video.pt")
        exact_video = _video(work / "exact_1.pt")
        differences = {mode: max((_video(work / f"{mode}_{i}.pt") - reference_video).abs().max().item()
                                 for i in range(1, repeats + 1)) for mode in PROJECT_MODES}
        fast_psnr_vs_exact = _psnr(_video(work / "fast_1.pt"), exact_video)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    median = statistics.median
    seconds = {side: median(r["seconds"] for r in results) for side, results in runs.items()}
    rss = {side: median(r["peak_rss_MB"] for r in results) for side, results in runs.items()}
    ref = runs["reference"][0]
    summary = {
        "setting": {**setting, "frames": setting["L"], "channels": ref["channels"],
                    "unet_params_M": ref["unet_params_M"], "threads": 1, "repeats": repeats,
                    "inputs": "varied", "reinit": True},
        "weights_identical": len({r["weights_sha"] for r in runs["reference"]}) == 1,
        "seconds_median": {k: round(v, 2) for k, v in seconds.items()},
        "peak_rss_MB_median": rss,
        "speedup_vs_reference": {mode: round(seconds["reference"] / seconds[mode], 2) for mode in PROJECT_MODES},
        "speedup_vs_unoptimised": {mode: round(seconds["unoptimised"] / seconds[mode], 2)
                                   for mode in ("exact", "fast")},
        "memory_ratio_vs_reference": {mode: round(rss[mode] / rss["reference"], 3) for mode in PROJECT_MODES},
        "max_abs_diff_vs_reference": differences,
        "fast_dtype": runs["fast"][0]["dtype"],
        "fast_psnr_dB_vs_exact": fast_psnr_vs_exact,
        "runs": runs,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "kept_work_dir": str(work) if keep else None,
    }
    return summary


def table(summary: dict) -> str:
    if "skipped" in summary:
        return f"Reference implementation: not measured ({summary['skipped']})."
    s = summary["setting"]
    lines = [f"Against the reference implementation (Moore-AnimateAnyone Pose2VideoPipeline), {s['W']}x{s['H']}, "
             f"{s['L']} frames, {s['STEPS']} steps, guidance {s['CFG']}, UNets {s['channels']}, real-size VAE, "
             f"1 thread, median of {s['repeats']}:", "",
             "| run | seconds | speedup vs reference | peak RSS MB | max abs diff vs reference |",
             "|---|---|---|---|---|"]
    for side in ("reference", *PROJECT_MODES):
        speed = "1.00" if side == "reference" else f"{summary['speedup_vs_reference'][side]:.2f}x"
        diff = "" if side == "reference" else f"{summary['max_abs_diff_vs_reference'][side]:.1e}"
        name = f"fast ({summary['fast_dtype']})" if side == "fast" else side
        lines.append(f"| {name} | {summary['seconds_median'][side]:.1f} | {speed} | "
                     f"{summary['peak_rss_MB_median'][side]:.0f} | {diff} |")
    lines.append(f"\nFast mode PSNR against the exact frames: {summary['fast_psnr_dB_vs_exact']} dB.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference_bench")
    parser.add_argument("--quick", action="store_true", help="64x64, 4 frames, 2 steps, one run of each")
    parser.add_argument("--repeats", type=int, help="runs of each side (default 2, quick 1)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (weights, inputs, outputs)")
    parser.add_argument("--project-run", help=argparse.SUPPRESS)  # internal: one project run as JSON
    args = parser.parse_args(argv)
    if args.project_run:
        print(json.dumps(project_run(**json.loads(args.project_run))))
        return 0
    summary = side_by_side(args.quick, args.repeats, args.keep)
    print(table(summary))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    return 0 if "skipped" not in summary else 2


if __name__ == "__main__":
    sys.exit(main())
