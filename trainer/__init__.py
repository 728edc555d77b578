"""Our ORPO training loop on torch + transformers.

Light at package level (no torch import here): the server may import `trainer.dataset_files`
to preview datasets. The heavy modules are `trainer.recipe` (the loop), `trainer.loss`,
`trainer.data` and `trainer.models`; `python -m trainer CONFIG` runs a job (`trainer.worker`).
"""
