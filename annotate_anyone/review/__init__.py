"""Humans in the loop: Label Studio projects, pre-filled partial tasks, sync back, annotator QA.

Layout: ``configs`` (labeling configs from the taxonomy), ``client`` (the review-backend boundary and its
Label Studio implementation), ``builders`` (task data and predictions), ``push`` (batched, resumable
push), ``sync`` (webhook inbox and reconciliation), ``qa`` (gold, overlap, agreement, Dawid-Skene,
flagging), ``service`` (use cases for the API, CLI and jobs). Heavy imports (the SDK) stay inside
``client``.
"""
