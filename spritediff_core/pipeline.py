"""SpriteSheetPipeline: one reference picture + a list of pose images -> one generated frame per pose.

The maths is Moore-AnimateAnyone's `Pose2VideoPipeline` (the code the released weights and the Sprite Sheet
Diffusion fine-tunes were trained with), reproduced on diffusers and transformers components; see
docs/reference-pipeline in the README for the steps.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel, UNetMotionModel
from diffusers.image_processor import VaeImageProcessor
from PIL import Image
from tqdm.auto import tqdm
from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

from .context_windows import LOOP_MODES, check_window_settings, step_windows
from .devices import release_freed_host_memory, resolve_device, resolve_dtype
from .errors import GenerationCancelled, InvalidInputError, WeightsNotFoundError, first_line
from .models.denoising_unet import build_denoising_unet, load_denoising_unet_weights, pose_conditioning
from .models.pose_guider import build_pose_guider
from .models.reference_attention import ReferenceBank, RunSettings, install_reference_attention
from .models.sub_pixel_upsampling import install_sub_pixel_upsampling, set_sub_pixel_upsampling
from .models.winograd_convolution import install_winograd_convolutions, set_winograd_convolutions, winograd_available
from .settings import RuntimeSettings, check_runtime_settings
from .weights import (
    InferenceConfig,
    check_loading_info,
    default_model,
    load_checked,
    load_state_dict,
    locate_weights,
    read_inference_config,
    read_model_card,
    read_unet_config,
    recommended_guidance,
)

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


CLIP_SIZE = 224
REFERENCE_HEAD = ("conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias")


def flatten_onto_black(image: Image.Image) -> Image.Image:
    """RGB version of `image`; transparent pixels become black, as in the training data."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def clip_pixel_values(processor: CLIPImageProcessorPil, reference: Image.Image) -> torch.Tensor:
    """The image encoder's input (1, 3, 224, 224): a bicubic resize to 224x224 (the whole picture, no crop),
    then CLIP's normalisation; training feeds the encoder exactly this."""
    square = reference.convert("RGB").resize((CLIP_SIZE, CLIP_SIZE), Image.Resampling.BICUBIC)
    return processor(images=square, return_tensors="pt").pixel_values


@dataclass(frozen=True)
class ReferenceEncoding:
    """What the reference picture contributes to every step: CLIP embedding and VAE latents."""

    clip_pixel_values: torch.Tensor  # (1, 3, 224, 224)
    image_embeds: torch.Tensor  # (1, D)
    latents: torch.Tensor  # (1, 4, H/8, W/8), scaled


