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


def test_the_reference_section_says_why_it_did_not_run(monkeypatch, tmp_path):
    from benchmarks import reference_bench

    monkeypatch.setenv("SPRITEDIFF_REFERENCE_BENCH", str(tmp_path / "nowhere"))
    summary = reference_bench.side_by_side(quick=True)
    assert "no reference bench at" in summary["skipped"]
    assert reference_bench.table(summary).startswith("Reference implementation: not measured")
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "moore_bench2.py").write_text("")
    monkeypatch.setenv("REF_VENV", str(tmp_path / "no-venv"))
    assert "setup_reference.sh" in reference_bench.side_by_side(quick=True)["skipped"]


def test_roofline_reports_each_part_against_the_gemm_peak():
    from benchmarks import roofline

    assert roofline.gemm_peak_gflops(__import__("torch").float32, size=128, repeats=1) > 0
    part = {"gflop": 10.0, "seconds": 1.0, "gflops": 10.0, "share_of_peak": 0.5}
    text = roofline.table([{"dtype": "fp32", "gemm_peak_gflops": 20.0, "unet_step": part, "vae_decode_frame": part}])
    assert "| fp32 | VAE decode, one frame | 10.0 | 1.0 | 10.0 | 20.0 | 50% |" in text
