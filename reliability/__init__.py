"""Reliability: fault injection, out-of-distribution and drift detection."""
