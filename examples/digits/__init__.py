"""The digits sweep: a small MLP on scikit-learn's bundled 8x8 digits (see README.md)."""
