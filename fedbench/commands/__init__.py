"""fedbench.commands."""
