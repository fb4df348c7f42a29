"""Evaluation: HotpotQA reader, metrics and the ``bench`` command."""
