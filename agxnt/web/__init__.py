"""Web agents: search, fetch, crawl, research and drive a browser, behind one egress policy.

Agents: ``web.internet`` (search or fetch one page), ``web.dive`` (crawl a site), ``web.deep`` (planned
multi-query research with a cited synthesis), ``web.browser`` (actions or an instruction in Chromium) and
``web.sequential`` (a chain of those). Settings, all ``CXMPUTE_``-prefixed:

- ``SEARCH_BACKEND`` (``duckduckgo``, ``searxng``, ``brave`` or any ``cxmpute.search_backends`` plug-in),
  ``SEARCH_URL``, ``SEARCH_API_KEY``;
- ``WEB_ALLOW_PRIVATE`` (default off) and ``WEB_ALLOWED_HOSTS`` (``name`` or ``name:port`` exemptions):
  private, loopback, link-local and metadata addresses are refused otherwise, by resolved address, on
  every redirect hop, and for every connection the browser makes (agxnt.web.proxy). The exact
  ``host:port`` of each configured service URL (search, social APIs, LLM) is exempt too; the platform's
  API, the Prefect API and its databases never are (agxnt.web.egress). The same policy guards
  ``Services.http``, the one HTTP client every agent (``http.request`` included) gets;
- ``WEB_MAX_PAGE_BYTES``, ``WEB_TIMEOUT_SECONDS``; page and step budgets are each agent's inputs;
- ``BROWSER_EXECUTABLE`` (default ``/usr/bin/chromium``, Debian's package; Playwright never downloads one)
  and ``UNTRUSTED_USER`` (default ``nobody``): Chromium keeps its own sandbox on and, when the platform
  runs as root, runs as that user; WebRTC sends nothing beside the proxy.
"""
