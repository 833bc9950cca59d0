"""The provider worker pool: work matched onto providers, pushed to their workers, run and settled there."""
