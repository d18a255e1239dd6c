"""fedbench.models."""
