"""The market: demand requests, the in-memory provision index, matching, leases and metering."""
