"""Imports every model module so the metadata knows every table (for Alembic and tests)."""

from passgate import leases as lease_models  # noqa: F401
from passgate.audit import models as audit_models  # noqa: F401
from passgate.auth import models as auth_models  # noqa: F401
from passgate.auth import settings as auth_settings  # noqa: F401
from passgate.console import models as console_models  # noqa: F401
from passgate.idempotency import models as idempotency_models  # noqa: F401
from passgate.messaging import models as messaging_models  # noqa: F401
from passgate.mfa import models as mfa_models  # noqa: F401
from passgate.policy import models as policy_models  # noqa: F401
from passgate.retention import models as retention_models  # noqa: F401
from passgate.webhooks import models as webhook_models  # noqa: F401
