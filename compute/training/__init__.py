"""Distributed training: a job's ranks run PyTorch DDP on providers matched by the market, checkpointing to
Stxrage and restarting from the latest checkpoint when a rank's provider is lost."""
