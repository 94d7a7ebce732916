"""Generation behaviour: windows, determinism, outputs, guidance, cancel, isolation between pipelines."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch
from conftest import TINY_WEIGHTS
from PIL import Image

from spritediff_core import GenerationCancelled, InvalidInputError, SpriteSheetPipeline
from spritediff_core.context_windows import context_windows, step_windows
from spritediff_core.devices import resolve_device, resolve_dtype
from spritediff_core.pipeline import flatten_onto_black


def run(pipe, reference, poses, **kwargs):
    settings = dict(num_inference_steps=2, seed=11, output_type="latent")
    settings.update(kwargs)
    return pipe(reference, poses, 64, 64, **settings)


# ---------------------------------------------------------------- context windows
@pytest.mark.parametrize("frames, size, overlap", [(5, 3, 1), (8, 3, 1), (16, 6, 2), (10, 4, 0), (25, 24, 4)])
def test_one_shot_windows_stay_inside_and_cover_everything(frames, size, overlap):
    windows = context_windows(frames, size, overlap, loop=False)
    assert all(w == list(range(w[0], w[0] + size)) for w in windows)  # consecutive, no wrap
    assert all(0 <= i < frames for w in windows for i in w)
    assert set().union(*windows) == set(range(frames))
    assert windows[-1][-1] == frames - 1
    for previous, current in zip(windows, windows[1:]):
        assert len(set(previous) & set(current)) >= overlap


def test_cyclic_windows_wrap_round():
    assert context_windows(5, 3, 1, loop=True) == [[0, 1, 2], [2, 3, 4], [4, 0, 1]]
    assert context_windows(4, 24, 4) == [[0, 1, 2, 3]]
    assert context_windows(4, 24, 4, loop=False) == [[0, 1, 2, 3]]


def neighbours_seen_together(windows_per_step, frames):
    """The pairs (i, i+1 mod frames) that sit next to each other in some window at some step."""
    seen = set()
    for windows in windows_per_step:
        for window in windows:
            seen.update((a, b) for a, b in zip(window, window[1:]) if b == (a + 1) % frames)
    return seen


@pytest.mark.parametrize("frames, size, overlap", [(2, 24, 4), (4, 24, 4), (8, 24, 4), (5, 3, 1), (30, 24, 4),
                                                   (9, 4, 0)])
def test_closed_loop_windows_put_the_last_frame_beside_the_first(frames, size, overlap):
    steps = 25
    closed = [step_windows(i, frames, size, overlap, True, "closed") for i in range(steps)]
    reference = [step_windows(i, frames, size, overlap, True, "reference") for i in range(steps)]
    every_pair = {(i, (i + 1) % frames) for i in range(frames)}
    assert neighbours_seen_together(closed, frames) == every_pair
    for windows in closed:  # every step still covers every frame, in windows of the usual length
        assert set().union(*windows) == set(range(frames))
        assert all(len(window) == min(frames, size) for window in windows)
    assert len({tuple(map(tuple, w)) for w in closed}) > 1  # the windows move between steps
    if frames <= size:  # a cycle inside one window: the reference never closes it
        assert (frames - 1, 0) not in neighbours_seen_together(reference, frames)
    assert closed[0] == reference[0]  # step 0 is the reference's layout


def test_one_shots_never_wrap_in_either_loop_mode():
    for mode in ("closed", "reference"):
        for step in range(6):
            assert step_windows(step, 8, 3, 1, False, mode) == context_windows(8, 3, 1, loop=False)
    with pytest.raises(InvalidInputError, match="loop_mode"):
        step_windows(0, 8, 3, 1, True, "open")


def test_closed_loop_mode_changes_only_cycles(pipe, reference_image, pose_images):
    """One step is the reference's layout in both modes; from the second step on, closed mode rotates the
    windows of a cycle (other frames) and leaves one-shots as they were."""
    settings = dict(context_frames=24, context_overlap=4)
    one_step = [run(pipe, reference_image, pose_images, num_inference_steps=1, loop_mode=mode, **settings)
                for mode in ("closed", "reference")]
    assert torch.allclose(*one_step, atol=1e-5)
    closed = run(pipe, reference_image, pose_images, num_inference_steps=3, loop_mode="closed", **settings)
    reference = run(pipe, reference_image, pose_images, num_inference_steps=3, loop_mode="reference", **settings)
    assert (closed - reference).abs().max() > 1e-4
    assert torch.equal(closed, run(pipe, reference_image, pose_images, num_inference_steps=3, **settings))  # default
    one_shots = [run(pipe, reference_image, pose_images, num_inference_steps=3, loop=False, loop_mode=mode,
                     **settings) for mode in ("closed", "reference")]
    assert torch.equal(*one_shots)
    with pytest.raises(InvalidInputError, match="loop_mode"):
        run(pipe, reference_image, pose_images, loop_mode="circular")


@pytest.mark.parametrize("size, overlap", [(0, 0), (3, 3), (3, -1)])
def test_bad_window_settings_are_errors(size, overlap):
    with pytest.raises(InvalidInputError):
        context_windows(8, size, overlap)


def test_one_shot_never_mixes_the_last_frame_into_the_first(pipe, reference_image, pose_images):
    """One step, 5 frames, windows of 3: with loop=False frame 0 cannot see pose 4; with loop=True it does."""
    poses = pose_images + [pose_images[1]]
    changed = poses[:4] + [pose_images[3].transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    settings = dict(num_inference_steps=1, context_frames=3, context_overlap=1)
    one_shot = run(pipe, reference_image, poses, loop=False, **settings)
    one_shot_changed = run(pipe, reference_image, changed, loop=False, **settings)
    assert torch.equal(one_shot[:, :, 0], one_shot_changed[:, :, 0])
    assert not torch.equal(one_shot[:, :, 4], one_shot_changed[:, :, 4])
    cyclic = run(pipe, reference_image, poses, loop=True, **settings)
    cyclic_changed = run(pipe, reference_image, changed, loop=True, **settings)
    assert not torch.equal(cyclic[:, :, 0], cyclic_changed[:, :, 0])


# ---------------------------------------------------------------- determinism and outputs
def test_same_seed_same_output_and_generator_equals_seed(pipe, reference_image, pose_images):
    first = run(pipe, reference_image, pose_images)
    assert torch.equal(first, run(pipe, reference_image, pose_images))
    assert torch.equal(first, run(pipe, reference_image, pose_images, seed=None,
                                  generator=torch.Generator().manual_seed(11)))
    assert not torch.equal(first, run(pipe, reference_image, pose_images, seed=12))


def test_no_seed_draws_fresh_noise(pipe, reference_image, pose_images):
    assert not torch.equal(run(pipe, reference_image, pose_images, seed=None),
                           run(pipe, reference_image, pose_images, seed=None))


def test_every_output_type(pipe, reference_image, pose_images):
    latents = run(pipe, reference_image, pose_images, output_type="latent")
    assert latents.shape == (1, 4, 4, 8, 8)
    tensor = run(pipe, reference_image, pose_images, output_type="pt")
    assert tensor.shape == (4, 3, 64, 64) and tensor.dtype == torch.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    array = run(pipe, reference_image, pose_images, output_type="np")
    assert isinstance(array, np.ndarray) and array.shape == (4, 64, 64, 3)
    np.testing.assert_allclose(array, tensor.permute(0, 2, 3, 1).numpy())
    images = run(pipe, reference_image, pose_images, output_type="pil")
    assert len(images) == 4 and all(im.size == (64, 64) and im.mode == "RGB" for im in images)
    np.testing.assert_array_equal(np.asarray(images[2]), (array[2] * 255).round().astype(np.uint8))


def test_non_square_sizes(pipe, reference_image, pose_images):
    frames = run(pipe, reference_image, pose_images[:2], output_type="pil")
    assert frames[0].size == (64, 64)
    tall = pipe(reference_image, pose_images[:2], 64, 96, num_inference_steps=1, seed=1, output_type="pt")
    assert tall.shape == (2, 3, 96, 64)


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=60), "multiple of 8"),
    (dict(height=0), "multiple of 8"),
    (dict(output_type="gif"), "output_type"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(guidance_scale=0.5), "guidance_scale"),
    (dict(context_frames=40), "33 positions|32 positions|exceeds"),
])
def test_bad_arguments_are_clear_errors(pipe, reference_image, pose_images, kwargs, message):
    settings = dict(width=64, height=64, num_inference_steps=1, seed=1)
    settings.update(kwargs)
    poses = pose_images * 9 if "context_frames" in kwargs else pose_images  # 36 frames
    with pytest.raises(InvalidInputError, match=message):
        pipe(reference_image, poses, **settings)


def test_empty_poses_is_an_error(pipe, reference_image):
    with pytest.raises(InvalidInputError, match="poses is empty"):
        pipe(reference_image, [], 64, 64)


def test_rgba_reference_is_composited_onto_black(pipe, reference_image):
    rgba = reference_image.convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    alpha.paste(255, (16, 8, 48, 60))
    rgba.putalpha(alpha)
    flattened = flatten_onto_black(rgba)
    pixels = np.asarray(flattened)
    assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[20, 20].tolist() == list(np.asarray(reference_image)[20, 20])
    from_rgba = pipe.encode_reference(rgba, 64, 64)
    from_flat = pipe.encode_reference(flattened, 64, 64)
    assert torch.equal(from_rgba.latents, from_flat.latents)
    assert torch.equal(from_rgba.image_embeds, from_flat.image_embeds)


def count_unet_batches(pipe):
    sizes = []
    handle = pipe.denoising_unet.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    return sizes, handle


def test_guidance_one_skips_the_unconditional_half(pipe, reference_image, pose_images):
    sizes, handle = count_unet_batches(pipe)
    try:
        run(pipe, reference_image, pose_images, guidance_scale=1.0)
        assert sizes == [1, 1]
        sizes.clear()
        run(pipe, reference_image, pose_images, guidance_scale=3.5)
        assert sizes == [2, 2]
    finally:
        handle.remove()


# ---------------------------------------------------------------- callbacks, progress, cancel
def test_callback_can_replace_latents(pipe, reference_image, pose_images):
    steps = []

    def zero_at_end(_pipe, index, timestep, values):
        steps.append(index)
        return {"latents": torch.zeros_like(values["latents"])} if index == 1 else values

    latents = run(pipe, reference_image, pose_images, callback_on_step_end=zero_at_end)
    assert steps == [0, 1] and torch.count_nonzero(latents) == 0


def test_progress_bar_when_asked(pipe, reference_image, pose_images, capsys):
    run(pipe, reference_image, pose_images, show_progress=True)
    assert "spritediff" in capsys.readouterr().err
    run(pipe, reference_image, pose_images, show_progress=False)
    assert "spritediff" not in capsys.readouterr().err


def live_tensors_shaped(shape) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor) and tuple(obj.shape) == shape)


def test_cancel_from_another_thread_stops_within_a_step_and_frees_memory(pipe, reference_image, pose_images):
    poses = pose_images + pose_images[:3]  # 7 frames: a latent shape nothing else has
    latent_shape = (1, 4, 7, 8, 8)
    step_done, steps = threading.Event(), []

    def on_step(_pipe, index, _timestep, values):
        steps.append(index)
        step_done.set()
        return values

    outcome = {}

    def generate():
        try:
            run(pipe, reference_image, poses, num_inference_steps=200, callback_on_step_end=on_step)
        except GenerationCancelled as error:
            outcome["error"] = error

    worker = threading.Thread(target=generate)
    worker.start()
    assert step_done.wait(60)
    pipe.cancel()
    worker.join(60)
    assert isinstance(outcome.get("error"), GenerationCancelled)
    assert len(steps) <= 3  # the step running when cancel came may finish, no more
    assert pipe._bank.states == {}
    outcome.clear()
    assert live_tensors_shaped(latent_shape) == 0
    # The pipeline is usable again and gives the normal result.
    assert run(pipe, reference_image, poses).shape == latent_shape


def test_cancel_inside_callback_stops_before_the_next_step(pipe, reference_image, pose_images):
    steps = []

    def cancel_now(the_pipe, index, _timestep, values):
        steps.append(index)
        the_pipe.cancel()
        return values

    with pytest.raises(GenerationCancelled):
        run(pipe, reference_image, pose_images, num_inference_steps=5, callback_on_step_end=cancel_now)
    assert steps == [0]


# ---------------------------------------------------------------- isolation
def test_two_pipelines_in_one_process_do_not_interfere(pipe, reference_image, pose_images):
    alone = run(pipe, reference_image, pose_images, output_type="pt")
    other = SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS, device="cpu", dtype="fp32")
    other_reference = reference_image.transpose(Image.Transpose.ROTATE_90)
    other_alone = run(other, other_reference, pose_images[::-1], output_type="pt")

    results = {}
    threads = [
        threading.Thread(target=lambda: results.__setitem__("a", run(pipe, reference_image, pose_images,
                                                                     output_type="pt"))),
        threading.Thread(target=lambda: results.__setitem__("b", run(other, other_reference, pose_images[::-1],
                                                                     output_type="pt"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torch.equal(results["a"], alone)
    assert torch.equal(results["b"], other_alone)
    # Interleaved calls on one thread, too.
    assert torch.equal(run(other, other_reference, pose_images[::-1], output_type="pt"), other_alone)
    assert torch.equal(run(pipe, reference_image, pose_images, output_type="pt"), alone)


def test_one_pipeline_refuses_a_second_concurrent_call(pipe, reference_image, pose_images):
    started, release = threading.Event(), threading.Event()

    def hold(_pipe, _index, _t, values):
        started.set()
        release.wait(30)
        return values

    worker = threading.Thread(target=lambda: run(pipe, reference_image, pose_images, callback_on_step_end=hold))
    worker.start()
    try:
        assert started.wait(30)
        with pytest.raises(InvalidInputError, match="already generating"):
            run(pipe, reference_image, pose_images)
    finally:
        release.set()
        worker.join(30)


# ---------------------------------------------------------------- devices
def test_device_and_dtype_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None).type == "cuda"
    assert resolve_dtype(None, torch.device("cuda")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(None).type == "cpu"
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(InvalidInputError, match="unknown dtype"):
        resolve_dtype("int3", torch.device("cpu"))


def test_half_precision_runs_and_stays_close(pipe, reference_image, pose_images):
    """bf16 on the CPU stands in for fp16 on CUDA here: same code path, weights cast, noise still fp32."""
    low = SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS, device="cpu", dtype="bf16")
    assert low.denoising_unet.dtype == torch.bfloat16
    frames = run(low, reference_image, pose_images, output_type="pt")
    reference = run(pipe, reference_image, pose_images, output_type="pt")
    assert frames.dtype == torch.float32 and (frames - reference).abs().mean() < 0.1


def test_freed_host_memory_is_returned_before_the_decode(pipe, reference_image, pose_images, monkeypatch):
    """The denoising loop's freed memory goes back to the system before the VAE's buffers are allocated
    (the decode is where a CPU call peaks), and again at the end of the call."""
    import spritediff_core.pipeline as pipeline_module

    events = []
    monkeypatch.setattr(pipeline_module, "release_freed_host_memory", lambda: events.append("release"))
    decode = pipe.vae.decode
    monkeypatch.setattr(pipe.vae, "decode", lambda *a, **k: (events.append("decode"), decode(*a, **k))[1])
    run(pipe, reference_image, pose_images[:2], output_type="pt")
    assert events[0] == "release" and events[-1] == "release"
    first_decode = events.index("decode")
    assert "release" in events[:first_decode]


def test_release_freed_host_memory_runs_where_glibc_is():
    import platform

    from spritediff_core.devices import release_freed_host_memory

    returned = release_freed_host_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert returned is True
    else:
        assert returned is False
