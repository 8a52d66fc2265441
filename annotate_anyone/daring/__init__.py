"""Daring: the bundled text-to-image trainer with the HOLA loss (CosmicMan, CVPR 2024, section 4).

Entry points (heavy imports happen inside them):

* ``daring.train.train(config_path) -> Path``: train from a YAML/TOML :class:`~.config.TrainConfig`;
  returns the last checkpoint folder (``<output_dir>/checkpoints/step-NNNNNNN``).
* ``daring.evaluate.train_eval(checkpoint, release, *, data_root=None, samples=16, ...) -> dict``:
  per-group and overall attention alignment (share of attention mass in the mask, IoU, chance).
* ``daring.generate.generate(checkpoint, prompt, out, *, steps=30, ...) -> Path``: render a PNG.

Building blocks: ``captions`` (grammar, stable API also used for dense captions), ``spans``,
``masks``, ``buckets``, ``data`` (release reader and dataset), ``attention`` (capture processor),
``hola`` (the loss), ``objective`` (one step's losses), ``tiny``/``demo`` (tiny models, demo release).
"""
