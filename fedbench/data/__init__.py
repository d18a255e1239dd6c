"""fedbench.data."""