class SpriteSheetPipeline:
    """Animate Anyone (ReferenceNet + PoseGuider + motion module on SD1.5) for sprite generation."""

    def __init__(
        self,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        reference_unet: UNet2DConditionModel,
        denoising_unet: UNetMotionModel,
        pose_guider: torch.nn.Module,
        scheduler: DDIMScheduler,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.vae, self.image_encoder = vae, image_encoder
        self.reference_unet, self.denoising_unet, self.pose_guider = reference_unet, denoising_unet, pose_guider
        for model in self._models():
            # nn.Module.to, not ModelMixin.to: the latter warns about fp32-pinned modules even when a model
            # has none; none of these has any.
            torch.nn.Module.to(model, device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        install_sub_pixel_upsampling(self.vae.decoder)
        for model in self._winograd_models():
            install_winograd_convolutions(model)
        self.scheduler = scheduler
        self.clip_processor = CLIPImageProcessorPil()
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.vae_scale_factor = scale
        self.reference_processor = VaeImageProcessor(vae_scale_factor=scale, do_convert_rgb=True)
        self.pose_processor = VaeImageProcessor(vae_scale_factor=scale, do_convert_rgb=True, do_normalize=False)
        self._bank = ReferenceBank()
        install_reference_attention(reference_unet, denoising_unet, self._bank)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._offload_hooks: list = []  # accelerate's, with model CPU offload on
        # What the weights folder says of itself (`spritediff.json`): name, native size, recommended settings.
        self.model_card: dict[str, Any] = {}

    def _models(self) -> list[torch.nn.Module]:
        """The models in the order a call first runs them (the VAE runs again last, to decode)."""
        return [self.image_encoder, self.vae, self.pose_guider, self.reference_unet, self.denoising_unet]

    def _winograd_models(self) -> list[torch.nn.Module]:
        """Where Winograd convolutions may run. Not the VAE's encoder: it runs once per call, and its rounding
        differences reach every step through the reference latents (on the fixture, final latents 1.1e-4 from
        the reference's against 2.2e-5 without it)."""
        return [self.vae.decoder, self.pose_guider, self.reference_unet, self.denoising_unet]

    def _choose_cpu_convolutions(self, options: RuntimeSettings) -> None:
        """Exact speedups on the CPU: the VAE's upsampling by phases, and Winograd 3x3 convolutions in float32
        where NNPACK runs here. GPUs and the unoptimised path keep torch's own convolutions."""
        on_cpu = options.exact_speedups and self.device.type == "cpu"
        winograd = on_cpu and self.dtype == torch.float32 and winograd_available()
        for model in self._winograd_models():
            set_winograd_convolutions(model, winograd)
        set_sub_pixel_upsampling(self.vae.decoder, on_cpu)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> "SpriteSheetPipeline":
        """Load a Moore-AnimateAnyone `pretrained_weights/` folder (or one with Sprite Sheet Diffusion's
        fine-tunes, or one `spritediff train` wrote); without a path, the bundled spritediff-mini.
        Nothing is downloaded; every checkpoint key must land."""
        layout = locate_weights(default_model() if path is None else path)
        inference = read_inference_config(layout.inference_config)
        unet_config = read_unet_config(layout.unet_config)

        reference_unet = UNet2DConditionModel.from_config(unet_config)
        # The ReferenceNet's output is never used (only its attention inputs are), so its head is dropped.
        reference_unet.conv_norm_out = None
        reference_unet.conv_out = torch.nn.Identity()
        load_checked(reference_unet, load_state_dict(layout.reference_unet), layout.reference_unet.name,
                     tolerated_extra=REFERENCE_HEAD)

        denoising_unet = build_denoising_unet(unet_config, inference.unet_additional_kwargs)
        load_denoising_unet_weights(
            denoising_unet,
            load_state_dict(layout.denoising_unet), layout.denoising_unet.name,
            load_state_dict(layout.motion_module), layout.motion_module.name,
        )
        pose_guider = build_pose_guider(
            load_state_dict(layout.pose_guider), layout.pose_guider.name, unet_config["block_out_channels"][0]
        )
        with _quiet_library_loading():
            try:
                vae, info = AutoencoderKL.from_pretrained(layout.vae, local_files_only=True, low_cpu_mem_usage=False,
                                                          output_loading_info=True)
            except Exception as error:  # missing or broken config, truncated file: the library's own types
                raise WeightsNotFoundError(f"{layout.vae}: cannot load the VAE ({first_line(error)})") from error
            check_loading_info(layout.vae, info)
            try:
                image_encoder, info = CLIPVisionModelWithProjection.from_pretrained(
                    layout.image_encoder, local_files_only=True, output_loading_info=True)
            except Exception as error:
                raise WeightsNotFoundError(f"{layout.image_encoder}: cannot load the CLIP image encoder "
                                           f"({first_line(error)})") from error
            check_loading_info(layout.image_encoder, info)
        scheduler = make_scheduler(inference)
        pipe = cls(vae, image_encoder, reference_unet, denoising_unet, pose_guider, scheduler, device, dtype)
        pipe.model_card = read_model_card(layout.root)
        return pipe

    @property
    def native_size(self) -> tuple[int, int] | None:
        """(width, height) the model was trained at, where its folder says so (None for Moore's weights)."""
        size = self.model_card.get("native_size")
        return (int(size[0]), int(size[1])) if size else None

    # ---------------------------------------------------------------- stages
    @torch.inference_mode()
    def encode_reference(self, reference: Image.Image, width: int, height: int) -> ReferenceEncoding:
        """CLIP image embedding (of a 224x224 bicubic resize) and VAE latent mean of the reference."""
        reference = flatten_onto_black(reference)
        pixels = clip_pixel_values(self.clip_processor, reference)
        embeds = self.image_encoder(pixels.to(self.device, self.dtype)).image_embeds
        image = self.reference_processor.preprocess(reference, height=height, width=width)
        mean = self.vae.encode(image.to(self.device, self.dtype)).latent_dist.mean
        return ReferenceEncoding(pixels, embeds, mean * self.vae.config.scaling_factor)

    @torch.inference_mode()
    def encode_poses(self, poses: Sequence[Image.Image], width: int, height: int, chunk: int = 8) -> torch.Tensor:
        """PoseGuider features (1, C, L, H/8, W/8) of the pose images, each resized to width x height.
        The PoseGuider works on each frame alone; `chunk` frames at a time keep its full-resolution
        activations from growing with the animation."""
        features = None
        for start in range(0, len(poses), chunk):
            images = [self.pose_processor.preprocess(pose.convert("RGB"), height=height, width=width)
                      for pose in poses[start:start + chunk]]
            part = self.pose_guider(torch.cat(images).to(self.device, self.dtype))  # (n, C, h, w), input in [0, 1]
            if features is None:
                features = torch.empty((1, part.shape[1], len(poses), *part.shape[2:]), device=part.device,
                                       dtype=part.dtype)
            features[0, :, start:start + part.shape[0]] = part.transpose(0, 1)
        return features

    @torch.inference_mode()
    def record_reference(self, reference_latents: torch.Tensor, image_embeds: torch.Tensor) -> None:
        """Run the ReferenceNet once (timestep 0) so the denoising UNet can attend to the reference."""
        with self._bank.recording_pass():
            self.reference_unet(
                reference_latents,
                torch.zeros((), dtype=torch.long, device=self.device),
                encoder_hidden_states=image_embeds.unsqueeze(1),
                return_dict=False,
            )

    @torch.inference_mode()
    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, image_embeds: torch.Tensor,
                pose_features: torch.Tensor, guidance: bool, sequential: bool = False) -> torch.Tensor:
        """One denoising step's predictions on a window: (1, 4, f, h, w) latents -> (1 or 2, 4, f, h, w),
        unconditional half first when `guidance` (as one UNet call, or two with `sequential`).
        Needs `record_reference` first."""
        if guidance and sequential:
            return torch.cat([
                self._unet(latents, timestep, torch.zeros_like(image_embeds), pose_features,
                           unconditional_samples=1, samples=1),
                self._unet(latents, timestep, image_embeds, pose_features, unconditional_samples=0, samples=1)])
        if guidance:
            embeds = torch.cat([torch.zeros_like(image_embeds), image_embeds])
            return self._unet(latents.repeat(2, 1, 1, 1, 1), timestep, embeds, pose_features.repeat(2, 1, 1, 1, 1),
                              unconditional_samples=1, samples=2)
        return self._unet(latents, timestep, image_embeds, pose_features, unconditional_samples=0, samples=1)

    def _unet(self, latents, timestep, image_embeds, pose_features, *, unconditional_samples: int, samples: int):
        """One denoising-UNet call on `samples` stacked samples, the first `unconditional_samples` of them
        without the reference (the ReferenceNet's features are left out of their attention)."""
        frames = latents.shape[2]
        embeds = image_embeds.unsqueeze(1).repeat_interleave(frames, dim=0)
        with self._bank.unet_call(unconditional_samples=unconditional_samples, samples=samples), \
                pose_conditioning(self.denoising_unet, pose_features):
            return self.denoising_unet(latents.to(self.dtype), timestep, encoder_hidden_states=embeds,
                                       return_dict=False)[0]

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, chunk: int = 4) -> torch.Tensor:
        """(1, 4, L, h, w) latents -> (L, 3, H, W) float32 frames in [0, 1] on the CPU."""
        frames = None
        for start, part in self._decoded_chunks(latents, chunk):
            if frames is None:  # filled in place: no second copy of the whole animation
                frames = torch.empty((latents.shape[2], *part.shape[1:]), dtype=torch.float32)
            frames[start:start + part.shape[0]] = part
        return frames

    @torch.inference_mode()
    def decode_images(self, latents: torch.Tensor, chunk: int = 4) -> list[Image.Image]:
        """(1, 4, L, h, w) latents -> L RGB images, converted chunk by chunk (no float copy of the animation)."""
        return [tensor_to_pil(frame) for _, part in self._decoded_chunks(latents, chunk) for frame in part]

    def _decoded_chunks(self, latents: torch.Tensor, chunk: int):
        folded = latents[0].transpose(0, 1) / self.vae.config.scaling_factor
        for start in range(0, folded.shape[0], chunk):
            part = self.vae.decode(folded[start:start + chunk].to(self.device, self.dtype)).sample
            yield start, (part.float() / 2 + 0.5).clamp(0, 1).cpu()

    # ---------------------------------------------------------------- memory switches of the models
    def enable_model_cpu_offload(self, execution_device: str | torch.device = "cuda") -> None:
        """Keep every model in CPU memory and move each to `execution_device` only while it runs
        (accelerate's hooks chained in run order, as diffusers' `model_cpu_offload_seq`: each model's hook
        sends the one before it back): the least GPU memory, at some speed. The VAE runs twice, so before
        decoding and at the end of every call all models are sent back (`offload_models`)."""
        from accelerate import cpu_offload_with_hook

        device = torch.device(execution_device)
        hook = None
        self._offload_hooks = []
        for model in self._models():
            torch.nn.Module.to(model, "cpu")
            _, hook = cpu_offload_with_hook(model, device, prev_module_hook=hook)
            self._offload_hooks.append(hook)
        self.device = device

    @property
    def offloaded(self) -> bool:
        """Whether model CPU offload is on."""
        return bool(self._offload_hooks)

    def offload_models(self) -> None:
        """With model CPU offload on, send every model back to the CPU (diffusers' `maybe_free_model_hooks`)."""
        for hook in self._offload_hooks:
            hook.offload()

    def enable_vae_tiling(self) -> None:
        """Decode (and encode) frames larger than the VAE's tile size tile by tile (diffusers' tiling); frames
        no larger than a tile are unchanged, larger ones differ slightly at tile seams."""
        self.vae.enable_tiling()

    # ---------------------------------------------------------------- generation
    def cancel(self) -> None:
        """Ask the running generation (from any thread) to stop; it raises GenerationCancelled within one step."""
        self._cancel.set()

    def __call__(
        self,
        reference: Image.Image,
        poses: Sequence[Image.Image],
        width: int,
        height: int,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        context_frames: int = 24,
        context_overlap: int = 4,
        loop: bool = True,
        loop_mode: str = "closed",
        output_type: str = "pil",
        callback_on_step_end: Callable[..., dict[str, Any] | None] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        show_progress: bool | None = None,
        options: RuntimeSettings | None = None,
    ):
        """Generate one frame per pose image.

        Returns a list of PIL images ("pil"), a float32 array (L, H, W, 3) in [0, 1] ("np"), a float tensor
        (L, 3, H, W) in [0, 1] ("pt"), or the final latents (1, 4, L, H/8, W/8) ("latent").
        `loop=True` lets context windows wrap round (cycles); `loop=False` keeps them inside the sequence.
        `loop_mode` (cycles only): "closed" rotates the windows by one frame per step so the last frame is
        denoised beside the first (`context_windows`); "reference" keeps the reference implementation's windows.
        `guidance_scale`: None (or 0) is the model card's recommended value, else 3.5.
        `show_progress`: a tqdm bar; None shows it only when stderr is a terminal.
        `options`: speed and memory switches (`RuntimeSettings`); the defaults are exact.
        """
        options = options or RuntimeSettings()
        guidance_scale = guidance_scale or recommended_guidance(self.model_card)
        self._validate(reference, poses, width, height, num_inference_steps, guidance_scale,
                       context_frames, context_overlap, loop_mode, output_type, callback_on_step_end_tensor_inputs)
        if not self._lock.acquire(blocking=False):
            raise InvalidInputError("this pipeline is already generating; use one pipeline per thread")
        self._cancel.clear()
        try:
            self._choose_cpu_convolutions(options)
            latents = self._generate(
                reference, poses, width, height, num_inference_steps, guidance_scale, seed, generator,
                context_frames, context_overlap, loop, loop_mode, callback_on_step_end,
                tuple(callback_on_step_end_tensor_inputs), show_progress, options,
            )
            if latents is None:  # cancelled: the tensors of the run are already out of scope
                raise GenerationCancelled("generation cancelled")
            if output_type == "latent":
                return latents
            # 7. Decode, with every other model sent back first (model CPU offload) and the denoising loop's
            # freed memory returned first, so the decode's buffers do not come on top of it.
            self.offload_models()
            self._release_memory()
            if output_type == "pil":
                frames = self.decode_images(latents, options.decode_chunk_for(self.device.type))
            else:
                frames = self.decode(latents, options.decode_chunk_for(self.device.type))
            if self._cancel.is_set():
                raise GenerationCancelled("generation cancelled")
        finally:
            self._cancel.clear()
            self.offload_models()
            self._release_memory()
            self._lock.release()
        if output_type == "pt":
            return frames
        if output_type == "np":
            return frames.permute(0, 2, 3, 1).numpy()
        return frames

    def _validate(self, reference, poses, width, height, steps, guidance, context_frames, overlap, loop_mode,
                  output_type, tensor_inputs) -> None:
        if not isinstance(reference, Image.Image):
            raise InvalidInputError(f"reference must be a PIL image, got {type(reference).__name__}")
        if len(poses) == 0:
            raise InvalidInputError("poses is empty: give one pose image per frame to generate")
        for index, pose in enumerate(poses):
            if not isinstance(pose, Image.Image):
                raise InvalidInputError(f"poses[{index}] must be a PIL image, got {type(pose).__name__}")
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or value <= 0 or value % self.vae_scale_factor:
                raise InvalidInputError(
                    f"{name} must be a positive multiple of {self.vae_scale_factor}, got {value!r}"
                )
        if not isinstance(steps, int) or steps < 1:
            raise InvalidInputError(f"num_inference_steps must be a positive integer, got {steps!r}")
        if guidance < 1.0:
            raise InvalidInputError(f"guidance_scale must be >= 1.0, got {guidance}")
        check_window_settings(context_frames, overlap)
        if loop_mode not in LOOP_MODES:
            raise InvalidInputError(f"loop_mode must be one of {', '.join(LOOP_MODES)}, got {loop_mode!r}")
        window = min(len(poses), context_frames)
        max_frames = self.denoising_unet.config.motion_max_seq_length
        if window > max_frames:
            raise InvalidInputError(
                f"a context window of {window} frames exceeds the motion module's {max_frames} positions: "
                f"set context_frames to {max_frames} or fewer"
            )
        if output_type not in OUTPUT_TYPES:
            raise InvalidInputError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if set(tensor_inputs) - {"latents"}:
            raise InvalidInputError("callback_on_step_end_tensor_inputs may only name 'latents'")

    def initial_latents(self, num_frames: int, width: int, height: int, seed: int | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial noise (1, 4, L, H/8, W/8), float32, drawn on the CPU so a seed means the same on any device."""
        if generator is None:
            generator = torch.Generator("cpu")
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
        elif generator.device.type != "cpu":
            raise InvalidInputError("generator must be a CPU torch.Generator (noise is drawn on the CPU)")
        shape = (1, self.denoising_unet.config.in_channels, num_frames,
                 height // self.vae_scale_factor, width // self.vae_scale_factor)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    @torch.inference_mode()
    def _generate(self, reference, poses, width, height, steps, guidance_scale, seed, generator,
                  context_frames, overlap, loop, loop_mode, callback, tensor_inputs, show_progress,
                  options: RuntimeSettings) -> torch.Tensor | None:
        num_frames = len(poses)
        # 1. Timesteps, on a scheduler of this call's own (no timestep state shared between calls). The
        # scheduler works on CPU timesteps (its tables live there); the UNet gets a device copy made once, so
        # no step waits for the device.
        scheduler = make_solver(self.scheduler, options.solver)
        scheduler.set_timesteps(steps)
        device_timesteps = scheduler.timesteps.to(self.device)
        # 2. Initial noise, drawn on the CPU so a seed means the same on every device.
        latents = self.initial_latents(num_frames, width, height, seed, generator).to(self.device)
        latents = latents * scheduler.init_noise_sigma
        # 3. Conditions: the reference (CLIP embedding, VAE latents) and the poses (PoseGuider features).
        encoded = self.encode_reference(reference, width, height)
        pose_features = self.encode_poses(poses, width, height)
        # 4. Context windows over the frames, per step (closed loops rotate them), and how many windows cover
        # each frame (overlaps are averaged).
        step_layouts: dict[tuple, tuple[list[torch.Tensor], torch.Tensor]] = {}

        def layout(index: int) -> tuple[list[torch.Tensor], torch.Tensor]:
            frames = tuple(map(tuple, step_windows(index, num_frames, context_frames, overlap, loop, loop_mode)))
            if frames not in step_layouts:
                windows = [torch.tensor(window, device=self.device) for window in frames]
                counts = torch.zeros((1, 1, num_frames, 1, 1), device=self.device)
                for window in windows:
                    counts.index_add_(2, window, torch.ones((1, 1, len(window), 1, 1), device=self.device))
                step_layouts[frames] = (windows, counts)
            return step_layouts[frames]

        # 5. The reference, once: the ReferenceNet's attention inputs, read by every denoising step.
        settings = RunSettings(options.exact_speedups, options.attention_chunk_size or None)
        with self._bank.active(settings):
            self.record_reference(encoded.latents, encoded.image_embeds)
            # 6. Denoising loop.
            bar = tqdm(total=steps, disable=None if show_progress is None else not show_progress,
                       desc="spritediff", unit="step")
            try:
                guided = None
                for index, timestep in enumerate(scheduler.timesteps):
                    if guided is None or index % options.reuse_prediction_every == 0:
                        guided = self._denoise_step(latents, device_timesteps[index], encoded.image_embeds,
                                                    pose_features, *layout(index), guidance_scale,
                                                    options.sequential_guidance)
                        if guided is None:
                            return None
                    elif self._cancel.is_set():
                        return None
                    latents = scheduler.step(guided, timestep, latents, **step_arguments(scheduler)).prev_sample
                    if callback is not None:
                        values = {"latents": latents} if "latents" in tensor_inputs else {}
                        returned = callback(self, index, timestep, values) or {}
                        latents = returned.get("latents", latents)
                    bar.update(1)
            finally:
                bar.close()
        return latents

    def _denoise_step(self, latents: torch.Tensor, timestep: torch.Tensor, image_embeds: torch.Tensor,
                      pose_features: torch.Tensor, windows: list[torch.Tensor], counts: torch.Tensor,
                      guidance_scale: float, sequential_guidance: bool) -> torch.Tensor | None:
        """The guided prediction for all frames at one timestep: each context window predicted, overlaps
        averaged, then classifier-free guidance. None when cancelled."""
        guidance = guidance_scale > 1.0
        prediction = torch.zeros((2 if guidance else 1, *latents.shape[1:]), device=self.device)
        for window in windows:
            if self._cancel.is_set():
                return None
            prediction.index_add_(2, window, self.predict(
                latents.index_select(2, window), timestep, image_embeds, pose_features.index_select(2, window),
                guidance, sequential_guidance,
            ).float())
        prediction = prediction / counts
        if not guidance:
            return prediction
        unconditional, conditional = prediction.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def _release_memory(self) -> None:
        gc.collect()
        release_freed_host_memory()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()


def tensor_to_pil(frame: torch.Tensor) -> Image.Image:
    """A (3, H, W) float frame in [0, 1] as an RGB image (rounded to the nearest 8-bit value)."""
    array = frame.permute(1, 2, 0).numpy()
    return Image.fromarray((array * 255).round().astype(np.uint8), "RGB")


class _quiet_library_loading:
    """transformers' loading bar and load reports off while our loader runs (spritediff reports progress
    and problems itself); the caller's settings are restored afterwards."""

    def __enter__(self):
        from transformers.utils import logging as transformers_logging

        self._logging = transformers_logging
        self._was_enabled = transformers_logging.is_progress_bar_enabled()
        self._verbosity = transformers_logging.get_verbosity()
        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()  # load reports: spritediff says what is wrong in one line

    def __exit__(self, *exc):
        if self._was_enabled:
            self._logging.enable_progress_bar()
        self._logging.set_verbosity(self._verbosity)
        return False


