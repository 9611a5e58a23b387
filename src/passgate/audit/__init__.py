"""The audit log: who changed what, when. One vocabulary with metrics and webhook event names."""
