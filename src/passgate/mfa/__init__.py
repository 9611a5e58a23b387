"""MFA and verification sessions: codes, one-time links, attempts, resends and their lifecycle."""
