"""The only package that runs SQL against outbox.messages.

``connection`` opens connections and checks the schema, ``delivery`` holds the worker's
statements (claim, settle, release), ``operations`` the operator's (dead letters, requeue, purge,
stats), written out in ``operator_queries``. Each operation is one named, guarded statement that
reports what it applied.
"""
