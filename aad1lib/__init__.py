"""AAD-1: asymmetric adversarial distillation for one-step autoregressive image-to-video generation.

A causal, chunk-by-chunk generator distilled from a bidirectional Wan 2.1 teacher in three stages
(I: Diffusion Forcing + ODE regression, II: Self-Forcing DMD warm-up, III: adversarial refinement
with a bidirectional, video-level discriminator).
"""

__version__ = "0.1.0"
