"""The dev layer: loading packages from disk, watching them, and the reload daemon."""
