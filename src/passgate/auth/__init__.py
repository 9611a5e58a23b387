"""Clients (tenants), API keys and OAuth2 client-credentials tokens."""
