"""The training objective of the recipe: v-prediction on a zero-terminal-SNR DDIM schedule, min-SNR weighting,
noise offset. The schedule is built from the model's own inference config, so what a model is trained on is
what it is sampled with."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler
from diffusers.training_utils import compute_snr

from ..weights import InferenceConfig

NOISE_OFFSET = 0.05
SNR_GAMMA = 5.0


def training_scheduler(inference: InferenceConfig) -> DDIMScheduler:
    return DDIMScheduler(**inference.noise_scheduler_kwargs)


def noisy_latents(scheduler: DDIMScheduler, latents: torch.Tensor, generator: torch.Generator,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, timesteps, target) for (B, C, [F,] h, w) latents: one timestep per sample, shared by
    all frames of a clip; noise offset constant over frames and pixels."""
    batch, channels = latents.shape[:2]
    extra = (1,) * (latents.ndim - 2)
    noise = torch.randn(latents.shape, generator=generator)
    noise = noise + NOISE_OFFSET * torch.randn((batch, channels, *extra), generator=generator)
    noise = noise.to(latents.device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    timesteps = timesteps.to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return noisy, timesteps, target


def min_snr_loss(scheduler: DDIMScheduler, prediction: torch.Tensor, target: torch.Tensor,
                 timesteps: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE weighted by min(SNR, gamma) / SNR, in float32. For v-prediction the SNR gets + 1
    (the weight of v's error), which also keeps the zero-SNR final step finite."""
    snr = compute_snr(scheduler, timesteps.cpu()).to(prediction.device)
    if scheduler.config.prediction_type == "v_prediction":
        snr = snr + 1
    weights = torch.clamp(snr, max=SNR_GAMMA) / snr
    error = (prediction.float() - target.float()).pow(2).mean(dim=tuple(range(1, prediction.ndim)))
    return (error * weights).mean()
