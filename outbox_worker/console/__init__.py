"""The web console: what the operator commands show and do, in a browser, for viewers and admins.

Server-rendered pages (aiohttp, escaped by ``html``), a little script and style shipped in
``static/`` (nothing from a CDN), and the same store operations as the CLI.

    settings   ConsoleSettings from flags and OUTBOX_CONSOLE_* (address, tokens, SSO, PII)
    tokens     sign-in tokens: made and shown once, kept as scrypt hashes in a file
    sessions   signed-in sessions, sign-in rate limiting and one-shot notices (pure, clock in)
    guard      middlewares: who is asking (cookie or SSO header), CSRF, headers, Host
    html       the escaping helper and the page frame; charts: server-side SVG bars
    overview   the overview's aggregate, cached so 50 tabs cost the database what one does
    pages      one module per page; routes wires paths to them; server starts it all
"""
