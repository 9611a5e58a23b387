"""Retention and erasure: how long a client's records are kept, the purge that forgets older ones, and the
erasure of one account's personal data on request (docs/operations.md, "Retention and erasure").

  plan.py       pure: the periods (defaults, bounds, the settings body), the purge's steps and cutoffs
  models.py     client_retention: a client's periods (a null column means the default)
  queries.py    the statements: look for due rows, delete a batch by id, count for a dry run, erase
  services.py   purge_once (bounded batches, short transactions), RetentionJob (once per cluster, by lease),
                erase_account, the settings read and write
"""
