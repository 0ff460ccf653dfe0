"""Every SQLAlchemy model, imported here so that metadata is complete."""

from app.models.account import Account, AccountStatus, Role
from app.models.audit import AuditEntry
from app.models.base import Base
from app.models.data_key import SYSTEM_KEY_ID, DataKey
from app.models.refresh_token import RefreshToken

__all__ = [
    "SYSTEM_KEY_ID",
    "Account",
    "AccountStatus",
    "AuditEntry",
    "Base",
    "DataKey",
    "RefreshToken",
    "Role",
]
