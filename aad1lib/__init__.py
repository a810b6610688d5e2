"""AAD-1: asymmetric adversarial distillation for one-step autoregressive image-to-video generation.

A causal, chunk-by-chunk generator distilled from a bidirectional Wan 2.1 teacher in three stages
(I: Diffusion Forcing + ODE regression, II: Self-Forcing DMD warm-up, III: adversarial refinement
with a bidirectional, video-level discriminator).

Layers: a module imports from its own layer or the ones above it in this list, never below, and never inside a
function (tests/test_import_graph.py checks the graph has no cycle and the base imports nothing else):

1. base — ``paths`` (repository folders), ``processes`` (a subprocess group killed on timeout),
   ``run_folder`` (run folders, the atomic JSON/text write, git commit),
   ``runs`` (run lookup: ``latest``, ``latest:<stage>?key=value``), ``flow`` (flow-matching maths and every sigma
   schedule), ``chunking`` (``ChunkLayout``), ``pretrained`` (a checkpoint's config.json), ``config`` (presets;
   latent geometry: the codec's temporal/spatial factors, the chunk layout)
2. parts — ``models/``, ``data/``, ``losses``, ``notebook``, ``notebook_runner``
3. assembly — ``rollout``, ``sampling``, ``builders``, ``conditioning``, ``ode_pairs``
4. ``train/`` — the stage trainers
5. ``scale/`` — memory planner and measurement (trainer-like steps)
6. ``eval/`` — metrics, evaluation, speed, before/after comparisons (reads runs, never trains)
7. ``study/``, ``reproduce`` — papermill runs of the notebooks
8. ``report/``
"""

__version__ = "0.1.0"
