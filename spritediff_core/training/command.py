"""`spritediff train`: the command-line face of `trainer.TrainSettings` (standard library only until it runs)."""

from __future__ import annotations

import argparse
from dataclasses import fields


def train(args: argparse.Namespace) -> None:
    from .trainer import TrainSettings
    from .trainer import train as run_training

    names = {f.name for f in fields(TrainSettings)}
    settings = TrainSettings(**{k: v for k, v in vars(args).items() if k in names})
    model = run_training(settings)
    print(f"stage {settings.stage}: {settings.last_step} of {settings.steps} steps done; weights folder {model}")


def add_train_command(commands) -> None:
    parser = commands.add_parser(
        "train", help="train or fine-tune a model (Animate Anyone recipe) on a dataset",
        description="Stage 0 trains the VAE of a model from scratch (--config), or fine-tunes the decoder of a "
                    "weights folder (--init; its latents, and so its UNets, stay valid); stage 1 trains the "
                    "ReferenceNet, the denoising UNet's spatial layers and the PoseGuider, stage 2 the motion "
                    "modules. Every stage writes a complete weights folder to OUT/model; re-running the same "
                    "command resumes.")
    parser.add_argument("--stage", type=int, required=True, choices=(0, 1, 2))
    parser.add_argument("--data", required=True, help="a dataset folder (python -m blender_addon dataset)")
    parser.add_argument("--out", required=True, help="the run's folder: model/, checkpoint.pt, log.jsonl, samples/")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", help="a weights folder to start from (e.g. the previous stage's OUT/model)")
    start.add_argument("--config", choices=("mini",), help="build a model from scratch (stage 0)")
    parser.add_argument("--steps", type=int, default=1000, help="total steps of this stage (default 1000)")
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="stop after this step, the learning-rate schedule still spanning --steps (a time "
                             "budget; the same command with a later --stop-at, or none, continues)")
    parser.add_argument("--batch-size", type=int, default=8, help="samples (stage 2: clips) per step")
    parser.add_argument("--lr", dest="learning_rate", type=float, default=1e-4,
                        help="AdamW learning rate (default 1e-4; the recipe fine-tunes at 1e-5)")
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--lr-scheduler", choices=("constant_with_warmup", "cosine", "linear"),
                        default="constant_with_warmup", help="learning-rate schedule after the warm-up")
    parser.add_argument("--use-ema", action="store_true",
                        help="keep an exponential moving average of the weights and write it as the model")
    parser.add_argument("--ema-decay", type=float, default=0.9999,
                        help="the most the EMA's decay warms up to (default 0.9999)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="training size in px (default: the model's native size, else 512)")
    parser.add_argument("--frames", type=int, default=8, help="stage 2: frames per clip (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--train-image-encoder", action="store_true",
                        help="stage 1: train the image encoder too (a model of its own; the recipe keeps CLIP frozen)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no",
                        help="autocast precision (trainable weights stay float32)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--use-8bit-adam", action="store_true", help="bitsandbytes' 8-bit AdamW (CUDA)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.set_defaults(run=train)
