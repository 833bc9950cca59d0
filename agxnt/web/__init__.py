"""Web agents: search, fetch, crawl, research and drive a browser, behind one egress policy."""
