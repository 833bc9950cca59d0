"""The test harness: real platform processes and the helpers tests use to walk them."""
