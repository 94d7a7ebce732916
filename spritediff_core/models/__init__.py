"""Model components of the Animate Anyone / Sprite Sheet Diffusion recipe, built from diffusers parts."""
