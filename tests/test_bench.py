"""The benchmark code stays runnable (its numbers are not a test: see `python3 build.py bench`)."""

from __future__ import annotations

from benchmarks.bench import measure, plan, summarise, table


def test_one_measurement_on_the_tiny_model():
    result = measure(model="tiny", size=64, frames=6, steps=2, mode="unoptimised", repeats=1)
    assert result["seconds_per_step"] > 0 and result["seconds_per_frame"] > 0 and result["peak_rss_mb"] > 0
    assert "| tiny | 64 | 6 | unoptimised |" in table([result])


def test_plan_covers_sizes_frames_and_every_mode():
    runs = plan(quick=False)
    grid = {(r["size"], r["frames"]) for r in runs if r["mode"] == "optimised" and r["model"] == "quarter"}
    assert grid == {(s, f) for s in (256, 512) for f in (8, 16, 32, 64)}
    assert {r["mode"] for r in runs} >= {"unoptimised", "sequential-guidance", "attention-chunks", "dpm++",
                                         "reuse-every-2", "exact-attention-only", "batched-decode-only"}


def test_summary_compares_against_the_unoptimised_path():
    def row(mode, total, step, rss=1000.0, frames=16, size=256):
        return {"model": "quarter", "size": size, "frames": frames, "mode": mode, "seconds_total": total,
                "seconds_per_step": step, "seconds_per_frame": total / frames, "peak_rss_mb": rss}

    summary = summarise([row("unoptimised", 20, 6), row("optimised", 10, 4), row("optimised", 20, 4, frames=32)])
    assert summary["256px_16f_optimised"]["speedup_vs_unoptimised"] == 2.0
    assert summary["256px_seconds_per_frame_by_frames"] == {16: 0.625, 32: 0.625}
