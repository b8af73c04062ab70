"""`outbox-worker demo`: the whole flow on this machine, one command, no account.

``command`` is the click command, ``session`` runs one demo (throwaway database, stand-in,
the worker built by ``outbox_worker.assemble``), ``scenario`` is what it sends, ``queries`` what
it reads back from outbox.messages and ``display`` how it shows that.
"""
