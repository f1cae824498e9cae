"""batcher: run paid, asynchronous Segmind workflows in bulk, resumably, without paying twice."""

__version__ = "0.1.0"
