"""Gradient attacks, usable standalone (``attack(x, y)``) and as mutators."""
