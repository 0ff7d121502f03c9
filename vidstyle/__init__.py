"""vidstyle: batch video stylization (Gatys-style optimisation or feed-forward networks)."""

__version__ = "0.1.0"
