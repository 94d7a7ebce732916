"""Training spritediff models: the Animate Anyone recipe (see the README's "Training").

- `models`: the trainable parts of a weights folder, in and out of Moore-AnimateAnyone's on-disk layout;
  `mini`: the from-scratch spritediff-mini configuration;
- `data`: samples of a dataset written by `python -m blender_addon dataset`;
- `objective`: the noise schedule and the loss;
- `trainer`: stages 0 (VAE), 1 (images) and 2 (motion), checkpoints and resume.
"""
