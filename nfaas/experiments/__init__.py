"""Reproductions of the IoT paper's evaluation (section 5.2) on this node: ``nfaas experiment``."""
