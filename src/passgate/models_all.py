"""Imports every model module so the metadata knows every table (for Alembic and tests)."""

from passgate.auth import models as auth_models  # noqa: F401
from passgate.policy import models as policy_models  # noqa: F401
