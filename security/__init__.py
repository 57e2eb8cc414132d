"""Model asset security: encrypted checkpoints and function-preserving obfuscation."""
