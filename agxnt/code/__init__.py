"""Code agents: Codexecution (one snippet) and Sequential Code (a session of cells)."""
