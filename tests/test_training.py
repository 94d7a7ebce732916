"""Training: the objective learns, a resumed run continues exactly, every stage writes a weights folder the
pipeline loads, stage 2 changes only the motion modules, and the file formats round-trip (tiny models,
32 px, a handful of steps: no real training here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from training_data import write_tiny_dataset

from spritediff_core.errors import InvalidInputError
from spritediff_core.models.denoising_unet import convert_motion_module_key
from spritediff_core.poses import PoseFrame
from spritediff_core.training.data import mirrored
from spritediff_core.training.mini import new_mini_parts
from spritediff_core.training.models import load_parts, moore_motion_key, save_parts
from spritediff_core.training.trainer import Trainer, TrainSettings
from spritediff_core.weights import read_model_card

SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "set", size=SIZE)


@pytest.fixture(scope="module")
def mini_folder(tmp_path_factory) -> Path:
    """A freshly initialised spritediff-mini weights folder whose VAE posterior is nearly deterministic, as
    after stage 0 (a random VAE's latents are mostly its own noise: nothing to learn from)."""
    parts = new_mini_parts(seed=0)
    with torch.no_grad():
        parts.vae.quant_conv.bias[parts.vae.config.latent_channels:] = -20.0  # log-variance channels
    return save_parts(parts, tmp_path_factory.mktemp("mini") / "model")


def settings(data: Path, out: Path, **changes) -> TrainSettings:
    values = dict(stage=1, data=str(data), out=str(out), steps=2, batch_size=2, resolution=SIZE,
                  learning_rate=1e-3, checkpoint_every=100, sample_every=100, seed=3, threads=2)
    values.update(changes)
    return TrainSettings(**values)


def test_stage_one_overfits_one_sample(mini_folder, tmp_path):
    one = write_tiny_dataset(tmp_path / "one", characters=1, clips=1, frames=1, size=SIZE)
    trainer = Trainer(settings(one, tmp_path / "run", init=str(mini_folder), steps=60, batch_size=4,
                               learning_rate=1e-3, train_image_encoder=True))
    before = np.mean([trainer.fixed_loss(seed) for seed in range(4)])
    for _ in range(60):
        trainer.train_step()
    after = np.mean([trainer.fixed_loss(seed) for seed in range(4)])
    assert after < 0.5 * before, (before, after)


def test_stage_zero_vae_learns_and_measures_its_scale(data, tmp_path):
    trainer = Trainer(settings(data, tmp_path / "run", stage=0, config="mini", learning_rate=2e-3, batch_size=4))
    before = trainer.fixed_loss()
    for _ in range(15):
        trainer.train_step()
    assert trainer.fixed_loss() < 0.7 * before
    scale = trainer.measure_latent_scale(images=16)
    assert trainer.parts.vae.config.scaling_factor == pytest.approx(scale) and scale > 0


@pytest.mark.parametrize("options", [{}, {"use_ema": True, "lr_scheduler": "cosine"}], ids=["plain", "ema-cosine"])
def test_resume_continues_exactly(data, mini_folder, tmp_path, options):
    straight = Trainer(settings(data, tmp_path / "straight", init=str(mini_folder), steps=4, checkpoint_every=2,
                                **options))
    straight.run(progress=False)
    first = Trainer(settings(data, tmp_path / "resumed", init=str(mini_folder), steps=4, checkpoint_every=2, **options))
    calls = {"n": 0}
    real_step = first.train_step

    def killed_after_the_checkpoint():
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step()

    first.train_step = killed_after_the_checkpoint
    with pytest.raises(KeyboardInterrupt):
        first.run(progress=False)
    with open(tmp_path / "resumed" / "log.jsonl", "a") as log:  # a step logged by a run killed before its checkpoint
        log.write(json.dumps({"step": 3, "loss": 9.9}) + "\n")
    resumed = Trainer(settings(data, tmp_path / "resumed", init=str(mini_folder), steps=4, checkpoint_every=2,
                               **options))
    assert resumed.step == 2
    resumed.run(progress=False)
    for name in ("denoising_unet", "reference_unet", "pose_guider"):
        a = load_file(str(tmp_path / "straight" / "model" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "resumed" / "model" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    def logged_losses(run: str) -> list[float]:
        return [json.loads(line)["loss"] for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]

    assert logged_losses("resumed") == logged_losses("straight")


def test_ema_model_is_the_average_and_training_goes_on_with_the_raw_weights(data, mini_folder, tmp_path):
    trainer = Trainer(settings(data, tmp_path / "run", init=str(mini_folder), steps=3, use_ema=True))
    trainer.run(progress=False)
    raw = [p.detach().clone() for p in trainer.parameters]
    written = load_file(str(tmp_path / "run" / "model" / "pose_guider.safetensors"))
    averaged = dict(zip([n for n, _ in trainer.parts.pose_guider.named_parameters()],
                        trainer.ema.shadow_params[-len(list(trainer.parts.pose_guider.parameters())):]))
    assert all(torch.equal(written[name], averaged[name]) for name in averaged)
    assert any(not torch.equal(written[name], param) for name, param in trainer.parts.pose_guider.named_parameters())
    assert all(torch.equal(a, b) for a, b in zip(raw, trainer.parameters))  # writing restored the raw weights


def test_stage_zero_from_weights_fine_tunes_only_the_decoder_on_whole_frames(data, mini_folder, tmp_path):
    trainer = Trainer(settings(data, tmp_path / "run", stage=0, init=str(mini_folder), learning_rate=2e-3,
                               batch_size=4, steps=15))
    encoder_before = {k: v.clone() for k, v in trainer.parts.vae.state_dict().items() if not k.startswith(
        ("decoder.", "post_quant_conv."))}
    scale = trainer.parts.vae.config.scaling_factor
    before = trainer.fixed_loss()
    trainer.run(progress=False)
    assert trainer.fixed_loss() < 0.7 * before
    vae = load_parts(tmp_path / "run" / "model").vae
    after = vae.state_dict()
    assert all(torch.equal(after[k], v) for k, v in encoder_before.items())  # the latents stay the same
    assert vae.config.scaling_factor == scale
    assert not torch.equal(after["decoder.conv_out.weight"], load_parts(mini_folder).vae.decoder.conv_out.weight)


def test_every_stage_writes_a_folder_the_pipeline_loads_and_runs(data, tmp_path):
    from PIL import Image

    from spritediff_core import SpriteSheetPipeline

    Trainer(settings(data, tmp_path / "s0", stage=0, config="mini", steps=1, batch_size=2)).run(progress=False)
    Trainer(settings(data, tmp_path / "s1", init=str(tmp_path / "s0" / "model"), steps=1)).run(progress=False)
    Trainer(settings(data, tmp_path / "s2", stage=2, init=str(tmp_path / "s1" / "model"), steps=1,
                     frames=3, batch_size=2)).run(progress=False)
    for stage in ("s0", "s1", "s2"):
        assert (tmp_path / stage / "samples" / "step_000001.png").is_file()
    pipe = SpriteSheetPipeline.from_pretrained(tmp_path / "s2" / "model", device="cpu")
    assert pipe.native_size == (64, 64)
    character = data / "char_0000"
    reference = Image.open(character / "reference" / "side.png")
    poses = [Image.open(p) for p in sorted((character / "clips" / "000_walk_side").glob("pose_*.png"))]
    frames = pipe(reference, poses, width=SIZE, height=SIZE, num_inference_steps=2, seed=0, output_type="np")
    assert frames.shape == (3, SIZE, SIZE, 3) and np.isfinite(frames).all()


def test_stage_two_trains_only_the_motion_modules(data, mini_folder, tmp_path):
    Trainer(settings(data, tmp_path / "s2", stage=2, init=str(mini_folder), steps=2, frames=3,
                     learning_rate=1e-2)).run(progress=False)
    before, after = load_parts(mini_folder), load_parts(tmp_path / "s2" / "model")
    for name in ("spatial_unet", "reference_unet", "pose_guider", "image_encoder", "vae"):
        a, b = getattr(before, name).state_dict(), getattr(after, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    changed = [k for k in before.motion_state if not torch.equal(before.motion_state[k], after.motion_state[k])]
    assert changed


def test_motion_module_files_use_moore_key_names(mini_folder):
    moore = Path(__file__).parent / "fixtures" / "moore-tiny" / "pretrained_weights" / "motion_module.pth"
    for key in torch.load(moore, weights_only=True):
        if not key.endswith("pos_encoder.pe"):
            assert moore_motion_key(convert_motion_module_key(key)) == key
    written = load_file(str(mini_folder / "motion_module.safetensors"))
    assert all(".temporal_transformer." in key for key in written)


def test_fresh_motion_modules_change_nothing(mini_folder):
    """AnimateDiff's zero-initialised output projections: before stage 2, the motion UNet is its spatial part."""
    parts = load_parts(mini_folder)
    unet = parts.motion_unet().eval()
    latents = torch.randn(1, parts.unet_config["in_channels"], 3, 8, 8)
    embeds = torch.randn(3, 1, 128)
    with torch.no_grad():
        motion = unet(latents, 10, encoder_hidden_states=embeds).sample
        spatial = parts.spatial_unet.eval()(latents[0].transpose(0, 1), 10, encoder_hidden_states=embeds).sample
    assert torch.allclose(motion[0].transpose(0, 1), spatial, atol=1e-5)


def test_mirrored_pose_swaps_left_and_right():
    body = np.zeros((18, 3))
    body[:, 2] = 1
    body[5] = [10, 20, 1]  # left shoulder
    body[2] = [30, 20, 1]  # right shoulder
    flipped = mirrored(PoseFrame(body, 64, 64))
    assert tuple(flipped.body[2]) == (54, 20, 1)  # the old left shoulder, mirrored, is now the right one
    assert tuple(flipped.body[5]) == (34, 20, 1)


def test_stop_at_ends_early_on_the_full_schedule_and_continues_later(data, mini_folder, tmp_path):
    options = dict(init=str(mini_folder), steps=4, lr_scheduler="cosine", warmup_steps=0)
    straight = Trainer(settings(data, tmp_path / "straight", **options))
    straight.run(progress=False)
    stopped = Trainer(settings(data, tmp_path / "stopped", stop_at=2, **options))
    stopped.run(progress=False)
    assert stopped.step == 2 and read_model_card(tmp_path / "stopped" / "model")["training"]["step"] == 2

    def logged(run: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]

    def steps(run: str) -> list[tuple]:
        return [(r["step"], r["lr"], r["loss"]) for r in logged(run)]

    assert steps("stopped") == steps("straight")[:2]  # the 4-step schedule's learning rates, not a 2-step one's
    assert logged("stopped")[-1]["lr"] > 0
    resumed = Trainer(settings(data, tmp_path / "stopped", **options))  # no --stop-at: on to the end
    assert resumed.step == 2
    resumed.run(progress=False)
    assert steps("stopped") == steps("straight")
    with pytest.raises(InvalidInputError, match="--stop-at must be from 1 to --steps"):
        settings(data, tmp_path / "x", stop_at=5, **options)


def test_bad_settings_fail_before_any_work(data, tmp_path):
    with pytest.raises(InvalidInputError, match="--stage 0"):
        settings(data, tmp_path, config="mini")
    with pytest.raises(InvalidInputError, match="exactly one"):
        settings(data, tmp_path)
    with pytest.raises(InvalidInputError, match="lr scheduler"):
        settings(data, tmp_path, init="weights", lr_scheduler="exponential")
    with pytest.raises(InvalidInputError, match="EMA decay"):
        settings(data, tmp_path, init="weights", ema_decay=1.5)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not a training run"):
        Trainer(settings(data, tmp_path / "busy", stage=0, config="mini"))
    with pytest.raises(InvalidInputError, match="does not exist"):
        Trainer(settings(tmp_path / "nothing", tmp_path / "run", stage=0, config="mini"))


def test_a_finished_stage_is_not_loaded_again(data, mini_folder, tmp_path, monkeypatch):
    from spritediff_core.training import trainer as trainer_module

    run = settings(data, tmp_path / "run", init=str(mini_folder), steps=1)
    trainer_module.train(run, progress=False)

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("a finished stage was loaded again")

    monkeypatch.setattr(trainer_module, "Trainer", must_not_run)
    assert trainer_module.train(run) == tmp_path / "run" / "model"
    with pytest.raises(AssertionError, match="loaded again"):  # more steps asked: it resumes
        trainer_module.train(settings(data, tmp_path / "run", init=str(mini_folder), steps=2))
