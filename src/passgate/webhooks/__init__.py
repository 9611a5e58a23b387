"""Webhooks: status changes pushed to the business's endpoints.

``signing`` holds the pure signature schemes (Kount RSA-PSS and Standard Webhooks) and the key-rotation model;
``ssrf`` decides whether an endpoint URL may be called at all and pins the address that was checked.
``services`` manages endpoints (with ``keys`` for their signing keys and secrets) and ``outbox`` writes events
inside the transactions of the changes they report; ``delivery`` is the worker that sends them, with
``claims`` (what is due), ``credentials`` (what signs a try) and ``outcomes`` (what a try came to).
"""
