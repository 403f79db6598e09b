"""Vein-to-vein chain-of-identity tracker for autologous cell therapies."""

__version__ = "0.1.0"
