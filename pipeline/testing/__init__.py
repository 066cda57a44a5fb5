"""Models for trying groundlabel without downloaded weights, as transformers keeps ``testing_utils``.

``models``: random-weight copies of the real architectures (tiny shapes for tests, real shapes for benchmarks),
saved the way real weights ship and loaded through the product's own loaders.
"""
