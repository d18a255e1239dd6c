"""fedbench.bench."""
