"""Stylization: losses, quality-mode optimisation, style images."""
