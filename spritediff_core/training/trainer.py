"""`spritediff train`: the Animate Anyone recipe in three stages, each ending in a complete weights folder.

- stage 0 from scratch (`--config`): the VAE, on windows around the characters (reconstruction + a small KL
  term); its latent scaling factor is then measured on the data (SD's 0.18215 is the same measurement for
  its VAE). Stage 0 from a weights folder (`--init`) fine-tunes only the decoder, on whole frames, as
  sd-vae-ft-mse was made: the encoder and so the latents stay as they were, and every UNet trained on them
  keeps working.
- stage 1: the ReferenceNet (all but its last up block, whose outputs nothing reads, as the recipe), the
  denoising UNet's spatial layers and the PoseGuider on (reference, target, pose) triples; with
  `train_image_encoder`, also the image encoder (spritediff-mini's own; the recipe keeps CLIP frozen).
- stage 2: only the motion modules, on clips.

Objective (`objective.py`): v-prediction, zero-terminal-SNR schedule, min-SNR weighting (gamma 5), noise offset
0.05. Conditioning dropout: for 10% of batches the ReferenceNet is not run (reference attention becomes plain
self-attention) and the image embedding is zero. The recipe zeroes the image encoder's input pixels instead;
we zero the embedding because that is what the pipeline's unconditional half feeds (deliberate deviation).

With `use_ema`, the trained weights are also averaged (diffusers' `EMAModel`, with its warm-up, so a short run
averages over a short window); `model/` and the sample grids then hold the average, and the raw weights travel
in `checkpoint.pt`.

Everything a run writes is in `--out`: `model/` (a weights folder `SpriteSheetPipeline.from_pretrained` loads,
updated at every checkpoint), `checkpoint.pt` (optimiser, step and raw weights, to resume), `log.jsonl` (loss per step),
`samples/` (reference | pose | generated | ground truth), `settings.json`. Each step draws its samples and
noise from a generator seeded by (seed, step), so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm
from transformers import CLIPImageProcessorPil

from ..devices import resolve_device
from ..errors import InvalidInputError, first_line
from ..models.denoising_unet import pose_conditioning
from ..models.reference_attention import ReferenceBank, RunSettings, install_reference_attention
from ..pipeline import clip_pixel_values
from ..weights import MODEL_CARD, read_model_card
from .data import PoseBatch, TrainingSet
from .models import ModelParts, load_parts, save_parts
from .objective import min_snr_loss, noisy_latents, training_scheduler

STAGES = (0, 1, 2)
CONFIGS = ("mini",)
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("constant_with_warmup", "cosine", "linear")  # diffusers.optimization names
EMA_WARMUP_POWER = 3 / 4  # diffusers' advice for runs under ~100k steps: the average reaches 0.999 at 10k
PATH_SETTINGS = ("data", "out", "init")
CONDITIONING_DROPOUT = 0.1
KL_WEIGHT = 1e-6
POSTERIOR_LOG_VARIANCE = -12.0
VAE_CROP = 32  # stage 0 trains on windows of this size around the character (see data._crop_on_character)
CHECKPOINT = "checkpoint.pt"
MODEL_DIR = "model"


@dataclass(frozen=True)
class TrainSettings:
    """One training run. Defaults are spritediff-mini's on a CPU; the recipe's fine-tuning values are in the
    README (lr 1e-5, batch 4 at 768 for stage 1, clips of 24 frames at 512 for stage 2)."""

    stage: int
    data: str
    out: str
    init: str | None = None  # a weights folder to start from
    config: str | None = None  # or a configuration to build from scratch ("mini")
    steps: int = 1000
    stop_at: int | None = None  # stop after this step; the learning-rate schedule still spans `steps`
    batch_size: int = 8
    learning_rate: float = 1e-4
    warmup_steps: int = 1
    lr_scheduler: str = "constant_with_warmup"
    use_ema: bool = False
    ema_decay: float = 0.9999  # the most the warm-up reaches
    resolution: int | None = None  # default: the model's native size, else 512
    frames: int = 8  # stage 2: frames per clip
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 500
    train_image_encoder: bool = False
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    device: str | None = None
    threads: int | None = None

    @property
    def last_step(self) -> int:
        """The step this run ends at: --stop-at, else --steps."""
        return self.stop_at or self.steps

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise InvalidInputError(f"stage must be one of {STAGES}, got {self.stage}")
        if (self.init is None) == (self.config is None):
            raise InvalidInputError("give exactly one of --init WEIGHTS_DIR and --config mini")
        if self.config is not None and self.config not in CONFIGS:
            raise InvalidInputError(f"unknown --config {self.config!r} (known: {', '.join(CONFIGS)})")
        if self.config is not None and self.stage != 0:
            raise InvalidInputError("--config builds a model from scratch: start with --stage 0 (its VAE), then "
                                    "run stages 1 and 2 with --init <stage 0 out>/model")
        for name in ("steps", "batch_size", "frames", "checkpoint_every", "sample_every"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise InvalidInputError(f"learning rate must be a positive number, got {self.learning_rate}")
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            raise InvalidInputError(f"resolution must be a positive multiple of 8, got {self.resolution}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise InvalidInputError(f"lr scheduler must be one of {LR_SCHEDULERS}, got {self.lr_scheduler!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise InvalidInputError(f"EMA decay must be between 0 and 1, got {self.ema_decay}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise InvalidInputError(f"mixed precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if not 0 <= self.seed < 2**63:
            raise InvalidInputError(f"--seed must be from 0 to 2**63 - 1, got {self.seed}")
        if self.stop_at is not None and not 1 <= self.stop_at <= self.steps:
            raise InvalidInputError(f"--stop-at must be from 1 to --steps ({self.steps}), got {self.stop_at}")
        if self.warmup_steps < 0:
            raise InvalidInputError(f"--warmup-steps must be at least 0, got {self.warmup_steps}")
        for path, option in ((self.init, "--init"), (self.data, "--data")):
            if path is not None and Path(self.out).absolute().is_relative_to(Path(path).absolute()):
                raise InvalidInputError(f"--out {self.out} lies inside {option} {path}: choose a folder outside it")
        if self.device not in (None, "auto"):
            resolve_device(self.device)  # a device this machine lacks: refused before any weights load


def _stage_parameters(parts: ModelParts, stage: int, train_image_encoder: bool, motion_unet=None,
                      decoder_only: bool = False):
    """(module name, trainable parameters) of a stage, in a fixed order (the optimiser state depends on it)."""
    if stage == 0 and decoder_only:
        return [("vae_decoder", list(parts.vae.post_quant_conv.parameters()) + list(parts.vae.decoder.parameters()))]
    if stage == 0:
        return [("vae", list(parts.vae.parameters()))]
    if stage == 2:
        return [("motion_modules", [p for n, p in motion_unet.named_parameters() if ".motion_modules." in n])]
    last_up = f"up_blocks.{len(parts.reference_unet.up_blocks) - 1}."
    groups = [
        ("reference_unet", [p for n, p in parts.reference_unet.named_parameters() if not n.startswith(last_up)]),
        ("denoising_unet", list(parts.spatial_unet.parameters())),
        ("pose_guider", list(parts.pose_guider.parameters())),
    ]
    if train_image_encoder:
        groups.append(("image_encoder", list(parts.image_encoder.parameters())))
    return groups


def _optimizer(parameters: list[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    arguments = dict(lr=settings.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    if settings.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise InvalidInputError("--use-8bit-adam needs bitsandbytes (pip install bitsandbytes)") from None
        return bnb.optim.AdamW8bit(parameters, **arguments)
    return torch.optim.AdamW(parameters, **arguments)


class Trainer:
    def __init__(self, settings: TrainSettings) -> None:
        self.settings = settings
        self.out = Path(settings.out)
        self.device = resolve_device(settings.device)
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.autocast_dtype = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[settings.mixed_precision]
        self._check_out()
        self.decoder_only = settings.stage == 0 and settings.init is not None
        resume = (self.out / CHECKPOINT).is_file()
        self.parts = self._initial_parts(resume)
        self.resolution = settings.resolution or int((self.parts.card.get("native_size") or [512])[0])
        self.data = TrainingSet(settings.data, self.resolution)  # read before any training starts
        self.scheduler = training_scheduler(self.parts.inference)
        self.clip_processor = CLIPImageProcessorPil()
        self.bank = ReferenceBank()
        self.motion_unet = None
        if settings.stage in (1, 2):
            self._prepare_pose_stages()
        self.groups = _stage_parameters(self.parts, settings.stage, settings.train_image_encoder, self.motion_unet,
                                        decoder_only=self.decoder_only)
        self.parameters = [p for _, group in self.groups for p in group]
        if settings.stage == 0:
            self.parts.vae.to(self.device).requires_grad_(False)
        for parameter in self.parameters:
            parameter.requires_grad_(True)
        self.optimizer = _optimizer(self.parameters, settings)
        self.lr_scheduler = get_scheduler(settings.lr_scheduler, self.optimizer, num_warmup_steps=settings.warmup_steps,
                                          num_training_steps=settings.steps)
        self.ema = EMAModel(self.parameters, decay=settings.ema_decay, use_ema_warmup=True,
                            power=EMA_WARMUP_POWER) if settings.use_ema else None
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 and \
            self.device.type == "cuda" else None
        self.step = 0
        if resume:
            self._resume()

    # ------------------------------------------------------------ setup
    def _check_out(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise InvalidInputError(f"--out {self.out} is a file, not a folder")
        if self.out.is_dir() and any(self.out.iterdir()) and not (self.out / "settings.json").is_file():
            raise InvalidInputError(f"--out {self.out} holds files that are not a training run: pick an empty "
                                    "or new folder")
        settings_path = self.out / "settings.json"
        if settings_path.is_file():
            previous = json.loads(settings_path.read_text(encoding="utf-8"))
            mine = asdict(self.settings)
            def same(key: str) -> bool:
                if key in PATH_SETTINGS and previous.get(key) and mine[key]:  # relative or absolute, one place
                    return Path(previous[key]).resolve() == Path(mine[key]).resolve()
                return previous.get(key, mine[key]) == mine[key]  # settings added since keep their default

            differing = sorted(k for k in mine if k not in ("steps", "stop_at", "device", "threads",
                                                            "checkpoint_every", "sample_every") and not same(k))
            if differing:
                raise InvalidInputError(f"--out {self.out} holds a run with other settings ({', '.join(differing)}): "
                                        "resume it with the same settings or pick another folder")

    def _initial_parts(self, resume: bool) -> ModelParts:
        if resume:
            return load_parts(self.out / MODEL_DIR)
        if self.settings.config == "mini":
            from .mini import new_mini_parts

            return new_mini_parts(self.settings.seed)
        return load_parts(self.settings.init)

    def _prepare_pose_stages(self) -> None:
        parts = self.parts
        install_reference_attention(parts.reference_unet, parts.spatial_unet, self.bank)
        if self.settings.stage == 2:
            self.motion_unet = parts.motion_unet()
            install_reference_attention(parts.reference_unet, self.motion_unet, self.bank)
            self.motion_unet.float().train().requires_grad_(False)
        for module in self._modules():
            module.to(self.device)
        if self.settings.gradient_checkpointing:
            for unet in (parts.reference_unet, parts.spatial_unet, self.motion_unet):
                if unet is not None:
                    unet.enable_gradient_checkpointing()

    def _modules(self) -> list[torch.nn.Module]:
        parts = self.parts
        modules = [parts.vae, parts.image_encoder, parts.reference_unet, parts.pose_guider]
        modules.append(self.motion_unet if self.motion_unet is not None else parts.spatial_unet)
        return modules

    # ------------------------------------------------------------ checkpoints
    def _sync_parts(self) -> None:
        """Copy the stage-2 UNet's weights back into the parts that are written out."""
        if self.motion_unet is not None:
            state = self.motion_unet.state_dict()
            self.parts.motion_state = {k: v.detach().cpu().clone() for k, v in state.items()
                                       if ".motion_modules." in k and not k.endswith(".pos_embed.pe")}

    @contextmanager
    def averaged_weights(self):
        """With EMA, the trainable parameters hold the average inside this block (what is written and sampled)."""
        if self.ema is None:
            yield
            return
        self.ema.store(self.parameters)
        self.ema.copy_to(self.parameters)
        try:
            yield
        finally:
            self.ema.restore(self.parameters)

    def save_checkpoint(self) -> None:
        raw = [p.detach().cpu().clone() for p in self.parameters] if self.ema is not None else None
        self.parts.card = dict(self.parts.card, training={"stage": self.settings.stage, "step": self.step,
                                                          "resolution": self.resolution,
                                                          "ema": self.ema is not None})
        device = self.device
        with self.averaged_weights():
            self._sync_parts()
            for module in self._modules():
                module.to("cpu")
            save_parts(self.parts, self.out / MODEL_DIR)
            for module in self._modules():
                module.to(device)
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                 "lr_scheduler": self.lr_scheduler.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
            state["parameters"] = raw
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        partial = self.out / (CHECKPOINT + ".partial")
        torch.save(state, partial)
        partial.replace(self.out / CHECKPOINT)

    def _resume(self) -> None:
        try:
            state = torch.load(self.out / CHECKPOINT, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError) as error:
            raise InvalidInputError(f"{self.out / CHECKPOINT} cannot be read, it may be truncated ("
                                    f"{first_line(error)}): start again in a new --out folder") from None
        saved_step = self.parts.card.get("training", {}).get("step")
        if saved_step != state["step"]:
            raise InvalidInputError(f"{self.out}: {MODEL_DIR}/ is at step {saved_step} but {CHECKPOINT} at step "
                                    f"{state['step']}; the run cannot be resumed")
        if (self.ema is not None) != ("ema" in state):
            raise InvalidInputError(f"{self.out}: the run was {'not ' if 'ema' not in state else ''}trained with "
                                    "EMA; resume it with the same setting")
        if self.ema is not None:  # model/ holds the average; the raw weights are in the checkpoint
            self.ema.load_state_dict(state["ema"])
            with torch.no_grad():
                for parameter, raw in zip(self.parameters, state["parameters"], strict=True):
                    parameter.copy_(raw)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self._truncate_log()

    def _truncate_log(self) -> None:
        """Drop log lines of steps after the checkpoint (a run killed between checkpoints logged them; they
        are done again now)."""
        path = self.out / "log.jsonl"
        if path.is_file():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= self.step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    # ------------------------------------------------------------ one step
    def _generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.settings.seed * 1_000_003 + step)

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _latents(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            distribution = self.parts.vae.encode(pixels.to(self.device)).latent_dist
            return distribution.sample(generator) * self.parts.vae.config.scaling_factor

    def loss_stage0(self, generator: torch.Generator) -> torch.Tensor:
        """From scratch: reconstruction from the posterior mean (a CPU budget has no steps to spare for
        learning through sampling noise; the narrow initial posterior keeps stage 1's sampled latents close to
        it) plus the small KL term that keeps latents bounded, on windows around the character (`VAE_CROP`).
        Decoder fine-tuning: reconstruction of whole frames from the fixed encoder's latents; whole frames
        because the decoder's group norms see the whole picture, so a decoder that only ever saw windows
        paints the empty background of a frame grey."""
        crop = VAE_CROP if self.resolution > VAE_CROP and not self.decoder_only else None
        pixels = self.data.image_batch(self.settings.batch_size, generator, crop).pixels.to(self.device)
        vae = self.parts.vae
        with torch.no_grad() if self.decoder_only else nullcontext():
            posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.mean).sample
        error = reconstruction.float() - pixels
        loss = error.abs().mean() + error.pow(2).mean()
        return loss if self.decoder_only else loss + KL_WEIGHT * posterior.kl().mean()

    def _image_embeds(self, batch: PoseBatch, drop: bool) -> torch.Tensor:
        pixels = torch.cat([clip_pixel_values(self.clip_processor, p) for p in batch.reference_pictures])
        if drop:
            return torch.zeros((pixels.shape[0], self.parts.image_encoder.config.projection_dim), device=self.device)
        return self.parts.image_encoder(pixels.to(self.device)).image_embeds

    def loss_pose_stage(self, generator: torch.Generator, backward: bool = True) -> torch.Tensor:
        stage2 = self.settings.stage == 2
        batch = self.data.pose_batch(self.settings.batch_size, generator,
                                     frames=self.settings.frames if stage2 else None)
        size, frames = batch.targets.shape[0], (batch.targets.shape[2] if stage2 else 1)
        folded_targets = batch.targets.transpose(1, 2).flatten(0, 1) if stage2 else batch.targets
        latents = self._latents(folded_targets, generator)
        if stage2:  # (B*F, C, h, w) -> (B, C, F, h, w)
            latents = latents.unflatten(0, (size, frames)).transpose(1, 2)
        reference_latents = self._latents(batch.references, generator)
        noisy, timesteps, target = noisy_latents(self.scheduler, latents, generator)
        drop = float(torch.rand((), generator=generator)) < CONDITIONING_DROPOUT
        embeds = self._image_embeds(batch, drop).unsqueeze(1)
        poses = batch.poses.to(self.device)
        with self.bank.active(RunSettings()):
            self.bank.states.clear()
            self.bank.keys_values.clear()
            if not drop:
                with self.bank.recording_pass():
                    timestep_zero = torch.zeros(size, dtype=torch.long, device=self.device)
                    self.parts.reference_unet(reference_latents, timestep_zero, encoder_hidden_states=embeds,
                                              return_dict=False)
            if stage2:
                features = self.parts.pose_guider(poses.transpose(1, 2).flatten(0, 1))
                features = features.unflatten(0, (size, frames)).transpose(1, 2)
                unet = self.motion_unet
                embeds = embeds.repeat_interleave(frames, dim=0)
            else:
                features = self.parts.pose_guider(poses).unsqueeze(2)
                unet = self.parts.spatial_unet
            with self.bank.unet_call(unconditional_samples=1 if drop else 0, samples=1), \
                    pose_conditioning(unet, features):
                prediction = unet(noisy, timesteps, encoder_hidden_states=embeds, return_dict=False)[0]
            loss = min_snr_loss(self.scheduler, prediction, target, timesteps)
            if backward:  # inside the bank's context: checkpointed layers re-read the reference
                self._backward(loss)
        return loss

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def fixed_loss(self, seed: int = 1234) -> float:
        """The stage's loss on one fixed batch, noise and timesteps (no update): comparable across steps."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad(), self._autocast():
            if self.settings.stage == 0:
                return float(self.loss_stage0(generator))
            return float(self.loss_pose_stage(generator, backward=False))

    def train_step(self) -> float:
        generator = self._generator(self.step)
        with self._autocast():
            if self.settings.stage == 0:
                loss = self.loss_stage0(generator)
                self._backward(loss)
            else:
                loss = self.loss_pose_stage(generator)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.parameters)
        self.step += 1
        return float(loss.detach())

    # ------------------------------------------------------------ the run
    def run(self, progress: bool | None = None) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "settings.json").write_text(json.dumps(asdict(self.settings), indent=2) + "\n", encoding="utf-8")
        settings = self.settings
        bar = tqdm(total=settings.steps, initial=self.step, desc=f"stage {settings.stage}", unit="step",
                   disable=None if progress is None else not progress)
        started = time.perf_counter()
        with open(self.out / "log.jsonl", "a", encoding="utf-8", buffering=1) as log:  # line by line: watchable
            while self.step < settings.last_step:
                loss = self.train_step()
                log.write(json.dumps({"step": self.step, "loss": round(loss, 6),
                                      "lr": self.lr_scheduler.get_last_lr()[0],
                                      "seconds": round(time.perf_counter() - started, 2)}) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if self.step % settings.checkpoint_every == 0 and self.step < settings.steps:
                    self.save_checkpoint()
                if self.step % settings.sample_every == 0 and self.step < settings.steps:
                    self.write_samples()
        bar.close()
        # Finishing is idempotent, so a run resumed after its last step still ends complete.
        if settings.stage == 0 and not self.decoder_only:
            self.narrow_posterior()
            self.measure_latent_scale()
        self.save_checkpoint()
        self.write_samples()
        return self.out / MODEL_DIR

    @torch.no_grad()
    def narrow_posterior(self) -> None:
        """Stage 0 reconstructs from the posterior mean, so nothing but the KL term trains the log-variance
        head, and the KL pulls the variance towards 1: left so, the latents stages 1 and 2 sample
        (`latent_dist.sample()`, as the recipe) would be mostly noise. Fix the head to a constant, tiny
        variance (std 0.0025): the posterior is its mean, as a trained KL-VAE's nearly is."""
        head = self.parts.vae.quant_conv
        channels = self.parts.vae.config.latent_channels
        head.weight[channels:] = 0.0
        head.bias[channels:] = POSTERIOR_LOG_VARIANCE

    @torch.no_grad()
    def measure_latent_scale(self, images: int = 256) -> float:
        """Set the VAE's scaling factor so latents have unit standard deviation on this data."""
        generator = torch.Generator().manual_seed(self.settings.seed)
        values = []
        for _ in range(max(1, images // self.settings.batch_size)):
            pixels = self.data.image_batch(self.settings.batch_size, generator).pixels.to(self.device)
            values.append(self.parts.vae.encode(pixels).latent_dist.sample(generator).flatten().cpu())
        scale = float(1.0 / torch.cat(values).std())
        self.parts.vae.register_to_config(scaling_factor=scale)
        return scale

    # ------------------------------------------------------------ samples
    def write_samples(self, count: int = 3) -> Path:
        from .samples import sample_grid

        path = self.out / "samples" / f"step_{self.step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.averaged_weights():
            sample_grid(self, count).save(path)
        return path


def finished_run(settings: TrainSettings) -> bool:
    """The run in `settings.out` has reached its last step and finished (its model folder says so)."""
    out = Path(settings.out)
    if not (out / CHECKPOINT).is_file() or not (out / MODEL_DIR / MODEL_CARD).is_file():
        return False
    training = read_model_card(out / MODEL_DIR).get("training", {})
    return training.get("stage") == settings.stage and training.get("step", 0) >= settings.last_step


def train(settings: TrainSettings, progress: bool | None = None) -> Path:
    """Run (or resume) a stage; a stage that already finished is not loaded again."""
    if finished_run(settings):
        return Path(settings.out) / MODEL_DIR
    return Trainer(settings).run(progress)


def iter_log(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
