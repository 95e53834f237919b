"""Benchmarks of hkops against anchors measured in the same run (``python -m bench``)."""
