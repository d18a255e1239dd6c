"""fedbench.fl."""
