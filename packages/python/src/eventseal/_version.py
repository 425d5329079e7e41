# Replaced by scripts/package with the Cargo workspace version when it builds the wheel.
__version__ = "0.0.0+source"
