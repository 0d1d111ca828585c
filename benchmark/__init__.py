"""ser-bench: an experiment-tracked benchmark suite for speech emotion recognition."""

__version__ = "0.1.0"
