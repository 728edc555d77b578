"""Our ORPO training loop on torch + transformers.

Light at package level (no torch import here). The server never imports this package: the
dataset readers both sides need live in the shared core, `orpo_dash.dataset_files`. The heavy
modules are `trainer.recipe` (the loop), `trainer.loss`, `trainer.data` and `trainer.models`;
`python -m trainer CONFIG` runs a job (`trainer.worker`).
"""