def make_solver(scheduler: DDIMScheduler, solver: str):
    """A fresh scheduler for one generation: DDIM as configured, or DPM-Solver++ with the same settings."""
    if solver == "ddim":
        return DDIMScheduler.from_config(scheduler.config)
    return DPMSolverMultistepScheduler.from_config(scheduler.config, algorithm_type="dpmsolver++",
                                                   final_sigmas_type="zero")


def step_arguments(scheduler) -> dict[str, Any]:
    return {"eta": 0.0} if isinstance(scheduler, DDIMScheduler) else {}


def make_scheduler(config: InferenceConfig) -> DDIMScheduler:
    """DDIM with the inference config's settings (Moore's: v-prediction, zero-SNR, trailing spacing)."""
    return DDIMScheduler(**config.noise_scheduler_kwargs)


def load_pipeline(model: str | Path | None, runtime: RuntimeSettings = RuntimeSettings()) -> SpriteSheetPipeline:
    """The pipeline for `model` (None: the bundled spritediff-mini) on the runtime settings' device and dtype,
    with their model switches applied. Model CPU offload has no effect on a CPU (nothing to offload to):
    `pipe.offloaded` says whether it is on."""
    check_runtime_settings(runtime)
    pipe = SpriteSheetPipeline.from_pretrained(model, device=runtime.device, dtype=runtime.dtype)
    if runtime.enable_model_cpu_offload and pipe.device.type != "cpu":
        pipe.enable_model_cpu_offload(pipe.device)
    if runtime.enable_vae_tiling:
        pipe.enable_vae_tiling()
    return pipe
