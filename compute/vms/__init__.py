"""Virtual machines for users: created from a Stxrage image, started, stopped, snapshotted and destroyed on the
``vm`` runtime, each holding a market lease billed per second while it runs."""
