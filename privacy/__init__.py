"""Privacy: differential-privacy training with a privacy monitor, membership inference, inversion."""
