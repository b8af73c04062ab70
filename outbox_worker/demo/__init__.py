"""`outbox-worker demo`: the whole flow on this machine, one command, no account.

``command`` runs it, ``scenario`` is what it sends, ``queries`` what it reads back from
outbox.messages and ``display`` how it shows that.
"""
