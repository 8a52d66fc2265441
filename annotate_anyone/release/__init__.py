"""Versioned, immutable dataset releases.

A release lives under ``releases/<version>/`` in the object store::

    shards/000000.tar ...   WebDataset shards: {key}.jpg|png|webp, {key}.parsing.png, {key}.json
    index.parquet           one row per sample, CosmicMan training columns + ours
    changes.json, CHANGES.md  the diff against the parent release
    tombstones.json         image hashes taken down (cumulative)
    manifest.json           written last: a version exists iff its manifest exists

Entry points: :func:`annotate_anyone.release.export.export_release`,
:func:`annotate_anyone.release.verify.verify_release`, :func:`annotate_anyone.release.materialize.materialize`,
:mod:`annotate_anyone.release.service` (API/CLI use cases, release rows, and the one rule of which files can be
downloaded), :mod:`annotate_anyone.release.views` (what the API and the
dashboard show of a release), :mod:`annotate_anyone.release.export_job` (the export job kind) and the trainers'
loader :mod:`annotate_anyone.datasets`.
"""
