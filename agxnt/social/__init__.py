"""Social agents: YouTube, Discord, Twitter (X) and Telegram, each speaking the service's own API with
the account's own credentials from the secret store (``agxnt.secrets``).

- ``social.youtube``: ``video``, ``uploads``, ``search`` (Data API v3) and ``transcript`` (timedtext,
  json3; ``summarize`` adds a summary by the platform LLM). Secret ``youtube_api_key`` (field
  ``api_key_secret``), sent as ``X-Goog-Api-Key``; transcripts need none.
- ``social.discord``: ``post`` through the webhook, or as the bot when ``channel_id`` is set (embeds,
  attachments, replies), and ``read``. Secrets ``discord_webhook_url`` / ``discord_bot_token``.
- ``social.twitter``: ``post`` and ``reply`` (media through ``/2/media/upload``), ``search`` (recent) and
  ``timeline``. Secret ``twitter_token``: an OAuth 2 bearer token, user context to post.
- ``social.telegram``: ``send_message``, ``reply``, ``send_photo``, ``send_document`` and ``get_updates``
  (long polling). Secret ``telegram_bot_token``.

Every secret name is an input field (``*_secret``) with the name above as default, so one account can
keep several bots or keys.

Base URLs are settings, so a deployment (or a test) can point them elsewhere: ``CXMPUTE_YOUTUBE_API_URL``,
``CXMPUTE_YOUTUBE_TRANSCRIPT_URL``, ``CXMPUTE_DISCORD_API_URL``, ``CXMPUTE_TWITTER_API_URL``,
``CXMPUTE_TELEGRAM_API_URL``. A Discord webhook URL contributes only its id and token; the request goes
to the configured Discord base. Calls retry 429s after the wait the service names (``Retry-After``,
``X-RateLimit-Reset-After``, ``x-rate-limit-reset``, a body ``retry_after``) and 5xx/transport errors
with backoff, up to ``CXMPUTE_SOCIAL_MAX_RETRIES``; a wait longer than ``CXMPUTE_SOCIAL_MAX_RETRY_WAIT_S``
is reported as a 429 instead of waited out. A 401 names the secret field whose credentials were refused.
"""
