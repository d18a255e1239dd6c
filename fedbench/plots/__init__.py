"""fedbench.plots."""
