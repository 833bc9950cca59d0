"""The provider worker pool: work matched onto providers, dispatched through Prefect, run by their workers."""
