"""Generation agents: images, video, PDF, notebooks, presentations, speech and long-form text."""
