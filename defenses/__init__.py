"""neurofuzz.defenses: adversarial training, input-transformation defenses and detectors."""
