"""Social agents: YouTube, Discord, Twitter (X) and Telegram, each speaking the service's own API with
the account's own credentials from the secret store."""
