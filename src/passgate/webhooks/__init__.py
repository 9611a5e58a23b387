"""Webhooks: status changes pushed to the business's endpoints.

``signing`` holds the pure signature schemes (Kount RSA-PSS and Standard Webhooks) and the key-rotation model;
``ssrf`` decides whether an endpoint URL may be called at all and pins the address that was checked.
"""
