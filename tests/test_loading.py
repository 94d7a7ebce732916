"""Loading a Moore `pretrained_weights/` folder: every key lands, and every failure says what is wrong."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch
import yaml
from conftest import TINY_WEIGHTS
from safetensors.torch import save_file

from spritediff_core import (
    SpriteSheetPipeline,
    UnsupportedConfigError,
    WeightsMismatchError,
    WeightsNotFoundError,
)
from spritediff_core.convert import convert_weights


def load(path):
    return SpriteSheetPipeline.from_pretrained(path, device="cpu", dtype="fp32")


def latents_of(pipe, reference_image, pose_images, steps=2):
    return pipe(reference_image, pose_images, 64, 64, num_inference_steps=steps, seed=7, output_type="latent")


@pytest.mark.parametrize("relative, words", [
    ("denoising_unet.pth", "denoising UNet"),
    ("reference_unet.pth", "ReferenceNet"),
    ("pose_guider.pth", "PoseGuider"),
    ("motion_module.pth", "motion module"),
    ("stable-diffusion-v1-5/unet/config.json", "UNet config.json"),
    ("sd-vae-ft-mse", "VAE"),
    ("image_encoder", "image_encoder"),
])
def test_missing_file_is_named_and_explained(tiny_weights_copy, relative, words):
    target = tiny_weights_copy / relative
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(WeightsNotFoundError) as error:
        load(tiny_weights_copy)
    message = str(error.value)
    assert relative in message and words in message


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load(tmp_path / "nowhere")


def rewrite(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def test_missing_key_names_file_key_and_shape(tiny_weights_copy):
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    rewrite(tiny_weights_copy / "denoising_unet.pth", lambda s: s.pop(key))
    with pytest.raises(WeightsMismatchError) as error:
        load(tiny_weights_copy)
    message = str(error.value)
    assert "denoising_unet.pth" in message and key in message and "(32, 32)" in message and "missing" in message


def test_unexpected_key_is_an_error(tiny_weights_copy):
    rewrite(tiny_weights_copy / "pose_guider.pth", lambda s: s.__setitem__("blocks.99.weight", torch.zeros(3)))
    with pytest.raises(WeightsMismatchError, match=r"(?s)pose_guider\.pth.*unexpected key 'blocks\.99\.weight'"):
        load(tiny_weights_copy)


def test_misshaped_key_names_both_shapes(tiny_weights_copy):
    key = "conv_in.weight"
    rewrite(tiny_weights_copy / "reference_unet.pth", lambda s: s.__setitem__(key, torch.zeros(32, 4, 1, 1)))
    with pytest.raises(WeightsMismatchError) as error:
        load(tiny_weights_copy)
    message = str(error.value)
    assert "reference_unet.pth" in message and "(32, 4, 1, 1)" in message and "(32, 4, 3, 3)" in message


def test_motion_module_errors_use_the_files_own_key_names(tiny_weights_copy):
    key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.ff_norm.weight"
    rewrite(tiny_weights_copy / "motion_module.pth", lambda s: s.__setitem__(key, torch.zeros(5)))
    with pytest.raises(WeightsMismatchError) as error:
        load(tiny_weights_copy)
    assert "motion_module.pth" in str(error.value) and key in str(error.value)


def test_spatial_keys_in_the_motion_file_are_rejected(tiny_weights_copy):
    rewrite(tiny_weights_copy / "motion_module.pth",
            lambda s: s.__setitem__("conv_in.weight", torch.zeros(32, 4, 3, 3)))
    with pytest.raises(WeightsMismatchError, match=r"(?s)motion_module\.pth.*unexpected key 'conv_in\.weight'"):
        load(tiny_weights_copy)


def test_reference_output_head_is_tolerated(tiny_weights_copy, pipe, reference_image, pose_images):
    def add_head(state):
        state["conv_norm_out.weight"] = torch.ones(32)
        state["conv_norm_out.bias"] = torch.zeros(32)
        state["conv_out.weight"] = torch.zeros(4, 32, 3, 3)
        state["conv_out.bias"] = torch.zeros(4)

    rewrite(tiny_weights_copy / "reference_unet.pth", add_head)
    loaded = load(tiny_weights_copy)
    assert torch.equal(latents_of(loaded, reference_image, pose_images), latents_of(pipe, reference_image, pose_images))


def test_position_encodings_in_the_file_equal_the_recomputed_ones(pipe):
    stored = torch.load(TINY_WEIGHTS / "motion_module.pth", weights_only=True)
    state = pipe.denoising_unet.state_dict()
    key = "up_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    recomputed = state["up_blocks.1.motion_modules.0.transformer_blocks.0.pos_embed.pe"]
    assert torch.allclose(stored[key], recomputed, atol=1e-6)


def test_pickled_code_is_refused(tiny_weights_copy):
    class Payload:  # any object that is not plain tensors needs code to unpickle
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tiny_weights_copy / "pose_guider.pth", "wb") as handle:
        pickle.dump({"conv_in.weight": Payload()}, handle)
    with pytest.raises(WeightsMismatchError, match="pose_guider.pth: cannot be read"):
        load(tiny_weights_copy)


def test_sprite_sheet_diffusion_names_are_accepted(tiny_weights_copy, pipe, reference_image, pose_images):
    for stem in ("denoising_unet", "reference_unet"):
        (tiny_weights_copy / f"{stem}.pth").rename(tiny_weights_copy / f"{stem}-30000.pth")
    loaded = load(tiny_weights_copy)
    assert torch.equal(latents_of(loaded, reference_image, pose_images), latents_of(pipe, reference_image, pose_images))


def test_fine_tune_is_preferred_over_base_checkpoint(tiny_weights_copy):
    state = torch.load(tiny_weights_copy / "reference_unet.pth", weights_only=True)
    state["conv_in.weight"] = torch.zeros(32, 4, 1, 1)
    torch.save(state, tiny_weights_copy / "reference_unet-30000.pth")
    with pytest.raises(WeightsMismatchError, match=r"reference_unet-30000\.pth"):
        load(tiny_weights_copy)


def test_safetensors_twin_is_preferred(tiny_weights_copy):
    state = torch.load(tiny_weights_copy / "pose_guider.pth", weights_only=True)
    state["conv_out.bias"] = torch.zeros(7)
    save_file(state, str(tiny_weights_copy / "pose_guider.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"pose_guider\.safetensors"):
        load(tiny_weights_copy)


def test_converted_safetensors_folder_gives_identical_output(tmp_path, pipe, reference_image, pose_images):
    converted = convert_weights(TINY_WEIGHTS, tmp_path / "converted")
    names = sorted(p.relative_to(converted).as_posix() for p in converted.rglob("*") if p.is_file())
    assert not [name for name in names if name.endswith((".pth", ".bin"))]
    assert "image_encoder/model.safetensors" in names and "denoising_unet.safetensors" in names
    loaded = load(converted)
    assert torch.equal(latents_of(loaded, reference_image, pose_images), latents_of(pipe, reference_image, pose_images))


def test_fp16_conversion_halves_the_weights(tmp_path, pipe, reference_image, pose_images):
    from safetensors import safe_open

    converted = convert_weights(TINY_WEIGHTS, tmp_path / "fp16", dtype=torch.float16)
    with safe_open(str(converted / "denoising_unet.safetensors"), "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}
    loaded = load(converted)
    difference = latents_of(loaded, reference_image, pose_images) - latents_of(pipe, reference_image, pose_images)
    assert 0 < difference.abs().max() < 0.05  # rounded weights, same model


def test_convert_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty"):
        convert_weights(TINY_WEIGHTS, tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]


def write_inference_config(folder, change):
    path = folder / "inference_v2.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def motion_heads(pipe) -> set[int]:
    return {block.attn1.heads for name, block in pipe.denoising_unet.named_modules()
            if ".motion_modules." in name and name.endswith("transformer_blocks.0")}


def test_inference_config_is_honoured(pipe):
    assert motion_heads(pipe) == {2}  # the fixture's yaml says 2; Moore's default is 8
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.scheduler.config.rescale_betas_zero_snr is True


def test_without_inference_config_the_defaults_are_moores(tiny_weights_copy):
    (tiny_weights_copy / "inference_v2.yaml").unlink()
    loaded = load(tiny_weights_copy)
    assert motion_heads(loaded) == {8}
    assert loaded.scheduler.config.timestep_spacing == "trailing"


def test_scheduler_settings_come_from_the_config(tiny_weights_copy):
    write_inference_config(tiny_weights_copy, lambda d: d["noise_scheduler_kwargs"].update(steps_offset=0))
    assert load(tiny_weights_copy).scheduler.config.steps_offset == 0


@pytest.mark.parametrize("key, value", [
    ("use_inflated_groupnorm", False),
    ("motion_module_type", "Conv"),
    ("motion_module_resolutions", [1]),
])
def test_unsupported_motion_settings_are_refused(tiny_weights_copy, key, value):
    write_inference_config(tiny_weights_copy, lambda d: d["unet_additional_kwargs"].__setitem__(key, value))
    with pytest.raises(UnsupportedConfigError, match=key):
        load(tiny_weights_copy)


def test_position_encoding_length_must_match_config(tiny_weights_copy):
    write_inference_config(
        tiny_weights_copy,
        lambda d: d["unet_additional_kwargs"]["motion_module_kwargs"].update(temporal_position_encoding_max_len=24),
    )
    with pytest.raises(UnsupportedConfigError, match="encodes 32 positions"):
        load(tiny_weights_copy)
